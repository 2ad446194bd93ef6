{{/*
The environment of each component: the variables of services/common/config.py that its service reads
(the README's table). "mlgrid.<component>.env" is its ConfigMap's data (nothing secret); "mlgrid.<component>.secretEnv"
its env entries from Secrets, called with (dict "ctx" $ "secret" <the chart's Secret>).
*/}}

{{- define "mlgrid.tracking.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "tracking") }}
MLGRID_DEFAULT_ARTIFACT_ROOT: {{ .Values.tracking.defaultArtifactRoot | quote }}
MLGRID_DB_POOL_SIZE: {{ .Values.database.poolSize | quote }}
MLGRID_DB_AUTO_INIT: {{ .Values.database.autoInit | quote }}
MLGRID_METRICS_SYNCHRONOUS_COMMIT: {{ .Values.tracking.metricsSynchronousCommit | quote }}
MLGRID_INGEST_DEDUP_HOURS: {{ .Values.tracking.ingestDedupHours | quote }}
{{- end }}

{{- define "mlgrid.tracking.secretEnv" -}}
{{ include "mlgrid.databaseUrlEnv" . }}
{{- end }}

{{- define "mlgrid.registry.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "registry") }}
MLGRID_DB_POOL_SIZE: {{ .Values.database.poolSize | quote }}
# Only tracking creates an empty database's schema; the registry waits for it (MLGRID_STARTUP_WAIT_SECONDS).
MLGRID_DB_AUTO_INIT: "false"
MLGRID_REGISTRY_EVENT_POLL_MS: {{ .Values.registry.eventPollMs | quote }}
{{- end }}

{{- define "mlgrid.registry.secretEnv" -}}
{{ include "mlgrid.databaseUrlEnv" . }}
{{- end }}

{{- define "mlgrid.artifacts.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "artifacts") }}
MLGRID_ARTIFACTS_DESTINATION: {{ include "mlgrid.artifactsDestination" . | quote }}
{{- with include "mlgrid.s3.endpoint" . }}
MLGRID_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
MLGRID_S3_REGION: {{ .Values.s3.region | quote }}
{{- if .Values.minio.enabled }}
MLGRID_S3_CREATE_BUCKET: "true"
{{- end }}
{{- with .Values.s3.presignEndpointUrl }}
MLGRID_S3_PRESIGN_ENDPOINT_URL: {{ . | quote }}
{{- end }}
MLGRID_S3_PRESIGN_EXPIRY_SECONDS: {{ .Values.artifacts.presignExpirySeconds | quote }}
MLGRID_ARTIFACTS_DIRECT_THRESHOLD_MB: {{ .Values.artifacts.directThresholdMB | quote }}
MLGRID_TRACKING_TARGET: {{ include "mlgrid.grpcTarget" (dict "ctx" . "component" "tracking") | quote }}
MLGRID_ARTIFACTS_RUN_CACHE_SECONDS: {{ .Values.artifacts.runCacheSeconds | quote }}
{{- end }}

{{- define "mlgrid.artifacts.secretEnv" -}}
{{ include "mlgrid.s3KeysEnv" (merge (dict "accessKeyVar" "MLGRID_S3_ACCESS_KEY_ID" "secretKeyVar" "MLGRID_S3_SECRET_ACCESS_KEY") .) }}
{{- end }}

{{/* The models as MLGRID_SERVING_MODELS' JSON list of {name, uri, workers, max_batch_size, max_batch_wait_ms}. */}}
{{- define "mlgrid.serving.models" -}}
{{- $models := list }}
{{- range .Values.serving.models }}
{{- $model := dict "name" .name "uri" .uri }}
{{- if hasKey . "workers" }}{{ $_ := set $model "workers" .workers }}{{ end }}
{{- if hasKey . "maxBatchSize" }}{{ $_ := set $model "max_batch_size" .maxBatchSize }}{{ end }}
{{- if hasKey . "maxBatchWaitMs" }}{{ $_ := set $model "max_batch_wait_ms" .maxBatchWaitMs }}{{ end }}
{{- $models = append $models $model }}
{{- end }}
{{- toJson $models }}
{{- end }}

{{- define "mlgrid.serving.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "serving") }}
MLGRID_SERVING_MODELS: {{ include "mlgrid.serving.models" . | quote }}
MLGRID_SERVING_HTTP_PORT: {{ .Values.serving.httpPort | quote }}
MLGRID_SERVING_WORKERS: {{ .Values.serving.workers | quote }}
MLGRID_SERVING_MAX_BATCH_SIZE: {{ .Values.serving.maxBatchSize | quote }}
MLGRID_SERVING_MAX_BATCH_WAIT_MS: {{ .Values.serving.maxBatchWaitMs | quote }}
MLGRID_SERVING_MAX_BODY_MB: {{ .Values.serving.maxBodyMB | quote }}
MLGRID_SERVING_LEASE_SECONDS: {{ .Values.serving.leaseSeconds | quote }}
# models:/ and runs:/ URIs are resolved through the gateway (registry and artifacts behind one address).
MLGRID_TRACKING_URI: {{ printf "grpc://%s" (include "mlgrid.grpcTarget" (dict "ctx" . "component" "gateway")) | quote }}
{{- end }}

{{- define "mlgrid.serving.secretEnv" -}}
{{- end }}

{{- define "mlgrid.gateway.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "gateway") }}
MLGRID_GATEWAY_HTTP_PORT: {{ .Values.gateway.httpPort | quote }}
MLGRID_GATEWAY_TRACKING_TARGET: {{ include "mlgrid.grpcTarget" (dict "ctx" . "component" "tracking") | quote }}
MLGRID_GATEWAY_ARTIFACTS_TARGET: {{ include "mlgrid.grpcTarget" (dict "ctx" . "component" "artifacts") | quote }}
MLGRID_GATEWAY_REGISTRY_TARGET: {{ include "mlgrid.grpcTarget" (dict "ctx" . "component" "registry") | quote }}
{{- if .Values.serving.enabled }}
MLGRID_GATEWAY_SERVING_TARGET: {{ include "mlgrid.grpcTarget" (dict "ctx" . "component" "serving") | quote }}
{{- end }}
MLGRID_GATEWAY_HEALTH_INTERVAL_MS: {{ .Values.gateway.healthIntervalMs | quote }}
{{- end }}

{{- define "mlgrid.gateway.secretEnv" -}}
{{- end }}
