{{/*
The chart's name: "kubetasks", or nameOverride.
*/}}
{{- define "kubetasks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base of every object's name: <release>-kubetasks, or just the release name when it already
holds the chart's name. Cluster-scoped objects carry it too, so two releases never collide.
*/}}
{{- define "kubetasks.fullname" -}}
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

{{/*
Labels on every object of the chart.
*/}}
{{- define "kubetasks.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubetasks.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetasks
{{- end }}

{{/*
The labels that tell this release's objects from another's.
*/}}
{{- define "kubetasks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetasks.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's name, labels and selector.
*/}}
{{- define "kubetasks.operator.fullname" -}}
{{- printf "%s-operator" (include "kubetasks.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetasks.operator.labels" -}}
{{ include "kubetasks.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubetasks.operator.selectorLabels" -}}
{{ include "kubetasks.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount: the one the chart creates, or one that exists already.
*/}}
{{- define "kubetasks.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetasks.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: image.tag, else the chart's appVersion.
*/}}
{{- define "kubetasks.operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
