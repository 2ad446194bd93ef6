{{/*
The objects every mlgrid component (tracking, artifacts, registry, serving, gateway) has, each called from
the component's own template file with (dict "ctx" $ "component" "<name>").
*/}}

{{/* The component's values, with its spec (module, health service). */}}
{{- define "mlgrid.component" -}}
{{- toYaml (merge (dict "spec" (fromYaml (include "mlgrid.componentSpec" .))) (get .ctx.Values .component)) }}
{{- end }}

{{/* The container ports: grpc, then http (serving, gateway), then metrics (all but serving, whose /metrics is on http). */}}
{{- define "mlgrid.containerPorts" -}}
- name: grpc
  containerPort: {{ .grpcPort }}
  protocol: TCP
{{- if .httpPort }}
- name: http
  containerPort: {{ .httpPort }}
  protocol: TCP
{{- end }}
{{- if .metricsPort }}
- name: metrics
  containerPort: {{ .metricsPort }}
  protocol: TCP
{{- end }}
{{- end }}

{{- define "mlgrid.deployment" -}}
{{- $ctx := .ctx }}
{{- $c := fromYaml (include "mlgrid.component" .) }}
{{- $name := include "mlgrid.componentName" . }}
{{- $selector := include "mlgrid.componentSelectorLabels" . }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "mlgrid.componentLabels" . | nindent 4 }}
spec:
  {{- if not ($c.autoscaling | default dict).enabled }}
  replicas: {{ $c.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "mlgrid.componentLabels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # Roll the pods when their configuration changes.
        checksum/config: {{ include (print $ctx.Template.BasePath "/" .component "/configmap.yaml") $ctx | sha256sum }}
        checksum/secret: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
        checksum/auth-secret: {{ include (print $ctx.Template.BasePath "/auth-secret.yaml") $ctx | sha256sum }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with include "mlgrid.imagePullSecrets" $ctx }}{{ . | trim | nindent 6 }}{{ end }}
      serviceAccountName: {{ include "mlgrid.serviceAccountName" $ctx }}
      automountServiceAccountToken: false
      securityContext:
        {{- toYaml $ctx.Values.podSecurityContext | nindent 8 }}
      # SIGTERM: health turns NOT_SERVING, new calls are still taken for MLGRID_SHUTDOWN_DRAIN_SECONDS (while the
      # endpoints drop the pod), then in-flight calls get MLGRID_SHUTDOWN_GRACE_SECONDS to finish.
      terminationGracePeriodSeconds: {{ add $ctx.Values.config.shutdownGraceSeconds $ctx.Values.config.shutdownDrainSeconds $c.stopMarginSeconds }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "mlgrid.image" $ctx }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          args: [{{ $c.spec.module | quote }}]
          envFrom:
            - configMapRef:
                name: {{ $name }}
          env:
            - name: HOME
              value: /tmp
            {{- with include (printf "mlgrid.%s.secretEnv" .component) (dict "ctx" $ctx "secret" (include "mlgrid.fullname" $ctx)) }}{{ . | trim | nindent 12 }}{{ end }}
          ports:
            {{- include "mlgrid.containerPorts" $c | nindent 12 }}
          startupProbe:
            grpc:
              port: {{ $c.grpcPort }}
              service: {{ $c.spec.healthService | quote }}
            periodSeconds: 5
            failureThreshold: {{ $c.startupFailureThreshold }}
          readinessProbe:
            grpc:
              port: {{ $c.grpcPort }}
              service: {{ $c.spec.healthService | quote }}
            {{- toYaml $ctx.Values.readinessProbe | nindent 12 }}
          # Liveness asks the server itself (""), not a dependency: a slow database must not restart the pods.
          livenessProbe:
            grpc:
              port: {{ $c.grpcPort }}
              service: ""
            {{- toYaml $ctx.Values.livenessProbe | nindent 12 }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include "mlgrid.auth.jwksDir" $ctx }}
            - name: oidc-jwks
              mountPath: {{ . }}
              readOnly: true
            {{- end }}
      volumes:
        {{- include "mlgrid.tmpVolume" $c.tmpSizeLimit | nindent 8 }}
        {{- if include "mlgrid.auth.jwksDir" $ctx }}
        # The OIDC issuer's keys (auth.oidc.jwksConfigMap): MLGRID_AUTH_OIDC_JWKS_FILE.
        - name: oidc-jwks
          configMap:
            name: {{ $ctx.Values.auth.oidc.jwksConfigMap }}
        {{- end }}
      {{- if $c.affinity }}
      affinity:
        {{- toYaml $c.affinity | nindent 8 }}
      {{- else }}
      # Replicas on different nodes where the scheduler can.
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- $selector | nindent 20 }}
      {{- end }}
      topologySpreadConstraints:
        {{- if $c.topologySpreadConstraints }}
        {{- toYaml $c.topologySpreadConstraints | nindent 8 }}
        {{- else }}
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{- define "mlgrid.service" -}}
{{- $c := fromYaml (include "mlgrid.component" .) }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "mlgrid.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "mlgrid.componentLabels" . | nindent 4 }}
  {{- with $c.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $c.service.type }}
  selector:
    {{- include "mlgrid.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $c.grpcPort }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    {{- if $c.httpPort }}
    - name: http
      port: {{ $c.httpPort }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- end }}
    {{- if $c.metricsPort }}
    - name: metrics
      port: {{ $c.metricsPort }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
    {{- end }}
{{- end }}

{{- define "mlgrid.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mlgrid.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "mlgrid.componentLabels" . | nindent 4 }}
data:
  {{- include (printf "mlgrid.%s.env" .component) .ctx | trim | nindent 2 }}
{{- end }}

{{/* Every mlgrid server reads these (services/common/config.py's ServerConfig). */}}
{{- define "mlgrid.serverEnv" -}}
{{- $c := get .ctx.Values .component }}
MLGRID_GRPC_PORT: {{ $c.grpcPort | quote }}
{{- if $c.metricsPort }}
MLGRID_METRICS_PORT: {{ $c.metricsPort | quote }}
{{- end }}
MLGRID_SHUTDOWN_GRACE_SECONDS: {{ .ctx.Values.config.shutdownGraceSeconds | quote }}
MLGRID_SHUTDOWN_DRAIN_SECONDS: {{ .ctx.Values.config.shutdownDrainSeconds | quote }}
{{- if has .component (list "tracking" "registry" "artifacts") }}
MLGRID_STARTUP_WAIT_SECONDS: {{ .ctx.Values.config.startupWaitSeconds | quote }}
{{- end }}
{{- end }}

{{- define "mlgrid.pdb" -}}
{{- $c := get .ctx.Values .component }}
{{- if $c.pdb.create }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mlgrid.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "mlgrid.componentLabels" . | nindent 4 }}
spec:
  {{- if $c.pdb.minAvailable }}
  minAvailable: {{ $c.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $c.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "mlgrid.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{- define "mlgrid.hpa" -}}
{{- $a := (get .ctx.Values .component).autoscaling }}
{{- if $a.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mlgrid.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "mlgrid.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mlgrid.componentName" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- with $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end }}
{{- end }}
