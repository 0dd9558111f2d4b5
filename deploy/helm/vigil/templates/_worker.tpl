{{/*
A worker Deployment: (dict "root" $ "component" "worker" "values" .Values.worker "image" IMAGE
"gpu" false "autoscaled" BOOL). The CPU and GPU workers are one consumer group
(vigil-inference): Kafka shares the partitions between them evenly.
*/}}
{{- define "vigil.workerDeployment" -}}
{{- $root := .root -}}
{{- $w := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "vigil.fullname" $root }}-{{ .component }}
  labels:
    {{- include "vigil.labels" . | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $w.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "vigil.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "vigil.labels" . | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "vigil.podAnnotations" . }}
      annotations:
        {{- . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "vigil.podSpec" . | nindent 6 }}
      terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
      containers:
        - name: worker
          image: {{ .image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["worker"]
          env:
            {{- include "vigil.env" (dict "root" $root "env" $w.env) | nindent 12 }}
            {{- if .gpu }}
            - name: VIGIL_SERVING__DEVICE
              value: cuda
            - name: VIGIL_SERVING__NETWORKS
              value: {{ $w.serving.networks | quote }}
            - name: VIGIL_SERVING__PRECISION
              value: {{ $w.serving.precision | quote }}
            {{- end }}
            {{- include "vigil.secretEnv" (dict "root" $root "component" "worker") | nindent 12 }}
          ports:
            - name: metrics
              containerPort: 9101
          {{- include "vigil.probes" (dict "port" "metrics" "live" "/livez" "ready" "/readyz" "startupFailures" 60) | nindent 10 }}
          resources:
            {{- toYaml $w.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "vigil.volumeMounts" (dict "root" $root "clips" true) | nindent 12 }}
      volumes:
        {{- include "vigil.volumes" (dict "root" $root "clips" true) | nindent 8 }}
      {{- with $w.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
