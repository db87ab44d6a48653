{{/* `<release>-llamaops`, or the release name itself when it already says llamaops. */}}
{{- define "llamaops.fullname" -}}
{{- if contains "llamaops" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-llamaops" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
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

{{/* The MLflow account's Secret (keys username, password): the user's, or the one the chart makes. */}}
{{- define "llamaops.mlflowAuthSecret" -}}
{{- .Values.mlflow.credentialsSecret | default (printf "%s-mlflow-auth" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{/* An image by tag, pinned by digest when one is given (repository:tag@sha256:...); never :latest. */}}
{{- define "llamaops.imageRef" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- with .digest }}@{{ . }}{{ end -}}
{{- end -}}

{{- define "llamaops.image" -}}
{{- include "llamaops.imageRef" .Values.image -}}
{{- end -}}

{{/* MLflow's allowed Host headers (fnmatch patterns on host:port). */}}
{{- define "llamaops.mlflowAllowedHosts" -}}
{{- $svc := .service -}}
{{- $ns := .root.Release.Namespace -}}
{{- $hosts := list "localhost:*" "127.0.0.1:*" $svc (printf "%s:*" $svc) (printf "%s.%s" $svc $ns) (printf "%s.%s:*" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc:*" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) (printf "%s.%s.svc.cluster.local:*" $svc $ns) "10.*" "192.168.*" -}}
{{- range $i := until 16 -}}
{{- $hosts = append $hosts (printf "172.%d.*" (add 16 $i)) -}}
{{- end -}}
{{- concat $hosts (.root.Values.mlflow.allowedHosts | default list) | join "," -}}
{{- end -}}

{{- define "llamaops.mlflowImage" -}}
{{- $i := .Values.mlflow.image -}}
{{- if $i.repository -}}
{{- $_ := required "mlflow.image.tag is required with mlflow.image.repository" $i.tag -}}
{{- include "llamaops.imageRef" $i -}}
{{- else -}}
{{- include "llamaops.image" . -}}
{{- end -}}
{{- end -}}

{{/* Whose S3 key a component uses (component: mlflow or reader): its own Secret if named; with
the bundled MinIO, the one the chart makes (a MinIO user with the component's policy); else the
pipelines' Secret. */}}
{{- define "llamaops.s3ComponentSecret" -}}
{{- $named := index .root.Values.s3.componentSecrets .component -}}
{{- if $named -}}
{{- $named -}}
{{- else if not .root.Values.s3.external.enabled -}}
{{- printf "%s-s3-%s" (include "llamaops.fullname" .root) .component -}}
{{- else -}}
{{- include "llamaops.s3Secret" .root -}}
{{- end -}}
{{- end -}}

{{/* AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from Secret `.secret` (the chart's key names). */}}
{{- define "llamaops.s3Env" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .secret }}, key: {{ .root.Values.s3.secretKeys.accessKey | quote }}}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .secret }}, key: {{ .root.Values.s3.secretKeys.secretKey | quote }}}}
{{- end -}}

{{- define "llamaops.minioRootSecret" -}}
{{- .Values.s3.minio.rootSecret | default (printf "%s-minio-root" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{- define "llamaops.pgSecret" -}}
{{- .Values.mlflow.database.postgresql.existingSecret | default (printf "%s-postgresql" (include "llamaops.fullname" .)) -}}
{{- end -}}

{{/* In-cluster URLs name the release namespace: pipeline pods in every served namespace read them. */}}
{{- define "llamaops.s3Endpoint" -}}
{{- if .Values.s3.external.enabled -}}
{{- .Values.s3.external.endpoint -}}
{{- else -}}
{{- printf "http://%s-minio.%s.svc:9000" (include "llamaops.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "llamaops.mlflowUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s-mlflow.%s.svc:5000" (include "llamaops.fullname" .) .Release.Namespace -}}
{{- else if .Values.mlflow.externalUri -}}
{{- .Values.mlflow.externalUri -}}
{{- else -}}
{{- fail "mlflow.externalUri is required when mlflow.enabled is false (pipelines need an MLflow tracking server)" -}}
{{- end -}}
{{- end -}}

{{/* The namespaces whose pipeline pods (and the RayJobs / LlamaDeployments they create) this release
serves, as a JSON list: pipelines.namespaces, or the release namespace. */}}
{{- define "llamaops.servedNamespaces" -}}
{{- .Values.pipelines.namespaces | default (list .Release.Namespace) | uniq | toJson -}}
{{- end -}}

{{/* The namespaces whose LlamaDeployments the operator serves, as a JSON list: the served ones
plus operator.watchNamespaces; ["*"] = every namespace. */}}
{{- define "llamaops.operatorNamespaces" -}}
{{- if has "*" .Values.operator.watchNamespaces -}}
["*"]
{{- else -}}
{{- concat (include "llamaops.servedNamespaces" . | fromJsonArray) .Values.operator.watchNamespaces | uniq | toJson -}}
{{- end -}}
{{- end -}}

{{/* Where the S3 Secret, the platform ConfigMap and the cluster contract live: the release
namespace, then every served one. */}}
{{- define "llamaops.contractNamespaces" -}}
{{- prepend (include "llamaops.servedNamespaces" . | fromJsonArray) .Release.Namespace | uniq | toJson -}}
{{- end -}}

{{/* Values that the schema cannot check: each failure is one line. */}}
{{- define "llamaops.validate" -}}
{{- $pools := .Values.nodePools | default dict -}}
{{- range $name, $pool := $pools -}}
{{- if and (gt (int ($pool.gpusPerNode | default 0)) 0) (empty $pool.nodeSelector) -}}
{{- fail (printf "nodePools.%s has gpusPerNode %v but no nodeSelector: GPU pods would land on any node; set nodePools.%s.nodeSelector" $name $pool.gpusPerNode $name) -}}
{{- end -}}
{{- end -}}
{{- with .Values.pipelines.cpuNodePool -}}
{{- if not (hasKey $pools .) -}}
{{- fail (printf "pipelines.cpuNodePool %q is not a pool in nodePools (declared: %s)" . (keys $pools | sortAlpha | join ", " | default "none")) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.s3.secretKeys.accessKey .Values.s3.secretKeys.secretKey -}}
{{- fail (printf "s3.secretKeys.accessKey and s3.secretKeys.secretKey are both %q: the Secret needs two different keys" .Values.s3.secretKeys.accessKey) -}}
{{- end -}}
{{- $_ := include "llamaops.mlflowUri" . -}}
{{- end -}}

{{/* The cluster contract (platform/config/cluster.py ClusterContract) as JSON. */}}
{{- define "llamaops.contract" -}}
{{- $v := .Values -}}
{{- $c := dict
  "image" (include "llamaops.image" .)
  "imagePullPolicy" ($v.image.pullPolicy | default "IfNotPresent")
  "serviceAccount" $v.pipelines.serviceAccount
  "s3Secret" (dict "name" (include "llamaops.s3Secret" .) "userKey" $v.s3.secretKeys.accessKey "passwordKey" $v.s3.secretKeys.secretKey)
  "platformConfigMap" (printf "%s-platform" (include "llamaops.fullname" .))
  "nodePoolsConfigMap" "llamaops-node-pools"
  "nodePools" ($v.nodePools | default dict)
  "cpuPool" ($v.pipelines.cpuNodePool | default "")
  "cpuPod" $v.pipelines.cpuPod
  "queueing" (dict "kueueQueue" ($v.queueing.kueueQueue | default "") "priorityClass" ($v.queueing.priorityClass | default ""))
-}}
{{- if or $v.mlflow.enabled $v.mlflow.credentialsSecret -}}
{{- $_ := set $c "mlflowSecret" (dict "name" (include "llamaops.mlflowAuthSecret" .) "userKey" "username" "passwordKey" "password") -}}
{{- else -}}
{{- $_ := set $c "mlflowSecret" nil -}}
{{- end -}}
{{- toJson $c -}}
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
