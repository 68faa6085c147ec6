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

{{/* Whether the usage ledger has a PostgreSQL URL (existing or created Secret). */}}
{{- define "switchyard.hasPostgres" -}}
{{- $pg := .Values.ledger.postgres -}}
{{- if or $pg.existingSecret $pg.createSecret -}}true{{- end -}}
{{- end -}}

{{- define "switchyard.hasCacheRedis" -}}
{{- $r := .Values.cache.redis -}}
{{- if or $r.existingSecret $r.createSecret -}}true{{- end -}}
{{- end -}}

{{- define "switchyard.cacheRedisSecretName" -}}
{{- if .Values.cache.redis.existingSecret -}}
{{- .Values.cache.redis.existingSecret -}}
{{- else -}}
{{- printf "%s-cache-redis" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.postgresSecretName" -}}
{{- if .Values.ledger.postgres.existingSecret -}}
{{- .Values.ledger.postgres.existingSecret -}}
{{- else -}}
{{- printf "%s-ledger-postgres" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Env variable carrying a secret webhook header. Argument: an alerts.webhookHeaders entry. */}}
{{- define "switchyard.alertHeaderEnv" -}}
{{- printf "SWITCHYARD_ALERT_HEADER_%s" (.name | upper | replace "-" "_") -}}
{{- end -}}

{{/* A ${VAR} reference in the config. toYaml would leave it bare (and a
substituted secret with YAML syntax would break the file), so this returns a
placeholder toYaml keeps as is, recorded in .refs with the double-quoted
reference "switchyard.config" puts in its place.
Argument: dict "refs" $refs "var" NAME ["default" VALUE]. */}}
{{- define "switchyard.envRef" -}}
{{- $ph := printf "switchyard-env-ref--%s--end" .var -}}
{{- if hasKey . "default" -}}
{{- $_ := set .refs $ph (printf "\"${%s:-%s}\"" .var .default) -}}
{{- else -}}
{{- $_ := set .refs $ph (printf "\"${%s}\"" .var) -}}
{{- end -}}
{{- $ph -}}
{{- end -}}

{{/* The config file, from values. */}}
{{- define "switchyard.config" -}}
{{- $root := . -}}
{{- $refs := dict -}}
{{- $server := deepCopy (default dict .Values.config.server) -}}
{{- $_ := set $server "http_addr" (printf "0.0.0.0:%d" (int .Values.router.ports.http)) -}}
{{- $_ := set $server "grpc_addr" (printf "0.0.0.0:%d" (int .Values.router.ports.grpc)) -}}
{{- $bus := dict "nats_url" .Values.nats.url -}}
{{- with .Values.nats.subjectPrefix }}{{ $_ := set $bus "subject_prefix" . }}{{ end -}}
{{- with .Values.nats.ackTimeout }}{{ $_ := set $bus "ack_timeout" . }}{{ end -}}
{{- with .Values.nats.heartbeatInterval }}{{ $_ := set $bus "heartbeat_interval" . }}{{ end -}}
{{- if eq .Values.nats.auth.type "token" -}}
{{- $_ := set $bus "token" (include "switchyard.envRef" (dict "refs" $refs "var" "SWITCHYARD_NATS_TOKEN")) -}}
{{- else if eq .Values.nats.auth.type "userPassword" -}}
{{- $_ := set $bus "user" (include "switchyard.envRef" (dict "refs" $refs "var" "SWITCHYARD_NATS_USER")) -}}
{{- $_ := set $bus "password" (include "switchyard.envRef" (dict "refs" $refs "var" "SWITCHYARD_NATS_PASSWORD")) -}}
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
{{- $ledger := deepCopy (default dict .Values.config.ledger) -}}
{{- if include "switchyard.hasPostgres" . -}}
{{- /* Every pod loads the whole file, but only routers and the writer get
the URL: the others need a non-empty stand-in (they never connect). */ -}}
{{- $url := include "switchyard.envRef" (dict "refs" $refs "var" "SWITCHYARD_LEDGER_POSTGRES_URL" "default" "not-given-to-this-pod") -}}
{{- $_ := set $ledger "postgres" (dict "url" $url) -}}
{{- end -}}
{{- with $ledger }}{{ $_ := set $cfg "ledger" . }}{{ end -}}
{{- with .Values.config.budgets }}{{ $_ := set $cfg "budgets" . }}{{ end -}}
{{- $alerts := deepCopy (default dict .Values.config.alerts) -}}
{{- with .Values.alerts.webhookHeaders -}}
{{- $hook := default dict $alerts.webhook -}}
{{- $headers := default dict $hook.headers -}}
{{- range . -}}
{{- /* Only routers send alerts and get the value; elsewhere it is empty. */ -}}
{{- $_ := set $headers .name (include "switchyard.envRef" (dict "refs" $refs "var" (include "switchyard.alertHeaderEnv" .) "default" "")) -}}
{{- end -}}
{{- $_ := set $hook "headers" $headers -}}
{{- $_ := set $alerts "webhook" $hook -}}
{{- end -}}
{{- with $alerts }}{{ $_ := set $cfg "alerts" . }}{{ end -}}
{{- with .Values.config.pricing }}{{ $_ := set $cfg "pricing" . }}{{ end -}}
{{- $cache := deepCopy (default dict .Values.config.cache) -}}
{{- if include "switchyard.hasCacheRedis" . -}}
{{- /* Only routers get the URL; the others load the file with a stand-in
that passes validation (they never connect). */ -}}
{{- $redis := deepCopy (default dict $cache.redis) -}}
{{- $_ := set $redis "url" (include "switchyard.envRef" (dict "refs" $refs "var" "SWITCHYARD_CACHE_REDIS_URL" "default" "redis://not-given-to-this-pod:6379")) -}}
{{- $_ := set $cache "redis" $redis -}}
{{- end -}}
{{- with $cache }}{{ $_ := set $cfg "cache" . }}{{ end -}}
{{- $auth := deepCopy (default dict .Values.config.auth) -}}
{{- if include "switchyard.hasKeyHashSecret" . -}}
{{- /* Every pod has the variable: routers from the Secret, the others a
stand-in (switchyard.keyHashSecretEnv). No `:-` default here, so a router
whose Secret holds an empty value fails validation instead of hashing keys
under a stand-in. */ -}}
{{- $keys := deepCopy (default dict $auth.keys) -}}
{{- $_ := set $keys "hash_secret" (include "switchyard.envRef" (dict "refs" $refs "var" "SWITCHYARD_KEY_HASH_SECRET")) -}}
{{- $_ := set $auth "keys" $keys -}}
{{- end -}}
{{- with $auth }}{{ $_ := set $cfg "auth" . }}{{ end -}}
{{- with .Values.config.rate_limits }}{{ $_ := set $cfg "rate_limits" . }}{{ end -}}
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
{{- $out := toYaml $cfg -}}
{{- range $ph, $ref := $refs -}}
{{- $out = replace $ph $ref $out -}}
{{- end -}}
{{- $out -}}
{{- end -}}

{{/* Env of every pod: NATS credentials, CA, the variables the config
references (HOST_IP, POD_IP), OTLP. */}}
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

{{/* The Consul ACL token, for the pods that register (routers, workers). */}}
{{- define "switchyard.consulTokenEnv" -}}
{{- if and .Values.consul.enabled .Values.consul.tokenSecret.name -}}
- name: CONSUL_HTTP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.consul.tokenSecret.name }}
      key: {{ .Values.consul.tokenSecret.key }}
{{- end -}}
{{- end -}}

{{/* The usage ledger's PostgreSQL URL, for routers (usage queries) and the
ledger writer; the config references it. */}}
{{- define "switchyard.postgresEnv" -}}
{{- if include "switchyard.hasPostgres" . -}}
- name: SWITCHYARD_LEDGER_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.postgresSecretName" . }}
      key: {{ .Values.ledger.postgres.key }}
{{- end -}}
{{- end -}}

{{/* The response cache's Redis URL, for routers only (they cache). */}}
{{- define "switchyard.cacheRedisEnv" -}}
{{- if include "switchyard.hasCacheRedis" . -}}
- name: SWITCHYARD_CACHE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.cacheRedisSecretName" . }}
      key: {{ .Values.cache.redis.key }}
{{- end -}}
{{- end -}}

{{- define "switchyard.hasKeyHashSecret" -}}
{{- if .Values.auth.hashSecret.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The hash secret of virtual keys (the config's auth.keys.hash_secret):
from the Secret for routers; a stand-in that passes validation for the
other pods, which load the same file but never hash a key.
Argument: dict "root" $ "router" bool. */}}
{{- define "switchyard.keyHashSecretEnv" -}}
{{- if include "switchyard.hasKeyHashSecret" .root -}}
- name: SWITCHYARD_KEY_HASH_SECRET
{{- if .router }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.auth.hashSecret.existingSecret }}
      key: {{ .root.Values.auth.hashSecret.key }}
{{- else }}
  value: "not-given-to-this-pod-only-routers-hash-keys"
{{- end }}
{{- end -}}
{{- end -}}

{{/* Secret webhook headers, for routers only (they send the alerts). */}}
{{- define "switchyard.alertHeaderEnvs" -}}
{{- range .Values.alerts.webhookHeaders }}
- name: {{ include "switchyard.alertHeaderEnv" . }}
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .key }}
{{- end -}}
{{- end -}}

{{/* Volumes of every pod. */}}
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
{{- $pg := .Values.ledger.postgres -}}
{{- if and $pg.existingSecret $pg.createSecret -}}
{{- fail "ledger.postgres.existingSecret and ledger.postgres.createSecret are exclusive" -}}
{{- end -}}
{{- if and $pg.createSecret (not $pg.url) -}}
{{- fail "ledger.postgres.createSecret needs ledger.postgres.url" -}}
{{- end -}}
{{- if and $pg.url (not $pg.createSecret) -}}
{{- fail "ledger.postgres.url is used only with ledger.postgres.createSecret: true (or put it in a Secret: ledger.postgres.existingSecret)" -}}
{{- end -}}
{{- if and .Values.ledger.writer.enabled (not (include "switchyard.hasPostgres" .)) -}}
{{- fail "ledger.writer.enabled needs the PostgreSQL URL: set ledger.postgres.existingSecret (a Secret with the URL under ledger.postgres.key), or ledger.postgres.createSecret with ledger.postgres.url" -}}
{{- end -}}
{{- $ledger := default dict .Values.config.ledger -}}
{{- if and .Values.ledger.writer.enabled (hasKey $ledger "enabled") (not $ledger.enabled) -}}
{{- fail "ledger.writer.enabled with config.ledger.enabled: false: there would be no records to write" -}}
{{- end -}}
{{- $cr := .Values.cache.redis -}}
{{- if and $cr.existingSecret $cr.createSecret -}}
{{- fail "cache.redis.existingSecret and cache.redis.createSecret are exclusive" -}}
{{- end -}}
{{- if and $cr.createSecret (not $cr.url) -}}
{{- fail "cache.redis.createSecret needs cache.redis.url" -}}
{{- end -}}
{{- if and $cr.url (not $cr.createSecret) -}}
{{- fail "cache.redis.url is used only with cache.redis.createSecret: true (or put it in a Secret: cache.redis.existingSecret; or a URL without a password in config.cache.redis.url)" -}}
{{- end -}}
{{- $cacheCfg := default dict .Values.config.cache -}}
{{- if and (include "switchyard.hasCacheRedis" .) (hasKey (default dict $cacheCfg.redis) "url") -}}
{{- fail "config.cache.redis.url and the cache.redis Secret both set the Redis URL: keep one" -}}
{{- end -}}
{{- $authCfg := default dict .Values.config.auth -}}
{{- if and (eq (toString (default dict $authCfg.keys).store) "jetstream") (not (include "switchyard.hasKeyHashSecret" .)) -}}
{{- fail "config.auth.keys.store: jetstream needs the hash secret: set auth.hashSecret.existingSecret (a Secret with at least 32 bytes under auth.hashSecret.key, e.g. openssl rand -hex 32)" -}}
{{- end -}}
{{- with .Values.alerts.webhookHeaders -}}
{{- $hook := default dict (default dict $.Values.config.alerts).webhook -}}
{{- if not $hook.url -}}
{{- fail "alerts.webhookHeaders needs config.alerts.webhook.url" -}}
{{- end -}}
{{- $inConfig := dict -}}
{{- range $k, $_ := default dict $hook.headers -}}
{{- $_ := set $inConfig (lower $k) true -}}
{{- end -}}
{{- $seen := dict -}}
{{- range . -}}
{{- if hasKey $inConfig (lower .name) -}}
{{- fail (printf "alerts.webhookHeaders: header %s is also in config.alerts.webhook.headers" .name) -}}
{{- end -}}
{{- if hasKey $seen (lower .name) -}}
{{- fail (printf "alerts.webhookHeaders: header %s is listed twice" .name) -}}
{{- end -}}
{{- $_ := set $seen (lower .name) true -}}
{{- end -}}
{{- $envs := dict -}}
{{- range . -}}
{{- $env := include "switchyard.alertHeaderEnv" . -}}
{{- if hasKey $envs $env -}}
{{- fail (printf "alerts.webhookHeaders %s and %s map to the same variable %s" (get $envs $env) .name $env) -}}
{{- end -}}
{{- $_ := set $envs $env .name -}}
{{- end -}}
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
