{{/* Object names: one helper builds each kind of name. */}}

{{/* gadgetpm.name is the chart name, or nameOverride. */}}
{{- define "gadgetpm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* gadgetpm.fullname names every object: fullnameOverride, else the
release name when it already holds the chart name, else
"<release>-<chart>". */}}
{{- define "gadgetpm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gadgetpm.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* gadgetpm.serviceAccountName is the ServiceAccount the pods run as. */}}
{{- define "gadgetpm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gadgetpm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* gadgetpm.leaseNamespace holds the leader-election Lease. */}}
{{- define "gadgetpm.leaseNamespace" -}}
{{- default .Release.Namespace .Values.operator.leaderElection.namespace -}}
{{- end -}}

{{/* gadgetpm.selectorLabels select the operator's pods; never change them
in an upgrade (a DaemonSet's selector is immutable). */}}
{{- define "gadgetpm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gadgetpm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* gadgetpm.labels go on every object. */}}
{{- define "gadgetpm.labels" -}}
{{ include "gadgetpm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
