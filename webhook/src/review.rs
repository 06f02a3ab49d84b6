//! The admission decision, with no HTTP in it: an AdmissionRequest, the policy and the
//! webhook's own namespace in, an AdmissionResponse out.
//!
//! The rule engine judges the object exactly as the linter would judge the same object in a
//! file; this module only turns its findings into a verdict (validate) or a JSON Patch (mutate).

use std::collections::HashSet;

use fluxfence::diagnostic::{Applicability, FixOp};
use fluxfence::kinds::FluxKind;
use fluxfence::model::{FluxObject, NamespaceOrigin};
use fluxfence::rules::{self, Context, Subject};
use fluxfence::shared::{self, Sharing};
use fluxfence::{Finding, Policy, Severity};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::Value;

use crate::accounts::ServiceAccounts;

/// Kubernetes truncates longer warnings; keep each one readable in `kubectl` output.
pub const MAX_WARNING_CHARS: usize = 120;

/// The audit annotation listing the rule codes found. The API server prefixes it with the
/// webhook's name (`validate.fluxfence.dev/rules`), so the key itself has no prefix.
pub const AUDIT_RULES_KEY: &str = "rules";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// What the webhook decided, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Judged, nothing found.
    Allowed,
    /// Judged, allowed with warnings.
    Warned,
    /// Judged, denied by a rule.
    Denied,
    /// Judged, allowed with a patch.
    Mutated,
    /// Judged, an UPDATE that violates but adds no new violation: allowed with warnings.
    Ratcheted,
    /// Not judged: a delete, an update of an object being deleted, a status update, the
    /// webhook's own namespace, not a Flux kind, or a policy that does not enforce.
    Skipped,
    /// Could not be judged: denied, never allowed.
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 7] = [
        Verdict::Allowed,
        Verdict::Warned,
        Verdict::Denied,
        Verdict::Mutated,
        Verdict::Ratcheted,
        Verdict::Skipped,
        Verdict::Error,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Warned => "warned",
            Verdict::Denied => "denied",
            Verdict::Mutated => "mutated",
            Verdict::Ratcheted => "ratcheted",
            Verdict::Skipped => "skipped",
            Verdict::Error => "error",
        }
    }
}

/// The response plus what logs and metrics need to know about it.
#[derive(Debug)]
pub struct Outcome {
    pub response: AdmissionResponse,
    pub verdict: Verdict,
    /// The Flux kind judged, when the object was one.
    pub kind: Option<FluxKind>,
    /// Rule codes found, with their severity under the policy.
    pub findings: Vec<(&'static str, Severity)>,
    /// Each finding in full (`FF110: …`), for the log: warnings sent are cut to 120 characters.
    pub messages: Vec<String>,
    /// Why the request was skipped or could not be judged.
    pub note: Option<String>,
}

impl Outcome {
    fn skipped(response: AdmissionResponse, kind: Option<FluxKind>, why: &str) -> Outcome {
        Outcome {
            response,
            verdict: Verdict::Skipped,
            kind,
            findings: Vec::new(),
            messages: Vec::new(),
            note: Some(why.to_owned()),
        }
    }
}

/// What the webhook knows of the cluster besides the request.
#[derive(Clone, Copy, Default)]
pub struct ClusterView<'a> {
    /// The ServiceAccount cache, when on: FF111 checks the account an object is applied as
    /// against the ones that exist in its namespace. Without it, an explicit service account
    /// the policy says nothing about is trusted to exist.
    pub accounts: Option<&'a dyn ServiceAccounts>,
    /// The users (`system:serviceaccount:NS:NAME`) whose copies of shared sources are
    /// fluxfence-controller's (`--trusted-publisher`): their URLs are the platform's to choose.
    pub trusted_publishers: &'a [String],
}

/// What every judgement of one review shares.
struct Judging<'a> {
    accounts: Option<&'a dyn ServiceAccounts>,
    /// `(namespace, name)` of the object when it is a copy a trusted publisher writes.
    vouched_copies: HashSet<(String, String)>,
}

/// Judges one admission request knowing nothing of the cluster (no ServiceAccount cache, no
/// trusted publisher).
pub fn review(
    endpoint: Endpoint,
    request: &AdmissionRequest<DynamicObject>,
    policy: &Policy,
    own_namespace: Option<&str>,
) -> Outcome {
    review_with(
        endpoint,
        request,
        policy,
        own_namespace,
        ClusterView::default(),
    )
}

/// Judges one admission request with what the webhook knows of the cluster.
pub fn review_with(
    endpoint: Endpoint,
    request: &AdmissionRequest<DynamicObject>,
    policy: &Policy,
    own_namespace: Option<&str>,
    cluster: ClusterView,
) -> Outcome {
    let response = AdmissionResponse::from(request);
    if let Some(why) = never_blocked(request, own_namespace) {
        return Outcome::skipped(response, None, why);
    }
    let Some(object) = &request.object else {
        return Outcome::skipped(response, None, "the request carries no object");
    };
    let (json, object) = match read_object(object) {
        Ok(Some(read)) => read,
        Ok(None) => return Outcome::skipped(response, None, "not a Flux kind"),
        Err(reason) => return engine_error(response, reason),
    };
    let kind = Some(object.kind);
    // Every Flux kind is namespaced, so the API server always sends the namespace; the
    // object's own field is only a fallback for hand-made requests.
    let namespace = request
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(object.declared_namespace.as_deref())
        .unwrap_or("default");
    if !policy.enforce {
        return Outcome::skipped(response, kind, "the policy does not enforce");
    }
    // An exempt namespace is still judged: the engine skips there only the rules the
    // exemption covers (cross-namespace references are refused by Flux in every namespace).

    let judging = Judging {
        accounts: cluster.accounts,
        vouched_copies: vouched_copy(request, &object, namespace, policy, &cluster),
    };
    let findings = judge(&object, namespace, policy, &judging);
    match endpoint {
        Endpoint::Validate => {
            if ratchets(request, namespace, policy, &judging, &findings) {
                return ratcheted(response, &object, &findings);
            }
            validate(response, &object, namespace, policy, &findings)
        }
        Endpoint::Mutate => mutate(response, &object, &json, namespace, policy, &findings),
    }
}

/// The object's `(namespace, name)` when a trusted publisher writes it and it is labelled as
/// the copy of a source the policy shares with its namespace; nothing otherwise.
fn vouched_copy(
    request: &AdmissionRequest<DynamicObject>,
    object: &FluxObject,
    namespace: &str,
    policy: &Policy,
    cluster: &ClusterView,
) -> HashSet<(String, String)> {
    let by_trusted = request
        .user_info
        .username
        .as_ref()
        .is_some_and(|user| cluster.trusted_publishers.contains(user));
    if by_trusted && policy.claimed_copy(object, namespace).is_some() {
        HashSet::from([(namespace.to_owned(), object.name.clone())])
    } else {
        HashSet::new()
    }
}

/// The engine's findings for `object` in `namespace`. With the ServiceAccount cache, the
/// account the object is applied as is looked up in its namespace: the rule then knows it
/// exists or that it does not.
fn judge(object: &FluxObject, namespace: &str, policy: &Policy, judging: &Judging) -> Vec<Finding> {
    let accounts = judging.accounts;
    let listed: HashSet<(String, String)> = accounts
        .and_then(|accounts| {
            let name = impersonated_account(object, policy)?;
            accounts
                .exists(namespace, name)
                .then(|| (namespace.to_owned(), name.to_owned()))
        })
        .into_iter()
        .collect();
    rules::check_object(
        &Subject {
            object,
            namespace,
            origin: &NamespaceOrigin::AdmissionRequest,
        },
        &Context {
            policy,
            declared_service_accounts: &listed,
            trust_explicit_service_accounts: accounts.is_none(),
            service_accounts_listed: accounts.is_some(),
            values_are_final: true,
            vouched_copies: &judging.vouched_copies,
        },
    )
}

/// The account Flux impersonates for `object`, as FF111 works it out: `spec.serviceAccountName`,
/// else the policy's default.
fn impersonated_account<'a>(object: &'a FluxObject, policy: &'a Policy) -> Option<&'a str> {
    object
        .root
        .path(&["spec", "serviceAccountName"])
        .and_then(fluxfence::yaml::Node::as_str)
        .or(policy
            .default_service_account
            .as_ref()
            .map(|sa| sa.name.as_str()))
}

/// What identifies a violation across an update: the rule, the field and what it says of the
/// value there. A violation whose value changed is a new one.
type ViolationKey = (&'static str, String, String);

/// Whether an UPDATE is admitted although it violates: the policy ratchets and every violation
/// of the new object was there in the old one. Otherwise (no update, nothing denied,
/// ratcheting off, something new) the update is judged as a create.
fn ratchets(
    request: &AdmissionRequest<DynamicObject>,
    namespace: &str,
    policy: &Policy,
    judging: &Judging,
    findings: &[Finding],
) -> bool {
    if request.operation != Operation::Update
        || !policy.ratchet_updates
        || !findings.iter().any(|f| f.severity == Severity::Deny)
    {
        return false;
    }
    // An old object that cannot be read is no evidence that a violation was already there.
    let Some(Ok(Some((old_json, old_object)))) = request.old_object.as_ref().map(read_object)
    else {
        return false;
    };
    let old_findings = judge(&old_object, namespace, policy, judging);
    let before = deny_keys(&old_findings);
    let mut new: Vec<ViolationKey> = deny_keys(findings);
    new.retain(|v| !before.contains(v));
    if new.is_empty() {
        return true;
    }
    // The rest may be the old object's, as the mutating webhook would leave it: a default
    // account it wrote in during this update changes no violation. Judged only when needed.
    let mutated = as_mutated(&old_json, namespace, policy, judging, &old_findings);
    new.iter().all(|v| mutated.contains(v))
}

fn deny_keys(findings: &[Finding]) -> Vec<ViolationKey> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Deny)
        .map(|f| (f.code, f.pointer.clone(), f.message.clone()))
        .collect()
}

/// An UPDATE that keeps violations it did not bring: admitted, every finding a warning, so
/// whoever updates it still hears what is wrong with it.
fn ratcheted(
    mut response: AdmissionResponse,
    object: &FluxObject,
    findings: &[Finding],
) -> Outcome {
    let mut warnings = Vec::new();
    for finding in findings {
        let text = match finding.severity {
            Severity::Deny => format!(
                "{} (admitted: there before this update): {}",
                finding.code, finding.message
            ),
            _ => format!("{}: {}", finding.code, finding.message),
        };
        warnings.push(warning(&text));
    }
    annotate_rules(&mut response, findings);
    response.warnings = Some(warnings);
    Outcome {
        response,
        verdict: Verdict::Ratcheted,
        kind: Some(object.kind),
        findings: codes(findings),
        messages: messages(findings),
        note: Some("violations kept from the old object".to_owned()),
    }
}

/// The deny findings of an object as the mutating webhook leaves it: its safe fixes (the
/// default service account written out) applied. Nothing when there is nothing to fix.
fn as_mutated(
    json: &Value,
    namespace: &str,
    policy: &Policy,
    judging: &Judging,
    findings: &[Finding],
) -> Vec<ViolationKey> {
    let mut ops = Vec::new();
    for fix in findings.iter().filter_map(|f| f.fix.as_ref()) {
        if fix.applicability == Applicability::Safe {
            for FixOp::Set { pointer, value } in &fix.ops {
                set_string(json, pointer, value, &mut ops);
            }
        }
    }
    if ops.is_empty() {
        return Vec::new();
    }
    let mut fixed = json.clone();
    json_patch::patch(&mut fixed, &ops)
        .ok()
        .and_then(|()| fluxfence::yaml::Node::from_json(&fixed).ok())
        .and_then(FluxObject::from_node)
        .map(|fixed| deny_keys(&judge(&fixed, namespace, policy, judging)))
        .unwrap_or_default()
}

/// Requests fluxfence never blocks, whatever the object says.
fn never_blocked(
    request: &AdmissionRequest<DynamicObject>,
    own_namespace: Option<&str>,
) -> Option<&'static str> {
    match request.operation {
        // Removing a bad object must always be possible.
        Operation::Delete => return Some("delete"),
        Operation::Connect => return Some("connect"),
        Operation::Create | Operation::Update => {}
    }
    // Removing a finalizer is an UPDATE of an object being deleted; refusing it would leave
    // the object in Terminating for good.
    if request.operation == Operation::Update
        && request
            .object
            .as_ref()
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
    {
        return Some("the object is being deleted");
    }
    // Controllers write status; blocking it would wedge reconciliation, not protect anything.
    if request.sub_resource.as_deref() == Some("status") {
        return Some("status subresource");
    }
    // The webhook must be able to repair itself even when its own policy is wrong.
    if own_namespace.is_some_and(|own| request.namespace.as_deref() == Some(own)) {
        return Some("the webhook's own namespace");
    }
    None
}

/// The object as JSON (for patches) and as the engine's model; `None` when not a Flux kind.
fn read_object(object: &DynamicObject) -> Result<Option<(Value, FluxObject)>, String> {
    let json = serde_json::to_value(object).map_err(|e| format!("cannot read the object: {e}"))?;
    let node = fluxfence::yaml::Node::from_json(&json)
        .map_err(|e| format!("cannot judge the object: {}", e.message))?;
    Ok(FluxObject::from_node(node).map(|flux| (json, flux)))
}

/// An object the engine could not judge is denied: allowing it could let a violation through.
fn engine_error(response: AdmissionResponse, reason: String) -> Outcome {
    let mut response =
        response.deny(format!("fluxfence denied the request: {reason}; the object was not admitted because it could not be checked"));
    response.result.code = 400;
    response.result.reason = "BadRequest".to_owned();
    Outcome {
        response,
        verdict: Verdict::Error,
        kind: None,
        findings: Vec::new(),
        messages: Vec::new(),
        note: Some(reason),
    }
}

fn codes(findings: &[Finding]) -> Vec<(&'static str, Severity)> {
    findings.iter().map(|f| (f.code, f.severity)).collect()
}

fn messages(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{}: {}", f.code, f.message))
        .collect()
}

fn validate(
    mut response: AdmissionResponse,
    object: &FluxObject,
    namespace: &str,
    policy: &Policy,
    findings: &[Finding],
) -> Outcome {
    let warnings: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Warn)
        .map(|f| warning(&format!("{}: {}", f.code, f.message)))
        .collect();
    let denials: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Deny)
        .collect();
    annotate_rules(&mut response, findings);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    let verdict = if denials.is_empty() {
        if response.warnings.is_some() {
            Verdict::Warned
        } else {
            Verdict::Allowed
        }
    } else {
        response = response.deny(denial_message(object, namespace, policy, &denials));
        response.result.code = 403;
        response.result.reason = "Forbidden".to_owned();
        Verdict::Denied
    };
    Outcome {
        response,
        verdict,
        kind: Some(object.kind),
        findings: codes(findings),
        messages: messages(findings),
        note: None,
    }
}

/// The documentation page of rule `code`.
fn doc_url(code: &str) -> String {
    rules::by_code(code).map_or_else(
        || format!("{}/", rules::DOCS_BASE_URL),
        |rule| rule.meta().doc_url(),
    )
}

/// The audit annotation naming the rules found, when any was.
fn annotate_rules(response: &mut AdmissionResponse, findings: &[Finding]) {
    if !findings.is_empty() {
        let mut list: Vec<&str> = findings.iter().map(|f| f.code).collect();
        list.dedup();
        response
            .audit_annotations
            .insert(AUDIT_RULES_KEY.to_owned(), list.join(","));
    }
}

/// Names each rule, the field and the fix; for objects that belong in the configuration
/// namespace, shows the rewrite `fluxfence fix` would make (the webhook cannot move objects).
fn denial_message(
    object: &FluxObject,
    namespace: &str,
    policy: &Policy,
    denials: &[&Finding],
) -> String {
    let mut message = format!(
        "fluxfence denied {} in namespace {namespace}:",
        object.display_name()
    );
    for finding in denials {
        message.push_str(&format!(
            "\n- {} {} at {}: {}. Fix: {}. Docs: {}",
            finding.code,
            finding.rule,
            finding.pointer,
            finding.message,
            finding.help,
            doc_url(finding.code)
        ));
    }
    // The platform's exempt namespaces keep their objects, as `fluxfence fix` leaves them.
    let movable =
        denials.iter().any(|f| matches!(f.code, "FF101" | "FF111")) && !policy.is_exempt(namespace);
    if movable && let Some(manifest) = fluxfence::remedy::suggest_move(object, namespace, policy) {
        message.push_str("\nMulti-tenant layout (what `fluxfence fix` writes):\n");
        message.push_str(&manifest);
    }
    message
}

fn mutate(
    response: AdmissionResponse,
    object: &FluxObject,
    json: &Value,
    namespace: &str,
    policy: &Policy,
    findings: &[Finding],
) -> Outcome {
    let mut outcome = Outcome {
        response,
        verdict: Verdict::Allowed,
        kind: Some(object.kind),
        findings: codes(findings),
        messages: messages(findings),
        note: None,
    };
    // A mutation only spells out what Flux would do anyway, so it never changes validation's
    // verdict: an explicit account the policy knows is judged as the default it spells out.
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    for fix in findings.iter().filter_map(|f| f.fix.as_ref()) {
        if fix.applicability != Applicability::Safe {
            continue;
        }
        for op in &fix.ops {
            let FixOp::Set { pointer, value } = op;
            if set_string(json, pointer, value, &mut ops) {
                warnings.push(warning(&format!("fluxfence: {}", fix.description)));
            }
        }
    }
    rewrite_shared_sources(object, namespace, policy, &mut ops, &mut warnings);
    if ops.is_empty() {
        return outcome;
    }
    match outcome.response.clone().with_patch(Patch(ops)) {
        Ok(mut response) => {
            response.warnings = Some(warnings);
            outcome.response = response;
            outcome.verdict = Verdict::Mutated;
        }
        // Serialising a patch of strings cannot fail; if it ever did, admitting the object
        // unpatched is what Flux's own defaults would do, and validation still runs.
        Err(e) => outcome.note = Some(format!("patch not sent: {e}")),
    }
    outcome
}

/// A reference to a source the policy shares with this namespace points at the platform's
/// object, which Flux refuses across namespaces: point it at the object fluxfence-controller
/// publishes in the tenant's namespace instead (`fluxfence::shared` says which kind and name).
fn rewrite_shared_sources(
    object: &FluxObject,
    namespace: &str,
    policy: &Policy,
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Vec<String>,
) {
    for reference in rules::source_references(object) {
        let Some(source_ns) = reference.field("namespace") else {
            continue;
        };
        let kind = reference.field("kind").unwrap_or("");
        let name = reference.field("name").unwrap_or("");
        if source_ns == namespace {
            continue;
        }
        let Some(Sharing::Allowed { published, .. }) = policy.sharing(
            object.kind.as_str(),
            &reference.pointer,
            kind,
            source_ns,
            name,
            namespace,
        ) else {
            continue;
        };
        let mut fields = vec![
            ("namespace", namespace.to_owned()),
            ("name", published.name.clone()),
        ];
        if published.kind != kind {
            fields.push(("kind", published.kind.clone()));
            // ExternalArtifact has one version; an older one written here would name none.
            if reference.field("apiVersion").is_some() {
                fields.push(("apiVersion", shared::SOURCE_API_VERSION.to_owned()));
            }
        }
        for (field, value) in fields {
            let Ok(path) = PointerBuf::parse(format!("{}/{field}", reference.pointer)) else {
                continue;
            };
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path,
                value: Value::String(value),
            }));
        }
        warnings.push(warning(&format!(
            "fluxfence: {} now names {} {}, which fluxfence-controller publishes in {namespace}",
            reference.pointer.rsplit('/').next().unwrap_or("sourceRef"),
            published.kind,
            published.name,
        )));
    }
}

/// JSON Patch operations setting the string at `pointer`, adding missing parent mappings
/// first. Returns whether anything changes: setting a value that is already there is a no-op,
/// which keeps the webhook idempotent when the API server re-invokes it.
pub fn set_string(root: &Value, pointer: &str, value: &str, ops: &mut Vec<PatchOperation>) -> bool {
    let Ok(target) = PointerBuf::parse(pointer) else {
        return false;
    };
    let tokens: Vec<String> = target.tokens().map(|t| t.decoded().into_owned()).collect();
    let mut node = root;
    for (depth, token) in tokens.iter().enumerate() {
        let last = depth + 1 == tokens.len();
        let Value::Object(map) = node else {
            // A parent that is a string or a list: not ours to overwrite.
            return false;
        };
        match map.get(token) {
            Some(Value::String(existing)) if last && existing == value => return false,
            Some(child) if !last && !child.is_null() => node = child,
            // Missing (or null): add it and every parent below it, outermost first.
            _ => {
                for end in depth + 1..tokens.len() {
                    ops.push(PatchOperation::Add(AddOperation {
                        path: PointerBuf::from_tokens(&tokens[..end]),
                        value: Value::Object(serde_json::Map::new()),
                    }));
                }
                ops.push(PatchOperation::Add(AddOperation {
                    path: target,
                    value: Value::String(value.to_owned()),
                }));
                return true;
            }
        }
    }
    false
}

/// What a cut warning ends with: the full text is in the webhook's log line for the review.
pub const CUT_MARK: &str = " … (full text in the webhook log)";

/// A warning as sent: at most [`MAX_WARNING_CHARS`].
fn warning(text: &str) -> String {
    truncate(text, MAX_WARNING_CHARS)
}

/// Cuts `text` to at most `max` characters at a word boundary, ending with [`CUT_MARK`].
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let room = max.saturating_sub(CUT_MARK.chars().count());
    let end = text.char_indices().nth(room).map_or(text.len(), |(i, _)| i);
    let head = &text[..end];
    // Cut before the word the limit falls in; a single word longer than the room is cut
    // where the room ends.
    let at_word = match text[end..].chars().next() {
        Some(c) if !c.is_whitespace() => head.rfind(char::is_whitespace).unwrap_or(end),
        _ => end,
    };
    let mut cut = head[..at_word].trim_end().to_owned();
    cut.push_str(CUT_MARK);
    cut
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn paths(ops: &[PatchOperation]) -> Vec<(String, String)> {
        ops.iter()
            .map(|op| match op {
                PatchOperation::Add(a) => ("add".into(), a.path.to_string()),
                PatchOperation::Replace(r) => ("replace".into(), r.path.to_string()),
                other => ("other".into(), format!("{other:?}")),
            })
            .collect()
    }

    #[test]
    fn missing_parents_are_added_first_and_keys_are_escaped() {
        let mut ops = Vec::new();
        let root = json!({"metadata": {"name": "a"}});
        assert!(set_string(
            &root,
            "/metadata/annotations/fluxfence.dev~1note",
            "x",
            &mut ops
        ));
        assert_eq!(
            paths(&ops),
            vec![
                ("add".into(), "/metadata/annotations".into()),
                (
                    "add".into(),
                    "/metadata/annotations/fluxfence.dev~1note".into()
                ),
            ]
        );
        let mut patched = root.clone();
        json_patch::patch(&mut patched, &ops).unwrap();
        assert_eq!(
            patched["metadata"]["annotations"]["fluxfence.dev/note"],
            "x"
        );
    }

    #[test]
    fn setting_the_same_value_twice_is_a_no_op() {
        let mut ops = Vec::new();
        let root = json!({"spec": {"serviceAccountName": "flux-applier"}});
        assert!(!set_string(
            &root,
            "/spec/serviceAccountName",
            "flux-applier",
            &mut ops
        ));
        assert!(ops.is_empty());
        assert!(set_string(
            &root,
            "/spec/serviceAccountName",
            "other",
            &mut ops
        ));
        assert_eq!(
            paths(&ops),
            vec![("add".into(), "/spec/serviceAccountName".into())]
        );
    }

    #[test]
    fn a_null_parent_is_replaced_and_a_scalar_parent_is_left_alone() {
        let mut ops = Vec::new();
        assert!(set_string(
            &json!({"spec": null}),
            "/spec/serviceAccountName",
            "a",
            &mut ops
        ));
        let mut patched = json!({"spec": null});
        json_patch::patch(&mut patched, &ops).unwrap();
        assert_eq!(patched, json!({"spec": {"serviceAccountName": "a"}}));
        let mut ops = Vec::new();
        assert!(!set_string(
            &json!({"spec": "oops"}),
            "/spec/serviceAccountName",
            "a",
            &mut ops
        ));
        assert!(ops.is_empty());
    }

    #[test]
    fn warnings_are_cut_at_a_word_and_say_where_the_rest_is() {
        let text = "FF110: Kustomization/apps has no spec.serviceAccountName: it is applied as the controllers' default service account `flux-applier`";
        let cut = truncate(text, MAX_WARNING_CHARS);
        assert!(cut.chars().count() <= MAX_WARNING_CHARS, "{cut}");
        assert!(cut.ends_with(CUT_MARK), "{cut}");
        let kept = cut.strip_suffix(CUT_MARK).unwrap();
        assert!(text.starts_with(kept), "{cut}");
        // The next character of the original is a space: no word was cut in two.
        assert_eq!(text[kept.len()..].chars().next(), Some(' '), "{cut}");
        // One word longer than the room is cut where the room ends.
        let long = "é".repeat(300);
        let cut = truncate(&long, MAX_WARNING_CHARS);
        assert_eq!(cut.chars().count(), MAX_WARNING_CHARS);
        assert_eq!(truncate("short", MAX_WARNING_CHARS), "short");
    }
}
