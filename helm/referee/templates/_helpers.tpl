{{/*
Names, labels, paths and the checks every template relies on.
*/}}

{{- define "referee.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "referee.fullname" -}}
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

{{- define "referee.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "referee.selectorLabels" -}}
app.kubernetes.io/name: {{ include "referee.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "referee.labels" -}}
helm.sh/chart: {{ include "referee.chart" . }}
{{ include "referee.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: referee
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "referee.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "referee.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image.repository, with its registry replaced by image.registry when that is set. */}}
{{- define "referee.imageRepository" -}}
{{- $repository := .Values.image.repository -}}
{{- with .Values.image.registry -}}
  {{- $parts := splitn "/" 2 $repository -}}
  {{- $first := $parts._0 -}}
  {{- if and $parts._1 (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
    {{- $repository = $parts._1 -}}
  {{- end -}}
  {{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository -}}
{{- end -}}
{{- $repository -}}
{{- end -}}

{{- define "referee.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" (include "referee.imageRepository" .) .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" (include "referee.imageRepository" .) (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Host names of the Service: the Provider URL uses <svc>.<ns>; the serving certificate carries all. */}}
{{- define "referee.serviceHost" -}}
{{- printf "%s.%s" (include "referee.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "referee.dnsNames" -}}
{{- $svc := include "referee.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- concat $names .Values.tls.extraDnsNames | uniq | toJson -}}
{{- end -}}

{{- define "referee.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- .Values.tls.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "referee.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Called before the chart mints a CA (no CA found in the cluster): refuse when there is no cluster to find one in.
Offline (helm template, Argo CD, --dry-run) lookup answers nothing, not even for kube-system, and a CA minted
there would change on every render.
*/}}
{{- define "referee.requireClusterForCA" -}}
{{- if and (not .Values.tls.allowOfflineCA) (not (lookup "v1" "Namespace" "" "kube-system")) -}}
{{- fail (printf "tls.mode=%s: the chart would create a new CA, but it is rendered without cluster access (helm template, Argo CD, --dry-run), where it cannot find the CA it created before: every render would mint another one and the Providers' caBundle would stop matching the serving certificate. For GitOps, use tls.mode=existingSecret (a TLS Secret you manage, its CA in tls.existingSecret.caBundle) or tls.mode=certManager with tls.certManager.issuerRef and caBundle: docs/deploy.md, \"GitOps\". To render once and apply the output yourself, set tls.allowOfflineCA=true." .Values.tls.mode) -}}
{{- end -}}
{{- end -}}

{{- define "referee.caSecretName" -}}
{{- printf "%s-ca" (include "referee.fullname" .) -}}
{{- end -}}

{{/* Paths inside the pod. Every file the configuration names lives under one of these mounts. */}}
{{- define "referee.paths" -}}
config: /etc/referee/config
configFile: /etc/referee/config/referee.yaml
tls: /etc/referee/tls
gatekeeperCa: /etc/referee/gatekeeper-ca
registryCredentials: /etc/referee/registry-credentials
dockerConfig: /etc/referee/dockerconfig
pullSecrets: /etc/referee/pull-secrets
credentialProviderConfig: /etc/referee/credential-providers/config
credentialProviderBin: /etc/referee/credential-providers/bin
serviceAccountTokens: /var/run/secrets/referee/tokens
trust: /etc/referee/trust
sharedCache: /etc/referee/shared-cache
{{- end -}}

{{- define "referee.sharedCacheSecretName" -}}
{{- .Values.sharedCache.existingSecret | default (printf "%s-shared-cache" (include "referee.fullname" .)) -}}
{{- end -}}

{{/* The plugin directory: the emptyDir filled by the init container, or a directory of the Referee image. */}}
{{- define "referee.credentialProviderBinDir" -}}
{{- $cp := .Values.registryCredentials.credentialProviders -}}
{{- if $cp.pluginImage.repository -}}
{{- (include "referee.paths" . | fromYaml).credentialProviderBin -}}
{{- else -}}
{{- $cp.binDir -}}
{{- end -}}
{{- end -}}

{{- define "referee.credentialProviderImage" -}}
{{- $image := .Values.registryCredentials.credentialProviders.pluginImage -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (required "registryCredentials.credentialProviders.pluginImage: set tag or digest" $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A Secret data key for a registry host ("registry.example.com:5000" -> "registry.example.com_5000"). */}}
{{- define "referee.hostKey" -}}
{{- regexReplaceAll "[^-._a-zA-Z0-9]" . "_" -}}
{{- end -}}

{{/*
Checks that are not expressible in values.schema.json. Included by the Deployment and the Providers,
so a bad combination fails the whole render with one clear message.
*/}}
{{- define "referee.validate" -}}
{{- $v := .Values -}}
{{- $ca := $v.gatekeeper.clientCA -}}
{{- if $v.mtls.disabled -}}
  {{- if or $ca.secretName $ca.pem -}}
    {{- fail "mtls.disabled=true contradicts gatekeeper.clientCA: remove the client CA, or keep mutual TLS on (mtls.disabled=false)" -}}
  {{- end -}}
  {{- if $v.mtls.allowedClientNames -}}
    {{- fail "mtls.allowedClientNames needs mutual TLS: with mtls.disabled=true there is no client certificate and Referee would reject every request" -}}
  {{- end -}}
{{- else -}}
  {{- if and $ca.secretName $ca.pem -}}
    {{- fail "gatekeeper.clientCA: set either secretName or pem, not both" -}}
  {{- end -}}
  {{- if not (or $ca.secretName $ca.pem) -}}
    {{- fail "gatekeeper.clientCA is required: Referee verifies Gatekeeper's client certificate (mutual TLS). Set gatekeeper.clientCA.secretName=gatekeeper-webhook-server-cert (Gatekeeper's Secret; Referee must then run in Gatekeeper's namespace) or gatekeeper.clientCA.pem to Gatekeeper's ca.crt. To run without mutual TLS, set mtls.disabled=true explicitly." -}}
  {{- end -}}
  {{- if $ca.secretName -}}
    {{- $caNs := default $v.gatekeeper.namespace $ca.namespace -}}
    {{- if ne $caNs .Release.Namespace -}}
      {{- fail (printf "gatekeeper.clientCA: the Secret %s/%s cannot be mounted into namespace %s (Secrets do not cross namespaces). Install Referee into %s, copy ca.crt into a Secret in %s and set gatekeeper.clientCA.namespace=%s, or pass the certificate with gatekeeper.clientCA.pem" $caNs $ca.secretName .Release.Namespace $caNs .Release.Namespace .Release.Namespace) -}}
    {{- end -}}
  {{- end -}}
  {{- if and $ca.pem (not (hasPrefix "-----BEGIN CERTIFICATE-----" (trim $ca.pem))) -}}
    {{- fail "gatekeeper.clientCA.pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)" -}}
  {{- end -}}
{{- end -}}
{{- if ge (int $v.providers.verify.timeoutSeconds) (int $v.gatekeeper.validatingWebhookTimeoutSeconds) -}}
  {{- fail (printf "providers.verify.timeoutSeconds (%v) must be smaller than gatekeeper.validatingWebhookTimeoutSeconds (%v): a provider slower than the webhook turns into fail-open admission under failurePolicy Ignore" $v.providers.verify.timeoutSeconds $v.gatekeeper.validatingWebhookTimeoutSeconds) -}}
{{- end -}}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) -}}
  {{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- if lt (int $v.terminationGracePeriodSeconds) (add (int $v.preStopSleepSeconds) (int $v.shutdownGraceSeconds) 1) -}}
  {{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + shutdownGraceSeconds (%v + %v): otherwise in-flight requests are killed instead of drained" $v.terminationGracePeriodSeconds $v.preStopSleepSeconds $v.shutdownGraceSeconds) -}}
{{- end -}}
{{- if and (eq $v.tls.mode "certManager") $v.tls.certManager.issuerRef.name (not $v.tls.certManager.caBundle) -}}
  {{- fail "tls.certManager.caBundle is required with tls.certManager.issuerRef: Gatekeeper's Provider needs the PEM of the CA that signs Referee's serving certificate, and cert-manager's CA injector only fills webhook, CRD and APIService caBundles, not Provider resources. Leave issuerRef.name empty to let the chart create the CA." -}}
{{- end -}}
{{- if eq $v.tls.mode "existingSecret" -}}
  {{- if not $v.tls.existingSecret.name -}}
    {{- fail "tls.mode=existingSecret needs tls.existingSecret.name: a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" -}}
  {{- end -}}
  {{- if not $v.tls.existingSecret.caBundle -}}
    {{- fail "tls.mode=existingSecret needs tls.existingSecret.caBundle: the PEM of the CA that signed the Secret's certificate, for the Providers' caBundle (the chart does not read the Secret, so that every render is the same)" -}}
  {{- end -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $v.registryCredentials.hosts -}}
  {{- if hasKey $seen .host -}}
    {{- fail (printf "registryCredentials.hosts: host %q listed twice" .host) -}}
  {{- end -}}
  {{- $_ := set $seen .host true -}}
  {{- if and .password .existingSecret -}}
    {{- fail (printf "registryCredentials.hosts[%s]: set password or existingSecret, not both" .host) -}}
  {{- end -}}
  {{- if not (or .password .existingSecret) -}}
    {{- fail (printf "registryCredentials.hosts[%s]: password or existingSecret is required" .host) -}}
  {{- end -}}
{{- end -}}
{{- $cp := $v.registryCredentials.credentialProviders -}}
{{- if $cp.enabled -}}
  {{- if and $cp.config $cp.existingConfigMap -}}
    {{- fail "registryCredentials.credentialProviders: set config or existingConfigMap, not both" -}}
  {{- end -}}
  {{- if not (or $cp.config $cp.existingConfigMap) -}}
    {{- fail "registryCredentials.credentialProviders.enabled needs config (a kubelet CredentialProviderConfig) or existingConfigMap" -}}
  {{- end -}}
{{- end -}}
{{- $audiences := dict -}}
{{- range $cp.serviceAccountTokens -}}
  {{- if hasKey $audiences .audience -}}
    {{- fail (printf "registryCredentials.credentialProviders.serviceAccountTokens: audience %q listed twice" .audience) -}}
  {{- end -}}
  {{- $_ := set $audiences .audience true -}}
{{- end -}}
{{- $sc := $v.sharedCache -}}
{{- if $sc.enabled -}}
  {{- if not (regexMatch "^rediss?://[^/?#@]+" $sc.url) -}}
    {{- fail "sharedCache.url: set the redis:// or rediss:// (TLS) URL of your Valkey/Redis, without credentials (sharedCache.existingSecret holds the password)" -}}
  {{- end -}}
  {{- if and $sc.caBundle (not (hasPrefix "rediss://" $sc.url)) -}}
    {{- fail "sharedCache.caBundle needs a rediss:// (TLS) url" -}}
  {{- end -}}
  {{- if and $sc.passwordKey (not $sc.existingSecret) -}}
    {{- fail "sharedCache.passwordKey names a key of sharedCache.existingSecret: set existingSecret (the chart does not store cache passwords)" -}}
  {{- end -}}
{{- end -}}
{{- range $v.trust -}}
  {{- $sources := 0 -}}
  {{- if .files }}{{ $sources = add1 $sources }}{{ end -}}
  {{- if .existingSecret }}{{ $sources = add1 $sources }}{{ end -}}
  {{- if .existingConfigMap }}{{ $sources = add1 $sources }}{{ end -}}
  {{- if ne (int $sources) 1 -}}
    {{- fail (printf "trust[%s]: set exactly one of files, existingSecret, existingConfigMap" .name) -}}
  {{- end -}}
{{- end -}}
{{- end -}}

{{/*
The Referee configuration file: .Values.config (the user's part) plus what the chart owns (listening
addresses, ports, TLS files, Provider timeouts, credential files). Rendered with toYaml.
*/}}
{{- define "referee.config" -}}
{{- $v := .Values -}}
{{- $paths := include "referee.paths" . | fromYaml -}}
{{- $cfg := deepCopy $v.config -}}
{{- $tls := dict "certFile" (printf "%s/tls.crt" $paths.tls) "keyFile" (printf "%s/tls.key" $paths.tls) -}}
{{- if $v.mtls.disabled -}}
  {{- $_ := set $tls "clientAuth" "disabled" -}}
{{- else -}}
  {{- $_ := set $tls "clientAuth" "require" -}}
  {{- $_ := set $tls "clientCaFile" (printf "%s/ca.crt" $paths.gatekeeperCa) -}}
  {{- $names := $v.mtls.allowedClientNames -}}
  {{- if $v.mtls.pinGatekeeperServiceName -}}
    {{- $names = append $names (printf "gatekeeper-webhook-service.%s.svc" $v.gatekeeper.namespace) -}}
  {{- end -}}
  {{- if $names -}}
    {{- $_ := set $tls "allowedClientNames" ($names | uniq) -}}
  {{- end -}}
{{- end -}}
{{- $server := get $cfg "server" | default dict -}}
{{- $_ := set $server "address" "0.0.0.0" -}}
{{- $_ := set $server "port" (int $v.ports.provider) -}}
{{- $_ := set $server "healthAddress" "0.0.0.0" -}}
{{- $_ := set $server "healthPort" (int $v.ports.health) -}}
{{- $_ := set $server "tls" $tls -}}
{{- $_ := set $server "providerTimeout" (printf "%ds" (int $v.providers.verify.timeoutSeconds)) -}}
{{- $_ := set $server "mutateProviderTimeout" (printf "%ds" (int $v.providers.mutate.timeoutSeconds)) -}}
{{- $_ := set $server "shutdownGrace" (printf "%ds" (int $v.shutdownGraceSeconds)) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $registries := get $cfg "registries" | default dict -}}
{{- $creds := dict -}}
{{- range $v.registryCredentials.hosts -}}
  {{- $_ := set $creds .host (dict "username" .username "passwordFile" (printf "%s/%s/password" $paths.registryCredentials (include "referee.hostKey" .host))) -}}
{{- end -}}
{{- $hosts := list -}}
{{- $listed := dict -}}
{{- range (get $registries "hosts" | default list) -}}
  {{- $host := . -}}
  {{- $_ := set $listed (toString $host.host) true -}}
  {{- $cred := get $creds (toString $host.host) -}}
  {{- if $cred -}}
    {{- if or (hasKey $host "username") (hasKey $host "password") (hasKey $host "passwordFile") (hasKey $host "registryToken") (hasKey $host "registryTokenFile") -}}
      {{- fail (printf "config.registries.hosts[%s] already has credentials; remove them or the registryCredentials.hosts entry" $host.host) -}}
    {{- end -}}
    {{- $host = merge $host $cred -}}
  {{- end -}}
  {{- $hosts = append $hosts $host -}}
{{- end -}}
{{- range $v.registryCredentials.hosts -}}
  {{- if not (hasKey $listed .host) -}}
    {{- $hosts = append $hosts (merge (dict "host" .host) (get $creds .host)) -}}
  {{- end -}}
{{- end -}}
{{- if $hosts -}}
  {{- $_ := set $registries "hosts" $hosts -}}
{{- end -}}
{{- if $v.registryCredentials.dockerConfigSecret -}}
  {{- if hasKey $registries "dockerConfig" -}}
    {{- fail "config.registries.dockerConfig and registryCredentials.dockerConfigSecret both set: keep one" -}}
  {{- end -}}
  {{- $_ := set $registries "dockerConfig" (printf "%s/config.json" $paths.dockerConfig) -}}
{{- end -}}
{{- if $v.registryCredentials.pullSecrets -}}
  {{- if hasKey $registries "pullSecrets" -}}
    {{- fail "config.registries.pullSecrets and registryCredentials.pullSecrets both set: keep one" -}}
  {{- end -}}
  {{- $secrets := list -}}
  {{- range $v.registryCredentials.pullSecrets -}}
    {{- $secrets = append $secrets (printf "%s/%s" $paths.pullSecrets .) -}}
  {{- end -}}
  {{- $_ := set $registries "pullSecrets" $secrets -}}
{{- end -}}
{{- $cp := $v.registryCredentials.credentialProviders -}}
{{- if $cp.enabled -}}
  {{- if hasKey $registries "credentialProviders" -}}
    {{- fail "config.registries.credentialProviders and registryCredentials.credentialProviders.enabled both set: keep one" -}}
  {{- end -}}
  {{- $section := dict "config" (printf "%s/config.yaml" $paths.credentialProviderConfig) "binDir" (include "referee.credentialProviderBinDir" .) "execTimeout" $cp.execTimeout -}}
  {{- $tokens := list -}}
  {{- range $i, $token := $cp.serviceAccountTokens -}}
    {{- $tokens = append $tokens (dict "audience" $token.audience "path" (printf "%s/%d/token" $paths.serviceAccountTokens $i)) -}}
  {{- end -}}
  {{- if $tokens -}}
    {{- $_ := set $section "serviceAccountTokens" $tokens -}}
  {{- end -}}
  {{- with $v.serviceAccount.annotations -}}
    {{- $_ := set $section "serviceAccountAnnotations" . -}}
  {{- end -}}
  {{- $_ := set $registries "credentialProviders" $section -}}
{{- end -}}
{{- $_ := set $cfg "registries" $registries -}}
{{- $sc := $v.sharedCache -}}
{{- if $sc.enabled -}}
  {{- $cache := get $cfg "cache" | default dict -}}
  {{- $shared := get $cache "shared" | default dict -}}
  {{- range list "url" "username" "usernameFile" "password" "passwordFile" "hmacKeyFile" "ca" "caFile" -}}
    {{- if hasKey $shared . -}}
      {{- fail (printf "config.cache.shared.%s is set by the chart from sharedCache: remove it from config" .) -}}
    {{- end -}}
  {{- end -}}
  {{- $_ := set $shared "url" $sc.url -}}
  {{- $_ := set $shared "hmacKeyFile" (printf "%s/hmac.key" $paths.sharedCache) -}}
  {{- if $sc.username -}}
    {{- $_ := set $shared "username" $sc.username -}}
  {{- end -}}
  {{- if $sc.passwordKey -}}
    {{- $_ := set $shared "passwordFile" (printf "%s/password" $paths.sharedCache) -}}
  {{- end -}}
  {{- if $sc.caBundle -}}
    {{- $_ := set $shared "ca" $sc.caBundle -}}
  {{- end -}}
  {{- $_ := set $cache "shared" $shared -}}
  {{- $_ := set $cfg "cache" $cache -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
TLS material for tls.mode=generate (the serving certificate) and for tls.mode=certManager without an
issuerRef (the CA that cert-manager issues from). Both are reused from the cluster on upgrades (lookup),
so the Provider caBundle stays stable; rendering offline (helm template) always generates new ones.
Returns YAML: caCert, caKey, cert, key (cert/key only in generate mode).
*/}}
{{- define "referee.tlsMaterial" -}}
{{- $v := .Values -}}
{{- if eq $v.tls.mode "generate" -}}
  {{- $existing := lookup "v1" "Secret" .Release.Namespace (include "referee.tlsSecretName" .) -}}
  {{- $data := dig "data" dict $existing -}}
  {{- if and $v.tls.generate.reuseExisting (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") -}}
caCert: {{ get $data "ca.crt" | b64dec | quote }}
cert: {{ get $data "tls.crt" | b64dec | quote }}
key: {{ get $data "tls.key" | b64dec | quote }}
  {{- else -}}
    {{- include "referee.requireClusterForCA" . -}}
    {{- $ca := include "referee.genCA" (list . (int $v.tls.generate.caValidityDays)) | fromYaml -}}
    {{- $names := include "referee.dnsNames" . | fromJsonArray -}}
    {{- $host := include "referee.serviceHost" . -}}
    {{- $days := int $v.tls.generate.certValidityDays -}}
    {{- $cert := dict -}}
    {{- if eq $v.tls.keyAlgorithm "RSA" -}}
      {{- $cert = genSignedCert $host nil $names $days (buildCustomCert (b64enc $ca.Cert) (b64enc $ca.Key)) -}}
    {{- else -}}
      {{- $cert = genSignedCertWithKey $host nil $names $days (buildCustomCert (b64enc $ca.Cert) (b64enc $ca.Key)) (genPrivateKey "ecdsa") -}}
    {{- end -}}
caCert: {{ $ca.Cert | quote }}
cert: {{ $cert.Cert | quote }}
key: {{ $cert.Key | quote }}
  {{- end -}}
{{- else if and (eq $v.tls.mode "certManager") (not $v.tls.certManager.issuerRef.name) -}}
  {{- $existing := lookup "v1" "Secret" .Release.Namespace (include "referee.caSecretName" .) -}}
  {{- $data := dig "data" dict $existing -}}
  {{- if and (hasKey $data "tls.crt") (hasKey $data "tls.key") -}}
caCert: {{ get $data "tls.crt" | b64dec | quote }}
caKey: {{ get $data "tls.key" | b64dec | quote }}
  {{- else -}}
    {{- include "referee.requireClusterForCA" . -}}
    {{- $ca := include "referee.genCA" (list . (int $v.tls.certManager.caValidityDays)) | fromYaml -}}
caCert: {{ $ca.Cert | quote }}
caKey: {{ $ca.Key | quote }}
  {{- end -}}
{{- else if eq $v.tls.mode "existingSecret" -}}
caCert: {{ $v.tls.existingSecret.caBundle | quote }}
{{- else -}}
caCert: {{ $v.tls.certManager.caBundle | quote }}
{{- end -}}
{{- end -}}

{{/*
A new CA for the serving certificate: ECDSA P-256 (tls.keyAlgorithm ECDSA, the default: a cheaper TLS handshake on
every Gatekeeper call) or RSA-2048. Called with (list $ctx days); returns YAML: Cert, Key.
*/}}
{{- define "referee.genCA" -}}
{{- $ctx := index . 0 -}}
{{- $days := index . 1 -}}
{{- $name := printf "%s-ca" (include "referee.fullname" $ctx) -}}
{{- $ca := dict -}}
{{- if eq $ctx.Values.tls.keyAlgorithm "RSA" -}}
  {{- $ca = genCA $name $days -}}
{{- else -}}
  {{- $ca = genCAWithKey $name $days (genPrivateKey "ecdsa") -}}
{{- end -}}
Cert: {{ $ca.Cert | quote }}
Key: {{ $ca.Key | quote }}
{{- end -}}

