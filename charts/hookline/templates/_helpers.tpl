{{/*
The base of the operator's object names: the release name when it contains the chart's
name, else <release>-<chart>, so `helm install hookline` names them as
`kubectl apply -k config/default` does (hookline-operator, hookline-dispatcher-settings).
*/}}
{{- define "hookline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hookline.operatorName" -}}
{{- include "hookline.fullname" . }}-operator
{{- end -}}

{{- define "hookline.settingsName" -}}
{{- include "hookline.fullname" . }}-dispatcher-settings
{{- end -}}

{{- define "hookline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selects the operator's pods; part of the Deployment's selector, so it never changes. */}}
{{- define "hookline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "hookline.labels" -}}
{{ include "hookline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "hookline.image" -}}
{{- $repo := .Values.image.repository -}}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" . $repo }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The dispatcher settings file (workload.Settings; the operator reads it strictly, so only its
keys appear). Only what is set is written: the operator fills in the rest, so its defaults
stay in one place. Storage is written only for the embedded queue and NATS only for the
external one, because the operator refuses a setting that the queue mode leaves unused.
*/}}
{{- define "hookline.dispatcherSettings" -}}
{{- $d := .Values.dispatcher -}}
{{- if and .Values.operator.watchNamespaces $d.watchNamespaces -}}
{{- fail "set operator.watchNamespaces or dispatcher.watchNamespaces, not both: the operator's --watch-namespaces, from operator.watchNamespaces, overrides the dispatcher's" -}}
{{- end -}}
{{- $s := dict -}}
{{- with $d.image }}{{ $_ := set $s "image" . }}{{ end -}}
{{- with $d.imagePullPolicy }}{{ $_ := set $s "imagePullPolicy" . }}{{ end -}}
{{- with .Values.imagePullSecrets }}{{ $_ := set $s "imagePullSecrets" (include "hookline.pullSecretNames" $ | fromJsonArray) }}{{ end -}}
{{- with $d.namespace }}{{ $_ := set $s "namespace" . }}{{ end -}}
{{- with $d.replicas }}{{ $_ := set $s "replicas" (int .) }}{{ end -}}
{{- with $d.resources }}{{ $_ := set $s "resources" . }}{{ end -}}
{{- with $d.affinity }}{{ $_ := set $s "affinity" . }}{{ end -}}
{{- with $d.topologySpreadConstraints }}{{ $_ := set $s "topologySpreadConstraints" . }}{{ end -}}
{{- $_ := set $s "queue" $d.queue -}}
{{- if eq $d.queue "embedded" -}}
{{- $storage := dict -}}
{{- with $d.storage.size }}{{ $_ := set $storage "size" (toString .) }}{{ end -}}
{{- with $d.storage.class }}{{ $_ := set $storage "class" . }}{{ end -}}
{{- with $storage }}{{ $_ := set $s "storage" . }}{{ end -}}
{{- else -}}
{{- $nats := dict "url" $d.nats.url -}}
{{- with $d.nats.replicas }}{{ $_ := set $nats "replicas" (int .) }}{{ end -}}
{{- $auth := list -}}
{{- range $k := list "credentialsSecret" "userSecret" "tokenSecret" -}}
{{- with get $d.nats $k }}{{ $_ := set $nats $k . }}{{ $auth = append $auth (printf "dispatcher.nats.%s" $k) }}{{ end -}}
{{- end -}}
{{- if gt (len $auth) 1 -}}
{{- fail (printf "%s: set one way for the dispatcher to authenticate to NATS, not %d" (join " and " $auth) (len $auth)) -}}
{{- end -}}
{{- $tls := dict -}}
{{- range $k, $v := ($d.nats.tls | default dict) }}{{ with $v }}{{ $_ := set $tls $k . }}{{ end }}{{ end -}}
{{- with $tls }}{{ $_ := set $nats "tls" . }}{{ end -}}
{{- $_ := set $s "nats" $nats -}}
{{- end -}}
{{- with $d.durability }}{{ $_ := set $s "durability" . }}{{ end -}}
{{- with $d.watchNamespaces }}{{ $_ := set $s "watchNamespaces" . }}{{ end -}}
{{- with $d.maxBodyBytes }}{{ $_ := set $s "maxBodyBytes" (int64 .) }}{{ end -}}
{{- with $d.logLevel }}{{ $_ := set $s "logLevel" (toString .) }}{{ end -}}
{{- with $d.eventRetention -}}
{{- $r := dict -}}
{{- /* 0 is a setting here ("keep none", "no bound"), so test for presence, not truth. */ -}}
{{- range $k := list "maxAge" "maxBytes" -}}
{{- $v := get $d.eventRetention $k -}}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}{{ $_ := set $r $k (toString $v) }}{{ end -}}
{{- end -}}
{{- with $r }}{{ $_ := set $s "eventRetention" . }}{{ end -}}
{{- end -}}
{{- with $d.extraArgs }}{{ $_ := set $s "extraArgs" . }}{{ end -}}
{{- include "hookline.securitySettings" (dict "root" . "settings" $s) -}}
{{- include "hookline.dashboardSettings" (dict "root" . "settings" $s) -}}
{{- toYaml $s -}}
{{- end -}}

{{/*
The names of imagePullSecrets, which may be given as names or as {name: ...}.
*/}}
{{- define "hookline.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- if kindIs "string" . }}{{ $names = append $names . }}{{ else }}{{ $names = append $names .name }}{{ end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}
