{{- define "flux-multitenancy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flux
{{- end -}}

{{/*
The controllers, in one table: upstream names (the flux CLI and the events address rely on them),
ports, storage, and which lockdown flags each accepts. source-controller accepts none: it
references nothing in other namespaces. `lockdown` lists flag kinds, turned into arguments by
"flux-multitenancy.lockdownArgs".
*/}}
{{- define "flux-multitenancy.controllerTable" -}}
- key: source
  name: source-controller
  enabled: true
  ports: [{name: http, containerPort: 9090}, {name: http-prom, containerPort: 8080}, {name: healthz, containerPort: 9440}]
  readiness: {path: /, port: http}
  data: true
  events: true
  gracePeriod: 10
  lockdown: []
- key: kustomize
  name: kustomize-controller
  enabled: true
  ports: [{name: http-prom, containerPort: 8080}, {name: healthz, containerPort: 9440}]
  readiness: {path: /readyz, port: healthz}
  data: false
  events: true
  gracePeriod: 60
  lockdown: [noCrossNamespaceRefs, defaultServiceAccount, noRemoteBases]
- key: helm
  name: helm-controller
  enabled: true
  ports: [{name: http-prom, containerPort: 8080}, {name: healthz, containerPort: 9440}]
  readiness: {path: /readyz, port: healthz}
  data: false
  events: true
  gracePeriod: 600
  lockdown: [noCrossNamespaceRefs, defaultServiceAccount]
- key: notification
  name: notification-controller
  enabled: true
  ports: [{name: http, containerPort: 9090}, {name: http-webhook, containerPort: 9292}, {name: http-prom, containerPort: 8080}, {name: healthz, containerPort: 9440}]
  readiness: {path: /readyz, port: healthz}
  data: false
  events: false
  gracePeriod: 10
  lockdown: [noCrossNamespaceRefs]
- key: imageReflector
  name: image-reflector-controller
  enabled: {{ .Values.imageAutomation.enabled }}
  ports: [{name: http-prom, containerPort: 8080}, {name: healthz, containerPort: 9440}]
  readiness: {path: /readyz, port: healthz}
  data: true
  events: true
  gracePeriod: 10
  lockdown: [noCrossNamespaceRefs]
- key: imageAutomation
  name: image-automation-controller
  enabled: {{ .Values.imageAutomation.enabled }}
  ports: [{name: http-prom, containerPort: 8080}, {name: healthz, containerPort: 9440}]
  readiness: {path: /readyz, port: healthz}
  data: false
  events: true
  gracePeriod: 10
  lockdown: [noCrossNamespaceRefs]
{{- end -}}

{{/* The enabled controllers, as a list of dicts. */}}
{{- define "flux-multitenancy.controllers" -}}
{{- $enabled := list -}}
{{- range include "flux-multitenancy.controllerTable" . | fromYamlArray -}}
{{- if .enabled -}}
{{- $enabled = append $enabled . -}}
{{- end -}}
{{- end -}}
{{- toJson $enabled -}}
{{- end -}}

{{/* The lockdown arguments of one controller; none when multiTenancy.enforce is false. */}}
{{- define "flux-multitenancy.lockdownArgs" -}}
{{- $args := list -}}
{{- if .root.Values.multiTenancy.enforce -}}
{{- range .controller.lockdown -}}
{{- if eq . "noCrossNamespaceRefs" -}}
{{- $args = append $args "--no-cross-namespace-refs=true" -}}
{{- else if eq . "defaultServiceAccount" -}}
{{- $args = append $args (printf "--default-service-account=%s" $.root.Values.multiTenancy.defaultServiceAccount) -}}
{{- else if eq . "noRemoteBases" -}}
{{- $args = append $args "--no-remote-bases=true" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/* Address of notification-controller's event receiver. */}}
{{- define "flux-multitenancy.eventsAddr" -}}
{{- printf "http://notification-controller.%s.svc.%s./" .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
The webhook must judge what the controllers enforce: refuse a render where they disagree (the
fluxfence chart's values cannot be derived from this chart's: Helm passes values to a
dependency only as written).
*/}}
{{- define "flux-multitenancy.validate" -}}
{{- if and .Values.createConfigNamespace (eq .Values.configNamespace .Release.Namespace) -}}
{{- fail (printf "configNamespace %q is the release namespace: set createConfigNamespace=false or use another namespace" .Values.configNamespace) -}}
{{- end -}}
{{- if .Values.fluxfence.enabled -}}
{{- $policy := .Values.fluxfence.policy -}}
{{- if ne $policy.enforce .Values.multiTenancy.enforce -}}
{{- fail (printf "multiTenancy.enforce=%v but fluxfence.policy.enforce=%v: set both to the same value (or fluxfence.enabled=false)" .Values.multiTenancy.enforce $policy.enforce) -}}
{{- end -}}
{{- if .Values.multiTenancy.enforce -}}
{{- if ne $policy.configNamespace .Values.configNamespace -}}
{{- fail (printf "configNamespace=%q but fluxfence.policy.configNamespace=%q: set both to the same namespace" .Values.configNamespace $policy.configNamespace) -}}
{{- end -}}
{{- $sa := $policy.defaultServiceAccount | default dict -}}
{{- if ne ($sa.name | default "") .Values.multiTenancy.defaultServiceAccount -}}
{{- fail (printf "multiTenancy.defaultServiceAccount=%q but fluxfence.policy.defaultServiceAccount.name=%q: set both to the same name" .Values.multiTenancy.defaultServiceAccount ($sa.name | default "")) -}}
{{- end -}}
{{- if and .Values.applier.create (not (has .Values.configNamespace ($sa.namespaces | default list))) -}}
{{- fail (printf "the chart creates %s in %s, but fluxfence.policy.defaultServiceAccount.namespaces does not list it" .Values.multiTenancy.defaultServiceAccount .Values.configNamespace) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
