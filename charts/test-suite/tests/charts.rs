//! The charts in charts/: lint, render with every documented option, strict schema, webhook
//! rules against fluxfence's Flux kind table, lockdown flags, and the default policy.

use std::collections::{BTreeMap, BTreeSet};

use fluxfence::Policy;
use fluxfence::kinds::FLUX_KINDS;
use fluxfence_charts_test::{chart_dir, helm, names, object, of_kind, strings};
use serde_json::Value;

const NS: &str = "fluxfence-system";
const FLUX_NS: &str = "flux-system";

/// (group, version, plural) for every kind and version in FLUX_KINDS.
fn expected_resources() -> BTreeSet<(String, String, String)> {
    FLUX_KINDS
        .iter()
        .flat_map(|info| {
            info.versions.iter().map(|v| {
                (
                    info.group.to_owned(),
                    (*v).to_owned(),
                    info.plural.to_owned(),
                )
            })
        })
        .collect()
}

/// The (group, version, resource) triples one webhook's rules match, checking each rule's
/// shape on the way.
fn rule_resources(webhook: &Value) -> BTreeSet<(String, String, String)> {
    let mut covered = BTreeSet::new();
    let rules = webhook["rules"].as_array().cloned().unwrap_or_default();
    assert!(!rules.is_empty(), "webhook without rules: {webhook}");
    for rule in &rules {
        assert_eq!(strings(&rule["operations"]), ["CREATE", "UPDATE"], "{rule}");
        assert_eq!(rule["scope"], "Namespaced", "{rule}");
        for group in strings(&rule["apiGroups"]) {
            for version in strings(&rule["apiVersions"]) {
                for resource in strings(&rule["resources"]) {
                    assert!(
                        !resource.contains('/') && resource != "*",
                        "rule matches a subresource or everything: {rule}"
                    );
                    covered.insert((group.clone(), version.clone(), resource));
                }
            }
        }
    }
    covered
}

fn webhooks<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    of_kind(docs, kind)
        .into_iter()
        .flat_map(|c| c["webhooks"].as_array().into_iter().flatten())
        .collect()
}

fn excluded_namespaces(webhook: &Value) -> Vec<String> {
    webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .collect()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(deployment: &Value) -> Vec<String> {
    strings(&container(deployment)["args"])
}

#[test]
fn kinds_file_is_the_output_of_fluxfence_kinds() {
    // files/flux-kinds.json is `fluxfence kinds`; the chart reads kind, group, plural, versions.
    let path = chart_dir("fluxfence").join("files/flux-kinds.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let binary = serde_json::to_value(FLUX_KINDS).unwrap_or_else(|e| panic!("{e}"));
    let project = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                serde_json::json!({
                    "kind": k["kind"], "group": k["group"],
                    "plural": k["plural"], "versions": k["versions"],
                })
            })
            .collect()
    };
    assert_eq!(
        project(&file),
        project(&binary),
        "{} is stale: regenerate it with `cargo run -q --bin fluxfence -- kinds > {}`",
        path.display(),
        "charts/fluxfence/files/flux-kinds.json"
    );
}

#[test]
fn crds_define_every_flux_kind() {
    let dir = chart_dir("flux-multitenancy").join("crds");
    let mut defined = BTreeMap::new();
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        for crd in fluxfence_charts_test::parse_manifests(&text).unwrap_or_else(|e| panic!("{e}")) {
            assert_eq!(
                crd["kind"],
                "CustomResourceDefinition",
                "{}",
                path.display()
            );
            // fluxfence's own FluxConfig CRD (kept equal to the generated one by the
            // controller's tests) is not a Flux kind.
            if crd["spec"]["group"] == "fluxfence.dev" {
                continue;
            }
            let served: Vec<String> = crd["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["served"] == true)
                .filter_map(|v| v["name"].as_str().map(str::to_owned))
                .collect();
            defined.insert(
                (
                    crd["spec"]["group"].as_str().unwrap_or("").to_owned(),
                    crd["spec"]["names"]["plural"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ),
                served,
            );
        }
    }
    // The chart runs the controllers `flux install` runs; source-watcher (ArtifactGenerator)
    // is an extra component that brings its own CRD.
    let installed: Vec<_> = FLUX_KINDS
        .iter()
        .filter(|info| info.kind.in_default_install())
        .collect();
    assert_eq!(defined.len(), installed.len(), "{defined:?}");
    for info in installed {
        let served = defined
            .get(&(info.group.to_owned(), info.plural.to_owned()))
            .unwrap_or_else(|| panic!("no CRD for {}", info.kind));
        for version in served {
            assert!(
                info.versions.contains(&version.as_str()),
                "{} serves {version}, which FLUX_KINDS (and so the webhook rules) lacks",
                info.kind
            );
        }
    }
}

#[test]
fn lint_strict_is_clean_on_every_chart() {
    let Some(helm) = helm() else { return };
    let fluxfence = chart_dir("fluxfence");
    for values in [
        "",
        "tls: {certManager: {enabled: true}}",
        "metrics: {serviceMonitor: {enabled: true}}\nnetworkPolicy: {enabled: true}",
        "global: {multiTenancy: {enforce: false}}\npolicyConfigMap: {create: false}",
    ] {
        helm.lint_strict(&fluxfence, values)
            .unwrap_or_else(|e| panic!("fluxfence with {values:?}:\n{e}"));
    }
    let companion = helm.companion_chart();
    for values in [
        "",
        "imageAutomation: {enabled: true}",
        "multiTenancy: {enforce: false}",
        "configNamespace: gitops\nmultiTenancy: {defaultServiceAccount: deployer}",
    ] {
        helm.lint_strict(&companion.chart, values)
            .unwrap_or_else(|e| panic!("flux-multitenancy with {values:?}:\n{e}"));
    }
}

#[test]
fn webhook_rules_cover_every_flux_kind_and_version_exactly() {
    let Some(helm) = helm() else { return };
    let expected = expected_resources();
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let companion = helm.companion_chart();
    let companion_docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    for (chart, docs) in [("fluxfence", &docs), ("flux-multitenancy", &companion_docs)] {
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            let hooks = webhooks(docs, kind);
            assert_eq!(hooks.len(), 1, "{chart}: {kind}");
            assert_eq!(rule_resources(hooks[0]), expected, "{chart}: {kind}");
        }
    }
}

#[test]
fn webhooks_fail_closed_fast_and_without_side_effects() {
    let Some(helm) = helm() else { return };
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    for (kind, path) in [
        ("ValidatingWebhookConfiguration", "/validate"),
        ("MutatingWebhookConfiguration", "/mutate"),
    ] {
        let hook = webhooks(&docs, kind)[0];
        assert_eq!(hook["failurePolicy"], "Fail", "{kind}");
        assert_eq!(hook["sideEffects"], "None", "{kind}");
        assert_eq!(hook["matchPolicy"], "Equivalent", "{kind}");
        assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"], "{kind}");
        let timeout = hook["timeoutSeconds"].as_u64().unwrap_or(0);
        assert!((1..=5).contains(&timeout), "{kind}: timeout {timeout}");
        let service = &hook["clientConfig"]["service"];
        assert_eq!(service["name"], "fluxfence", "{kind}");
        assert_eq!(service["namespace"], NS, "{kind}");
        assert_eq!(service["path"], path, "{kind}");
        assert_eq!(service["port"], 443, "{kind}");
        if kind.starts_with("Mutating") {
            assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
        }
    }
}

#[test]
fn webhooks_never_see_kube_system_or_the_release_namespace() {
    let Some(helm) = helm() else { return };
    let values = "webhook:
  excludeNamespaces: [platform]
  namespaceSelector:
    matchLabels: {fluxfence.dev/enabled: \"true\"}
    matchExpressions: [{key: tier, operator: NotIn, values: [system]}]
";
    for (values, extra) in [("", vec![]), (values, vec!["platform"])] {
        let docs = helm
            .template(&chart_dir("fluxfence"), "ff", "guard", values, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            let hook = webhooks(&docs, kind)[0];
            let excluded = excluded_namespaces(hook);
            for ns in ["kube-system", "guard"].iter().chain(extra.iter()) {
                assert!(
                    excluded.iter().any(|e| e == ns),
                    "{kind}: {ns} not in {excluded:?}"
                );
            }
            if !extra.is_empty() {
                let selector = &hook["namespaceSelector"];
                assert_eq!(selector["matchLabels"]["fluxfence.dev/enabled"], "true");
                assert!(
                    selector["matchExpressions"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|x| x["key"] == "tier")),
                    "{selector}"
                );
            }
        }
    }
    // The companion installs the webhook in the Flux namespace: that one is excluded too.
    let companion = helm.companion_chart();
    let docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let excluded = excluded_namespaces(webhooks(&docs, "ValidatingWebhookConfiguration")[0]);
    assert!(excluded.contains(&FLUX_NS.to_owned()), "{excluded:?}");
}

#[test]
fn default_policy_configmap_is_the_azure_default() {
    let Some(helm) = helm() else { return };
    let policy_of = |docs: &[Value], name: &str| -> Policy {
        let text = object(docs, "ConfigMap", name)["data"]["policy.yaml"]
            .as_str()
            .unwrap_or_else(|| panic!("ConfigMap {name} has no policy.yaml"))
            .to_owned();
        Policy::parse(&text, "policy.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        policy_of(&docs, "fluxfence-policy"),
        Policy::azure_default()
    );

    // The deployment reads that ConfigMap at the path it passes to the binary.
    let deployment = object(&docs, "Deployment", "fluxfence");
    assert!(args(deployment).contains(&"--policy-file=/policy/policy.yaml".to_owned()));
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes.as_array().is_some_and(|v| v
            .iter()
            .any(|v| v["configMap"]["name"] == "fluxfence-policy")),
        "{volumes}"
    );

    // Every policy field can be set from values and stays a valid policy.
    let values = "policy:
  enforce: false
  defaultServiceAccount: null
  serviceAccounts: [{namespace: team-a, name: deployer}]
  tenants:
    - name: team-a
      namespaces: [team-a, team-a-*]
      serviceAccounts: [deployer]
      targetNamespaces: [team-a-apps]
      sourceUrls: [https://github.com/org/team-a-*]
      providerUrls: [https://hooks.slack.com/services]
  sharedSources: [{kind: HelmRepository, namespace: flux-system, name: bitnami, tenants: [team-a], namespaces: [apps-*], copySecrets: true}]
  rules: {FF110: deny, FF140: off}
";
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, values, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let policy = policy_of(&docs, "fluxfence-policy");
    assert!(!policy.enforce);
    assert_eq!(policy.default_service_account, None);
    assert_eq!(policy.tenants.len(), 1);
    assert_eq!(policy.shared_sources.len(), 1);
    assert!(policy.shared_sources[0].copy_secrets);
    assert_eq!(policy.shared_sources[0].namespaces, ["apps-*"]);
    assert_eq!(policy.rules.len(), 2);
    // `off` unquoted is false in Helm's YAML; the webhook still gets the severity `off`.
    assert_eq!(policy.rules.get("FF140"), Some(&fluxfence::Severity::Off));
}

#[test]
fn deployment_is_available_and_hardened() {
    let Some(helm) = helm() else { return };
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let deployment = object(&docs, "Deployment", "fluxfence");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(
        object(&docs, "PodDisruptionBudget", "fluxfence")["spec"]["minAvailable"],
        1
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(get["port"], "https", "{probe}");
    }
    assert_eq!(c["ports"][0]["containerPort"], 8443);
    let a = args(deployment);
    for expected in [
        "--listen=0.0.0.0:8443",
        "--tls-cert-file=/tls/tls.crt",
        "--tls-key-file=/tls/tls.key",
        "--log-format=json",
    ] {
        assert!(a.contains(&expected.to_owned()), "{expected} not in {a:?}");
    }
    let env = c["env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.iter().any(|e| e["name"] == "FLUXFENCE_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "{env:?}"
    );

    let service = object(&docs, "Service", "fluxfence");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
    object(&docs, "ServiceAccount", "fluxfence");
    assert_eq!(pod["serviceAccountName"], "fluxfence");
}

#[test]
fn pods_drain_before_they_stop() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir("fluxfence");
    let render = |values: &str, extra: &[&str]| {
        let docs = helm
            .template(&chart, "fluxfence", NS, values, extra)
            .unwrap_or_else(|e| panic!("{e}"));
        object(&docs, "Deployment", "fluxfence").clone()
    };
    // Defaults: a 5 s preStop sleep, 5 s of drain, 15 s for open requests, 5 s to spare.
    let deployment = render("", &["--kube-version", "1.32.0"]);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        container(&deployment)["lifecycle"]["preStop"]["sleep"]["seconds"],
        5
    );
    let a = args(&deployment);
    for expected in ["--drain-seconds=5", "--shutdown-timeout-seconds=15"] {
        assert!(a.contains(&expected.to_owned()), "{expected} not in {a:?}");
    }
    // Before Kubernetes 1.30 there is no sleep action (and no sleep in the image): the
    // webhook's own drain remains.
    let old = render("", &["--kube-version", "1.29.0"]);
    assert!(container(&old)["lifecycle"].is_null(), "{old}");
    assert!(args(&old).contains(&"--drain-seconds=5".to_owned()));
    // The grace period follows the values.
    let custom = render(
        "server: {shutdown: {preStopSleepSeconds: 0, drainSeconds: 10, timeoutSeconds: 20}}",
        &["--kube-version", "1.32.0"],
    );
    assert_eq!(
        custom["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        35
    );
    assert!(container(&custom)["lifecycle"].is_null(), "{custom}");
    assert!(args(&custom).contains(&"--drain-seconds=10".to_owned()));
}

#[test]
fn mutate_is_called_only_when_there_is_an_account_to_default() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir("fluxfence");
    let conditions = |values: &str, version: &str, kind: &str| {
        let docs = helm
            .template(
                &chart,
                "fluxfence",
                NS,
                values,
                &["--kube-version", version],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        object(&docs, kind, "fluxfence")["webhooks"][0]["matchConditions"].clone()
    };
    let mutating = conditions("", "1.32.0", "MutatingWebhookConfiguration");
    let expression = mutating[0]["expression"].as_str().unwrap_or("");
    for part in [
        "request.kind.kind in ['Kustomization', 'HelmRelease']",
        "!has(object.spec.serviceAccountName)",
        "object.spec.serviceAccountName == ''",
    ] {
        assert!(expression.contains(part), "{part} not in {expression}");
    }
    // Validation sees every object: FF101 holds in exempt namespaces too.
    assert!(conditions("", "1.32.0", "ValidatingWebhookConfiguration").is_null());
    // Shared sources are rewritten on any object; an outside policy may share some; older
    // API servers have no matchConditions; and it can be turned off.
    for (values, version) in [
        (
            "policy: {enforce: true, sharedSources: [{kind: HelmRepository, namespace: flux-system, name: bitnami}]}",
            "1.32.0",
        ),
        ("policyConfigMap: {create: false}", "1.32.0"),
        ("", "1.27.0"),
        ("webhook: {mutating: {onlyWhenDefaulting: false}}", "1.32.0"),
    ] {
        let mutating = conditions(values, version, "MutatingWebhookConfiguration");
        assert!(mutating.is_null(), "{values} on {version}: {mutating}");
    }
}

#[test]
fn generated_certificate_is_the_one_both_webhooks_trust() {
    let Some(helm) = helm() else { return };
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let secret = object(&docs, "Secret", "fluxfence-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca = secret["data"]["ca.crt"].as_str().unwrap_or("");
    assert!(!ca.is_empty());
    assert!(
        secret["data"]["tls.crt"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        secret["data"]["tls.key"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert_eq!(
            webhooks(&docs, kind)[0]["clientConfig"]["caBundle"],
            ca,
            "{kind}"
        );
    }
    let volumes = &object(&docs, "Deployment", "fluxfence")["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes.as_array().is_some_and(|v| v
            .iter()
            .any(|v| v["secret"]["secretName"] == "fluxfence-tls")),
        "{volumes}"
    );
}

#[test]
fn cert_manager_issues_the_certificate_and_injects_the_ca() {
    let Some(helm) = helm() else { return };
    let docs = helm
        .template(
            &chart_dir("fluxfence"),
            "fluxfence",
            NS,
            "tls: {certManager: {enabled: true}}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(of_kind(&docs, "Secret").is_empty(), "{:?}", names(&docs));
    let certificate = object(&docs, "Certificate", "fluxfence-tls");
    assert_eq!(certificate["spec"]["secretName"], "fluxfence-tls");
    assert_eq!(certificate["spec"]["issuerRef"]["name"], "fluxfence-ca");
    let dns = strings(&certificate["spec"]["dnsNames"]);
    assert!(dns.contains(&format!("fluxfence.{NS}.svc")), "{dns:?}");
    assert_eq!(
        object(&docs, "Certificate", "fluxfence-ca")["spec"]["isCA"],
        true
    );
    object(&docs, "Issuer", "fluxfence-selfsigned");
    object(&docs, "Issuer", "fluxfence-ca");
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let config = &of_kind(&docs, kind)[0];
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{NS}/fluxfence-tls"),
            "{kind}"
        );
        assert!(webhooks(&docs, kind)[0]["clientConfig"]["caBundle"].is_null());
    }

    // An existing issuer replaces the self-signed chain.
    let docs = helm
        .template(
            &chart_dir("fluxfence"),
            "fluxfence",
            NS,
            "tls: {certManager: {enabled: true, issuerRef: {name: corp, kind: ClusterIssuer}}}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(of_kind(&docs, "Issuer").is_empty(), "{:?}", names(&docs));
    let issuer = &object(&docs, "Certificate", "fluxfence-tls")["spec"]["issuerRef"];
    assert_eq!(issuer["name"], "corp");
    assert_eq!(issuer["kind"], "ClusterIssuer");
}

#[test]
fn every_documented_option_renders() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir("fluxfence");
    let cases: &[(&str, &str, &str)] = &[
        ("", "Deployment", "fluxfence"),
        (
            "metrics: {serviceMonitor: {enabled: true, labels: {release: prom}}}",
            "ServiceMonitor",
            "fluxfence",
        ),
        (
            "networkPolicy: {enabled: true}",
            "NetworkPolicy",
            "fluxfence",
        ),
        (
            "networkPolicy: {enabled: true, ingressFrom: [{ipBlock: {cidr: 10.0.0.0/8}}]}",
            "NetworkPolicy",
            "fluxfence",
        ),
        (
            "tls: {certManager: {enabled: true}}",
            "Certificate",
            "fluxfence-tls",
        ),
        (
            "webhook: {mutating: {enabled: false}}",
            "ValidatingWebhookConfiguration",
            "fluxfence",
        ),
        (
            "webhook: {validating: {enabled: false}}",
            "MutatingWebhookConfiguration",
            "fluxfence",
        ),
        (
            "webhook: {failurePolicy: Ignore, timeoutSeconds: 2}",
            "ValidatingWebhookConfiguration",
            "fluxfence",
        ),
        (
            "podDisruptionBudget: {minAvailable: null, maxUnavailable: 1}",
            "PodDisruptionBudget",
            "fluxfence",
        ),
        (
            "server: {clientCA: {configMapName: apiserver-ca}, maxBodyBytes: 1048576, reloadIntervalSeconds: 5, logFormat: text}",
            "Deployment",
            "fluxfence",
        ),
        (
            "serviceAccount: {create: false, name: existing}",
            "Deployment",
            "fluxfence",
        ),
        (
            "image: {digest: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"}",
            "Deployment",
            "fluxfence",
        ),
        (
            "replicas: 3\naffinity: {nodeAffinity: {}}\nfullnameOverride: guard",
            "Deployment",
            "guard",
        ),
        ("policy: {enforce: false}", "ConfigMap", "fluxfence-policy"),
    ];
    for (values, kind, name) in cases {
        let docs = helm
            .template(&chart, "fluxfence", NS, values, &[])
            .unwrap_or_else(|e| panic!("{values}:\n{e}"));
        object(&docs, kind, name);
        for doc in &docs {
            assert!(
                doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(),
                "{values}: {doc}"
            );
        }
    }
    let docs = helm
        .template(
            &chart,
            "fluxfence",
            NS,
            "server: {clientCA: {configMapName: apiserver-ca}, maxBodyBytes: 1048576}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let a = args(object(&docs, "Deployment", "fluxfence"));
    assert!(
        a.contains(&"--client-ca-file=/client-ca/ca.crt".to_owned()),
        "{a:?}"
    );
    assert!(a.contains(&"--max-body-bytes=1048576".to_owned()), "{a:?}");
    let docs = helm
        .template(
            &chart,
            "fluxfence",
            NS,
            "webhook: {mutating: {enabled: false}}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(of_kind(&docs, "MutatingWebhookConfiguration").is_empty());
    let docs = helm
        .template(
            &chart,
            "fluxfence",
            NS,
            "networkPolicy: {enabled: true}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let policy = &object(&docs, "NetworkPolicy", "fluxfence")["spec"];
    assert_eq!(strings(&policy["policyTypes"]), ["Ingress", "Egress"]);
    assert_eq!(policy["egress"], serde_json::json!([]));

    let companion = helm.companion_chart();
    let cases: &[(&str, &str, &str)] = &[
        ("", "Deployment", "kustomize-controller"),
        (
            "imageAutomation: {enabled: true}",
            "Deployment",
            "image-automation-controller",
        ),
        (
            "imageAutomation: {enabled: true}",
            "Deployment",
            "image-reflector-controller",
        ),
        (
            "multiTenancy: {enforce: false}",
            "Deployment",
            "helm-controller",
        ),
        (
            "multiTenancy: {enforce: false}\nfluxfence: {policy: {enforce: false}}",
            "ConfigMap",
            "flux-fluxfence-policy",
        ),
        (
            "multiTenancy: {enforce: false}\nfluxfence: {enabled: false}",
            "Deployment",
            "helm-controller",
        ),
        (
            "fluxfence: {enabled: false}",
            "Deployment",
            "source-controller",
        ),
        (
            "createConfigNamespace: false",
            "ServiceAccount",
            "flux-applier",
        ),
        (
            "applier: {roleRef: {kind: ClusterRole, name: edit}}",
            "RoleBinding",
            "flux-applier",
        ),
        (
            "watchAllNamespaces: false\nlogLevel: debug\nrbac: {createAggregatedRoles: false}",
            "Deployment",
            "notification-controller",
        ),
        (
            "fluxfence: {tls: {certManager: {enabled: true}}, metrics: {serviceMonitor: {enabled: true}}}",
            "Certificate",
            "flux-fluxfence-tls",
        ),
        (
            "configNamespace: gitops\nmultiTenancy: {enforce: true, defaultServiceAccount: deployer}",
            "ServiceAccount",
            "deployer",
        ),
    ];
    for (values, kind, name) in cases {
        let docs = helm
            .template(
                &companion.chart,
                "flux",
                FLUX_NS,
                values,
                &["--include-crds"],
            )
            .unwrap_or_else(|e| panic!("{values}:\n{e}"));
        object(&docs, kind, name);
        assert_eq!(
            of_kind(&docs, "CustomResourceDefinition")
                .iter()
                .filter(|crd| crd["spec"]["group"] != "fluxfence.dev")
                .count(),
            FLUX_KINDS
                .iter()
                .filter(|k| k.kind.in_default_install())
                .count()
        );
    }
    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "fluxfence: {enabled: false}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(of_kind(&docs, "ValidatingWebhookConfiguration").is_empty());
    let docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        of_kind(&docs, "Deployment")
            .iter()
            .all(|d| d["metadata"]["name"] != "image-reflector-controller")
    );
}

#[test]
fn schema_rejects_invalid_values() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir("fluxfence");
    for values in [
        "webhook: {timeoutSeconds: 30}",
        "webhook: {timeoutSeconds: 0}",
        "replicas: two",
        "replicas: 0",
        "unknownKey: true",
        "webhook: {unknownKey: true}",
        "webhook: {namespaceSelector: {matchExpressions: [{key: a, operator: Maybe}]}}",
        "webhook: {failurePolicy: Sometimes}",
        "server: {shutdown: {drainSeconds: -1}}",
        "server: {shutdown: {timeoutSeconds: 0}}",
        "policy: {enforce: true, ratchetUpdates: sometimes}",
        "server: {logFormat: xml}",
        "server: {port: 80}",
        "image: {pullPolicy: Sometimes}",
        "resources: {requests: {cpu: lots}}",
        "tls: {certManager: {enabled: yes please}}",
        "policy: {enforce: maybe}",
        "policy: {unknownField: 1}",
        "policy: {rules: {FF9: deny}}",
        "policy: {rules: {FF101: block}}",
        "policy: {tenants: [{name: a}]}",
        "policy: {tenants: [{name: a, namespaces: []}]}",
        "policy: {sharedSources: [{kind: HelmChart, namespace: flux-system, name: x}]}",
        "policy: {sharedSources: [{kind: GitRepository, namespace: flux-system, name: x, copySecrets: yes please}]}",
        "policy: {defaultServiceAccount: {name: \"\"}}",
        "metrics: {serviceMonitor: {interval: soon}}",
        "webhook: {validating: {enabled: false}, mutating: {enabled: false}}",
        "global: {multiTenancy: {enforce: maybe}}",
        "global: {multiTenancy: {unknownKey: 1}}",
        "global: {configNamespace: Not_A_Namespace}",
        "global: {multiTenancy: {defaultServiceAccount: Not_A_Name}}",
        "policyConfigMap: {create: maybe}",
        "policyConfigMap: {unknownKey: true}",
    ] {
        let result = helm.template(&chart, "fluxfence", NS, values, &[]);
        assert!(result.is_err(), "fluxfence accepted {values:?}");
    }
    let companion = helm.companion_chart();
    for (values, message) in [
        ("multiTenancy: {enforce: nope}", "schema"),
        ("controllers: {kustomize: {image: {tag: 5}}}", "schema"),
        (
            "controllers: {kustomize: {extraArgs: [no-dashes]}}",
            "schema",
        ),
        ("unknownKey: 1", "schema"),
        ("logLevel: trace", "schema"),
        ("configNamespace: Not_A_Namespace", "schema"),
        ("fluxfence: {webhook: {timeoutSeconds: 30}}", "schema"),
        ("global: {multiTenancy: {enforce: nope}}", "schema"),
        ("global: {multiTenancy: {unknownKey: 1}}", "schema"),
        ("global: {configNamespace: Not_A_Namespace}", "schema"),
        ("fluxfence: {policyConfigMap: {create: 1}}", "schema"),
        ("controller: {enabled: maybe}", "schema"),
        ("controller: {replicas: 0}", "schema"),
        ("controller: {image: {digest: latest}}", "schema"),
        ("controller: {unknownKey: 1}", "schema"),
        ("configNamespace: flux-system", "release namespace"),
        // Written settings that contradict each other still fail, naming the value to set.
        (
            "global: {multiTenancy: {enforce: false}}",
            "global.multiTenancy.enforce=false but multiTenancy.enforce=true",
        ),
        (
            "multiTenancy: {enforce: false}\nglobal: {multiTenancy: {enforce: true}}",
            "set multiTenancy.enforce only",
        ),
        (
            "global: {multiTenancy: {defaultServiceAccount: deployer}}",
            "set multiTenancy.defaultServiceAccount only",
        ),
        (
            "global: {configNamespace: gitops}",
            "set configNamespace only",
        ),
        (
            "fluxfence: {policy: {enforce: false}}",
            "multiTenancy.enforce=true but fluxfence.policy.enforce=false",
        ),
        (
            "fluxfence: {policyConfigMap: {create: true}}",
            "fluxfence.policyConfigMap.create=true",
        ),
    ] {
        match helm.template(&companion.chart, "flux", FLUX_NS, values, &[]) {
            Ok(_) => panic!("flux-multitenancy accepted {values:?}"),
            Err(e) => assert!(e.contains(message), "{values:?}: {message:?} not in\n{e}"),
        }
    }
}

/// The lockdown arguments of every Flux controller Deployment (fluxfence-controller is not one).
fn lockdown_flags(docs: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    of_kind(docs, "Deployment")
        .into_iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-controller") && n != "fluxfence-controller")
        })
        .map(|d| {
            let flags = args(d)
                .into_iter()
                .filter(|a| {
                    a.starts_with("--no-cross-namespace-refs")
                        || a.starts_with("--default-service-account")
                        || a.starts_with("--no-remote-bases")
                })
                .collect();
            (
                d["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                flags,
            )
        })
        .collect()
}

#[test]
fn lockdown_flags_are_on_exactly_the_controllers_that_accept_them() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "imageAutomation: {enabled: true}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let set = |flags: &[&str]| {
        flags
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let cross = "--no-cross-namespace-refs=true";
    let sa = "--default-service-account=flux-applier";
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("source-controller", set(&[])),
        (
            "kustomize-controller",
            set(&[cross, sa, "--no-remote-bases=true"]),
        ),
        ("helm-controller", set(&[cross, sa])),
        ("notification-controller", set(&[cross])),
        ("image-reflector-controller", set(&[cross])),
        ("image-automation-controller", set(&[cross])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(lockdown_flags(&docs), expected);

    // A renamed default service account reaches the flag, the applier and the webhook policy.
    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "multiTenancy: {enforce: true, defaultServiceAccount: deployer}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let flags = lockdown_flags(&docs);
    assert!(flags["helm-controller"].contains("--default-service-account=deployer"));
    let account = object(&docs, "ServiceAccount", "deployer");
    assert_eq!(account["metadata"]["namespace"], "cluster-config");
}

#[test]
fn the_external_artifact_gate_is_on_where_shared_sources_are_read() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let gate = "--feature-gates=ExternalArtifact=true".to_owned();
    for (values, gated) in [
        ("", vec!["helm-controller", "kustomize-controller"]),
        ("controller: {enabled: false}", vec![]),
    ] {
        let docs = helm
            .template(&companion.chart, "flux", FLUX_NS, values, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let with_gate: Vec<String> = of_kind(&docs, "Deployment")
            .into_iter()
            .filter(|d| args(d).contains(&gate))
            .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        let mut with_gate = with_gate;
        with_gate.sort();
        assert_eq!(with_gate, gated, "{values:?}");
    }
}

#[test]
fn a_changed_policy_rolls_the_controller() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let checksum = |values: &str| {
        let docs = helm
            .template(&companion.chart, "flux", FLUX_NS, values, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let deployment = object(&docs, "Deployment", "fluxfence-controller");
        deployment["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]
            .as_str()
            .unwrap_or_else(|| panic!("no checksum/policy annotation"))
            .to_owned()
    };
    let shared = "fluxfence: {policy: {sharedSources: [{kind: OCIRepository, namespace: flux-system, name: podinfo}]}}";
    assert_eq!(checksum(""), checksum(""));
    assert_ne!(checksum(""), checksum(shared));
}

#[test]
fn the_webhook_trusts_the_controllers_copies_only_in_the_companion_chart() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let publisher = |docs: &[Value]| -> Vec<String> {
        of_kind(docs, "Deployment")
            .into_iter()
            .flat_map(args)
            .filter(|a| a.starts_with("--trusted-publisher="))
            .collect()
    };
    // The user the controller's pods run as: its ServiceAccount in the release namespace.
    let controller = object(&docs, "Deployment", "fluxfence-controller");
    assert_eq!(
        controller["spec"]["template"]["spec"]["serviceAccountName"],
        "fluxfence-controller"
    );
    assert_eq!(
        publisher(&docs),
        [format!(
            "--trusted-publisher=system:serviceaccount:{FLUX_NS}:fluxfence-controller"
        )]
    );
    let alone = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(publisher(&alone).is_empty());
}

#[test]
fn enforce_false_removes_every_lockdown_flag() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    for values in [
        "imageAutomation: {enabled: true}\nmultiTenancy: {enforce: false}",
        "imageAutomation: {enabled: true}\nmultiTenancy: {enforce: false}\nfluxfence: {policy: {enforce: false}}",
        "imageAutomation: {enabled: true}\nmultiTenancy: {enforce: false}\nglobal: {multiTenancy: {enforce: false}}",
        "imageAutomation: {enabled: true}\nmultiTenancy: {enforce: false}\nfluxfence: {enabled: false}",
    ] {
        let docs = helm
            .template(&companion.chart, "flux", FLUX_NS, values, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let flags = lockdown_flags(&docs);
        assert_eq!(flags.len(), 6, "{flags:?}");
        for (controller, flags) in flags {
            assert!(flags.is_empty(), "{values}: {controller} keeps {flags:?}");
        }
        if let Some(config) = of_kind(&docs, "ConfigMap")
            .into_iter()
            .find(|c| c["metadata"]["name"] == "flux-fluxfence-policy")
        {
            let text = config["data"]["policy.yaml"].as_str().unwrap_or("");
            let policy = Policy::parse(text, "policy.yaml").unwrap_or_else(|e| panic!("{e}"));
            assert!(!policy.enforce);
        }
    }
}

/// The fluxfence policy in a render: the one ConfigMap of that name, parsed by fluxfence itself.
fn rendered_policy(docs: &[Value], name: &str) -> Policy {
    let configs: Vec<_> = of_kind(docs, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        configs.len(),
        1,
        "ConfigMap {name} rendered {} times",
        configs.len()
    );
    let text = configs[0]["data"]["policy.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {name} has no policy.yaml"));
    Policy::parse(text, "policy.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn multi_tenancy_enforce_false_alone_turns_off_the_flags_and_the_webhook() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();

    // Defaults: every flag, and the webhook enforcing the Azure default policy.
    let docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        lockdown_flags(&docs)["kustomize-controller"].contains("--no-cross-namespace-refs=true")
    );
    assert_eq!(
        rendered_policy(&docs, "flux-fluxfence-policy"),
        Policy::azure_default()
    );

    // The one switch, exactly as a user types it.
    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "",
            &["--set", "multiTenancy.enforce=false"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let flags = lockdown_flags(&docs);
    assert_eq!(flags.len(), 4, "{flags:?}");
    for (controller, flags) in flags {
        assert!(flags.is_empty(), "{controller} keeps {flags:?}");
    }
    let policy = rendered_policy(&docs, "flux-fluxfence-policy");
    assert!(!policy.enforce);
    assert_eq!(
        policy,
        Policy {
            enforce: false,
            ..Policy::azure_default()
        }
    );
    // The webhook mounts the ConfigMap this chart wrote.
    let deployment = object(&docs, "Deployment", "flux-fluxfence");
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes.as_array().is_some_and(|v| v
            .iter()
            .any(|v| v["configMap"]["name"] == "flux-fluxfence-policy")),
        "{volumes}"
    );

    // configNamespace and the default service account reach the policy the same way, and the
    // rest of fluxfence.policy is kept.
    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "configNamespace: gitops\nmultiTenancy: {defaultServiceAccount: deployer}\nfluxfence: {policy: {rules: {FF140: off}, exemptNamespaces: [platform]}}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        lockdown_flags(&docs)["helm-controller"].contains("--default-service-account=deployer")
    );
    let policy = rendered_policy(&docs, "flux-fluxfence-policy");
    assert!(policy.enforce);
    assert_eq!(policy.config_namespace, "gitops");
    let account = policy
        .default_service_account
        .unwrap_or_else(|| panic!("no default SA"));
    assert_eq!(account.name, "deployer");
    assert_eq!(account.namespaces, ["gitops"]);
    assert_eq!(policy.exempt_namespaces, ["platform"]);
    assert_eq!(policy.rules.get("FF140"), Some(&fluxfence::Severity::Off));
}

#[test]
fn fluxfence_policy_follows_globals_when_set_and_its_own_values_otherwise() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir("fluxfence");
    let render = |values: &str| {
        helm.template(&chart, "fluxfence", NS, values, &[])
            .unwrap_or_else(|e| panic!("{values}:\n{e}"))
    };

    // Globals of other charts change nothing.
    let docs = render("global: {imageRegistry: example.com, multiTenancy: {}}");
    assert_eq!(
        rendered_policy(&docs, "fluxfence-policy"),
        Policy::azure_default()
    );

    // Each global wins over its policy value.
    let docs = render(
        "global: {configNamespace: gitops, multiTenancy: {enforce: false, defaultServiceAccount: deployer}}\npolicy: {enforce: true, configNamespace: elsewhere, defaultServiceAccount: null}",
    );
    let policy = rendered_policy(&docs, "fluxfence-policy");
    assert!(!policy.enforce);
    assert_eq!(policy.config_namespace, "gitops");
    let account = policy
        .default_service_account
        .unwrap_or_else(|| panic!("no default SA"));
    assert_eq!(
        (account.name.as_str(), account.namespaces),
        ("deployer", vec!["gitops".to_owned()])
    );

    // Without globals, the policy values as written.
    let docs =
        render("policy: {enforce: false, configNamespace: elsewhere, defaultServiceAccount: null}");
    let policy = rendered_policy(&docs, "fluxfence-policy");
    assert!(!policy.enforce);
    assert_eq!(policy.config_namespace, "elsewhere");
    assert_eq!(policy.default_service_account, None);

    // policyConfigMap.create=false: no ConfigMap, the Deployment still mounts it.
    let docs = render("policyConfigMap: {create: false}");
    assert!(of_kind(&docs, "ConfigMap").is_empty());
    let deployment = object(&docs, "Deployment", "fluxfence");
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes.as_array().is_some_and(|v| v
            .iter()
            .any(|v| v["configMap"]["name"] == "fluxfence-policy")),
        "{volumes}"
    );
}

#[test]
fn companion_creates_the_applier_and_upstream_rbac() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "imageAutomation: {enabled: true}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));

    let namespace = object(&docs, "Namespace", "cluster-config");
    assert_eq!(
        namespace["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let applier = object(&docs, "ServiceAccount", "flux-applier");
    assert_eq!(applier["metadata"]["namespace"], "cluster-config");
    let binding = object(&docs, "RoleBinding", "flux-applier");
    assert_eq!(binding["metadata"]["namespace"], "cluster-config");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");
    assert_eq!(binding["subjects"][0]["name"], "flux-applier");
    assert_eq!(binding["subjects"][0]["namespace"], "cluster-config");

    // Every controller runs as its own service account, which exists in the release namespace.
    let deployments: Vec<&Value> = of_kind(&docs, "Deployment")
        .into_iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-controller") && n != "fluxfence-controller")
        })
        .collect();
    assert_eq!(deployments.len(), 6);
    let subjects = |name: &str| -> BTreeSet<String> {
        object(&docs, "ClusterRoleBinding", name)["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                assert_eq!(s["namespace"], FLUX_NS);
                s["name"].as_str().unwrap_or("").to_owned()
            })
            .collect()
    };
    let mut controllers = BTreeSet::new();
    for deployment in &deployments {
        let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert_eq!(deployment["metadata"]["name"], account.as_str());
        assert_eq!(
            object(&docs, "ServiceAccount", &account)["metadata"]["namespace"],
            FLUX_NS
        );
        let sc = &container(deployment)["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{account}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{account}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{account}");
        controllers.insert(account);
    }
    assert_eq!(subjects(&format!("crd-controller-{FLUX_NS}")), controllers);
    let reconciler = object(
        &docs,
        "ClusterRoleBinding",
        &format!("cluster-reconciler-{FLUX_NS}"),
    );
    assert_eq!(reconciler["roleRef"]["name"], "cluster-admin");
    assert_eq!(
        subjects(&format!("cluster-reconciler-{FLUX_NS}")),
        ["helm-controller", "kustomize-controller"]
            .map(str::to_owned)
            .into_iter()
            .collect()
    );

    // Images are the tags whose CRDs ship in crds/.
    let images: BTreeMap<String, String> = deployments
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                container(d)["image"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for (controller, image) in &images {
        assert!(
            image.starts_with(&format!("ghcr.io/fluxcd/{controller}:v")),
            "{image}"
        );
    }

    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "createConfigNamespace: false\napplier: {create: false}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(of_kind(&docs, "Namespace").is_empty());
    assert!(
        of_kind(&docs, "RoleBinding")
            .iter()
            .all(|b| b["metadata"]["namespace"] != "cluster-config")
    );
}

/// Standard base64 (Secret data), padding and line breaks ignored.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes().filter(|b| !b"=\r\n ".contains(b)) {
        let value = ALPHABET
            .iter()
            .position(|&a| a == byte)
            .unwrap_or_else(|| panic!("not base64: {byte:#x}"));
        acc = (acc << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The webhook binary of this build (`cargo test --workspace` builds it next to this test).
fn webhook_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let binary = profile_dir.join(format!("fluxfence-webhook{}", std::env::consts::EXE_SUFFIX));
    binary.is_file().then_some(binary)
}

#[test]
fn rendered_certificate_policy_and_flags_start_the_webhook() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    assert_eq!(base64_decode("Zmx1eGZlbmNl"), b"fluxfence");
    let Some(helm) = helm() else { return };
    let Some(binary) = webhook_binary() else {
        // Past the test harness's capture: `cargo test` shows what it could not check.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: no fluxfence-webhook binary (cargo build -p fluxfence-webhook)\n",
        );
        return;
    };
    let docs = helm
        .template(&chart_dir("fluxfence"), "fluxfence", NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path();

    // Lay out the Secret and the ConfigMap the way the Deployment mounts them.
    let secret = object(&docs, "Secret", "fluxfence-tls");
    std::fs::create_dir_all(root.join("tls")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(root.join("policy")).unwrap_or_else(|e| panic!("{e}"));
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        let data = base64_decode(secret["data"][key].as_str().unwrap_or(""));
        assert!(!data.is_empty(), "{key}");
        std::fs::write(root.join("tls").join(key), data).unwrap_or_else(|e| panic!("{e}"));
    }
    let policy = object(&docs, "ConfigMap", "fluxfence-policy")["data"]["policy.yaml"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    std::fs::write(root.join("policy/policy.yaml"), policy).unwrap_or_else(|e| panic!("{e}"));

    // The Deployment's own arguments, with the mount points moved into the temporary directory
    // and the port to a free loopback one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let arguments: Vec<String> = args(object(&docs, "Deployment", "fluxfence"))
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                format!("--listen=127.0.0.1:{port}")
            } else {
                a.replace("=/tls/", &format!("={}/tls/", root.display()))
                    .replace("=/policy/", &format!("={}/policy/", root.display()))
            }
        })
        .collect();
    let log = root.join("webhook.log");
    let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(&binary)
        .args(&arguments)
        .env("FLUXFENCE_NAMESPACE", NS)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap_or_else(|e| panic!("{e}")))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));

    let started = Instant::now();
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("exited with {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break Ok(());
        }
        if started.elapsed() > Duration::from_secs(15) {
            break Err("not listening after 15 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Through TLS, by the Service's DNS name and with the generated CA, when curl is at hand.
    let probe = result.clone().and_then(|()| {
        let Some(curl) = fluxfence_charts_test::find_tool("CURL", "curl") else {
            return Ok(());
        };
        let host = format!("fluxfence.{NS}.svc");
        let output = Command::new(curl)
            .args([
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "5",
                "--cacert",
            ])
            .arg(root.join("tls/ca.crt"))
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}/readyz"))
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    result.unwrap_or_else(|e| panic!("webhook {e} with {arguments:?}:\n{log_text}"));
    probe.unwrap_or_else(|e| panic!("/readyz over TLS failed: {e}\n{log_text}"));
}

#[test]
fn controller_runs_two_restricted_replicas_with_least_privilege() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let deployment = object(&docs, "Deployment", "fluxfence-controller");
    assert_eq!(deployment["metadata"]["namespace"], FLUX_NS);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "fluxfence-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = container(deployment);
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let args = args(deployment);
    assert!(args.contains(&"--leader-elect=true".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--default-service-account=flux-applier".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--policy=/etc/fluxfence/policy.yaml".to_owned()),
        "{args:?}"
    );
    // The policy it mounts is the webhook's.
    let volume = &pod["volumes"][0]["configMap"]["name"];
    let configmaps: Vec<String> = of_kind(&docs, "ConfigMap")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        configmaps.iter().any(|n| volume == n.as_str()),
        "{volume} not in {configmaps:?}"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let role = object(
        &docs,
        "ClusterRole",
        &format!("fluxfence-controller-{FLUX_NS}"),
    );
    let rules = role["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules"));
    for rule in rules {
        let verbs = strings(&rule["verbs"]);
        assert!(!verbs.contains(&"*".to_owned()), "{rule}");
        assert!(
            !strings(&rule["resources"]).contains(&"*".to_owned()),
            "{rule}"
        );
        if verbs.contains(&"bind".to_owned()) {
            assert_eq!(strings(&rule["resourceNames"]), ["admin", "cluster-admin"]);
        }
    }
    let secrets = rules
        .iter()
        .find(|r| strings(&r["resources"]) == ["secrets"])
        .unwrap_or_else(|| panic!("no secrets rule"));
    assert!(!strings(&secrets["verbs"]).contains(&"watch".to_owned()));
    // Shared sources: ExternalArtifacts and their status are written, HelmReleases only read.
    let verbs_on = |group: &str, resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| strings(&r["apiGroups"]) == [group])
            .filter(|r| strings(&r["resources"]).contains(&resource.to_owned()))
            .flat_map(|r| strings(&r["verbs"]))
            .collect()
    };
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        assert!(
            verbs_on("source.toolkit.fluxcd.io", "externalartifacts").contains(&verb.to_owned())
        );
        assert!(
            verbs_on("source.toolkit.fluxcd.io", "helmrepositories").contains(&verb.to_owned())
        );
    }
    assert_eq!(
        verbs_on("source.toolkit.fluxcd.io", "externalartifacts/status"),
        ["patch"]
    );
    assert_eq!(
        verbs_on("helm.toolkit.fluxcd.io", "helmreleases"),
        ["get", "list", "watch"]
    );
    let binding = object(
        &docs,
        "ClusterRoleBinding",
        &format!("fluxfence-controller-{FLUX_NS}"),
    );
    assert_eq!(binding["subjects"][0]["name"], "fluxfence-controller");
    let lease_role = object(&docs, "Role", "fluxfence-controller-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], FLUX_NS);

    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "controller: {enabled: false}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        of_kind(&docs, "Deployment")
            .iter()
            .all(|d| d["metadata"]["name"] != "fluxfence-controller")
    );
    assert!(
        of_kind(&docs, "ClusterRole")
            .iter()
            .all(|r| r["metadata"]["name"] != format!("fluxfence-controller-{FLUX_NS}").as_str())
    );
}

#[test]
fn admission_policy_file_is_the_export_of_the_default_policy() {
    use fluxfence::export::admission_policy::{Options, export, render};
    let path = chart_dir("fluxfence").join("files/admission-policy.yaml");
    let file = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let exported =
        export(&Policy::azure_default(), &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        file == render(&exported, "the built-in policy"),
        "{} is stale: regenerate it with `cargo run -q --bin fluxfence -- export admission-policy > {}`",
        path.display(),
        "charts/fluxfence/files/admission-policy.yaml"
    );
    // The policy the chart compares its values with before it installs that file.
    let source = chart_dir("fluxfence").join("files/admission-policy.source.json");
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Policy::parse(&text, "admission-policy.source.json").unwrap_or_else(|e| panic!("{e}")),
        Policy::azure_default()
    );
}

#[test]
fn enforcement_installs_the_webhook_the_admission_policies_or_both() {
    let Some(helm) = helm() else { return };
    let webhook_kinds = [
        "Deployment",
        "Service",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ];
    let policy_kinds = [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    ];
    for (enforcement, webhook, policies) in [
        ("webhook", true, false),
        ("admission-policy", false, true),
        ("both", true, true),
    ] {
        let docs = helm
            .template(
                &chart_dir("fluxfence"),
                "fluxfence",
                NS,
                &format!("enforcement: {enforcement}\n"),
                &[],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        for kind in webhook_kinds {
            assert_eq!(
                !of_kind(&docs, kind).is_empty(),
                webhook,
                "{enforcement}: {kind}"
            );
        }
        for kind in policy_kinds {
            assert_eq!(
                !of_kind(&docs, kind).is_empty(),
                policies,
                "{enforcement}: {kind}"
            );
        }
        if policies {
            // The deny policy's binding denies, and reads the tenants ConfigMap it ships with.
            let binding = object(&docs, "ValidatingAdmissionPolicyBinding", "fluxfence-deny");
            assert_eq!(binding["spec"]["validationActions"][0], "Deny");
            let params = &binding["spec"]["paramRef"];
            let tenants = object(&docs, "ConfigMap", params["name"].as_str().unwrap_or(""));
            assert_eq!(tenants["metadata"]["namespace"], params["namespace"]);
        }
    }

    // Policy values the shipped export was not made from are refused, not silently ignored.
    let refused = helm.template(
        &chart_dir("fluxfence"),
        "fluxfence",
        NS,
        "enforcement: admission-policy\npolicy:\n  exemptNamespaces: [platform]\n",
        &[],
    );
    let error = refused.err().unwrap_or_default();
    assert!(error.contains("admissionPolicy.manifest"), "{error}");

    // A user's own export replaces the chart's copy.
    let own = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own-export\n  namespace: flux-system\n";
    let docs = helm
        .template(
            &chart_dir("fluxfence"),
            "fluxfence",
            NS,
            &format!(
                "enforcement: admission-policy\nadmissionPolicy:\n  manifest: |\n{}",
                own.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(of_kind(&docs, "ValidatingAdmissionPolicy").is_empty());
    object(&docs, "ConfigMap", "own-export");
}

#[test]
fn policy_reports_turn_on_the_controllers_audit_with_read_only_rights_on_flux() {
    let Some(helm) = helm() else { return };
    let companion = helm.companion_chart();
    let docs = helm
        .template(&companion.chart, "flux", FLUX_NS, "", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let name = format!("fluxfence-controller-policy-reports-{FLUX_NS}");
    assert!(
        of_kind(&docs, "ClusterRole")
            .iter()
            .all(|r| r["metadata"]["name"] != name.as_str()),
        "off by default"
    );
    assert!(
        !args(object(&docs, "Deployment", "fluxfence-controller"))
            .contains(&"--policy-reports".to_owned())
    );

    let docs = helm
        .template(
            &companion.chart,
            "flux",
            FLUX_NS,
            "controller: {policyReports: {enabled: true, intervalSeconds: 60}}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let args = args(object(&docs, "Deployment", "fluxfence-controller"));
    assert!(args.contains(&"--policy-reports".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--policy-report-interval-seconds=60".to_owned()),
        "{args:?}"
    );
    let role = object(&docs, "ClusterRole", &name);
    let rules = role["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules"));
    let mut flux_read: BTreeSet<(String, String)> = BTreeSet::new();
    for rule in rules {
        assert!(
            !strings(&rule["resources"]).contains(&"*".to_owned()),
            "{rule}"
        );
        let verbs = strings(&rule["verbs"]);
        for group in strings(&rule["apiGroups"]) {
            if group.ends_with(".fluxcd.io") {
                assert_eq!(verbs, ["get", "list", "watch"], "read only on Flux: {rule}");
                for resource in strings(&rule["resources"]) {
                    flux_read.insert((group.clone(), resource));
                }
            }
        }
    }
    let every_kind: BTreeSet<(String, String)> = FLUX_KINDS
        .iter()
        .map(|k| (k.group.to_owned(), k.plural.to_owned()))
        .collect();
    assert_eq!(flux_read, every_kind);
    // The audit's watch caches: listed once, then watched.
    let core = rules
        .iter()
        .find(|r| strings(&r["resources"]) == ["serviceaccounts", "namespaces"])
        .unwrap_or_else(|| panic!("no serviceaccounts and namespaces rule"));
    assert_eq!(strings(&core["verbs"]), ["list", "watch"]);
    let reports = rules
        .iter()
        .find(|r| strings(&r["resources"]) == ["policyreports"])
        .unwrap_or_else(|| panic!("no policyreports rule"));
    assert_eq!(
        strings(&reports["verbs"]),
        ["get", "list", "create", "patch", "delete"]
    );
    let binding = object(&docs, "ClusterRoleBinding", &name);
    assert_eq!(binding["subjects"][0]["name"], "fluxfence-controller");
}

#[test]
fn the_service_account_cache_gets_its_token_its_rbac_and_egress_only_when_on() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir("fluxfence");
    let off = helm
        .template(
            &chart,
            "fluxfence",
            NS,
            "networkPolicy: {enabled: true}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let deployment = object(&off, "Deployment", "fluxfence");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    assert!(!args(deployment).contains(&"--service-account-cache".to_owned()));
    assert!(of_kind(&off, "ClusterRole").is_empty());
    assert_eq!(
        object(&off, "NetworkPolicy", "fluxfence")["spec"]["egress"],
        serde_json::json!([])
    );

    let on = helm
        .template(
            &chart,
            "fluxfence",
            NS,
            "networkPolicy: {enabled: true}\nserviceAccountCache: {enabled: true}",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let deployment = object(&on, "Deployment", "fluxfence");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    assert!(args(deployment).contains(&"--service-account-cache".to_owned()));
    let role = object(
        &on,
        "ClusterRole",
        &format!("fluxfence-service-accounts-{NS}"),
    );
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["list", "watch"]}])
    );
    let egress = &object(&on, "NetworkPolicy", "fluxfence")["spec"]["egress"][0]["ports"];
    assert_eq!(
        egress,
        &serde_json::json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}])
    );
}
