{{/*
The environment of each component: the variables of services/common/config.py that its service reads
(the README's table). "mlgrid.<component>.env" is its ConfigMap's data (nothing secret); "mlgrid.<component>.secretEnv"
its env entries from Secrets, called with (dict "ctx" $ "secret" <the chart's Secret>).
*/}}

{{/*
Identity and permissions (AuthConfig), the same settings on every component. The services without a database
(artifacts, serving, the gateway) check callers with tracking's IdentityService; tracking and the registry read
users, tokens and grants from the database.
*/}}
{{- define "mlgrid.authEnv" -}}
{{- $auth := .ctx.Values.auth }}
MLGRID_AUTH: {{ $auth.enabled | quote }}
{{- if $auth.enabled }}
MLGRID_AUTH_DEFAULT_PERMISSION: {{ $auth.defaultPermission | quote }}
MLGRID_AUTH_CACHE_SECONDS: {{ $auth.cacheSeconds | quote }}
MLGRID_AUTH_SESSION_HOURS: {{ $auth.sessionHours | quote }}
{{- if has .component (list "artifacts" "serving" "gateway") }}
MLGRID_AUTH_IDENTITY_TARGET: {{ include "mlgrid.grpcTarget" (dict "ctx" .ctx "component" "tracking") | quote }}
{{- end }}
{{- if include "mlgrid.auth.oidc" .ctx }}
{{- with $auth.oidc }}
MLGRID_AUTH_OIDC_ISSUER: {{ .issuer | quote }}
MLGRID_AUTH_OIDC_AUDIENCE: {{ .audience | quote }}
{{- with include "mlgrid.auth.jwksDir" $.ctx }}
MLGRID_AUTH_OIDC_JWKS_FILE: {{ printf "%s/%s" . $auth.oidc.jwksConfigMapKey | quote }}
{{- else }}
{{- with .jwksUrl }}
MLGRID_AUTH_OIDC_JWKS_URL: {{ . | quote }}
{{- end }}
MLGRID_AUTH_OIDC_JWKS_REFRESH_SECONDS: {{ .jwksRefreshSeconds | quote }}
{{- end }}
MLGRID_AUTH_OIDC_USERNAME_CLAIM: {{ .usernameClaim | quote }}
MLGRID_AUTH_OIDC_GROUPS_CLAIM: {{ .groupsClaim | quote }}
MLGRID_AUTH_OIDC_ADMIN_GROUPS: {{ join "," .adminGroups | quote }}
MLGRID_AUTH_OIDC_CLOCK_SKEW_SECONDS: {{ .clockSkewSeconds | quote }}
{{- with .clientId }}
MLGRID_AUTH_OIDC_CLIENT_ID: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The UI's OIDC client secret, for the gateway (which serves the UI). */}}
{{- define "mlgrid.auth.oidcClientSecretEnv" -}}
{{- $oidc := .ctx.Values.auth.oidc }}
{{- if and (include "mlgrid.auth.oidc" .ctx) (or $oidc.existingSecret $oidc.clientSecret) }}
{{- if $oidc.existingSecret }}
{{ include "mlgrid.secretKeyEnv" (dict "name" "MLGRID_AUTH_OIDC_CLIENT_SECRET" "secret" $oidc.existingSecret "key" $oidc.existingSecretKey) }}
{{- else }}
{{ include "mlgrid.secretKeyEnv" (dict "name" "MLGRID_AUTH_OIDC_CLIENT_SECRET" "secret" .secret "key" "oidc-client-secret") }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlgrid.tracking.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "tracking") }}
{{ include "mlgrid.authEnv" (dict "ctx" . "component" "tracking") }}
MLGRID_DEFAULT_ARTIFACT_ROOT: {{ .Values.tracking.defaultArtifactRoot | quote }}
MLGRID_DB_POOL_SIZE: {{ .Values.database.poolSize | quote }}
MLGRID_DB_AUTO_INIT: {{ .Values.database.autoInit | quote }}
MLGRID_METRICS_SYNCHRONOUS_COMMIT: {{ .Values.tracking.metricsSynchronousCommit | quote }}
MLGRID_INGEST_DEDUP_HOURS: {{ .Values.tracking.ingestDedupHours | quote }}
{{- end }}

{{- define "mlgrid.tracking.secretEnv" -}}
{{ include "mlgrid.databaseUrlEnv" . }}
{{- if .ctx.Values.auth.enabled }}
{{- /* Only tracking creates the first admin. */}}
{{ include "mlgrid.auth.adminEnv" (dict "ctx" .ctx "usernameVar" "MLGRID_ADMIN_USERNAME" "passwordVar" "MLGRID_ADMIN_PASSWORD") }}
{{- end }}
{{- end }}

{{- define "mlgrid.registry.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "registry") }}
{{ include "mlgrid.authEnv" (dict "ctx" . "component" "registry") }}
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
{{ include "mlgrid.authEnv" (dict "ctx" . "component" "artifacts") }}
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
{{ include "mlgrid.authEnv" (dict "ctx" . "component" "serving") }}
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

{{/* How serving's mlgrid client signs in to load models: a token (serving.auth.existingSecret), else as the admin. */}}
{{- define "mlgrid.serving.secretEnv" -}}
{{- $ctx := .ctx }}
{{- if $ctx.Values.auth.enabled }}
{{- with $ctx.Values.serving.auth }}
{{- if .existingSecret }}
{{ include "mlgrid.secretKeyEnv" (dict "name" "MLGRID_TRACKING_TOKEN" "secret" .existingSecret "key" .existingSecretTokenKey) }}
{{- else }}
{{ include "mlgrid.auth.adminEnv" (dict "ctx" $ctx "usernameVar" "MLGRID_TRACKING_USERNAME" "passwordVar" "MLGRID_TRACKING_PASSWORD") }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlgrid.gateway.env" -}}
{{ include "mlgrid.serverEnv" (dict "ctx" . "component" "gateway") }}
{{ include "mlgrid.authEnv" (dict "ctx" . "component" "gateway") }}
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
{{ include "mlgrid.auth.oidcClientSecretEnv" . }}
{{- end }}
