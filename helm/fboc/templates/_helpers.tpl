{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "fboc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart unless the release name already contains the chart name.
*/}}
{{- define "fboc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fboc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (a Deployment's selector is immutable).
*/}}
{{- define "fboc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fboc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The consumer pods' selector: the replay Job's pods must not count as consumers. */}}
{{- define "fboc.consumerSelectorLabels" -}}
{{ include "fboc.selectorLabels" . }}
app.kubernetes.io/component: consumer
{{- end }}

{{/*
The recommended app.kubernetes.io labels, on every object.
*/}}
{{- define "fboc.labels" -}}
helm.sh/chart: {{ include "fboc.chart" . }}
{{ include "fboc.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/part-of: fboc
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fboc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fboc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fboc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the configuration and the Secret are mounted. */}}
{{- define "fboc.configDir" -}}/etc/fboc{{- end }}
{{- define "fboc.configFile" -}}/etc/fboc/fboc.yaml{{- end }}
{{- define "fboc.secretDir" -}}/var/run/secrets/fboc{{- end }}

{{- define "fboc.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "fboc.fullname" .) }}
{{- end }}

{{/* The app secret's key in the Secret, or "" when there is no app secret. */}}
{{- define "fboc.appSecretKey" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.appSecretKey }}
{{- else if .Values.secrets.appSecret }}
{{- .Values.secrets.appSecretKey | default "app-secret" }}
{{- end }}
{{- end }}

{{/* fboc's HTTP port (health, readiness, metrics). */}}
{{- define "fboc.port" -}}
{{- $service := .Values.config.service | default dict }}
{{- $service.port | default 8080 | int }}
{{- end }}

{{- define "fboc.shutdownDeadline" -}}
{{- $service := .Values.config.service | default dict }}
{{- $service.shutdown_deadline_seconds | default 25 | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds: strictly above fboc's shutdown deadline, so Kubernetes never sends
SIGKILL while fboc is still draining (flushing batches, committing offsets).
*/}}
{{- define "fboc.terminationGracePeriodSeconds" -}}
{{- $deadline := include "fboc.shutdownDeadline" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $deadline 10 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if le $grace $deadline }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above config.service.shutdown_deadline_seconds (%d)" $grace $deadline) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
The configuration file: .Values.config with each destination's access_token (and app_secret, when
there is one) pointing at the mounted Secret's files, unless the destination sets its access_token.
*/}}
{{- define "fboc.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $dir := include "fboc.secretDir" . }}
{{- $tokenRef := printf "${file:%s/%s}" $dir .Values.secrets.accessTokenKey }}
{{- $appSecretKey := include "fboc.appSecretKey" . }}
{{- $destinations := list }}
{{- range $destination := ($config.destinations | default list) }}
{{- $d := deepCopy $destination }}
{{- /* A destination that brings its own access_token brings its own app_secret (or none). */}}
{{- if not $d.access_token }}
{{- $_ := set $d "access_token" $tokenRef }}
{{- if and $appSecretKey (not $d.app_secret) }}
{{- $_ := set $d "app_secret" (printf "${file:%s/%s}" $dir $appSecretKey) }}
{{- end }}
{{- end }}
{{- $destinations = append $destinations $d }}
{{- end }}
{{- $_ := set $config "destinations" $destinations }}
{{- /* The probes and Prometheus come from outside the pod: never loopback only by omission. */}}
{{- $service := $config.service | default dict }}
{{- if not (hasKey $service "bind_address") }}
{{- $_ := set $service "bind_address" "0.0.0.0" }}
{{- end }}
{{- $_ := set $config "service" $service }}
{{- toYaml $config }}
{{- end }}

{{/* The topics KEDA watches: each source's topic, once. */}}
{{- define "fboc.topics" -}}
{{- $topics := list }}
{{- range $source := (.Values.config.sources | default list) }}
{{- $topics = append $topics $source.topic }}
{{- end }}
{{- $topics | uniq | toJson }}
{{- end }}

{{/* Volumes shared by the Deployment and the replay Job. */}}
{{- define "fboc.volumes" -}}
- name: config
  configMap:
    name: {{ include "fboc.fullname" . }}
- name: secrets
  secret:
    secretName: {{ include "fboc.secretName" . }}
    defaultMode: 0440
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fboc.volumeMounts" -}}
- name: config
  mountPath: {{ include "fboc.configDir" . }}
  readOnly: true
- name: secrets
  mountPath: {{ include "fboc.secretDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when the configuration or the Secret changes. */}}
{{- define "fboc.checksums" -}}
checksum/config: {{ include "fboc.config" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ printf "%s/%s" .Values.secrets.accessToken .Values.secrets.appSecret | sha256sum }}
{{- end }}
{{- end }}

{{/* The label matchers that select this release's fboc metrics in Prometheus. */}}
{{- define "fboc.metricsSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "namespace=%q, job=%q" .Release.Namespace (printf "%s-metrics" (include "fboc.fullname" .)) }}
{{- end }}
{{- end }}

{{/* batching.max_in_flight as fboc will read it (its default is 8), unless set for the alert. */}}
{{- define "fboc.maxInFlight" -}}
{{- $batching := .Values.config.batching | default dict }}
{{- .Values.prometheusRule.inFlightSaturated.limit | default $batching.max_in_flight | default 8 | int }}
{{- end }}
