{{/* Names and labels. */}}
{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchyard.labels" -}}
helm.sh/chart: {{ include "switchyard.chart" . }}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where the config file is mounted; the same path is given to --config. */}}
{{- define "switchyard.configDir" -}}/etc/switchyard{{- end -}}
{{- define "switchyard.configPath" -}}{{ include "switchyard.configDir" . }}/config.yaml{{- end -}}

{{/* A provider's worker object name. Argument: dict "root" $ "p" provider. */}}
{{- define "switchyard.workerName" -}}
{{- printf "%s-worker-%s" (include "switchyard.fullname" .root) (.p.name | lower | replace "_" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The worker settings of a provider: workerDefaults overlaid with providers[].worker. */}}
{{- define "switchyard.workerSettings" -}}
{{- $w := deepCopy .root.Values.workerDefaults -}}
{{- $w = mustMergeOverwrite $w (deepCopy (default dict .p.worker)) -}}
{{- toYaml $w -}}
{{- end -}}

{{/* Env variable carrying a provider's API key (the config's api_key_env). */}}
{{- define "switchyard.apiKeyEnv" -}}
{{- $k := default dict .apiKey -}}
{{- if $k.env -}}
{{- $k.env -}}
{{- else -}}
{{- printf "SWITCHYARD_%s_API_KEY" (.name | upper | replace "-" "_") -}}
{{- end -}}
{{- end -}}

{{/* Whether a provider has a key Secret (existing or created). */}}
{{- define "switchyard.hasApiKey" -}}
{{- $k := default dict .apiKey -}}
{{- if or $k.existingSecret $k.createSecret -}}true{{- end -}}
{{- end -}}

{{- define "switchyard.apiKeySecretName" -}}
{{- $k := default dict .p.apiKey -}}
{{- if $k.existingSecret -}}
{{- $k.existingSecret -}}
{{- else -}}
{{- printf "%s-provider-%s" (include "switchyard.fullname" .root) (.p.name | lower | replace "_" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.natsSecretName" -}}
{{- if .Values.nats.auth.existingSecret -}}
{{- .Values.nats.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-nats" (include "switchyard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The config file, from values. */}}
{{- define "switchyard.config" -}}
{{- $root := . -}}
{{- $server := deepCopy (default dict .Values.config.server) -}}
{{- $_ := set $server "http_addr" (printf "0.0.0.0:%d" (int .Values.router.ports.http)) -}}
{{- $_ := set $server "grpc_addr" (printf "0.0.0.0:%d" (int .Values.router.ports.grpc)) -}}
{{- $bus := dict "nats_url" .Values.nats.url -}}
{{- with .Values.nats.subjectPrefix }}{{ $_ := set $bus "subject_prefix" . }}{{ end -}}
{{- with .Values.nats.ackTimeout }}{{ $_ := set $bus "ack_timeout" . }}{{ end -}}
{{- with .Values.nats.heartbeatInterval }}{{ $_ := set $bus "heartbeat_interval" . }}{{ end -}}
{{- if eq .Values.nats.auth.type "token" -}}
{{- $_ := set $bus "token" "${SWITCHYARD_NATS_TOKEN}" -}}
{{- else if eq .Values.nats.auth.type "userPassword" -}}
{{- $_ := set $bus "user" "${SWITCHYARD_NATS_USER}" -}}
{{- $_ := set $bus "password" "${SWITCHYARD_NATS_PASSWORD}" -}}
{{- end -}}
{{- $providers := list -}}
{{- range .Values.providers -}}
{{- $p := omit . "apiKey" "worker" -}}
{{- if include "switchyard.hasApiKey" . -}}
{{- $_ := set $p "api_key_env" (include "switchyard.apiKeyEnv" .) -}}
{{- end -}}
{{- $providers = append $providers $p -}}
{{- end -}}
{{- $cfg := dict "server" $server "bus" $bus "providers" $providers -}}
{{- with .Values.config.models }}{{ $_ := set $cfg "models" . }}{{ end -}}
{{- with .Values.config.routing }}{{ $_ := set $cfg "routing" . }}{{ end -}}
{{- with .Values.config.telemetry }}{{ $_ := set $cfg "telemetry" . }}{{ end -}}
{{- if .Values.consul.enabled -}}
{{- $c := .Values.consul -}}
{{- $consul := dict "address" $c.address -}}
{{- with $c.routerServiceName }}{{ $_ := set $consul "router_service_name" . }}{{ end -}}
{{- with $c.workerServiceName }}{{ $_ := set $consul "worker_service_name" . }}{{ end -}}
{{- with $c.tags }}{{ $_ := set $consul "tags" . }}{{ end -}}
{{- with $c.checkInterval }}{{ $_ := set $consul "check_interval" . }}{{ end -}}
{{- with $c.deregisterCriticalAfter }}{{ $_ := set $consul "deregister_critical_after" . }}{{ end -}}
{{- with $c.advertiseAddress }}{{ $_ := set $consul "advertise_address" . }}{{ end -}}
{{- $_ := set $cfg "discovery" (dict "consul" $consul) -}}
{{- end -}}
{{- /* Quoted, so a secret with YAML syntax in it stays one string. */ -}}
{{- toYaml $cfg | replace ": ${SWITCHYARD_NATS_" ": \"${SWITCHYARD_NATS_" | replace "_TOKEN}\n" "_TOKEN}\"\n" | replace "_USER}\n" "_USER}\"\n" | replace "_PASSWORD}\n" "_PASSWORD}\"\n" -}}
{{- end -}}

{{/* Env shared by router and workers: NATS credentials, CA, OTLP. */}}
{{- define "switchyard.commonEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- if eq .Values.nats.auth.type "token" }}
- name: SWITCHYARD_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.natsSecretName" . }}
      key: {{ .Values.nats.auth.tokenKey }}
{{- else if eq .Values.nats.auth.type "userPassword" }}
- name: SWITCHYARD_NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.natsSecretName" . }}
      key: {{ .Values.nats.auth.userKey }}
- name: SWITCHYARD_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.natsSecretName" . }}
      key: {{ .Values.nats.auth.passwordKey }}
{{- end }}
{{- if and .Values.nats.tls.enabled .Values.nats.tls.caSecret }}
# Public roots from the image plus the NATS CA (rustls-native-certs reads both).
- name: SSL_CERT_FILE
  value: /etc/ssl/certs/ca-certificates.crt
- name: SSL_CERT_DIR
  value: /etc/switchyard/nats-ca
{{- end }}
{{- if .Values.consul.enabled }}
# For ${HOST_IP} / ${POD_IP} in discovery.consul (the node's agent, the pod's address).
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if .Values.consul.tokenSecret.name }}
- name: CONSUL_HTTP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.consul.tokenSecret.name }}
      key: {{ .Values.consul.tokenSecret.key }}
{{- end }}
{{- end }}
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.otel.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.otel.headersSecret.name }}
      key: {{ .Values.otel.headersSecret.key }}
{{- end }}
{{- with .Values.otel.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.tracesSamplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Volumes shared by router and workers. */}}
{{- define "switchyard.volumes" -}}
- name: config
  configMap:
    name: {{ include "switchyard.fullname" . }}-config
    items:
      - key: config.yaml
        path: config.yaml
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and .Values.nats.tls.enabled .Values.nats.tls.caSecret }}
- name: nats-ca
  secret:
    secretName: {{ .Values.nats.tls.caSecret }}
    items:
      - key: {{ .Values.nats.tls.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "switchyard.volumeMounts" -}}
- name: config
  mountPath: {{ include "switchyard.configDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if and .Values.nats.tls.enabled .Values.nats.tls.caSecret }}
- name: nats-ca
  mountPath: /etc/switchyard/nats-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Checks that cannot be written in the JSON schema. */}}
{{- define "switchyard.validate" -}}
{{- if and .Values.nats.tls.enabled (not (hasPrefix "tls://" .Values.nats.url)) -}}
{{- fail "nats.tls.enabled needs a tls:// nats.url" -}}
{{- end -}}
{{- if and (eq .Values.nats.auth.type "token") .Values.nats.auth.createSecret (not .Values.nats.auth.token) -}}
{{- fail "nats.auth.createSecret with type token needs nats.auth.token" -}}
{{- end -}}
{{- if and (eq .Values.nats.auth.type "userPassword") .Values.nats.auth.createSecret (not (and .Values.nats.auth.user .Values.nats.auth.password)) -}}
{{- fail "nats.auth.createSecret with type userPassword needs nats.auth.user and nats.auth.password" -}}
{{- end -}}
{{- if and (ne .Values.nats.auth.type "none") (not .Values.nats.auth.createSecret) (not .Values.nats.auth.existingSecret) -}}
{{- fail "nats.auth needs existingSecret or createSecret" -}}
{{- end -}}
{{- $names := dict -}}
{{- range .Values.providers -}}
{{- $k := default dict .apiKey -}}
{{- if and $k.existingSecret $k.createSecret -}}
{{- fail (printf "providers %s: apiKey.existingSecret and apiKey.createSecret are exclusive" .name) -}}
{{- end -}}
{{- if and $k.createSecret (not $k.value) -}}
{{- fail (printf "providers %s: apiKey.createSecret needs apiKey.value" .name) -}}
{{- end -}}
{{- $dns := .name | lower | replace "_" "-" -}}
{{- if hasKey $names $dns -}}
{{- fail (printf "providers %s and %s map to the same object name" .name (get $names $dns)) -}}
{{- end -}}
{{- $_ := set $names $dns .name -}}
{{- end -}}
{{- end -}}
