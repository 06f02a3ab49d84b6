//! The exported admission policies against the engine, rule by rule.
//!
//! Every Flux object of every fixture under `testdata/rules` (with the fixture's policy) and
//! every AdmissionReview under `testdata/admission` (with the default and the per-tenant
//! policy) is judged twice: by the engine as the webhook calls it, and by the CEL of
//! `fluxfence export admission-policy`, evaluated here as the API server evaluates a
//! ValidatingAdmissionPolicy — match constraints, the binding's namespace selector, match
//! conditions, variables in order, validations — with `object`, `oldObject`, `request` and
//! `params` bound as the API server binds them: untyped maps of the JSON, keys unescaped.
//! For each rule the verdict (denied, warned, kept by a ratcheted update, nothing) and the
//! findings (pointer, message, fix) must be equal; the mutating policy must match exactly
//! the objects the mutating webhook gives a service account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use fluxfence::Policy;
use fluxfence::export::admission_policy::{self, Export, Options};
use fluxfence::kinds::FluxKind;
use fluxfence::model::{FluxObject, NamespaceOrigin};
use fluxfence::rules::{self, Context as RuleContext, Subject};
use fluxfence::{Finding, Severity};
use fluxfence_webhook::review::{Endpoint, Verdict, review};
use kube_cel::KubeCelExt;
use kube_cel::cel::{Context, Program, Value as CelValue};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How one rule judged one object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleVerdict {
    Denied(Vec<String>),
    Warned(Vec<String>),
    /// Admitted by a ratcheted update, the findings sent as warnings.
    Kept(Vec<String>),
}

type Verdicts = BTreeMap<&'static str, RuleVerdict>;

/// What the admission request says, as the API server hands it to CEL.
struct Admission {
    operation: &'static str,
    namespace: String,
    object: Value,
    old_object: Value,
}

/// A finding as the exported CEL writes it.
fn finding_text(finding: &Finding) -> String {
    format!(
        "at {}: {}. Fix: {}",
        finding.pointer, finding.message, finding.help
    )
}

fn engine_findings(object: &FluxObject, namespace: &str, policy: &Policy) -> Vec<Finding> {
    rules::check_object(
        &Subject {
            object,
            namespace,
            origin: &NamespaceOrigin::AdmissionRequest,
        },
        &RuleContext {
            policy,
            declared_service_accounts: &HashSet::new(),
            trust_explicit_service_accounts: true,
            values_are_final: true,
            service_accounts_listed: false,
            vouched_copies: &HashSet::new(),
        },
    )
}

/// The engine's verdicts: deny findings denied (or kept, when the webhook ratchets the
/// update), warn findings warned; only the rules the export covers.
fn engine_verdicts(findings: &[Finding], ratcheted: bool) -> Verdicts {
    let mut verdicts = Verdicts::new();
    for rule in fluxfence::export::cel::RULES {
        let texts: Vec<String> = findings
            .iter()
            .filter(|f| f.code == rule.code)
            .map(finding_text)
            .collect();
        let Some(first) = findings.iter().find(|f| f.code == rule.code) else {
            continue;
        };
        let verdict = match (first.severity, ratcheted) {
            (Severity::Deny, false) => RuleVerdict::Denied(texts),
            (Severity::Deny, true) => RuleVerdict::Kept(texts),
            (Severity::Warn, _) => RuleVerdict::Warned(texts),
            (Severity::Off, _) => continue,
        };
        verdicts.insert(rule.code, verdict);
    }
    verdicts
}

/// A CEL value as JSON, for comparing lists of findings.
fn strings(value: &CelValue) -> Vec<String> {
    match value {
        CelValue::List(items) => items
            .iter()
            .map(|item| match item {
                CelValue::String(s) => s.to_string(),
                other => panic!("a finding is not a string: {other:?}"),
            })
            .collect(),
        other => panic!("findings are not a list: {other:?}"),
    }
}

thread_local! {
    /// Compiled expressions: every object is judged by the same few hundred.
    static PROGRAMS: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<Program>>> =
        Default::default();
}

fn eval(context: &Context, expression: &str) -> Result<CelValue, String> {
    let cached = PROGRAMS.with(|p| p.borrow().get(expression).cloned());
    let program = match cached {
        Some(program) => program,
        None => {
            let program = std::rc::Rc::new(
                Program::compile(expression).map_err(|e| format!("compile: {e:?}"))?,
            );
            PROGRAMS.with(|p| {
                p.borrow_mut()
                    .insert(expression.to_owned(), std::rc::Rc::clone(&program))
            });
            program
        }
    };
    program
        .execute(context)
        .map_err(|e| format!("{e:?}: {expression}"))
}

fn eval_bool(context: &Context, expression: &str) -> bool {
    match eval(context, expression) {
        Ok(CelValue::Bool(b)) => b,
        other => panic!("`{expression}` is not a bool: {other:?}"),
    }
}

/// The context an admission policy's expressions see; `variables` is added as they are
/// evaluated.
fn base_context(admission: &Admission, params: &Value) -> Context<'static> {
    let mut context = Context::default().with_all();
    context
        .add_variable("object", admission.object.clone())
        .unwrap();
    context
        .add_variable("oldObject", admission.old_object.clone())
        .unwrap();
    context
        .add_variable(
            "request",
            json!({ "operation": admission.operation, "namespace": admission.namespace }),
        )
        .unwrap();
    context.add_variable("params", params.clone()).unwrap();
    context.add_variable("variables", json!({})).unwrap();
    context
}

/// Whether `rules` (`resourceRules`) match the object's group, plural and the operation.
/// The version is not compared: the policies say `matchPolicy: Equivalent`, under which the
/// API server converts a request in an unlisted version of the resource to a listed one its
/// CRD serves (the fixtures' future versions stand for a CRD serving both).
fn resource_rules_match(rules: &Value, admission: &Admission) -> bool {
    let api_version = admission.object["apiVersion"].as_str().unwrap_or("");
    let (group, _version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = admission.object["kind"].as_str().unwrap_or("");
    let Some(flux) = FluxKind::from_type(api_version, kind) else {
        return false;
    };
    rules.as_array().unwrap().iter().any(|rule| {
        let has = |field: &str, value: &str| {
            rule[field]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == value || v == "*")
        };
        has("apiGroups", group)
            && has("resources", flux.info().plural)
            && has("operations", admission.operation)
    })
}

/// Whether a `namespaceSelector` (only `kubernetes.io/metadata.name NotIn` is exported)
/// selects the namespace.
fn namespace_selected(selector: &Value, namespace: &str) -> bool {
    let Some(expressions) = selector["matchExpressions"].as_array() else {
        return true;
    };
    expressions.iter().all(|e| {
        assert_eq!(e["key"], "kubernetes.io/metadata.name");
        assert_eq!(e["operator"], "NotIn");
        !e["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == namespace)
    })
}

fn binding_of<'a>(export: &'a Export, kind: &str, name: &str) -> &'a Value {
    export
        .objects
        .iter()
        .find(|o| o["kind"] == kind && o["spec"]["policyName"] == name)
        .unwrap_or_else(|| panic!("no {kind} for {name}"))
}

fn match_conditions_hold(context: &Context, spec: &Value) -> bool {
    spec["matchConditions"]
        .as_array()
        .map(|conditions| {
            conditions
                .iter()
                .all(|c| eval_bool(context, c["expression"].as_str().unwrap()))
        })
        .unwrap_or(true)
}

/// The exported policies' verdicts, rule by rule.
fn policy_verdicts(export: &Export, admission: &Admission) -> Verdicts {
    let params = export
        .objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .cloned()
        .unwrap_or(Value::Null);
    let mut verdicts = Verdicts::new();
    for policy in export
        .objects
        .iter()
        .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
    {
        let name = policy["metadata"]["name"].as_str().unwrap();
        let spec = &policy["spec"];
        let binding = binding_of(export, "ValidatingAdmissionPolicyBinding", name);
        if !resource_rules_match(&spec["matchConstraints"]["resourceRules"], admission)
            || !namespace_selected(
                &binding["spec"]["matchResources"]["namespaceSelector"],
                &admission.namespace,
            )
        {
            continue;
        }
        let mut context = base_context(admission, &params);
        if !match_conditions_hold(&context, spec) {
            continue;
        }
        let mut variables = serde_json::Map::new();
        for variable in spec["variables"].as_array().unwrap() {
            let value = eval(&context, variable["expression"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{name}: variable {}: {e}", variable["name"]));
            variables.insert(
                variable["name"].as_str().unwrap().to_owned(),
                cel_to_json(&value),
            );
            context
                .add_variable("variables", Value::Object(variables.clone()))
                .unwrap();
        }
        let actions = binding["spec"]["validationActions"].as_array().unwrap();
        for validation in spec["validations"].as_array().unwrap() {
            let expression = validation["expression"].as_str().unwrap();
            if eval_bool(&context, expression) {
                continue;
            }
            let variable = expression
                .strip_prefix("variables.")
                .and_then(|rest| rest.split('.').next())
                .unwrap();
            let code = fluxfence::export::cel::RULES
                .iter()
                .find(|r| r.code.eq_ignore_ascii_case(variable))
                .unwrap()
                .code;
            let findings = strings(&eval(&context, &format!("variables.{variable}")).unwrap());
            let message = match eval(&context, validation["messageExpression"].as_str().unwrap()) {
                Ok(CelValue::String(s)) => s.to_string(),
                other => panic!("{name}: messageExpression: {other:?}"),
            };
            assert!(message.starts_with(code), "{message}");
            assert!(
                !message.contains('\n'),
                "the API server drops a message with a line break: {message}"
            );
            for finding in &findings {
                assert!(message.contains(finding.as_str()), "{message}");
            }
            let verdict = if name.ends_with("kept") {
                RuleVerdict::Kept(findings)
            } else if actions.iter().any(|a| a == "Deny") {
                RuleVerdict::Denied(findings)
            } else {
                RuleVerdict::Warned(findings)
            };
            let earlier = verdicts.insert(code, verdict);
            assert!(earlier.is_none(), "{code} reported by two policies");
        }
    }
    verdicts
}

/// Whether the exported MutatingAdmissionPolicy would default the object's service account.
fn mutating_policy_matches(export: &Export, admission: &Admission) -> bool {
    let Some(policy) = export
        .objects
        .iter()
        .find(|o| o["kind"] == "MutatingAdmissionPolicy")
    else {
        return false;
    };
    let name = policy["metadata"]["name"].as_str().unwrap();
    let binding = binding_of(export, "MutatingAdmissionPolicyBinding", name);
    resource_rules_match(
        &policy["spec"]["matchConstraints"]["resourceRules"],
        admission,
    ) && namespace_selected(
        &binding["spec"]["matchResources"]["namespaceSelector"],
        &admission.namespace,
    ) && match_conditions_hold(&base_context(admission, &Value::Null), &policy["spec"])
}

fn cel_to_json(value: &CelValue) -> Value {
    match value {
        CelValue::List(items) => Value::Array(items.iter().map(cel_to_json).collect()),
        CelValue::String(s) => Value::String(s.to_string()),
        CelValue::Bool(b) => Value::Bool(*b),
        CelValue::Int(i) => json!(i),
        CelValue::Null => Value::Null,
        other => panic!("a variable of an unexpected type: {other:?}"),
    }
}

fn export(policy: &Policy) -> Export {
    admission_policy::export(policy, &Options::default()).unwrap()
}

/// `# policy: file` of a rule fixture (relative to it), else the built-in policy.
fn fixture_policy(path: &Path, text: &str) -> Policy {
    let header = if path.extension().is_some_and(|e| e == "json") {
        std::fs::read_to_string(path.with_extension("json.expect")).unwrap_or_default()
    } else {
        text.to_owned()
    };
    let file = header
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .find_map(|l| l.strip_prefix("# policy:"))
        .map(str::trim);
    match file {
        Some(file) => Policy::load(&path.parent().unwrap().join(file)).unwrap(),
        None => Policy::azure_default(),
    }
}

fn compare(case: &str, engine: &Verdicts, exported: &Verdicts, failures: &mut Vec<String>) {
    for rule in fluxfence::export::cel::RULES {
        let (a, b) = (engine.get(rule.code), exported.get(rule.code));
        if a != b {
            failures.push(format!(
                "{case}: {}\n  engine: {a:?}\n  policy: {b:?}",
                rule.code
            ));
        }
    }
}

#[test]
fn rule_fixtures_get_the_engines_verdict_rule_by_rule() {
    let mut failures = Vec::new();
    let mut judged = 0;
    let mut judged_rules = HashSet::new();
    for code_dir in std::fs::read_dir(root().join("testdata/rules")).unwrap() {
        let code_dir = code_dir.unwrap().path();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&code_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                (name.ends_with(".yaml") && !name.ends_with(".policy.yaml"))
                    || name.ends_with(".json")
            })
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let policy = fixture_policy(&path, &text);
            let exported = export(&policy);
            let mut documents = Vec::new();
            if fluxfence::yaml::load_documents(&text, |d| documents.push(d)).is_err() {
                continue;
            }
            for (index, document) in documents.into_iter().enumerate() {
                let json = document.root.to_json();
                let Some(object) = FluxObject::from_node(document.root) else {
                    continue;
                };
                let namespace = object
                    .declared_namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                let findings = engine_findings(&object, &namespace, &policy);
                judged_rules.extend(findings.iter().map(|f| f.code));
                let admission = Admission {
                    operation: "CREATE",
                    namespace,
                    object: json,
                    old_object: Value::Null,
                };
                let case = format!("{} (document {})", path.display(), index + 1);
                compare(
                    &case,
                    &engine_verdicts(&findings, false),
                    &policy_verdicts(&exported, &admission),
                    &mut failures,
                );
                let defaults = findings
                    .iter()
                    .any(|f| f.code == "FF110" && f.fix.is_some());
                if defaults != mutating_policy_matches(&exported, &admission) {
                    failures.push(format!(
                        "{case}: the webhook defaults the service account: {defaults}, the mutating policy: {}",
                        !defaults
                    ));
                }
                judged += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(judged > 50, "only {judged} objects judged");
    for rule in fluxfence::export::cel::RULES {
        assert!(
            judged_rules.contains(rule.code),
            "no fixture fires {}",
            rule.code
        );
    }
}

/// An AdmissionReview fixture as the webhook reads it, or `None` when the API server would
/// not send it to a validating admission policy at all.
fn admission_fixture(path: &Path) -> Option<(AdmissionRequest<DynamicObject>, Admission)> {
    let text = std::fs::read_to_string(path).unwrap();
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(&text).ok()?;
    let request: AdmissionRequest<DynamicObject> = review.try_into().ok()?;
    let raw: Value = serde_json::from_str(&text).unwrap();
    let operation = match raw["request"]["operation"].as_str()? {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        // Not matched: the policies match creates and updates only.
        _ => return None,
    };
    // Subresources are not matched: the policies name the resources alone.
    if request.sub_resource.is_some() {
        return None;
    }
    let admission = Admission {
        operation,
        namespace: request.namespace.clone().unwrap_or_default(),
        object: raw["request"]["object"].clone(),
        old_object: raw["request"]["oldObject"].clone(),
    };
    Some((request, admission))
}

#[test]
fn admission_fixtures_get_the_webhooks_verdict_rule_by_rule() {
    let per_tenant = Policy::load(&root().join("policies/examples/per-tenant.yaml")).unwrap();
    let mut failures = Vec::new();
    let mut judged = 0;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("testdata/admission"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let Some((request, admission)) = admission_fixture(&path) else {
            continue;
        };
        for (policy_name, policy) in [
            ("default", Policy::azure_default()),
            ("per-tenant", per_tenant.clone()),
        ] {
            // No webhook runs beside the policies, so no namespace is the webhook's own.
            let outcome = review(Endpoint::Validate, &request, &policy, None);
            if outcome.verdict == Verdict::Error {
                // Unreadable for the engine: the API server refuses such an object against
                // its CRD schema before any admission policy sees it.
                continue;
            }
            let Some(object) = fluxfence::yaml::Node::from_json(&admission.object)
                .ok()
                .and_then(FluxObject::from_node)
            else {
                continue;
            };
            let findings = if outcome.verdict == Verdict::Skipped {
                Vec::new()
            } else {
                engine_findings(&object, &admission.namespace, &policy)
            };
            let engine = engine_verdicts(&findings, outcome.verdict == Verdict::Ratcheted);
            let exported = export(&policy);
            let case = format!("{} ({policy_name} policy)", path.display());
            compare(
                &case,
                &engine,
                &policy_verdicts(&exported, &admission),
                &mut failures,
            );
            let mutated = review(Endpoint::Mutate, &request, &policy, None);
            let defaults = mutated.response.patch.as_ref().is_some_and(|patch| {
                String::from_utf8_lossy(patch).contains("/spec/serviceAccountName")
            });
            if defaults != mutating_policy_matches(&exported, &admission) {
                failures.push(format!(
                    "{case}: the webhook defaults the service account: {defaults}, the mutating policy: {}",
                    !defaults
                ));
            }
            judged += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(judged >= 30, "only {judged} reviews judged");
}

/// The trap the export avoids: in a ValidatingAdmissionPolicy `object` is an untyped map of
/// the stored JSON, so `has()` of the CRD-validation spelling `__namespace__` is false though
/// the reference names another namespace — the natural FF101 policy admits everything.
#[test]
fn the_namespace_field_is_found_where_the_escaped_spelling_is_not() {
    let path = root().join("testdata/admission/kustomization-cross-namespace-source.json");
    let (_, admission) = admission_fixture(&path).unwrap();
    let context = base_context(&admission, &Value::Null);
    assert!(!eval_bool(
        &context,
        "has(object.spec.sourceRef.__namespace__)"
    ));
    assert!(eval_bool(&context, "'namespace' in object.spec.sourceRef"));
    assert!(eval_bool(
        &context,
        "object.spec.sourceRef['namespace'] == 'flux-system'"
    ));
    let naive = "!has(object.spec.sourceRef.__namespace__) || object.spec.sourceRef.__namespace__ == request.namespace";
    assert!(eval_bool(&context, naive), "the naive rule admits it");

    let exported = export(&Policy::azure_default());
    let verdicts = policy_verdicts(&exported, &admission);
    assert!(
        matches!(verdicts.get("FF101"), Some(RuleVerdict::Denied(f)) if f.len() == 1),
        "{verdicts:?}"
    );
    // No exported expression spells a reserved word as a field selector or escapes one.
    let text = admission_policy::render(&exported, "test");
    assert!(!text.contains("__namespace__"));
    assert!(
        !text
            .replace("request.namespace", "")
            .replace("'.namespaces'", "")
            .contains(".namespace"),
        "a `.namespace` selector"
    );
}

/// The YAML the command prints reads back as the objects the tests judge.
#[test]
fn the_rendered_yaml_reads_back_as_the_exported_objects() {
    for policy in [
        Policy::azure_default(),
        Policy::load(&root().join("policies/examples/per-tenant.yaml")).unwrap(),
    ] {
        let exported = export(&policy);
        let text = admission_policy::render(&exported, "test");
        let mut documents = Vec::new();
        fluxfence::yaml::load_documents(&text, |d| documents.push(d.root.to_json())).unwrap();
        assert_eq!(documents, exported.objects);
        assert!(text.starts_with("# "), "the notes come first, as comments");
    }
}

/// Every fixture object of `testdata/rules`, with the fixture's policy: (policy file or
/// `None` for the built-in one, path, document number, the object as JSON, its namespace).
fn rule_fixture_objects() -> Vec<(Option<PathBuf>, String, Value, String)> {
    let mut objects = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("testdata/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(".yaml") && !name.ends_with(".policy.yaml")
            })
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let policy_file = text
                .lines()
                .take_while(|l| l.starts_with('#') || l.trim().is_empty())
                .find_map(|l| l.strip_prefix("# policy:"))
                .map(|f| dir.join(f.trim()));
            let mut documents = Vec::new();
            if fluxfence::yaml::load_documents(&text, |d| documents.push(d)).is_err() {
                continue;
            }
            for (index, document) in documents.into_iter().enumerate() {
                let json = document.root.to_json();
                let Some(object) = FluxObject::from_node(document.root) else {
                    continue;
                };
                let namespace = object
                    .declared_namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                let case = format!("{} (document {})", path.display(), index + 1);
                objects.push((policy_file.clone(), case, json, namespace));
            }
        }
    }
    objects
}

mod common;

/// At a real API server (envtest convention: `KUBE_APISERVER` and `ETCD` name the binaries,
/// `KUBECTL` and `FLUX_CRDS` as in the e2e test): the export of each fixture policy is
/// accepted, a server-side dry-run create of each fixture object is denied exactly when the
/// engine denies it (with a rule the engine denies with) and otherwise warned with exactly the
/// engine's warn rules, and the mutating policy defaults the service account.
/// `FLUXFENCE_MUTATING_API_VERSION=v1beta1` targets Kubernetes 1.34-1.35 (it turns the
/// feature gate and the API on).
#[test]
fn a_real_api_server_accepts_the_export_and_gives_the_engines_verdicts() {
    use common::cluster::{
        Kubectl, binaries_or_skip, find_kubectl, install_flux_crds, start_apiserver_with,
        start_etcd, wait_until, write_kubeconfig,
    };
    use fluxfence::export::admission_policy::MutatingApiVersion;
    use std::time::Duration;

    let Some((apiserver, etcd)) = binaries_or_skip() else {
        return;
    };
    let kubectl = find_kubectl().expect("KUBE_APISERVER is set but no kubectl: set KUBECTL");
    let beta = std::env::var("FLUXFENCE_MUTATING_API_VERSION").is_ok_and(|v| v == "v1beta1");
    let mutating_api_version = if beta {
        MutatingApiVersion::V1beta1
    } else {
        MutatingApiVersion::V1
    };
    let extra: Vec<String> = if beta {
        vec![
            "--feature-gates=MutatingAdmissionPolicy=true".to_owned(),
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true".to_owned(),
        ]
    } else {
        Vec::new()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = common::Pki::new("fluxfence admission-policy e2e CA");
    let (mut etcd, etcd_url) = start_etcd(Path::new(&etcd), dir);
    let (mut apiserver, port) =
        start_apiserver_with(Path::new(&apiserver), dir, &etcd_url, &pki, &extra);
    let kubectl = Kubectl {
        binary: kubectl,
        kubeconfig: write_kubeconfig(dir, port, &pki),
    };
    let mut processes = [&mut etcd, &mut apiserver];
    wait_until(
        &mut processes,
        Duration::from_secs(90),
        "kube-apiserver /readyz",
        || {
            kubectl
                .run(&["get", "--raw", "/readyz"], None)
                .status
                .success()
        },
    );
    install_flux_crds(&kubectl);

    let objects = rule_fixture_objects();
    let mut namespaces: Vec<&str> = objects.iter().map(|o| o.3.as_str()).collect();
    namespaces.extend(["flux-system", "cluster-config", "apps"]);
    namespaces.sort_unstable();
    namespaces.dedup();
    for namespace in namespaces {
        // `default` exists already.
        let _ = kubectl.run(&["create", "namespace", namespace], None);
    }

    // A dry-run create: (admitted, the API server's words, the object it would store).
    let dry_run_stored = |object: &Value| -> (bool, String, Value) {
        let out = kubectl.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&object.to_string()),
        );
        let stored = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            stored,
        )
    };
    let dry_run = |object: &Value| -> (bool, String) {
        let (admitted, text, _) = dry_run_stored(object);
        (admitted, text)
    };
    let trap = admission_fixture(
        &root().join("testdata/admission/kustomization-cross-namespace-source.json"),
    )
    .unwrap()
    .1
    .object;

    let mut policies: Vec<Option<PathBuf>> = objects.iter().map(|o| o.0.clone()).collect();
    policies.sort();
    policies.dedup();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (round, policy_file) in policies.iter().enumerate() {
        let policy = match policy_file {
            Some(path) => Policy::load(path).unwrap(),
            None => Policy::azure_default(),
        };
        // A prefix per policy: the API server names the policy in its answers, so the probe
        // below tells when this policy, and no earlier one, is in effect.
        let prefix = format!("ff{round}-");
        let options = Options {
            name_prefix: prefix.clone(),
            params_namespace: "flux-system".to_owned(),
            mutating_api_version,
        };
        let exported = admission_policy::export(&policy, &options).unwrap();
        // One kind at a time: a server without the mutating API refuses a list naming it.
        for kind in [
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
            "mutatingadmissionpolicies",
            "mutatingadmissionpolicybindings",
        ] {
            let _ = kubectl.run(
                &[
                    "delete",
                    kind,
                    "-l",
                    "app.kubernetes.io/managed-by=fluxfence-export",
                ],
                None,
            );
        }
        // A policy that does not enforce exports nothing, and kubectl refuses an empty apply.
        if !exported.objects.is_empty() {
            let text = admission_policy::render(&exported, "the e2e test");
            let applied = kubectl.run(&["apply", "-f", "-"], Some(&text));
            assert!(
                applied.status.success(),
                "the API server refused the export of {policy_file:?}: {}",
                String::from_utf8_lossy(&applied.stderr)
            );
        }
        let trap_denied = engine_findings(
            &FluxObject::from_node(fluxfence::yaml::Node::from_json(&trap).unwrap()).unwrap(),
            "apps",
            &policy,
        )
        .iter()
        .any(|f| f.severity == Severity::Deny);
        wait_until(
            &mut processes,
            Duration::from_secs(60),
            "the policies to take effect",
            || {
                let (admitted, text) = dry_run(&trap);
                let stale = (0..round).any(|r| text.contains(&format!("'ff{r}-")));
                !stale && (admitted != trap_denied) && (!trap_denied || text.contains(&prefix))
            },
        );

        for (_, case, object, namespace) in objects.iter().filter(|o| &o.0 == policy_file) {
            let mut object = object.clone();
            object["metadata"]["namespace"] = json!(namespace);
            let (admitted, text) = dry_run(&object);
            if !admitted && !text.contains("ValidatingAdmissionPolicy") {
                // Refused before admission (schema, a version the CRDs no longer serve).
                continue;
            }
            let flux =
                FluxObject::from_node(fluxfence::yaml::Node::from_json(&object).unwrap()).unwrap();
            let findings = engine_findings(&flux, namespace, &policy);
            let denies: Vec<&str> = findings
                .iter()
                .filter(|f| f.severity == Severity::Deny)
                .map(|f| f.code)
                .collect();
            let warns: BTreeMap<&str, ()> = findings
                .iter()
                .filter(|f| f.severity == Severity::Warn)
                .map(|f| (f.code, ()))
                .collect();
            compared += 1;
            let engine_denies = !denies.is_empty();
            if admitted == engine_denies {
                failures.push(format!(
                    "{case}: admitted {admitted}, engine denies {denies:?}: {text}"
                ));
                continue;
            }
            if !admitted {
                if !denies
                    .iter()
                    .any(|code| text.contains(&format!("denied request: {code} ")))
                {
                    failures.push(format!(
                        "{case}: denied with another rule than {denies:?}: {text}"
                    ));
                }
                continue;
            }
            for rule in fluxfence::export::cel::RULES {
                let warned = text.contains(&format!("': {} ", rule.code));
                if warned != warns.contains_key(rule.code) {
                    failures.push(format!("{case}: {} warned {warned}: {text}", rule.code));
                }
            }
        }
        // The mutating policy writes the default account where the engine would.
        if let (Some(default), true) = (&policy.default_service_account, policy.enforce)
            && let Some(namespace) = default.namespaces.first().filter(|n| !n.contains('*'))
        {
            let object = json!({
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": "defaulted", "namespace": namespace},
                "spec": {"interval": "10m", "path": "./", "prune": true,
                         "sourceRef": {"kind": "GitRepository", "name": "fleet"}},
            });
            let mutates = exported
                .objects
                .iter()
                .any(|o| o["kind"] == "MutatingAdmissionPolicy");
            // Checked where the engine admits the defaulted object (a dry run that another
            // rule denies shows no object).
            let mut defaulted = object.clone();
            defaulted["spec"]["serviceAccountName"] = json!(default.name);
            let defaulted_denied = engine_findings(
                &FluxObject::from_node(fluxfence::yaml::Node::from_json(&defaulted).unwrap())
                    .unwrap(),
                namespace,
                &policy,
            )
            .iter()
            .any(|f| f.severity == Severity::Deny);
            if mutates && !defaulted_denied {
                // Registered asynchronously, like the validating policies.
                wait_until(
                    &mut processes,
                    Duration::from_secs(60),
                    "the mutating policy to default the service account",
                    || {
                        let (admitted, _, stored) = dry_run_stored(&object);
                        admitted && stored["spec"]["serviceAccountName"] == json!(default.name)
                    },
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared > 30, "only {compared} objects reached admission");
}

/// The comparison can fail: a policy whose FF101 no longer compares the reference's namespace
/// with the object's is told apart from the engine on the fixtures.
#[test]
fn a_changed_rule_is_caught() {
    let policy = Policy::azure_default();
    let mut exported = export(&policy);
    let mut changed = 0;
    for object in &mut exported.objects {
        for variable in object["spec"]["variables"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if variable["name"] == "ff101" {
                let expression = variable["expression"].as_str().unwrap();
                let broken = expression.replace(
                    "x.r['namespace'] != request.namespace",
                    "x.r['namespace'] == request.namespace",
                );
                assert_ne!(broken, expression);
                variable["expression"] = json!(broken);
                changed += 1;
            }
        }
    }
    assert!(changed > 0);
    let path = root().join("testdata/admission/kustomization-cross-namespace-source.json");
    let (_, admission) = admission_fixture(&path).unwrap();
    let object =
        FluxObject::from_node(fluxfence::yaml::Node::from_json(&admission.object).unwrap())
            .unwrap();
    let engine = engine_verdicts(
        &engine_findings(&object, &admission.namespace, &policy),
        false,
    );
    let mut failures = Vec::new();
    compare(
        "changed FF101",
        &engine,
        &policy_verdicts(&exported, &admission),
        &mut failures,
    );
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("FF101"), "{failures:?}");
}

/// Exempt namespaces given as patterns are left out by a match condition (a namespace
/// selector names namespaces only), with the engine's verdict on both sides of the pattern.
#[test]
fn exempt_patterns_are_left_out_as_the_engine_leaves_them_out() {
    let policy = Policy::parse(
        "exemptNamespaces: [flux-system, 'platform-*']\n\
         defaultServiceAccount: {name: flux-applier, namespaces: ['*']}\n",
        "policy.yaml",
    )
    .unwrap();
    let exported = export(&policy);
    let path = root().join("testdata/admission/kustomization-cross-namespace-source.json");
    let (_, template) = admission_fixture(&path).unwrap();
    for (namespace, denied) in [
        // FF101 judges exempt namespaces too (Flux's cross-namespace refusal is
        // controller-wide); the verdicts compared below hold the skipped rules to the engine.
        ("platform-tools", true),
        ("platform", true),
        ("apps", true),
    ] {
        let mut object = template.object.clone();
        object["metadata"]["namespace"] = json!(namespace);
        let admission = Admission {
            operation: "CREATE",
            namespace: namespace.to_owned(),
            object,
            old_object: Value::Null,
        };
        let flux =
            FluxObject::from_node(fluxfence::yaml::Node::from_json(&admission.object).unwrap())
                .unwrap();
        let engine = engine_verdicts(&engine_findings(&flux, namespace, &policy), false);
        let exported_verdicts = policy_verdicts(&exported, &admission);
        assert_eq!(engine, exported_verdicts, "{namespace}");
        assert_eq!(
            engine.contains_key("FF101"),
            denied,
            "{namespace}: {engine:?}"
        );
    }
}

/// An update that writes out the default account the old object left implicit keeps the old
/// object's violations, for the webhook (it judges the old object as its mutation leaves it)
/// and for the policies (`…OldDefaulted`).
#[test]
fn writing_out_the_default_account_keeps_the_old_violations() {
    let path = root().join("testdata/admission/kustomization-cross-namespace-source.json");
    let mut raw: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut old = raw["request"]["object"].clone();
    old["spec"]
        .as_object_mut()
        .unwrap()
        .remove("serviceAccountName");
    raw["request"]["operation"] = json!("UPDATE");
    raw["request"]["oldObject"] = old;
    let dir = tempfile::tempdir().unwrap();
    let update = dir.path().join("update.json");
    std::fs::write(&update, raw.to_string()).unwrap();
    let (request, admission) = admission_fixture(&update).unwrap();

    let policy = Policy::azure_default();
    let outcome = review(Endpoint::Validate, &request, &policy, None);
    assert_eq!(
        outcome.verdict,
        Verdict::Ratcheted,
        "{:?}",
        outcome.messages
    );
    let object =
        FluxObject::from_node(fluxfence::yaml::Node::from_json(&admission.object).unwrap())
            .unwrap();
    let engine = engine_verdicts(&engine_findings(&object, "apps", &policy), true);
    assert!(
        matches!(engine.get("FF111"), Some(RuleVerdict::Kept(_))),
        "{engine:?}"
    );
    assert_eq!(engine, policy_verdicts(&export(&policy), &admission));
}
