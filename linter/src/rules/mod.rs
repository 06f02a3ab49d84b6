//! The rules. One file per rule; [`ALL`] is the code table.
//!
//! To add a rule: create `ffNNN_<what_it_flags>.rs` with a `RuleMeta` (code, kebab-case name,
//! doc) and a `Rule` impl, add it to [`ALL`], and add `testdata/rules/FFNNN/` fixtures that
//! fire and near-misses that must not.

use std::collections::HashSet;

use crate::diagnostic::{Finding, Fix, Severity};
use crate::kustomize::KustomizeFile;
use crate::model::{FluxObject, NamespaceOrigin, Reference};
use crate::policy::Policy;
use crate::yaml::{Node, Span};

pub(crate) mod ff001_schema_violation;
pub(crate) mod ff002_removed_api_version;
mod ff003_suppression_without_reason;
mod ff004_suppression_not_allowed;
mod ff101_cross_namespace_source_ref;
mod ff102_cross_namespace_event_source;
mod ff110_missing_service_account;
mod ff111_service_account_unavailable;
mod ff120_remote_cluster_kubeconfig;
mod ff121_target_namespace_outside_tenant;
mod ff130_remote_kustomize_base;
mod ff140_source_url_not_allowed;
mod ff150_decryption_with_platform_key;
mod ff160_cross_namespace_depends_on;
pub mod url;

pub use ff003_suppression_without_reason::SUPPRESSION_WITHOUT_REASON;
pub use ff004_suppression_not_allowed::SUPPRESSION_NOT_ALLOWED;

/// Which fixes a rule offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixable {
    No,
    /// `fluxfence fix` applies it (some findings may need `--unsafe-fixes`).
    Safe,
    /// Only `fluxfence fix --unsafe-fixes` applies it: it changes what the cluster runs.
    UnsafeOnly,
}

impl Fixable {
    /// The `rules` table's column.
    pub fn column(self) -> &'static str {
        match self {
            Fixable::No => "",
            Fixable::Safe => "fix",
            Fixable::UnsafeOnly => "unsafe",
        }
    }

    /// The `rule CODE` page's line.
    pub fn sentence(self) -> &'static str {
        match self {
            Fixable::No => "no",
            Fixable::Safe => "yes (`fluxfence fix`)",
            Fixable::UnsafeOnly => {
                "only with `fluxfence fix --unsafe-fixes` (the fix moves objects between namespaces)"
            }
        }
    }
}

/// Whether a rule judges objects in the policy's `exemptNamespaces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// Judged in every namespace: the Flux behaviour it mirrors has no namespace exemption
    /// (`--no-cross-namespace-refs` is controller-wide), or it is not about tenancy.
    Everywhere,
    /// Skipped in exempt namespaces: the platform's own configurations may use the controllers'
    /// rights (service accounts, remote clusters, any target namespace or URL).
    OutsideExemptNamespaces,
}

impl Exemption {
    /// The `rule CODE` page's line.
    pub fn sentence(self) -> &'static str {
        match self {
            Exemption::Everywhere => "judged too",
            Exemption::OutsideExemptNamespaces => "skipped",
        }
    }
}

/// What `fluxfence rule CODE` prints and the docs are made of.
#[derive(Debug)]
pub struct RuleMeta {
    pub code: &'static str,
    /// Kebab-case name of the pattern the rule flags.
    pub name: &'static str,
    pub summary: &'static str,
    pub default_severity: Severity,
    /// Whether the rule offers a fix (`fluxfence fix`, or a mutation in the webhook).
    pub fixable: Fixable,
    /// Whether the policy's exempt namespaces switch it off.
    pub exemption: Exemption,
    /// Markdown: what it does, why it is bad, example, use instead.
    pub doc: &'static str,
}

/// Where the rule pages (`docs/rules/FFNNN.md`, the text `fluxfence rule FFNNN` prints) are
/// published.
pub const DOCS_BASE_URL: &str = "https://github.com/fluxfence/fluxfence/blob/main/docs/rules";

impl RuleMeta {
    /// The rule's documentation page.
    pub fn doc_url(&self) -> String {
        format!("{DOCS_BASE_URL}/{}.md", self.code)
    }

    /// The rule's page: what `fluxfence rule CODE` prints and `docs/rules/CODE.md` holds.
    pub fn page(&self) -> String {
        format!(
            "# {} {}\n\n{}\n\nDefault severity: {}. Fixable: {}. In exempt namespaces: {}.\n\n{}",
            self.code,
            self.name,
            self.summary,
            self.default_severity.as_str(),
            self.fixable.sentence(),
            self.exemption.sentence(),
            self.doc
        )
    }

    /// A finding of this rule at its default severity; the engine applies the policy's.
    pub fn finding(
        &'static self,
        pointer: String,
        span: Span,
        message: String,
        help: String,
    ) -> Finding {
        Finding {
            code: self.code,
            rule: self.name,
            severity: self.default_severity,
            pointer,
            span,
            message,
            help,
            fix: None,
        }
    }
}

/// The object under judgement and the namespace it will live in.
pub struct Subject<'a> {
    pub object: &'a FluxObject,
    pub namespace: &'a str,
    pub origin: &'a NamespaceOrigin,
}

/// What rules may know besides the object.
pub struct Context<'a> {
    pub policy: &'a Policy,
    /// `(namespace, name)` of the ServiceAccounts declared in the input.
    pub declared_service_accounts: &'a HashSet<(String, String)>,
    /// The webhook cannot see which service accounts exist in the cluster: it trusts an explicit
    /// `serviceAccountName` the policy says nothing about to exist (the API server's
    /// impersonation check is the backstop). An account the policy knows (the default, a
    /// tenant's, one it places) is judged by the policy, written out or not: Flux impersonates
    /// the same account either way. The linter checks every account against input and policy.
    pub trust_explicit_service_accounts: bool,
    /// Whether values are what Flux applies. At admission they are: Flux substitutes before
    /// it applies, so a `${VAR}` that reaches the API server is literal text. In files, Flux's
    /// post-build substitution may still replace it: a reference namespace `${VAR:-default}`
    /// is judged as its default and a `${VAR}` without one is unresolved.
    pub values_are_final: bool,
    /// `declared_service_accounts` is every ServiceAccount of the namespaces judged, listed
    /// from a live cluster (`fluxfence audit`, the webhook's ServiceAccount cache): an account
    /// exists exactly when it is listed. Neither the policy's word on where accounts exist nor
    /// trust in an explicit name can make Flux's impersonation of a missing account succeed.
    pub service_accounts_listed: bool,
    /// `(namespace, name)` of the objects known to be fluxfence-controller's copies of a shared
    /// source ([`Policy::claimed_copy`] holds for them and the caller knows who wrote them).
    /// They reach what the platform shares with the namespace, so FF140 does not judge their
    /// URLs. Empty in files: a tenant's repository may carry the labels too.
    pub vouched_copies: &'a HashSet<(String, String)>,
}

impl Context<'_> {
    /// Whether `object` in `namespace` is one of fluxfence-controller's copies of a source the
    /// policy shares with the namespace, as the caller established it.
    pub fn is_vouched_copy(&self, object: &FluxObject, namespace: &str) -> bool {
        !self.vouched_copies.is_empty()
            && self
                .vouched_copies
                .contains(&(namespace.to_owned(), object.name.clone()))
            && self.policy.claimed_copy(object, namespace).is_some()
    }

    /// A reference's namespace as it is judged: the value itself when values are final or
    /// hold no variable, else with its substitution defaults, `None` when a variable has none.
    pub fn resolve<'v>(&self, value: &'v str) -> Option<std::borrow::Cow<'v, str>> {
        if self.values_are_final || !value.contains("${") {
            return Some(std::borrow::Cow::Borrowed(value));
        }
        crate::model::with_substitution_defaults(value).map(std::borrow::Cow::Owned)
    }
}

/// The reference namespaces of `object` (FF101's source references, FF102's event sources)
/// that only a substitution could give, with why: not judged, reported as unresolved.
pub fn unresolved_reference_namespaces(object: &FluxObject) -> Vec<(Span, String)> {
    let mut nodes: Vec<(String, &Node)> = source_references(object)
        .into_iter()
        .filter_map(|r| {
            let node = r.node.get("namespace").filter(|n| n.as_str().is_some())?;
            Some((format!("{}/namespace", r.pointer), node))
        })
        .collect();
    nodes.extend(event_source_namespaces(object));
    nodes
        .into_iter()
        .filter_map(|(pointer, node)| {
            let value = node.as_str()?;
            if crate::model::with_substitution_defaults(value).is_some() {
                return None;
            }
            Some((
                node.span,
                format!(
                    "{pointer} `{value}` is a substitution variable with no default: the reference cannot be judged"
                ),
            ))
        })
        .collect()
}

/// `(pointer, namespace node)` of a Receiver's `spec.resources[]` or an Alert's
/// `spec.eventSources[]`.
pub fn event_source_namespaces(object: &FluxObject) -> Vec<(String, &Node)> {
    use crate::kinds::FluxKind;
    let field = match object.kind {
        FluxKind::Receiver => "resources",
        FluxKind::Alert => "eventSources",
        _ => return Vec::new(),
    };
    let Some(items) = object.root.path(&["spec", field]).and_then(Node::as_seq) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let node = item.get("namespace").filter(|n| n.as_str().is_some())?;
            Some((format!("/spec/{field}/{i}/namespace"), node))
        })
        .collect()
}

pub trait Rule: Send + Sync {
    fn meta(&self) -> &'static RuleMeta;

    /// Judges one Flux object in its effective namespace.
    fn check_object(&self, _subject: &Subject, _cx: &Context, _out: &mut Vec<Finding>) {}

    /// Judges one kustomization.yaml.
    fn check_kustomize(&self, _file: &KustomizeFile, _cx: &Context, _out: &mut Vec<Finding>) {}
}

/// The code table: every rule, in code order.
pub static ALL: &[&dyn Rule] = &[
    &ff001_schema_violation::SchemaViolation,
    &ff002_removed_api_version::RemovedApiVersion,
    &ff003_suppression_without_reason::SuppressionWithoutReason,
    &ff004_suppression_not_allowed::SuppressionNotAllowed,
    &ff101_cross_namespace_source_ref::CrossNamespaceSourceRef,
    &ff102_cross_namespace_event_source::CrossNamespaceEventSource,
    &ff110_missing_service_account::MissingServiceAccount,
    &ff111_service_account_unavailable::ServiceAccountUnavailable,
    &ff120_remote_cluster_kubeconfig::RemoteClusterKubeconfig,
    &ff121_target_namespace_outside_tenant::TargetNamespaceOutsideTenant,
    &ff130_remote_kustomize_base::RemoteKustomizeBase,
    &ff140_source_url_not_allowed::SourceUrlNotAllowed,
    &ff150_decryption_with_platform_key::DecryptionWithPlatformKey,
    &ff160_cross_namespace_depends_on::CrossNamespaceDependsOn,
];

pub fn by_code(code: &str) -> Option<&'static dyn Rule> {
    ALL.iter()
        .copied()
        .find(|r| r.meta().code.eq_ignore_ascii_case(code) || r.meta().name == code)
}

/// Runs every object rule on `subject`, with severities from the policy; `off` rules are
/// skipped, nothing runs when the policy does not enforce, and in an exempt namespace only
/// the rules judged [`Exemption::Everywhere`] run.
pub fn check_object(subject: &Subject, cx: &Context) -> Vec<Finding> {
    let exempt = cx.policy.is_exempt(subject.namespace);
    run_rules(cx, |rule, out| {
        if !(exempt && rule.meta().exemption == Exemption::OutsideExemptNamespaces) {
            rule.check_object(subject, cx, out);
        }
    })
}

/// Runs every kustomize-file rule on `file`.
pub fn check_kustomize(file: &KustomizeFile, cx: &Context) -> Vec<Finding> {
    run_rules(cx, |rule, out| rule.check_kustomize(file, cx, out))
}

/// Runs `check` for every rule the policy has on, giving its findings the policy's severity.
fn run_rules(cx: &Context, check: impl Fn(&dyn Rule, &mut Vec<Finding>)) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !cx.policy.enforce {
        return findings;
    }
    for rule in ALL {
        let meta = rule.meta();
        let severity = cx.policy.severity(meta.code, meta.default_severity);
        if severity == Severity::Off {
            continue;
        }
        let start = findings.len();
        check(*rule, &mut findings);
        findings[start..]
            .iter_mut()
            .for_each(|f| f.severity = severity);
    }
    findings
}

/// The source references of an object that Flux's `--no-cross-namespace-refs` governs.
pub fn source_references(object: &FluxObject) -> Vec<Reference<'_>> {
    use crate::kinds::FluxKind;
    let paths: &[&[&str]] = match object.kind {
        FluxKind::Kustomization | FluxKind::ImageUpdateAutomation => &[&["spec", "sourceRef"]],
        FluxKind::HelmRelease => &[
            &["spec", "chart", "spec", "sourceRef"],
            &["spec", "chartRef"],
        ],
        FluxKind::ImagePolicy => &[&["spec", "imageRepositoryRef"]],
        // Each of `spec.sources[]` names a source (its namespace defaults to the generator's).
        FluxKind::ArtifactGenerator => return listed_references(object, &["spec", "sources"]),
        _ => &[],
    };
    paths
        .iter()
        .filter_map(|path| {
            let node = object.root.path(path)?;
            node.as_map()?;
            Some(Reference {
                pointer: pointer(path),
                node,
            })
        })
        .collect()
}

/// One reference per mapping in the list at `path`, at `/path/INDEX`.
fn listed_references<'a>(object: &'a FluxObject, path: &[&str]) -> Vec<Reference<'a>> {
    let Some(items) = object.root.path(path).and_then(Node::as_seq) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter(|(_, node)| node.as_map().is_some())
        .map(|(i, node)| Reference {
            pointer: format!("{}/{i}", pointer(path)),
            node,
        })
        .collect()
}

/// A JSON pointer from keys (RFC 6901 escaping).
pub fn pointer(keys: &[&str]) -> String {
    keys.iter().fold(String::new(), |mut acc, key| {
        acc.push('/');
        acc.push_str(&key.replace('~', "~0").replace('/', "~1"));
        acc
    })
}

/// The span of a mapping key, for findings about a missing or unwanted field.
pub fn key_span(node: &Node, key: &str) -> Option<Span> {
    node.entry(key).map(|(k, _)| k.span)
}

/// Where to point when a field is missing: the `spec` key, else the whole object.
pub fn missing_field_span(object: &FluxObject) -> Span {
    key_span(&object.root, "spec").unwrap_or(object.root.span)
}

/// A fix that sets `spec.serviceAccountName`.
pub fn set_service_account_fix(name: &str) -> Fix {
    Fix {
        applicability: crate::diagnostic::Applicability::Safe,
        description: format!("set spec.serviceAccountName: {name}"),
        ops: vec![crate::diagnostic::FixOp::Set {
            pointer: "/spec/serviceAccountName".into(),
            value: name.into(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published pages are the rules' own text. When a rule's doc changes:
    /// `for c in $(fluxfence rules | awk 'NR>1{print $1}'); do fluxfence rule $c > docs/rules/$c.md; done`
    /// or run this test with FLUXFENCE_WRITE_RULE_DOCS=1.
    #[test]
    fn docs_rules_holds_every_rule_page() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules");
        let write = std::env::var_os("FLUXFENCE_WRITE_RULE_DOCS").is_some();
        for rule in ALL {
            let meta = rule.meta();
            let path = dir.join(format!("{}.md", meta.code));
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, meta.page()).unwrap();
            }
            let written = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                written == meta.page(),
                "{} is not the page of {}; regenerate it with FLUXFENCE_WRITE_RULE_DOCS=1 cargo test -p fluxfence --lib docs_rules",
                path.display(),
                meta.code
            );
            assert!(
                meta.doc_url()
                    .ends_with(&format!("docs/rules/{}.md", meta.code))
            );
        }
    }
}
