{{/* The app name label: dynplan-scaler, as in manifests/. */}}
{{- define "dynplan.name" -}}
{{- default "dynplan-scaler" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Deployment, Service and ServiceAccount name. Not prefixed with the release name:
plans' default spec.scaler.address is dynplan-scaler.keda:9090. */}}
{{- define "dynplan.fullname" -}}
{{- default "dynplan-scaler" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Role and RoleBinding: dynplan-plan-reader as in manifests/, else <fullname>-plan-reader. */}}
{{- define "dynplan.roleName" -}}
{{- if eq (include "dynplan.fullname" .) "dynplan-scaler" -}}
dynplan-plan-reader
{{- else -}}
{{- printf "%s-plan-reader" (include "dynplan.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Pods of this release: the base's two labels plus the release, so two releases in one
namespace (shards) never select each other's pods. */}}
{{- define "dynplan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dynplan.name" . }}
app.kubernetes.io/component: scaler
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object: the base's labels (manifests/kustomization.yaml) and Helm's. */}}
{{- define "dynplan.labels" -}}
app.kubernetes.io/name: {{ include "dynplan.name" . }}
app.kubernetes.io/part-of: dynplan
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | trunc 63 | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "dynplan.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end -}}

{{/* The collector's NAMESPACE with plans.namespaces: the release namespace first, then the
list (comma-separated, no repeats). */}}
{{- define "dynplan.watchedNamespaces" -}}
{{- prepend .Values.plans.namespaces .Release.Namespace | uniq | join "," -}}
{{- end -}}
