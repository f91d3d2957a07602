{{/*
The dispatcher-served dashboard (docs/dashboard.md): written to the settings only when
enabled, so a chart without it leaves the operator's settings, and the dispatcher's pods, as
they were. The operator refuses the same values at start; refusing them here says so at
`helm install` instead. Called by hookline.dispatcherSettings with (dict "root" . "settings" $s).
*/}}
{{- define "hookline.dashboardSettings" -}}
{{- $d := .root.Values.dispatcher -}}
{{- with $d.dashboard }}{{ if .enabled -}}
{{- $port := int (default 8090 .port) -}}
{{- if eq $port 8080 }}{{ fail "dispatcher.dashboard.port=8080: the dispatcher's API listens there; choose another port (default 8090)" }}{{ end -}}
{{- if eq $port 9090 }}{{ fail "dispatcher.dashboard.port=9090: the dispatcher's metrics listen there; choose another port (default 8090)" }}{{ end -}}
{{- $args := $d.extraArgs | default list -}}
{{- /* The dispatcher's flag parsing takes the last --auth, as -auth=v, --auth=v or --auth v. */ -}}
{{- $auth := "" -}}
{{- range $i, $a := $args -}}
{{- $a = toString $a -}}
{{- if regexMatch "^--?auth=" $a }}{{ $auth = regexReplaceAll "^--?auth=" $a "" }}{{ end -}}
{{- if and (regexMatch "^--?auth$" $a) (lt (add1 $i) (len $args)) }}{{ $auth = toString (index $args (add1 $i)) }}{{ end -}}
{{- if regexMatch "^--?ui-listen(=|$)" $a -}}
{{- fail (printf "dispatcher.dashboard.enabled and dispatcher.extraArgs %s both say where the dashboard listens: remove --ui-listen from dispatcher.extraArgs and set dispatcher.dashboard.port" $a) -}}
{{- end -}}
{{- end -}}
{{- if and $auth (ne $auth "kubernetes") -}}
{{- fail (printf "dispatcher.dashboard.enabled needs the dispatcher's --auth=kubernetes, but dispatcher.extraArgs sets --auth=%s: the dashboard acts with each user's token and the admin API checks it against that user's RBAC; remove --auth from dispatcher.extraArgs or turn the dashboard off" $auth) -}}
{{- end -}}
{{- $_ := set $.settings "dashboard" (dict "enabled" true "port" $port) -}}
{{- end }}{{ end -}}
{{- end -}}

{{/* The dashboard's port when the dispatcher serves it, else nothing. */}}
{{- define "hookline.dashboardPort" -}}
{{- with .Values.dispatcher.dashboard }}{{ if .enabled }}{{ int (default 8090 .port) }}{{ end }}{{ end -}}
{{- end -}}
