{{/* Name of every object: the release name, with "berth" unless it already says so. */}}
{{- define "berth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of the operator's pods (and the Service's selector). Not
app.kubernetes.io/managed-by=berth: that label marks what Berth itself manages. */}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Secret holding the webhook's serving certificate (tls.crt, tls.key). */}}
{{- define "berth.webhookSecret" -}}
{{- .Values.webhook.secretName | default (printf "%s-webhook-tls" (include "berth.fullname" .)) -}}
{{- end -}}

{{/* What every one of Berth's webhooks shares: fail closed, no side effects, 5 s,
only Berth's resources, never the kube-* namespaces. */}}
{{- define "berth.webhookCommon" -}}
admissionReviewVersions: [v1]
clientConfig:
  service:
    namespace: {{ .service.namespace }}
    name: {{ .service.name }}
    path: {{ .path }}
    port: 443
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
failurePolicy: Fail
matchPolicy: Equivalent
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: [kube-system, kube-public, kube-node-lease]
rules:
  - apiGroups: [berth.dev]
    apiVersions: ["*"]
    resources: [{{ .plural }}]
    operations: [{{ join ", " .operations }}]
    scope: "*"
sideEffects: None
timeoutSeconds: 5
{{- end -}}
