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
An image reference from (dict "root" $ "repository" R "tag" T "digest" D): a digest wins over the
tag. global.imageRegistry, as cert-manager's and Bitnami's charts read it, replaces the registry
host of the repository (a first path element with a dot or a colon, or localhost) or, when the
repository names none, is put in front of it.
*/}}
{{- define "kubetasks.image" -}}
{{- $repository := .repository }}
{{- $registry := .root.Values.global.imageRegistry | default "" | trimSuffix "/" }}
{{- if $registry }}
{{- $parts := splitList "/" $repository }}
{{- $host := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $host) (contains ":" $host) (eq "localhost" $host)) }}
{{- $repository = rest $parts | join "/" }}
{{- end }}
{{- $repository = printf "%s/%s" $registry $repository }}
{{- end }}
{{- if .digest }}
{{- printf "%s@%s" $repository .digest }}
{{- else }}
{{- printf "%s:%s" $repository (toString .tag) }}
{{- end }}
{{- end }}

{{/*
The operator image: image.digest, else image.tag, else the chart's appVersion.
*/}}
{{- define "kubetasks.operator.image" -}}
{{- include "kubetasks.image" (dict "root" . "repository" .Values.image.repository
      "tag" (.Values.image.tag | default .Chart.AppVersion) "digest" .Values.image.digest) }}
{{- end }}

{{/*
The pods' imagePullSecrets: global.imagePullSecrets, then imagePullSecrets.
*/}}
{{- define "kubetasks.imagePullSecrets" -}}
{{- $secrets := concat (.Values.global.imagePullSecrets | default list) (.Values.imagePullSecrets | default list) | uniq }}
{{- with $secrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Where a Prometheus operator object goes: its own namespace value, else the release's.
*/}}
{{- define "kubetasks.monitoring.namespace" -}}
{{- .namespace | default .root.Release.Namespace }}
{{- end }}

{{/*
The operator's RBAC rules, checked against operator/kubetasks_operator/ and kopf (tests in
tests/cluster/test_chart.py). Cluster-wide, one ClusterRole holds both lists, as does
operator/rbac.yaml; with watchNamespaces the namespaced rules go into a Role in each of them.

Cluster-scoped: what kopf reads to discover the resources and namespaces it serves.
*/}}
{{- define "kubetasks.operator.clusterRules" -}}
# kopf discovers the resources it serves (and notices CRDs that change) ...
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# ... and, serving named namespaces, notices them appear and go.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/*
Namespaced: every call the operator makes in a namespace it serves.
*/}}
{{- define "kubetasks.operator.namespacedRules" -}}
# TaskQueues: listed and watched; kopf keeps its progress and finalizer by patching them.
- apiGroups: [kubetasks.io]
  resources: [taskqueues]
  verbs: [list, watch, patch]
# Their status: conditions, figures, observedGeneration.
- apiGroups: [kubetasks.io]
  resources: [taskqueues/status]
  verbs: [patch]
# The worker Deployment's owner reference blocks the TaskQueue's deletion, which API servers
# with OwnerReferencesPermissionEnforcement (OpenShift) allow only to who may update this.
- apiGroups: [kubetasks.io]
  resources: [taskqueues/finalizers]
  verbs: [update]
# One worker Deployment per TaskQueue: read, created, replaced (never patched or deleted: the
# garbage collector removes it with its TaskQueue) ...
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, update]
# ... and scaled through its scale subresource.
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Worker pods: watched for deaths (lost tasks); annotated with a deletion cost before scale-in.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
# The database URL, from the Secret each TaskQueue names: read by name, never listed.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on the TaskQueues (kopf posts core/v1 Events, never updates them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
The migration Job: its name, labels, image and namespace.
*/}}
{{- define "kubetasks.migrations.fullname" -}}
{{- printf "%s-migrate" (include "kubetasks.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetasks.migrations.labels" -}}
{{ include "kubetasks.labels" . }}
app.kubernetes.io/component: migrations
{{- end }}

{{/*
The migration image: the operator's (its digest included) unless migrations.image names another
repository, tag or digest; a repository or tag of its own drops the operator's digest.
*/}}
{{- define "kubetasks.migrations.image" -}}
{{- $image := .Values.migrations.image }}
{{- $tag := $image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- $digest := $image.digest | default (ternary "" .Values.image.digest (or (not (empty $image.repository)) (not (empty $image.tag)))) }}
{{- include "kubetasks.image" (dict "root" . "repository" ($image.repository | default .Values.image.repository)
      "tag" $tag "digest" $digest) }}
{{- end }}

{{- define "kubetasks.migrations.namespace" -}}
{{- .Values.migrations.namespace | default .Release.Namespace }}
{{- end }}
