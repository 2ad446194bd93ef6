{{/*
NetworkPolicy pieces. Every pod of the release gets a policy for both directions: what is not listed is denied.
*/}}

{{/* A NetworkPolicy for a component's pods. (dict "ctx" $ "component" "tracking" "ingress" <rules yaml> "egress" <rules yaml>) */}}
{{- define "mlgrid.networkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "mlgrid.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "mlgrid.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "mlgrid.componentSelectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- with .ingress }}{{ . | trim | nindent 4 }}{{ else }} []{{ end }}
  egress:
    {{- with .egress }}{{ . | trim | nindent 4 }}{{ else }} []{{ end }}
{{- end }}

{{/* A peer: the pods of one component of this release. (dict "ctx" $ "component" "gateway") */}}
{{- define "mlgrid.np.pods" -}}
- podSelector:
    matchLabels:
      {{- include "mlgrid.componentSelectorLabels" . | nindent 6 }}
{{- end }}

{{/* Egress to a component's gRPC port. (dict "ctx" $ "component" "tracking") */}}
{{- define "mlgrid.np.toGrpc" -}}
- to:
    {{- include "mlgrid.np.pods" . | nindent 4 }}
  ports:
    - port: {{ (get .ctx.Values .component).grpcPort }}
      protocol: TCP
{{- end }}

{{/* Ingress to a port from the pods of the given components. (dict "ctx" $ "from" (list "gateway") "port" 50051) */}}
{{- define "mlgrid.np.from" -}}
- from:
    {{- range .from }}
    {{- include "mlgrid.np.pods" (dict "ctx" $.ctx "component" .) | nindent 4 }}
    {{- end }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- end }}

{{/* Ingress from anywhere to the given ports (gateway, serving). */}}
{{- define "mlgrid.np.open" -}}
- ports:
    {{- range . }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/* Ingress to a component's metrics port from the scrapers (networkPolicy.metricsFrom). (dict "ctx" $ "component" "tracking") */}}
{{- define "mlgrid.np.metricsFrom" -}}
- from:
    {{- toYaml .ctx.Values.networkPolicy.metricsFrom | nindent 4 }}
  ports:
    - port: {{ (get .ctx.Values .component).metricsPort }}
      protocol: TCP
{{- end }}

{{- define "mlgrid.np.dns" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Egress to an external service: the configured CIDRs on one port. (dict "ctx" $ "port" 443) */}}
{{- define "mlgrid.np.external" -}}
- to:
    {{- range .ctx.Values.networkPolicy.externalCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- end }}

{{- define "mlgrid.np.toDatabase" -}}
{{- if .Values.postgresql.enabled -}}
- to:
    {{- include "mlgrid.np.pods" (dict "ctx" . "component" "postgresql") | nindent 4 }}
  ports:
    - port: {{ .Values.postgresql.port }}
      protocol: TCP
{{- else }}
{{- include "mlgrid.np.external" (dict "ctx" . "port" .Values.externalDatabase.port) }}
{{- end }}
{{- end }}

{{- define "mlgrid.np.toS3" -}}
{{- if .Values.minio.enabled -}}
- to:
    {{- include "mlgrid.np.pods" (dict "ctx" . "component" "minio") | nindent 4 }}
  ports:
    - port: {{ .Values.minio.port }}
      protocol: TCP
{{- else }}
{{- include "mlgrid.np.external" (dict "ctx" . "port" .Values.s3.port) }}
{{- end }}
{{- end }}

{{/* Egress to the OIDC issuer (external, on auth.oidc.port), for its discovery document and keys (every component,
     unless they come from auth.oidc.jwksConfigMap) and the UI's sign-in (the gateway, with a client id).
     (dict "ctx" $ "component" "tracking") */}}
{{- define "mlgrid.np.toIssuer" -}}
{{- $oidc := .ctx.Values.auth.oidc }}
{{- if and (include "mlgrid.auth.oidc" .ctx) (or (not (include "mlgrid.auth.jwksDir" .ctx)) (and (eq .component "gateway") $oidc.clientId)) }}
{{- include "mlgrid.np.external" (dict "ctx" .ctx "port" $oidc.port) }}
{{- end }}
{{- end }}
