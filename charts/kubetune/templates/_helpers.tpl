{{/*
Shared names, labels and image references. Resource names are capped at 63 characters because
label values (and some names) must fit in a DNS label.
*/}}

{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubetune.fullname" -}}
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

{{/* Name of the operator's Deployment, Roles and NetworkPolicy. */}}
{{- define "kubetune.operatorName" -}}
{{- printf "%s-operator" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubetune.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubetune.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
{{- end -}}

{{/* Labels that select the operator pod: stable across upgrades (a selector is immutable). */}}
{{- define "kubetune.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Image reference of one kubetune image: [registry/]repository:tag[@digest].
Call with (dict "root" $ "image" "operator").
*/}}
{{- define "kubetune.image" -}}
{{- $values := .root.Values.images -}}
{{- $image := index $values .image -}}
{{- $registry := $image.registry | default $values.registry -}}
{{- $ref := printf "%s:%s" $image.repository ($image.tag | default .root.Chart.AppVersion) -}}
{{- if $registry -}}
{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref -}}
{{- end -}}
{{- if $image.digest -}}
{{- $ref = printf "%s@%s" $ref $image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/*
The operator's namespaced permissions, shared by the ClusterRole (all namespaces) and the
per-namespace Roles (watchNamespaces). One comment per rule says why the operator needs it.
*/}}
{{- define "kubetune.operatorNamespacedRules" -}}
# Kopf watches both kinds and patches them for its finalizer and its handled-state annotation.
# No create/update/delete: users own the objects, the operator never writes their spec.
- apiGroups: ["kubetune.io"]
  resources: ["finetunejobs", "adapterdeployments"]
  verbs: ["get", "list", "watch", "patch"]
# The operator reports phase, conditions, runs and adapter versions through the status
# subresource (Kopf patches it; update is used when the whole status is replaced).
- apiGroups: ["kubetune.io"]
  resources: ["finetunejobs/status", "adapterdeployments/status"]
  verbs: ["get", "patch", "update"]
# One trainer Job per run: created, unsuspended/suspended (patch), and deleted when a run is
# superseded or its FineTuneJob is suspended.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Run configs mounted into trainer pods, and the desired adapter set of each inference
# Deployment that its agents watch.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The headless Service that gives the ranks of a multi-node run stable DNS names.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Read-only: trainer termination messages, and each inference pod's adapter-state annotation.
# No create/delete: pods come from Jobs and Deployments, never from the operator directly.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events on FineTuneJobs and AdapterDeployments (Kopf posts through the core API; newer
# clients through events.k8s.io). patch aggregates repeated events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Same events through the events.k8s.io API.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# The target inference Deployment of an AdapterDeployment: read its rollout state and inject
# the adapter-agent sidecar with server-side apply (patch). Never create or delete.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# The trainer NetworkPolicy (egress to DNS and the object store only) in each namespace that
# runs a trainer; created once, then kept in line with the chart's egress rules (patch).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- end -}}
