{{- define "llamaops.fullname" -}}
{{- printf "%s-llamaops" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "llamaops.labels" -}}
app.kubernetes.io/part-of: llamaops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "llamaops.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every container: non-root, read-only root filesystem, no capabilities. */}}
{{- define "llamaops.containerSecurity" -}}
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "llamaops.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "llamaops.s3Secret" -}}
{{- .Values.s3.existingSecret | default (printf "%s-s3" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{- define "llamaops.pgSecret" -}}
{{- .Values.mlflow.database.postgresql.existingSecret | default (printf "%s-postgresql" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{- define "llamaops.s3Endpoint" -}}
{{- if .Values.s3.external.enabled -}}
{{- .Values.s3.external.endpoint -}}
{{- else -}}
{{- printf "http://%s-minio:9000" (include "llamaops.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* A generated secret value that survives upgrades (read back from the live Secret). */}}
{{- define "llamaops.keptRandom" -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $old $old.data (hasKey $old.data .key) -}}
{{- index $old.data .key -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}
