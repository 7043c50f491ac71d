{{/* The chart's name, shortened to a DNS label. */}}
{{- define "expbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release's, unless it already contains the chart's name. */}}
{{- define "expbot.fullname" -}}
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

{{- define "expbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "expbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "expbot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "expbot.selectorLabels" . }}
app.kubernetes.io/version: {{ include "expbot.tag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion; "latest" is refused. */}}
{{- define "expbot.tag" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: \"latest\" is refused: name a version (or set image.digest) so a rollout says what it runs" }}
{{- end }}
{{- $tag }}
{{- end }}

{{- define "expbot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "expbot.tag" .) }}
{{- end }}
{{- end }}

{{/* Where the Jobs, their pods and claims, and the leader Lease live. */}}
{{- define "expbot.jobsNamespace" -}}
{{- default .Release.Namespace .Values.jobsNamespace }}
{{- end }}

{{/* The Secret holding the PostgreSQL URL. */}}
{{- define "expbot.databaseSecret" -}}
{{- default .Values.secrets.name .Values.database.urlSecret.name }}
{{- end }}

{{/* Settings the chart cannot render into anything that works: one clear line each. */}}
{{- define "expbot.validate" -}}
{{- if not (has .Values.backend (list "kubernetes" "local")) }}
{{- fail (printf "backend: %q is not one of kubernetes, local" .Values.backend) }}
{{- end }}
{{- if not (has .Values.slack.mode (list "http" "socket" "off")) }}
{{- fail (printf "slack.mode: %q is not one of http, socket, off" .Values.slack.mode) }}
{{- end }}
{{- if and (eq .Values.backend "local") (gt (int .Values.replicaCount) 1) }}
{{- fail "backend local runs the attempts inside the expbot pod: replicaCount must be 1" }}
{{- end }}
{{- if and (not .Values.database.urlSecret.key) (gt (int .Values.replicaCount) 1) }}
{{- fail "replicas share the database: set database.urlSecret (PostgreSQL) or replicaCount 1" }}
{{- end }}
{{- end }}
