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
Refuses contradictory settings. The webhook's policy follows multiTenancy and configNamespace
(templates/fluxfence-policy.yaml passes them to fluxfence as globals), so what remains to check
is what a user wrote against them: globals that say otherwise, a fluxfence policy switched off
under enforcing controllers (its default is true, so false was written), and a fluxfence chart
told to write its own policy ConfigMap next to the one this chart writes.
*/}}
{{- define "flux-multitenancy.validate" -}}
{{- if and .Values.createConfigNamespace (eq .Values.configNamespace .Release.Namespace) -}}
{{- fail (printf "configNamespace %q is the release namespace: set createConfigNamespace=false or use another namespace" .Values.configNamespace) -}}
{{- end -}}
{{- $global := .Values.global | default dict -}}
{{- $globalTenancy := $global.multiTenancy | default dict -}}
{{- if and (hasKey $globalTenancy "enforce") (ne $globalTenancy.enforce .Values.multiTenancy.enforce) -}}
{{- fail (printf "global.multiTenancy.enforce=%v but multiTenancy.enforce=%v: set multiTenancy.enforce only, this chart passes it to fluxfence" $globalTenancy.enforce .Values.multiTenancy.enforce) -}}
{{- end -}}
{{- if and (hasKey $globalTenancy "defaultServiceAccount") (ne $globalTenancy.defaultServiceAccount .Values.multiTenancy.defaultServiceAccount) -}}
{{- fail (printf "global.multiTenancy.defaultServiceAccount=%q but multiTenancy.defaultServiceAccount=%q: set multiTenancy.defaultServiceAccount only, this chart passes it to fluxfence" $globalTenancy.defaultServiceAccount .Values.multiTenancy.defaultServiceAccount) -}}
{{- end -}}
{{- if and (hasKey $global "configNamespace") (ne $global.configNamespace .Values.configNamespace) -}}
{{- fail (printf "global.configNamespace=%q but configNamespace=%q: set configNamespace only, this chart passes it to fluxfence" $global.configNamespace .Values.configNamespace) -}}
{{- end -}}
{{- if .Values.fluxfence.enabled -}}
{{- if and .Values.multiTenancy.enforce (eq (.Values.fluxfence.policy.enforce | toString) "false") -}}
{{- fail "multiTenancy.enforce=true but fluxfence.policy.enforce=false: the webhook follows multiTenancy.enforce; set multiTenancy.enforce=false to turn off both the lockdown flags and the webhook, or fluxfence.enabled=false to leave the webhook out" -}}
{{- end -}}
{{- if (.Values.fluxfence.policyConfigMap | default dict).create -}}
{{- fail "fluxfence.policyConfigMap.create=true: this chart writes the webhook's policy ConfigMap from multiTenancy and configNamespace; leave it false" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of the fluxfence policy ConfigMap (templates/fluxfence-policy.yaml), which the
controller mounts too: the fluxfence chart's own helper, with that chart's values. */}}
{{- define "flux-multitenancy.policyConfigMapName" -}}
{{- $fluxfence := .Subcharts.fluxfence -}}
{{- include "fluxfence.policyConfigMapName" (dict "Chart" $fluxfence.Chart "Release" .Release "Values" $fluxfence.Values) -}}
{{- end -}}
