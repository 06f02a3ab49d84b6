{{/* Chart name, possibly overridden. */}}
{{- define "fluxfence.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every resource name: <release>-fluxfence, or the release name alone when it already
contains the chart name. 52 characters leave room for the longest suffix ("-selfsigned").
*/}}
{{- define "fluxfence.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "fluxfence.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fluxfence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fluxfence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fluxfence.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fluxfence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fluxfence
{{- end -}}

{{- define "fluxfence.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fluxfence.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fluxfence.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Names shared by the TLS Secret, the Certificate and the webhook configurations. */}}
{{- define "fluxfence.tlsSecretName" -}}
{{- printf "%s-tls" (include "fluxfence.fullname" .) -}}
{{- end -}}

{{- define "fluxfence.policyConfigMapName" -}}
{{- printf "%s-policy" (include "fluxfence.fullname" .) -}}
{{- end -}}

{{/* The DNS names the API server may use for the Service; the certificate covers all of them. */}}
{{- define "fluxfence.serviceDNSNames" -}}
{{- $svc := include "fluxfence.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/*
The namespaceSelector of both webhooks: never kube-system, never the release namespace (the
webhook must not be able to block its own recovery), plus whatever the user adds.
*/}}
{{- define "fluxfence.namespaceSelector" -}}
{{- $excluded := concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq -}}
{{- $expressions := list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $excluded) -}}
{{- $expressions = concat $expressions (.Values.webhook.namespaceSelector.matchExpressions | default list) -}}
{{- $selector := dict "matchExpressions" $expressions -}}
{{- with .Values.webhook.namespaceSelector.matchLabels -}}
{{- $_ := set $selector "matchLabels" . -}}
{{- end -}}
{{- toYaml $selector -}}
{{- end -}}

{{/*
One rule per Flux kind, from files/flux-kinds.json (the output of `fluxfence kinds`): its group,
every API version fluxfence judges and the main resource only (never `<plural>/status`, so
status updates are never sent). The rules do not cross-multiply groups, versions and resources.
*/}}
{{- define "fluxfence.rules" -}}
{{- $kinds := .Files.Get "files/flux-kinds.json" | fromJsonArray -}}
{{- if not $kinds -}}
{{- fail "files/flux-kinds.json is missing or empty: regenerate it with `fluxfence kinds`" -}}
{{- end -}}
{{- $rules := list -}}
{{- range $info := $kinds -}}
{{- $rules = append $rules (dict "apiGroups" (list $info.group) "apiVersions" $info.versions "resources" (list $info.plural) "operations" (list "CREATE" "UPDATE") "scope" "Namespaced") -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/*
The policy the webhook enforces, as a dict: the `policy` values, with what a parent chart passes
in `global` winning over them. global.multiTenancy.enforce replaces policy.enforce,
global.configNamespace replaces policy.configNamespace, and global.multiTenancy.defaultServiceAccount
replaces policy.defaultServiceAccount with that name in the config namespace. Without globals
(standalone), the policy values as written.
*/}}
{{- define "fluxfence.policy" -}}
{{- $policy := deepCopy .Values.policy -}}
{{- /* Helm reads YAML 1.1, where an unquoted `off` is false: give the webhook the word. */ -}}
{{- $rules := dict -}}
{{- range $code, $severity := .Values.policy.rules -}}
{{- $_ := set $rules $code (ternary "off" $severity (kindIs "bool" $severity)) -}}
{{- end -}}
{{- $_ := set $policy "rules" $rules -}}
{{- $global := .Values.global | default dict -}}
{{- $multiTenancy := $global.multiTenancy | default dict -}}
{{- if hasKey $multiTenancy "enforce" -}}
{{- $_ := set $policy "enforce" $multiTenancy.enforce -}}
{{- end -}}
{{- if $global.configNamespace -}}
{{- $_ := set $policy "configNamespace" $global.configNamespace -}}
{{- end -}}
{{- with $multiTenancy.defaultServiceAccount -}}
{{- $_ := set $policy "defaultServiceAccount" (dict "name" . "namespaces" (list $policy.configNamespace)) -}}
{{- end -}}
{{- /* Helm drops a key whose value is null; the policy would then take the key's default.
       values.yaml sets both, so a missing key is one the user set to null: say so. */ -}}
{{- if not (hasKey $policy "defaultServiceAccount") -}}
{{- $_ := set $policy "defaultServiceAccount" nil -}}
{{- end -}}
{{- if not (hasKey $policy "exemptNamespaces") -}}
{{- $_ := set $policy "exemptNamespaces" list -}}
{{- end -}}
{{- toYaml $policy -}}
{{- end -}}

{{/*
The policy ConfigMap. The chart writes it unless policyConfigMap.create is false; a parent chart
can write it instead with this template, given the fluxfence context with its own globals.
*/}}
{{- define "fluxfence.policyConfigMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "fluxfence.policyConfigMapName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "fluxfence.labels" . | nindent 4 }}
    app.kubernetes.io/component: policy
data:
  policy.yaml: |
    # fluxfence policy, rendered from the chart's `policy` values (and the multi-tenancy settings
    # in `global`, when a parent chart passes them). The webhook re-reads this file when the
    # ConfigMap changes.
    {{- include "fluxfence.policy" . | nindent 4 }}
{{- end -}}

{{/* Fails the render on combinations the schema cannot express. */}}
{{- define "fluxfence.validate" -}}
{{- if not (or .Values.webhook.validating.enabled .Values.webhook.mutating.enabled) -}}
{{- fail "webhook.validating.enabled and webhook.mutating.enabled are both false: nothing to install" -}}
{{- end -}}
{{- end -}}

{{/* The fields both webhooks share; called with (dict "root" $ "path" "/validate" "caBundle" $b64). */}}
{{- define "fluxfence.webhookCommon" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
failurePolicy: {{ .root.Values.webhook.failurePolicy }}
matchPolicy: Equivalent
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
clientConfig:
  service:
    name: {{ include "fluxfence.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
namespaceSelector:
  {{- include "fluxfence.namespaceSelector" .root | nindent 2 }}
{{- with .root.Values.webhook.objectSelector }}
{{- if or .matchLabels .matchExpressions }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
rules:
  {{- include "fluxfence.rules" .root | nindent 2 }}
{{- end }}
