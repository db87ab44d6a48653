{{- define "llamaops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "llamaops.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llamaops
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "llamaops.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod-level: never root. */}}
{{- define "llamaops.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 1000 }}
runAsGroup: {{ .uid | default 1000 }}
fsGroup: {{ .uid | default 1000 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level: read-only root fs, no privilege escalation, no capabilities. */}}
{{- define "llamaops.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "llamaops.s3Secret" -}}
{{- .Values.s3.existingSecret | default (printf "%s-s3" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{- define "llamaops.s3Endpoint" -}}
{{- if .Values.s3.external.enabled -}}{{ .Values.s3.external.endpoint }}{{- else -}}http://{{ include "llamaops.fullname" . }}-minio:9000{{- end -}}
{{- end -}}

{{- define "llamaops.pgSecret" -}}
{{- .Values.mlflow.database.postgresql.existingSecret | default (printf "%s-postgresql" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{/* A generated secret value that survives upgrades (reused from the live Secret). */}}
{{- define "llamaops.keepOrRandom" -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $old (index $old.data .key) -}}{{ index $old.data .key }}{{- else -}}{{ randAlphaNum 32 | b64enc }}{{- end -}}
{{- end -}}
