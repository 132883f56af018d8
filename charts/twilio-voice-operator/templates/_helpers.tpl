{{/* Names: <release>-twilio-voice-operator, or the release name when it already says so. */}}
{{- define "tvo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tvo.manager.name" -}}{{ include "tvo.fullname" . | trunc 55 | trimSuffix "-" }}-manager{{- end -}}
{{- define "tvo.webhookServer.name" -}}{{ include "tvo.fullname" . | trunc 48 | trimSuffix "-" }}-webhook-server{{- end -}}

{{- define "tvo.manager.serviceAccountName" -}}
{{- if .Values.manager.serviceAccount.create -}}
{{- default (include "tvo.manager.name" .) .Values.manager.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.manager.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tvo.webhookServer.serviceAccountName" -}}
{{- if .Values.webhookServer.serviceAccount.create -}}
{{- default (include "tvo.webhookServer.name" .) .Values.webhookServer.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.webhookServer.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tvo.streamTokenSecretName" -}}
{{- default (printf "%s-stream-token" (include "tvo.fullname" .)) .Values.webhookServer.streamToken.existingSecret -}}
{{- end -}}

{{/* Labels on everything; pass (dict "ctx" $ "component" "manager"). */}}
{{- define "tvo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: twilio-voice-operator
{{ include "tvo.selectorLabels" . }}
{{- end -}}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "tvo.selectorLabels" -}}
app.kubernetes.io/name: twilio-voice-operator
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "tvo.image" -}}
{{ .image.repository }}:{{ default .ctx.Chart.AppVersion .image.tag }}
{{- end -}}

{{/* The restricted Pod Security Standard, for both pods. */}}
{{- define "tvo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tvo.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
  - ALL
{{- end -}}

{{/* The public URL's host, for the Ingress. */}}
{{- define "tvo.publicHost" -}}
{{- regexReplaceAll ":[0-9]+$" (trimPrefix "https://" .Values.publicURL) "" -}}
{{- end -}}

{{/* Egress both pods need: DNS, the API server, and HTTPS (Twilio). Pass .Values.networkPolicy. */}}
{{- define "tvo.baseEgress" -}}
- ports:
  - port: 53
    protocol: UDP
  - port: 53
    protocol: TCP
# The API server is not a pod, so no selector can name it; allow its ports
# anywhere. 443 is also Twilio's REST API.
- ports:
  {{- range .apiServerPorts }}
  - port: {{ . }}
    protocol: TCP
  {{- end }}
  {{- $has443 := false }}
  {{- range .apiServerPorts }}{{ if eq (int .) 443 }}{{ $has443 = true }}{{ end }}{{ end }}
  {{- if not $has443 }}
  - port: 443
    protocol: TCP
  {{- end }}
{{- end -}}

{{/* The Secret where the manager publishes verified accounts' auth tokens for the webhook server. */}}
{{- define "tvo.credentialsSecretName" -}}{{ include "tvo.fullname" . | trunc 43 | trimSuffix "-" }}-webhook-credentials{{- end -}}

{{/* The Secret holding the key that signs the saved-routing annotation (the manager creates it). */}}
{{- define "tvo.guardKeySecretName" -}}{{ include "tvo.fullname" . | trunc 53 | trimSuffix "-" }}-guard-key{{- end -}}

{{/* A Go duration (30s, 5m, 1h30m, 1.5h, 250ms) in seconds, as a number
     string; "invalid" when it is not one. Pass the value. */}}
{{- define "tvo.seconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$` $d) -}}
invalid
{{- else -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll `[0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h)` $d -1 -}}
{{- $n := regexFind `^[0-9]+(\.[0-9]+)?` . -}}
{{- $total = addf $total (mulf (float64 $n) (get $units (trimPrefix $n .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}
{{- end -}}
