{{/*
The dispatcher settings that security values add (docs/security.md): the Secret opt-in
rule, written only when turned off, and the API's TLS Secret. Called by
hookline.dispatcherSettings with (dict "root" . "settings" $s).
*/}}
{{- define "hookline.securitySettings" -}}
{{- $d := .root.Values.dispatcher -}}
{{- if eq (toString $d.requireSecretOptIn) "false" }}{{ $_ := set .settings "requireSecretOptIn" false }}{{ end -}}
{{- if $d.tls.enabled }}{{ $_ := set .settings "tls" (dict "secretName" (include "hookline.dispatcherTLSSecret" .root)) }}{{ end -}}
{{- with $d.egress }}{{ if .proxy -}}
{{- $e := dict "proxy" .proxy -}}
{{- with .noProxy }}{{ $_ := set $e "noProxy" . }}{{ end -}}
{{- if .allowPrivateProxy }}{{ $_ := set $e "allowPrivateProxy" true }}{{ end -}}
{{- $_ := set $.settings "egress" $e -}}
{{- end }}{{ end -}}
{{- with $d.tracing }}{{ if .endpoint -}}
{{- $t := dict "endpoint" .endpoint -}}
{{- with .sampleRatio }}{{ $_ := set $t "sampleRatio" (toString .) }}{{ end -}}
{{- $_ := set $.settings "tracing" $t -}}
{{- end }}{{ end -}}
{{- end -}}

{{- define "hookline.dispatcherTLSSecret" -}}
{{- default "hookline-dispatcher-tls" .Values.dispatcher.tls.secretName -}}
{{- end -}}

{{/* The namespace the operator runs the dispatcher in. */}}
{{- define "hookline.dispatcherNamespace" -}}
{{- default .Release.Namespace .Values.dispatcher.namespace -}}
{{- end -}}

{{/* Labels of objects that belong to the dispatcher but are rendered by the chart. */}}
{{- define "hookline.dispatcherLabels" -}}
app.kubernetes.io/name: hookline
app.kubernetes.io/component: dispatcher
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
