{{/*
Names and labels, in the style of the bitnami / prometheus-community charts.
*/}}
{{- define "mlgrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlgrid.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlgrid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of a component's objects: (dict "ctx" $ "component" "tracking") */}}
{{- define "mlgrid.componentName" -}}
{{- printf "%s-%s" (include "mlgrid.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "mlgrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlgrid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlgrid.labels" -}}
helm.sh/chart: {{ include "mlgrid.chart" . }}
{{ include "mlgrid.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlgrid
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* (dict "ctx" $ "component" "tracking") */}}
{{- define "mlgrid.componentSelectorLabels" -}}
{{ include "mlgrid.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mlgrid.componentLabels" -}}
{{ include "mlgrid.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mlgrid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlgrid.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlgrid.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What each mlgrid component is: its module (python -m), the grpc.health.v1 service name it registers
(SERVICE_NAME in each servicer; the gateway's own health is "").
*/}}
{{- define "mlgrid.componentSpecs" -}}
tracking: {module: services.tracking, healthService: mlgrid.v1.TrackingService}
artifacts: {module: services.artifacts, healthService: mlgrid.v1.ArtifactService}
registry: {module: services.registry, healthService: mlgrid.v1.ModelRegistryService}
serving: {module: services.serving, healthService: inference.GRPCInferenceService}
gateway: {module: services.gateway, healthService: ""}
{{- end }}

{{- define "mlgrid.componentSpec" -}}
{{- toYaml (get (fromYaml (include "mlgrid.componentSpecs" .ctx)) .component) }}
{{- end }}

{{/* host:port of a component's gRPC Service inside the cluster. (dict "ctx" $ "component" "tracking") */}}
{{- define "mlgrid.grpcTarget" -}}
{{- printf "%s:%v" (include "mlgrid.componentName" .) (get .ctx.Values .component).grpcPort }}
{{- end }}

{{/*
Secrets. Values the chart makes (generated passwords, URLs and keys given in values) live in the release
Secret "<fullname>" and, for the hook Jobs that run before it exists, in "<fullname>-hooks". Existing
Secrets named in values are referenced directly.
*/}}

{{/* A password kept across upgrades: the given one, else the Secret's current value (the release Secret's, or the
     named one's), else a random one, remembered for the rest of this render so that every template sees the same.
     (dict "ctx" $ "key" "..." "value" "..." ["secret" "<name>"]) */}}
{{- define "mlgrid.password" -}}
{{- $memo := .ctx.Values._generated | default dict }}
{{- if not (hasKey $memo .key) }}
{{- $current := (lookup "v1" "Secret" .ctx.Release.Namespace (.secret | default (include "mlgrid.fullname" .ctx))).data | default dict }}
{{- $_ := set $memo .key (.value | default (get $current .key | b64dec) | default (randAlphaNum 24)) }}
{{- $_ := set .ctx.Values "_generated" $memo }}
{{- end }}
{{- get $memo .key }}
{{- end }}

{{- define "mlgrid.postgresql.fullname" -}}
{{- include "mlgrid.componentName" (dict "ctx" . "component" "postgresql") }}
{{- end }}

{{- define "mlgrid.minio.fullname" -}}
{{- include "mlgrid.componentName" (dict "ctx" . "component" "minio") }}
{{- end }}

{{- define "mlgrid.postgresql.password" -}}
{{- include "mlgrid.password" (dict "ctx" . "key" "postgresql-password" "value" .Values.postgresql.auth.password) }}
{{- end }}

{{- define "mlgrid.minio.rootPassword" -}}
{{- include "mlgrid.password" (dict "ctx" . "key" "s3-secret-access-key" "value" .Values.minio.auth.rootPassword) }}
{{- end }}

{{/*
Identity: the admin's credentials are in auth.existingSecret, else in the chart's own "<fullname>-auth" (kept across
upgrades and uninstall: the admin it made lives on in the database).
*/}}
{{- define "mlgrid.auth.secretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "mlgrid.fullname" .)) }}
{{- end }}

{{- define "mlgrid.auth.adminPassword" -}}
{{- include "mlgrid.password" (dict "ctx" . "key" "admin-password" "value" .Values.auth.admin.password "secret" (include "mlgrid.auth.secretName" .)) }}
{{- end }}

{{/* "true" when OIDC is on (auth.enabled with an issuer). */}}
{{- define "mlgrid.auth.oidc" -}}
{{- if and .Values.auth.enabled .Values.auth.oidc.issuer }}true{{ end }}
{{- end }}

{{/* Where the pods find the JWKS of auth.oidc.jwksConfigMap (empty: no such ConfigMap). */}}
{{- define "mlgrid.auth.jwksDir" -}}
{{- if and (include "mlgrid.auth.oidc" .) .Values.auth.oidc.jwksConfigMap }}/etc/mlgrid/oidc{{ end }}
{{- end }}

{{/* env entries: a variable from a Secret's key. (dict "name" VAR "secret" <Secret> "key" <key>) */}}
{{- define "mlgrid.secretKeyEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}

{{/* env entries for the admin's credentials, as the given variables. (dict "ctx" $ "usernameVar" NAME "passwordVar" NAME) */}}
{{- define "mlgrid.auth.adminEnv" -}}
{{- $auth := .ctx.Values.auth }}
{{- $secret := include "mlgrid.auth.secretName" .ctx }}
{{ include "mlgrid.secretKeyEnv" (dict "name" .usernameVar "secret" $secret "key" (ternary $auth.existingSecretUsernameKey "admin-username" (not (empty $auth.existingSecret)))) }}
{{ include "mlgrid.secretKeyEnv" (dict "name" .passwordVar "secret" $secret "key" (ternary $auth.existingSecretPasswordKey "admin-password" (not (empty $auth.existingSecret)))) }}
{{- end }}

{{/* The tracking database's URL, when the chart makes it (bundled PostgreSQL, or externalDatabase.url). */}}
{{- define "mlgrid.databaseUrl" -}}
{{- if .Values.postgresql.enabled }}
{{- $auth := .Values.postgresql.auth }}
{{- printf "postgresql://%s:%s@%s:%v/%s" $auth.username (include "mlgrid.postgresql.password" . | urlquery) (include "mlgrid.postgresql.fullname" .) .Values.postgresql.port $auth.database }}
{{- else }}
{{- required "externalDatabase.url or externalDatabase.existingSecret is required when postgresql.enabled=false" .Values.externalDatabase.url }}
{{- end }}
{{- end }}

{{/* The Secret data the chart makes: only what no existing Secret provides. */}}
{{- define "mlgrid.secretData" -}}
{{- if or .Values.postgresql.enabled (not .Values.externalDatabase.existingSecret) }}
database-url: {{ include "mlgrid.databaseUrl" . | b64enc | quote }}
{{- end }}
{{- if .Values.postgresql.enabled }}
postgresql-password: {{ include "mlgrid.postgresql.password" . | b64enc | quote }}
{{- end }}
{{- if .Values.minio.enabled }}
s3-access-key-id: {{ .Values.minio.auth.rootUser | b64enc | quote }}
s3-secret-access-key: {{ include "mlgrid.minio.rootPassword" . | b64enc | quote }}
{{- else if and (not .Values.s3.existingSecret) .Values.s3.accessKeyId }}
s3-access-key-id: {{ .Values.s3.accessKeyId | b64enc | quote }}
s3-secret-access-key: {{ required "s3.secretAccessKey is required with s3.accessKeyId" .Values.s3.secretAccessKey | b64enc | quote }}
{{- end }}
{{- if and (include "mlgrid.auth.oidc" .) (not .Values.auth.oidc.existingSecret) .Values.auth.oidc.clientSecret }}
oidc-client-secret: {{ .Values.auth.oidc.clientSecret | b64enc | quote }}
{{- end }}
{{- end }}

{{/* env entries for the database URL. (dict "ctx" $ "secret" <the chart's Secret to use>) */}}
{{- define "mlgrid.databaseUrlEnv" -}}
{{- $db := .ctx.Values.externalDatabase }}
{{- if and (not .ctx.Values.postgresql.enabled) $db.existingSecret }}
{{- include "mlgrid.secretKeyEnv" (dict "name" "MLGRID_BACKEND_STORE_URI" "secret" $db.existingSecret "key" $db.existingSecretKey) }}
{{- else }}
{{- include "mlgrid.secretKeyEnv" (dict "name" "MLGRID_BACKEND_STORE_URI" "secret" .secret "key" "database-url") }}
{{- end }}
{{- end }}

{{/* env entries for the S3 keys (none when external S3 has neither keys nor a Secret: e.g. a workload identity).
     (dict "ctx" $ "secret" <the chart's Secret> "accessKeyVar" NAME "secretKeyVar" NAME) */}}
{{- define "mlgrid.s3KeysEnv" -}}
{{- $ctx := .ctx }}
{{- $name := .secret }}
{{- $idKey := "s3-access-key-id" }}
{{- $secretKey := "s3-secret-access-key" }}
{{- if and (not $ctx.Values.minio.enabled) $ctx.Values.s3.existingSecret }}
{{- $name = $ctx.Values.s3.existingSecret }}
{{- $idKey = $ctx.Values.s3.existingSecretAccessKeyIdKey }}
{{- $secretKey = $ctx.Values.s3.existingSecretSecretAccessKeyKey }}
{{- end }}
{{- if or $ctx.Values.minio.enabled $ctx.Values.s3.existingSecret $ctx.Values.s3.accessKeyId }}
{{ include "mlgrid.secretKeyEnv" (dict "name" .accessKeyVar "secret" $name "key" $idKey) }}
{{ include "mlgrid.secretKeyEnv" (dict "name" .secretKeyVar "secret" $name "key" $secretKey) }}
{{- end }}
{{- end }}

{{/* S3: the endpoint URL, the bucket and where artifacts go in it. */}}
{{- define "mlgrid.s3.endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s:%v" (include "mlgrid.minio.fullname" .) .Values.minio.port }}
{{- else }}
{{- .Values.s3.endpoint }}
{{- end }}
{{- end }}

{{- define "mlgrid.s3.bucket" -}}
{{- ternary .Values.minio.bucket .Values.s3.bucket .Values.minio.enabled }}
{{- end }}

{{- define "mlgrid.artifactsDestination" -}}
{{- $prefix := ternary "" .Values.s3.prefix .Values.minio.enabled | trimAll "/" }}
{{- printf "s3://%s%s" (include "mlgrid.s3.bucket" .) (ternary "" (printf "/%s" $prefix) (empty $prefix)) }}
{{- end }}

{{/*
PostgreSQL's max_connections: each tracking replica holds up to 3 x MLGRID_DB_POOL_SIZE (its SQLAlchemy pool
and as many overflow connections, plus the asyncpg pool of its hot path), each registry replica 2 x (pool and
overflow); plus the migration Job and room for maintenance (postgresql.extraConnections).
*/}}
{{- define "mlgrid.postgresql.maxConnections" -}}
{{- $pool := int .Values.database.poolSize }}
{{- $tracking := mul (int .Values.tracking.replicaCount) 3 $pool }}
{{- $registry := mul (int .Values.registry.replicaCount) 2 $pool }}
{{- default (add $tracking $registry 1 (int .Values.postgresql.extraConnections)) .Values.postgresql.maxConnections }}
{{- end }}

{{/* Hook annotations. (dict "events" "pre-install,pre-upgrade" "weight" -10) */}}
{{- define "mlgrid.hookAnnotations" -}}
helm.sh/hook: {{ .events }}
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/*
When the migrations run: before install/upgrade when the database is external; with the bundled PostgreSQL,
which is made with the release's objects, after install (tracking creates the schema of an empty database
itself, MLGRID_DB_AUTO_INIT, and the registry waits for it) and before upgrades.
*/}}
{{- define "mlgrid.migrations.hookEvents" -}}
{{- ternary "post-install,pre-upgrade" "pre-install,pre-upgrade" .Values.postgresql.enabled }}
{{- end }}

{{/* The bucket Job: with an external S3 when s3.createBucket (the artifact service makes the bundled MinIO's
bucket itself, as a post-install Job would come only after `helm install --wait` had waited for it). */}}
{{- define "mlgrid.bucket.enabled" -}}
{{- if and (not .Values.minio.enabled) .Values.s3.createBucket }}true{{ end }}
{{- end }}

{{- define "mlgrid.bucket.hookEvents" -}}
pre-install,pre-upgrade
{{- end }}

{{/* The hooks' Secret must exist in every event either Job runs in. */}}
{{- define "mlgrid.hooks.secretEvents" -}}
{{- $events := list }}
{{- if .Values.migrations.enabled }}{{ $events = concat $events (splitList "," (include "mlgrid.migrations.hookEvents" .)) }}{{ end }}
{{- if include "mlgrid.bucket.enabled" . }}{{ $events = concat $events (splitList "," (include "mlgrid.bucket.hookEvents" .)) }}{{ end }}
{{- $events | uniq | sortAlpha | join "," }}
{{- end }}

{{/* Pod-level settings every pod of the chart shares: image pull secrets, and the pod security context. */}}
{{- define "mlgrid.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The /tmp every container writes to (read-only root filesystem). (sizeLimit) */}}
{{- define "mlgrid.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ . }}
{{- end }}
