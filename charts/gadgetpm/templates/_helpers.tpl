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

{{/* gadgetpm.clusterName names the cluster role's objects:
"<fullname>-cluster". */}}
{{- define "gadgetpm.clusterName" -}}
{{- printf "%s-cluster" (include "gadgetpm.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* gadgetpm.nodeName names the node role's objects: "<fullname>-node". */}}
{{- define "gadgetpm.nodeName" -}}
{{- printf "%s-node" (include "gadgetpm.fullname" . | trunc 58 | trimSuffix "-") -}}
{{- end -}}

{{/* gadgetpm.hooksName names the hooks' ClusterRole and binding:
"<fullname>-hooks". */}}
{{- define "gadgetpm.hooksName" -}}
{{- printf "%s-hooks" (include "gadgetpm.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* gadgetpm.clusterServiceAccountName is the ServiceAccount the cluster
role runs as. */}}
{{- define "gadgetpm.clusterServiceAccountName" -}}
{{- if .Values.cluster.serviceAccount.create -}}
{{- default (include "gadgetpm.clusterName" .) .Values.cluster.serviceAccount.name -}}
{{- else -}}
{{- required "cluster.serviceAccount.name is required when cluster.serviceAccount.create is false: name an existing ServiceAccount" .Values.cluster.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* gadgetpm.nodeServiceAccountName is the ServiceAccount the node role
runs as. */}}
{{- define "gadgetpm.nodeServiceAccountName" -}}
{{- if .Values.node.serviceAccount.create -}}
{{- default (include "gadgetpm.nodeName" .) .Values.node.serviceAccount.name -}}
{{- else -}}
{{- required "node.serviceAccount.name is required when node.serviceAccount.create is false: name an existing ServiceAccount" .Values.node.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* gadgetpm.hooksServiceAccountName is the ServiceAccount hooks act as
(--hook-service-account); empty when hooks act as the cluster role. */}}
{{- define "gadgetpm.hooksServiceAccountName" -}}
{{- .Values.hooks.serviceAccount.name -}}
{{- end -}}

{{/* gadgetpm.leaseNamespace holds the leader-election Lease. */}}
{{- define "gadgetpm.leaseNamespace" -}}
{{- default .Release.Namespace .Values.operator.leaderElection.namespace -}}
{{- end -}}

{{/* gadgetpm.selectorLabels select both roles' pods (the metrics
Service); each workload adds gadgetpm.componentLabel. Never change them in
an upgrade (a workload's selector is immutable). */}}
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


{{/* gadgetpm.componentLabel tells the roles' pods apart: call it with
"cluster" or "node". */}}
{{- define "gadgetpm.componentLabel" -}}
app.kubernetes.io/component: {{ . }}
{{- end -}}

{{/* gadgetpm.portCheck refuses one port for two endpoints. */}}
{{- define "gadgetpm.portCheck" -}}
{{- if eq (int .Values.metrics.port) (int .Values.probes.port) }}
{{- fail (printf "metrics.port and probes.port are both %v: give the metrics endpoint and the probes different ports" .Values.metrics.port) }}
{{- end }}
{{- if .Values.node.stream.enabled }}
{{- range $name, $port := dict "metrics.port" .Values.metrics.port "probes.port" .Values.probes.port }}
{{- if eq (int $port) (int $.Values.node.stream.port) }}
{{- fail (printf "node.stream.port and %s are both %v: give the stream listener a port of its own" $name $port) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* gadgetpm.podSpecCommon: what both roles' pod specs share. */}}
{{- define "gadgetpm.podSpecCommon" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* gadgetpm.podMetadata: both roles' pod labels and annotations; call it
with (dict "ctx" $ "component" "cluster"|"node" "rbac" <rendered RBAC>),
plus "defaultContainer" for kubectl exec and logs when the pod has more
than one. */}}
{{- define "gadgetpm.podMetadata" -}}
labels:
  {{- include "gadgetpm.labels" .ctx | nindent 2 }}
  {{- include "gadgetpm.componentLabel" .component | nindent 2 }}
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Restart the pods when the RBAC they run with changes.
  checksum/rbac: {{ .rbac | sha256sum }}
  {{- with .defaultContainer }}
  kubectl.kubernetes.io/default-container: {{ . }}
  {{- end }}
  {{- with .ctx.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* gadgetpm.commonArgs: the flags both roles take. */}}
{{- define "gadgetpm.commonArgs" -}}
- --node-name=$(NODE_NAME)
- --data-dir=/var/lib/gadgetpm
- --debug-socket={{ .Values.operator.debugSocket }}
- --metrics-bind-address=:{{ .Values.metrics.port }}
- --health-probe-bind-address=:{{ .Values.probes.port }}
{{- with .Values.operator.namespaces }}
- --namespaces={{ join "," . }}
{{- end }}
- --stop-grace={{ .Values.operator.stopGrace }}
- --kube-api-qps={{ .Values.operator.clients.kubeAPI.qps }}
- --kube-api-burst={{ .Values.operator.clients.kubeAPI.burst }}
- --v={{ .Values.operator.logLevel }}
- --no-cross-namespace-refs={{ .Values.tenancy.noCrossNamespaceRefs }}
{{- with .Values.tenancy.clusterResourceNamespace }}
- --cluster-resource-namespace={{ . }}
{{- end }}
{{- with .Values.operator.watchLabelSelector }}
- --watch-label-selector={{ . }}
{{- end }}
{{- end -}}

{{/* gadgetpm.extraArgs: operator.extraArgs, last so they win. */}}
{{- define "gadgetpm.extraArgs" -}}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* gadgetpm.containerCommon: image, environment, ports and probes of
both roles' containers. */}}
{{- define "gadgetpm.containerCommon" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
env:
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: GADGETPM_DEBUG_SOCKET
  value: {{ .Values.operator.debugSocket | quote }}
# The root file system is read-only; kubectl (in hooks) and Helm keep
# their caches under HOME, on the /tmp emptyDir.
- name: HOME
  value: /tmp
{{- with .Values.operator.extraEnv }}
{{ toYaml . }}
{{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: probes
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: probes
  {{- toYaml .Values.probes.readiness | nindent 2 }}
# ports come last: a role's template may append its own to the list.
ports:
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
- name: probes
  containerPort: {{ .Values.probes.port }}
  protocol: TCP
{{- end -}}

{{/* gadgetpm.scratchVolumes: the writable emptyDirs both roles mount on
their read-only root file system (the debug socket's folder and /tmp). */}}
{{- define "gadgetpm.scratchVolumes" -}}
- name: run
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "gadgetpm.scratchMounts" -}}
- name: run
  mountPath: {{ dir .Values.operator.debugSocket }}
- name: tmp
  mountPath: /tmp
{{- end -}}
