{{/* Names and labels. */}}
{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "vigil.gpuImage" -}}
{{- $repo := .Values.gpuWorker.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.gpuWorker.image.tag | default (printf "%s-cuda" (.Values.image.tag | default .Chart.AppVersion)) -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/* The default metrics port of each service (streams.observability.DEFAULT_PORTS; the read
API serves /metrics on its own HTTP port, VIGIL_API__PORT). */}}
{{- define "vigil.metricsPort" -}}
{{- get (dict "worker" 9101 "worker-gpu" 9101 "aggregator" 9102 "dashboard" 9104 "api" 8600) . -}}
{{- end -}}

{{/*
Non-secret environment: Kafka, metrics, clips, logs, then .Values.env, then the component's.
Call with (dict "root" $ "env" .Values.<component>.env).
*/}}
{{- define "vigil.env" -}}
{{- $v := .root.Values -}}
- name: VIGIL_KAFKA__BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required" $v.kafka.bootstrapServers | quote }}
- name: VIGIL_KAFKA__PARTITIONS
  value: {{ $v.kafka.partitions | quote }}
- name: VIGIL_KAFKA__REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
- name: VIGIL_KAFKA__MIN_INSYNC_REPLICAS
  value: {{ $v.kafka.minInsyncReplicas | quote }}
- name: VIGIL_KAFKA__SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if $v.kafka.saslMechanism }}
- name: VIGIL_KAFKA__SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
{{- end }}
{{- if $v.kafka.saslUsername }}
- name: VIGIL_KAFKA__SASL_USERNAME
  value: {{ $v.kafka.saslUsername | quote }}
{{- end }}
{{- if $v.kafka.tls.secretName }}
{{- if $v.kafka.tls.caFile }}
- name: VIGIL_KAFKA__SSL_CAFILE
  value: {{ printf "/etc/vigil/kafka-tls/%s" $v.kafka.tls.caFile | quote }}
{{- end }}
{{- if $v.kafka.tls.certFile }}
- name: VIGIL_KAFKA__SSL_CERTFILE
  value: {{ printf "/etc/vigil/kafka-tls/%s" $v.kafka.tls.certFile | quote }}
{{- end }}
{{- if $v.kafka.tls.keyFile }}
- name: VIGIL_KAFKA__SSL_KEYFILE
  value: {{ printf "/etc/vigil/kafka-tls/%s" $v.kafka.tls.keyFile | quote }}
{{- end }}
{{- end }}
- name: VIGIL_METRICS__HOST
  value: "0.0.0.0"
- name: VIGIL_CLIPS__DIRECTORY
  value: /var/lib/vigil/clips
- name: VIGIL_LOG__FORMAT
  value: json
{{- range $name, $value := $v.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $value := .env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
Secret environment, every value from secrets.existingSecret. Call with
(dict "root" $ "component" "worker|aggregator|dashboard|api|migrate").
*/}}
{{- define "vigil.secretEnv" -}}
{{- $s := .root.Values.secrets -}}
{{- $name := required "secrets.existingSecret is required" $s.existingSecret -}}
- name: VIGIL_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ required "secrets.keys.databaseUrl is required" $s.keys.databaseUrl }}
{{- if and $s.keys.kafkaSaslPassword (has .component (list "worker" "aggregator" "dashboard")) }}
- name: VIGIL_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $s.keys.kafkaSaslPassword }}
{{- end }}
{{- if and $s.keys.webhookEndpoints (eq .component "aggregator") }}
- name: VIGIL_WEBHOOKS__ENDPOINTS
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $s.keys.webhookEndpoints }}
      optional: true
{{- end }}
{{- if eq .component "dashboard" }}
{{- if $s.keys.dashboardAdminPassword }}
- name: VIGIL_DASHBOARD__ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $s.keys.dashboardAdminPassword }}
      optional: true
{{- end }}
{{- if $s.keys.oidcClientSecret }}
- name: VIGIL_DASHBOARD__OIDC__CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $s.keys.oidcClientSecret }}
{{- end }}
{{- if $s.keys.oidcCookieSecret }}
- name: VIGIL_DASHBOARD__OIDC__COOKIE_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $s.keys.oidcCookieSecret }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every Vigil pod shares. Call with (dict "root" $ "component" NAME). */}}
{{- define "vigil.podSpec" -}}
{{- $v := .root.Values -}}
automountServiceAccountToken: false
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Volumes every Vigil pod shares; clips for the components that use them. */}}
{{- define "vigil.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- if .clips }}
- name: clips
{{- if $v.clips.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $v.clips.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- if $v.kafka.tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $v.kafka.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "vigil.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/vigil
{{- if .clips }}
- name: clips
  mountPath: /var/lib/vigil/clips
{{- end }}
{{- if $v.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: /etc/vigil/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A pod's annotations: prometheus.io/* for a component that serves /metrics (when
metrics.podAnnotations), then .Values.podAnnotations. Call with (dict "root" $ "component" NAME).
*/}}
{{- define "vigil.podAnnotations" -}}
{{- $a := dict -}}
{{- if and .root.Values.metrics.podAnnotations (include "vigil.metricsPort" .component) -}}
{{- $_ := set $a "prometheus.io/scrape" "true" -}}
{{- $_ := set $a "prometheus.io/port" (include "vigil.metricsPort" .component) -}}
{{- $_ := set $a "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $a = merge $a .root.Values.podAnnotations -}}
{{- if $a }}{{ toYaml $a }}{{ end -}}
{{- end -}}

{{/*
Probes on a port: startup and liveness on LIVE, readiness on READY. Call with
(dict "port" "metrics" "live" "/livez" "ready" "/readyz" "startupFailures" 60).
A worker's first heartbeat may take up to 5 minutes while its models load.
*/}}
{{- define "vigil.probes" -}}
startupProbe:
  httpGet:
    path: {{ .live }}
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: {{ .startupFailures }}
livenessProbe:
  httpGet:
    path: {{ .live }}
    port: {{ .port }}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet:
    path: {{ .ready }}
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
