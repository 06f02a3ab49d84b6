//! `fluxfence export admission-policy`: the policy as Kubernetes' in-process CEL admission
//! (`ValidatingAdmissionPolicy`, `MutatingAdmissionPolicy`), for clusters that run no webhook.
//!
//! A binding's `validationActions` hold for every validation of its policy, so the rules go
//! into one policy per severity: `…deny` (action `Deny`) and `…warn` (`Warn`), one validation
//! per rule. With `ratchetUpdates` an update that brings no new deny finding is admitted, as
//! the webhook admits it, and `…kept` (`Warn`) sends the findings it keeps as warnings. The
//! tenants are a ConfigMap every binding reads as its `paramRef`: a tenant change is a
//! ConfigMap change. The rest of the policy (exempt namespaces, service accounts, shared
//! sources, severities) is written into the objects.

use serde_json::{Value, json};

use super::cel::{self, RuleCel};
use crate::diagnostic::Severity;
use crate::kinds::FluxKind;
use crate::policy::Policy;

/// Which API version the MutatingAdmissionPolicy is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MutatingApiVersion {
    /// `admissionregistration.k8s.io/v1`: Kubernetes 1.36 and later, on by default.
    V1,
    /// `admissionregistration.k8s.io/v1beta1`: Kubernetes 1.34 and 1.35, where the API and the
    /// `MutatingAdmissionPolicy` feature gate must be turned on.
    V1beta1,
}

impl MutatingApiVersion {
    fn api_version(self) -> &'static str {
        match self {
            MutatingApiVersion::V1 => "admissionregistration.k8s.io/v1",
            MutatingApiVersion::V1beta1 => "admissionregistration.k8s.io/v1beta1",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Prefix of every object's name (`fluxfence-` gives `fluxfence-ff101`).
    pub name_prefix: String,
    /// Where the tenants ConfigMap lives.
    pub params_namespace: String,
    pub mutating_api_version: MutatingApiVersion,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            name_prefix: "fluxfence-".to_owned(),
            params_namespace: "flux-system".to_owned(),
            mutating_api_version: MutatingApiVersion::V1,
        }
    }
}

/// The exported objects and what they leave out.
#[derive(Debug)]
pub struct Export {
    pub objects: Vec<Value>,
    /// Why rules or parts of rules are not in `objects`, one line each.
    pub notes: Vec<String>,
}

/// A policy that cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "tenant name `{0}` cannot be a ConfigMap key; use letters, digits, `-`, `_` and `.` only"
    )]
    TenantName(String),
    #[error(
        "--name-prefix `{0}` does not make valid object names; use lowercase letters, digits and `-`"
    )]
    NamePrefix(String),
}

/// The policy as admission policies.
pub fn export(policy: &Policy, options: &Options) -> Result<Export, ExportError> {
    check_prefix(&options.name_prefix)?;
    let mut notes: Vec<String> = cel::NOT_EXPRESSIBLE
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if !policy.enforce {
        notes.insert(
            0,
            "the policy does not enforce (`enforce: false`): there is nothing to export".to_owned(),
        );
        return Ok(Export {
            objects: Vec::new(),
            notes,
        });
    }
    let mut objects = vec![tenants_config_map(policy, options)?];
    for rule in cel::RULES {
        if rule_severity(policy, rule) == Severity::Off {
            notes.push(format!("{} is off in the policy", rule.code));
        }
    }
    let mut groups = vec![Group::Deny, Group::Warn];
    if policy.ratchet_updates {
        groups.push(Group::Kept);
    }
    for group in groups {
        objects.extend(validating(policy, options, group).into_iter().flatten());
    }
    if let Some(mutating) = mutating(policy, options) {
        objects.extend(mutating);
    }
    Ok(Export { objects, notes })
}

fn check_prefix(prefix: &str) -> Result<(), ExportError> {
    let valid = prefix.len() <= 40
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !prefix.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(ExportError::NamePrefix(prefix.to_owned()))
    }
}

/// The rule's severity under the policy.
pub fn rule_severity(policy: &Policy, rule: &RuleCel) -> Severity {
    let default =
        crate::rules::by_code(rule.code).map_or(Severity::Deny, |r| r.meta().default_severity);
    policy.severity(rule.code, default)
}

/// The name of the tenants ConfigMap.
pub fn tenants_name(options: &Options) -> String {
    format!("{}tenants", options.name_prefix)
}

/// The tenants as ConfigMap data: `tenants` (names in policy order: the first whose namespaces
/// match owns a namespace), and per tenant `<name>.namespaces` (a regular expression),
/// `.targetNamespaces` (its namespaces and target namespaces, as one), `.targetPatterns`
/// (those patterns, for messages), `.serviceAccounts` (comma-separated, empty: any),
/// `.sourceUrls` and `.providerUrls` (one allowed URL a line, empty: any) with
/// `.sourceUrlRegex`, `.imageRegex` and `.providerUrlRegex` (what they allow, compiled by
/// `cel::allowed_urls_regex`); `serviceAccounts` is every tenant's.
pub fn tenants_data(policy: &Policy) -> Result<serde_json::Map<String, Value>, ExportError> {
    let mut data = serde_json::Map::new();
    let mut names = Vec::new();
    let mut every_account: Vec<&str> = Vec::new();
    for tenant in &policy.tenants {
        let valid_key = !tenant.name.is_empty()
            && tenant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_key {
            return Err(ExportError::TenantName(tenant.name.clone()));
        }
        names.push(tenant.name.as_str());
        let key = |suffix: &str| format!("{}.{suffix}", tenant.name);
        let own = tenant.namespaces.iter().map(String::as_str);
        // `validate` guarantees at least one namespace pattern.
        data.insert(
            key("namespaces"),
            cel::glob_regex(own.clone()).unwrap_or_default().into(),
        );
        let mut targets: Vec<&str> = Vec::new();
        for pattern in own.chain(tenant.target_namespaces.iter().map(String::as_str)) {
            if !targets.contains(&pattern) {
                targets.push(pattern);
            }
        }
        data.insert(
            key("targetNamespaces"),
            cel::glob_regex(targets.iter().copied())
                .unwrap_or_default()
                .into(),
        );
        data.insert(key("targetPatterns"), targets.join(", ").into());
        data.insert(
            key("serviceAccounts"),
            tenant.service_accounts.join(",").into(),
        );
        data.insert(key("sourceUrls"), tenant.source_urls.join("\n").into());
        data.insert(
            key("sourceUrlRegex"),
            cel::allowed_urls_regex(&tenant.source_urls, false).into(),
        );
        data.insert(
            key("imageRegex"),
            cel::allowed_urls_regex(&tenant.source_urls, true).into(),
        );
        data.insert(key("providerUrls"), tenant.provider_urls.join("\n").into());
        data.insert(
            key("providerUrlRegex"),
            cel::allowed_urls_regex(&tenant.provider_urls, false).into(),
        );
        for account in &tenant.service_accounts {
            if !every_account.contains(&account.as_str()) {
                every_account.push(account);
            }
        }
    }
    data.insert("tenants".to_owned(), names.join(",").into());
    data.insert("serviceAccounts".to_owned(), every_account.join(",").into());
    Ok(data)
}

fn tenants_config_map(policy: &Policy, options: &Options) -> Result<Value, ExportError> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": tenants_name(options),
            "namespace": options.params_namespace,
            "labels": labels(),
        },
        "data": tenants_data(policy)?,
    }))
}

fn labels() -> Value {
    json!({ "app.kubernetes.io/managed-by": "fluxfence-export" })
}

/// `resourceRules` for `kinds`, every API version the kinds table lists, on create and update.
/// Naming the resources leaves their subresources (`status`) out, as the webhook skips them.
/// With `matchPolicy: Equivalent` a request in a version the table does not list (a newer
/// one) is converted to a listed version the CRD also serves and judged, as the engine
/// judges every version of a Flux group.
pub fn resource_rules(kinds: &[FluxKind]) -> Value {
    let rules: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            let info = kind.info();
            json!({
                "apiGroups": [info.group],
                "apiVersions": info.versions,
                "operations": ["CREATE", "UPDATE"],
                "resources": [info.plural],
                "scope": "Namespaced",
            })
        })
        .collect();
    Value::Array(rules)
}

/// The exempt namespaces the API server can leave out by name, and the patterns it cannot.
fn exempt_split(policy: &Policy) -> (Vec<&str>, Vec<&str>) {
    policy
        .exempt_namespaces
        .iter()
        .map(String::as_str)
        .partition(|p| !p.contains('*'))
}

/// `namespaceSelector` leaving the exempt namespaces named in full out.
fn namespace_selector(policy: &Policy) -> Value {
    let (names, _) = exempt_split(policy);
    if names.is_empty() {
        return json!({});
    }
    json!({
        "matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": names,
        }]
    })
}

/// `variables.exempt`: the object's namespace is one the policy exempts.
pub fn exempt_expression(policy: &Policy) -> String {
    match cel::glob_regex(policy.exempt_namespaces.iter().map(String::as_str)) {
        Some(regex) => format!("request.namespace.matches({})", cel::quote(&regex)),
        None => "false".to_owned(),
    }
}

/// `variables.tenant`: the first tenant whose namespaces match, `''` for none.
pub const TENANT_EXPRESSION: &str = "params.data.tenants == '' ? '' : \
     (params.data.tenants.split(',').filter(t, request.namespace.matches(params.data[t + '.namespaces'])) + [''])[0]";

/// A rule's findings on `root`, with the exemption the engine applies to it.
fn findings(policy: &Policy, rule: &RuleCel, root: &str) -> String {
    exempted(rule, (rule.findings)(policy, root))
}

fn exempted(rule: &RuleCel, list: String) -> String {
    if rule.skipped_in_exempt_namespaces {
        format!("variables.exempt ? [] : ({list})")
    } else {
        list
    }
}

/// The variable holding `rule`'s findings on the object (`ff101`) or the old object
/// (`ff101Old`).
pub fn findings_variable(rule: &RuleCel, old: bool) -> String {
    format!(
        "{}{}",
        rule.code.to_ascii_lowercase(),
        if old { "Old" } else { "" }
    )
}

/// The three validating policies: what each judges and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The deny rules' findings (an update the webhook would ratchet is left to `Kept`).
    Deny,
    /// The warn rules' findings.
    Warn,
    /// The deny findings a ratcheted update keeps, as warnings.
    Kept,
}

impl Group {
    /// The object name's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Group::Deny => "deny",
            Group::Warn => "warn",
            Group::Kept => "kept",
        }
    }
}

/// The rules `group` reports, in code order.
pub fn group_rules(policy: &Policy, group: Group) -> Vec<&'static RuleCel> {
    let wanted = match group {
        Group::Deny | Group::Kept => Severity::Deny,
        Group::Warn => Severity::Warn,
    };
    cel::RULES
        .iter()
        .filter(|r| rule_severity(policy, r) == wanted)
        .collect()
}

/// The variables of a policy, in order (a variable reads only those before it): the
/// namespace's exemption and tenant, each reported rule's findings on the object, and with
/// ratcheting each deny rule's on the old object and `kept`.
fn variables(policy: &Policy, reported: &[&RuleCel], ratcheted: bool) -> Vec<Value> {
    let mut variables = vec![
        json!({ "name": "exempt", "expression": exempt_expression(policy) }),
        json!({ "name": "tenant", "expression": TENANT_EXPRESSION }),
    ];
    let declare = |variables: &mut Vec<Value>, rule: &RuleCel, old: bool| {
        let root = if old { "oldObject" } else { "object" };
        variables.push(json!({
            "name": findings_variable(rule, old),
            "expression": findings(policy, rule, root),
        }));
    };
    for rule in reported {
        declare(&mut variables, rule, false);
    }
    if ratcheted {
        let mut kept = vec![
            "request.operation == 'UPDATE'".to_owned(),
            "oldObject != null".to_owned(),
        ];
        // The webhook also compares with the old object as its mutation leaves it: the
        // default account written out, when FF110 gives that fix.
        let defaults = policy.default_service_account.is_some()
            && cel::RULES
                .iter()
                .any(|r| r.code == "FF110" && rule_severity(policy, r) != Severity::Off);
        for rule in group_rules(policy, Group::Deny) {
            if !reported.iter().any(|r| r.code == rule.code) {
                declare(&mut variables, rule, false);
            }
            declare(&mut variables, rule, true);
            let new = findings_variable(rule, false);
            let old = findings_variable(rule, true);
            match rule.findings_defaulted.filter(|_| defaults) {
                Some(defaulted) => {
                    variables.push(json!({
                        "name": format!("{old}Defaulted"),
                        "expression": exempted(rule, defaulted(policy, "oldObject")),
                    }));
                    kept.push(format!(
                        "variables.{new}.all(f, f in variables.{old} || f in variables.{old}Defaulted)"
                    ));
                }
                None => kept.push(format!("variables.{new}.all(f, f in variables.{old})")),
            }
        }
        variables.push(json!({ "name": "kept", "expression": kept.join(" && ") }));
    }
    variables
}

/// One validation per reported rule: the rule holds, and its message names the rule, each
/// finding's field and fix, and the rule's page, as the webhook's denial does. Findings are
/// joined on one line: the API server drops a message with a line break for the default
/// `failed expression: …`.
fn validation(rule: &RuleCel, group: Group, ratcheted: bool) -> Value {
    let meta = crate::rules::by_code(rule.code).map(|r| r.meta());
    let own = format!("variables.{}", findings_variable(rule, false));
    let (expression, prefix, suffix) = match group {
        Group::Deny | Group::Warn => (
            if ratcheted {
                format!("{own}.size() == 0 || variables.kept")
            } else {
                format!("{own}.size() == 0")
            },
            format!("{} {} ", rule.code, meta.map_or("", |m| m.name)),
            format!(". Docs: {}", meta.map(|m| m.doc_url()).unwrap_or_default()),
        ),
        Group::Kept => (
            format!("{own}.size() == 0 || !variables.kept"),
            format!("{} (admitted: there before this update) ", rule.code),
            String::new(),
        ),
    };
    json!({
        "expression": expression,
        "messageExpression": format!(
            "{own}.map(f, {} + f + {}).join('; ')",
            cel::quote(&prefix),
            cel::quote(&suffix)
        ),
        "reason": if group == Group::Deny { "Forbidden" } else { "Invalid" },
    })
}

/// The ValidatingAdmissionPolicy and binding of `group`, `None` when it reports no rule.
fn validating(policy: &Policy, options: &Options, group: Group) -> Option<[Value; 2]> {
    let reported = group_rules(policy, group);
    if reported.is_empty() {
        return None;
    }
    let ratcheted = policy.ratchet_updates && group != Group::Warn;
    let name = format!("{}{}", options.name_prefix, group.suffix());
    let mut kinds: Vec<FluxKind> = reported
        .iter()
        .flat_map(|r| r.kinds.iter().copied())
        .collect();
    kinds.sort();
    kinds.dedup();
    // When every rule here skips exempt namespaces, the API server leaves them out before any
    // expression runs; a rule that applies there too keeps them in and skips itself.
    let all_skip_exempt = reported.iter().all(|r| r.skipped_in_exempt_namespaces);
    let mut match_conditions = vec![json!({
        "name": "not-being-deleted",
        "expression": "request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)",
    })];
    if all_skip_exempt && !exempt_split(policy).1.is_empty() {
        match_conditions.push(json!({
            "name": "not-exempt",
            "expression": format!("!({})", exempt_expression(policy)),
        }));
    }
    let validations: Vec<Value> = reported
        .iter()
        .map(|rule| validation(rule, group, ratcheted && group == Group::Deny))
        .collect();
    let vap = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": name, "labels": labels() },
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": { "apiVersion": "v1", "kind": "ConfigMap" },
            "matchConstraints": { "matchPolicy": "Equivalent", "resourceRules": resource_rules(&kinds) },
            "matchConditions": match_conditions,
            "variables": variables(policy, &reported, ratcheted),
            "validations": validations,
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": name, "labels": labels() },
        "spec": {
            "policyName": name,
            "validationActions": [if group == Group::Deny { "Deny" } else { "Warn" }],
            "paramRef": {
                "name": tenants_name(options),
                "namespace": options.params_namespace,
                "parameterNotFoundAction": "Deny",
            },
            // The policy's matchConstraints name the kinds; the binding leaves exempt
            // namespaces out.
            "matchResources": {
                "namespaceSelector": if all_skip_exempt { namespace_selector(policy) } else { json!({}) },
            },
        },
    });
    Some([vap, binding])
}

/// The MutatingAdmissionPolicy that writes the default service account into Kustomizations and
/// HelmReleases without one, as the mutating webhook does (FF110's fix); `None` when the policy
/// names no default account or FF110 is off.
fn mutating(policy: &Policy, options: &Options) -> Option<[Value; 2]> {
    let default = policy.default_service_account.as_ref()?;
    let ff110 = cel::RULES.iter().find(|r| r.code == "FF110")?;
    if rule_severity(policy, ff110) == Severity::Off {
        return None;
    }
    let name = format!("{}default-service-account", options.name_prefix);
    let api_version = options.mutating_api_version.api_version();
    let mut match_conditions = vec![
        json!({
            "name": "not-being-deleted",
            "expression": "request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)",
        }),
        json!({
            "name": "no-service-account",
            "expression": "!has(object.spec) || !has(object.spec.serviceAccountName) || object.spec.serviceAccountName == null || object.spec.serviceAccountName == ''",
        }),
    ];
    if !exempt_split(policy).1.is_empty() {
        match_conditions.push(json!({
            "name": "not-exempt",
            "expression": format!("!({})", exempt_expression(policy)),
        }));
    }
    let kinds = [FluxKind::Kustomization, FluxKind::HelmRelease];
    let map = json!({
        "apiVersion": api_version,
        "kind": "MutatingAdmissionPolicy",
        "metadata": { "name": name, "labels": labels() },
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": { "matchPolicy": "Equivalent", "resourceRules": resource_rules(&kinds) },
            "matchConditions": match_conditions,
            "mutations": [{
                "patchType": "ApplyConfiguration",
                "applyConfiguration": {
                    "expression": format!(
                        "Object{{spec: Object.spec{{serviceAccountName: {}}}}}",
                        cel::quote(&default.name)
                    ),
                },
            }],
        },
    });
    let binding = json!({
        "apiVersion": api_version,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": { "name": name, "labels": labels() },
        "spec": {
            "policyName": name,
            "matchResources": { "namespaceSelector": namespace_selector(policy) },
        },
    });
    Some([map, binding])
}

/// The export as a YAML stream, the notes first as comments.
pub fn render(export: &Export, policy_source: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# fluxfence admission policies for {policy_source}.\n\
         # Kubernetes 1.30+ (ValidatingAdmissionPolicy v1); the MutatingAdmissionPolicy needs 1.36+\n\
         # (v1) or 1.34-1.35 with its feature gate (--mutating-api-version v1beta1).\n\
         # Not exported (what CEL cannot judge from the object, and what the policy turns off):\n"
    ));
    for note in &export.notes {
        out.push_str(&format!("# - {note}\n"));
    }
    for object in &export.objects {
        out.push_str("---\n");
        out.push_str(&super::yaml::to_yaml(object));
    }
    out
}
