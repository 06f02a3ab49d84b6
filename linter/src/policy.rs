//! The policy: which namespaces are tenants, which service accounts exist, what is exempt, and
//! how severe each rule is.
//!
//! A policy is YAML. It is parsed with the span-aware loader so that an invalid policy is
//! reported with file, line, column and the reason — never replaced by a silent default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diagnostic::Severity;
use crate::yaml::{self, LineIndex, Node};

/// The built-in policy: Azure's `microsoft.flux` with `multiTenancy.enforce=true`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../policies/default.yaml");

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Optional, for readers: `fluxfence.dev/v1alpha1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Azure switch: `false` turns every tenancy rule off.
    #[serde(default = "default_true")]
    pub enforce: bool,
    /// Where `fluxfence fix` moves Flux objects (the GitOps configuration's namespace).
    #[serde(default = "default_config_namespace")]
    pub config_namespace: String,
    /// The service account the controllers impersonate when `spec.serviceAccountName` is empty
    /// (`--default-service-account`). Unwritten: `flux-applier` in the config namespace, as in
    /// the built-in policy; `null` means the controllers run as themselves.
    #[serde(default = "default_service_account")]
    pub default_service_account: Option<DefaultServiceAccount>,
    /// Namespaces of the platform's own, cluster-admin configurations: the service-account
    /// and tenant rules skip them. Unwritten: `[flux-system]`; `[]` exempts none.
    #[serde(default = "default_exempt_namespaces")]
    pub exempt_namespaces: Vec<String>,
    /// Service accounts that exist in the cluster besides those declared in the linted input.
    #[serde(default)]
    pub service_accounts: Vec<NamespacedName>,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub shared_sources: Vec<SharedSource>,
    /// Per-rule severity overrides, by code (`FF110: deny`).
    #[serde(default)]
    pub rules: BTreeMap<String, Severity>,
    /// Admission only: an UPDATE that brings no new or changed violation is admitted, the
    /// violations it keeps sent as warnings, so objects that violated before the webhook (or
    /// a policy change) came in can still be updated by Flux. `false` judges an UPDATE like a
    /// CREATE. An object being deleted is admitted either way.
    #[serde(default = "default_true")]
    pub ratchet_updates: bool,
    /// Whether `# fluxfence:ignore` comments silence findings. Tenants write their own
    /// manifests, comments included, so the platform decides: `allow` (the default), `deny`,
    /// or the list of rule codes that may be suppressed.
    #[serde(default)]
    pub suppressions: Suppressions,
    /// The settings the file does not write, filled with their documented defaults
    /// (`fluxfence lint --show-settings` lists them).
    #[serde(skip)]
    pub defaulted: Defaulted,
}

/// Which settings a policy file left to their defaults: how the policy was written, not what
/// it says, so it takes no part in comparing two policies.
#[derive(Debug, Clone, Default)]
pub struct Defaulted(pub Vec<&'static str>);

impl PartialEq for Defaulted {
    fn eq(&self, _: &Defaulted) -> bool {
        true
    }
}

impl std::ops::Deref for Defaulted {
    type Target = Vec<&'static str>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Defaulted {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The settings whose default is not empty, in the file's order of documentation, with the
/// default as `--show-settings` describes it.
const DOCUMENTED_DEFAULTS: &[(&str, &str)] = &[
    ("enforce", "true"),
    ("configNamespace", "cluster-config"),
    ("defaultServiceAccount", "flux-applier in [cluster-config]"),
    ("exemptNamespaces", "[flux-system]"),
    ("ratchetUpdates", "true"),
    ("suppressions", "allow"),
];

/// Which findings a `# fluxfence:ignore` comment may silence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Suppressions {
    #[default]
    Allow,
    Deny,
    /// Only these rule codes.
    Codes(Vec<String>),
}

impl Suppressions {
    pub fn allows(&self, code: &str) -> bool {
        match self {
            Suppressions::Allow => true,
            Suppressions::Deny => false,
            Suppressions::Codes(codes) => codes.iter().any(|c| c.eq_ignore_ascii_case(code)),
        }
    }
}

impl Serialize for Suppressions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Suppressions::Allow => serializer.serialize_str("allow"),
            Suppressions::Deny => serializer.serialize_str("deny"),
            Suppressions::Codes(codes) => codes.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Suppressions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Suppressions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`allow`, `deny` or a list of rule codes")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Suppressions, E> {
                match value {
                    "allow" => Ok(Suppressions::Allow),
                    "deny" => Ok(Suppressions::Deny),
                    other => Err(E::custom(format!(
                        "`{other}`: expected `allow`, `deny` or a list of rule codes"
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Suppressions, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<String>()? {
                    codes.push(code);
                }
                Ok(Suppressions::Codes(codes))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultServiceAccount {
    pub name: String,
    /// The namespaces where the platform creates it (Azure: the configuration namespace only).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    /// Namespace patterns (`*` matches any run of characters) that belong to this tenant.
    pub namespaces: Vec<String>,
    /// Service accounts the tenant's objects may impersonate. Empty: any that exists.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Namespace patterns the tenant may deploy into. The tenant's own namespaces always count.
    #[serde(default)]
    pub target_namespaces: Vec<String>,
    /// URLs the tenant's sources (and image repositories) may fetch from, with what lies below
    /// them: compared by scheme, host, port and whole path segments (`*` within one segment
    /// or host label). Empty: any URL.
    #[serde(default)]
    pub source_urls: Vec<String>,
    /// URLs the tenant's notification Providers may send to (`address`, `proxy`), compared
    /// as `source_urls` are. Empty: any URL.
    #[serde(default)]
    pub provider_urls: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedSource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Tenant names allowed to reference it; `*` for every tenant. With `namespaces` also
    /// empty: every namespace.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Namespace patterns (`*` matches any run of characters) allowed to reference it, besides
    /// the tenants named.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Whether the Secrets the source names (credentials, CA) are copied with it where a copy
    /// of the source is published (HelmRelease `spec.chart.spec.sourceRef`). ExternalArtifacts
    /// never need one.
    #[serde(default)]
    pub copy_secrets: bool,
}

fn default_true() -> bool {
    true
}

fn default_config_namespace() -> String {
    "cluster-config".to_owned()
}

fn default_service_account() -> Option<DefaultServiceAccount> {
    Some(DefaultServiceAccount {
        name: "flux-applier".into(),
        namespaces: vec![default_config_namespace()],
    })
}

fn default_exempt_namespaces() -> Vec<String> {
    vec!["flux-system".into()]
}

/// An invalid policy, located.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: invalid policy: {message}")]
pub struct PolicyError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Policy {
    /// The built-in default policy.
    pub fn azure_default() -> Policy {
        // The embedded file is tested to parse (see tests); fall back to the same values
        // written out rather than panicking if that ever regresses.
        Policy::parse(DEFAULT_POLICY_YAML, "<default policy>").unwrap_or_else(|_| Policy {
            api_version: None,
            kind: None,
            enforce: true,
            config_namespace: default_config_namespace(),
            default_service_account: default_service_account(),
            exempt_namespaces: default_exempt_namespaces(),
            service_accounts: Vec::new(),
            tenants: Vec::new(),
            shared_sources: Vec::new(),
            rules: BTreeMap::new(),
            ratchet_updates: true,
            suppressions: Suppressions::Allow,
            defaulted: Defaulted::default(),
        })
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            path: display.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the file: {e}"),
        })?;
        Policy::parse(&text, &display)
    }

    /// Parses policy YAML; errors carry the position of the offending field.
    pub fn parse(text: &str, path: &str) -> Result<Policy, PolicyError> {
        let index = LineIndex::new(text);
        let at = |offset: usize, message: String| {
            let (line, column) = index.position(text, offset);
            PolicyError {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let mut docs = Vec::new();
        yaml::load_documents(text, |d| docs.push(d)).map_err(|e| at(e.offset, e.message))?;
        let root = match docs.len() {
            1 => docs.remove(0).root,
            0 => {
                return Err(at(
                    0,
                    "the file is empty; write at least `enforce: true`".into(),
                ));
            }
            _ => {
                return Err(at(
                    docs[1].span.start,
                    "a policy is one YAML document, found several".into(),
                ));
            }
        };
        let keys: Vec<&str> = match &root.value {
            yaml::Value::Map(entries) if entries.is_empty() => {
                return Err(at(
                    root.span.start,
                    "the policy is empty; write at least `enforce: true` (unwritten settings take the built-in policy's values)".into(),
                ));
            }
            yaml::Value::Map(entries) => {
                entries.iter().filter_map(|(k, _)| k.as_scalar()).collect()
            }
            yaml::Value::Seq(_) => {
                return Err(at(
                    root.span.start,
                    "a policy is a mapping of settings (`enforce: true`, …), not a list".into(),
                ));
            }
            yaml::Value::Scalar(_) => {
                return Err(at(
                    root.span.start,
                    "a policy is a mapping of settings (`enforce: true`, …), not a single value"
                        .into(),
                ));
            }
        };
        let json = root.to_json();
        let mut policy: Policy = serde_path_to_error::deserialize(&json).map_err(|e| {
            let message = e.inner().to_string();
            // An unknown field is best shown at its key; anything else at the value.
            let node = locate(&root, e.path(), message.starts_with("unknown field"));
            at(node.span.start, format!("{}: {message}", e.path()))
        })?;
        policy.validate().map_err(|(pointer, message)| {
            let node = locate_pointer(&root, &pointer, false);
            at(node.span.start, message)
        })?;
        policy.defaulted = Defaulted(
            DOCUMENTED_DEFAULTS
                .iter()
                .map(|(key, _)| *key)
                .filter(|key| !keys.contains(key))
                .collect(),
        );
        Ok(policy)
    }

    /// Checks what serde cannot: rule codes and patterns that mean something.
    fn validate(&self) -> Result<(), (Vec<String>, String)> {
        for code in self.rules.keys() {
            if crate::rules::by_code(code).is_none() {
                return Err((
                    vec!["rules".into(), code.clone()],
                    format!("unknown rule code `{code}`; `fluxfence rules` lists them"),
                ));
            }
        }
        if let Suppressions::Codes(codes) = &self.suppressions {
            for (i, code) in codes.iter().enumerate() {
                if crate::rules::by_code(code).is_none() {
                    return Err((
                        vec!["suppressions".into(), i.to_string()],
                        format!("unknown rule code `{code}`; `fluxfence rules` lists them"),
                    ));
                }
            }
        }
        for (i, tenant) in self.tenants.iter().enumerate() {
            for (key, list) in [
                ("sourceUrls", &tenant.source_urls),
                ("providerUrls", &tenant.provider_urls),
            ] {
                for (j, url) in list.iter().enumerate() {
                    if let Err(reason) = crate::rules::url::Location::parse(url, None) {
                        return Err((
                            vec!["tenants".into(), i.to_string(), key.into(), j.to_string()],
                            format!(
                                "`{url}` is not a URL ({reason}); write a scheme, a host and whole path segments, e.g. https://github.com/org/team-a-*"
                            ),
                        ));
                    }
                }
            }
            if tenant.namespaces.is_empty() {
                return Err((
                    vec!["tenants".into(), i.to_string(), "namespaces".into()],
                    format!(
                        "tenant `{}` has no namespaces; list at least one pattern",
                        tenant.name
                    ),
                ));
            }
        }
        self.validate_shared_sources()
    }

    /// Shared sources name a kind that can be shared, tenants that exist, and a source whose
    /// published name fits where the controller writes it (an object name and a label value).
    fn validate_shared_sources(&self) -> Result<(), (Vec<String>, String)> {
        let at = |i: usize, field: &str| vec!["sharedSources".into(), i.to_string(), field.into()];
        let mut published = std::collections::BTreeMap::new();
        for (i, source) in self.shared_sources.iter().enumerate() {
            if !crate::shared::SHAREABLE_KINDS.contains(&source.kind.as_str()) {
                return Err((
                    at(i, "kind"),
                    format!(
                        "`{}` cannot be shared; use one of {}",
                        source.kind,
                        crate::shared::SHAREABLE_KINDS.join(", ")
                    ),
                ));
            }
            for (field, value) in [("namespace", &source.namespace), ("name", &source.name)] {
                if value.is_empty() {
                    return Err((at(i, field), format!("the shared source needs a {field}")));
                }
            }
            let name = crate::shared::published_name(&source.namespace, &source.name);
            if name.len() > 63 {
                return Err((
                    at(i, "name"),
                    format!(
                        "`{name}`, the name the source is published under in tenant namespaces, is longer than 63 characters (a label value holds it); share a source with a shorter namespace and name"
                    ),
                ));
            }
            for (j, tenant) in source.tenants.iter().enumerate() {
                if tenant != "*" && !self.tenants.iter().any(|t| &t.name == tenant) {
                    return Err((
                        vec![
                            "sharedSources".into(),
                            i.to_string(),
                            "tenants".into(),
                            j.to_string(),
                        ],
                        format!("no tenant is named `{tenant}`; name one of `tenants` or `*`"),
                    ));
                }
            }
            if source.namespaces.iter().any(String::is_empty) {
                return Err((at(i, "namespaces"), "a namespace pattern is empty".into()));
            }
            // A Kustomization reads GitRepository, OCIRepository and Bucket through the same
            // ExternalArtifact name: two of them with one namespace/name would collide.
            if source.kind != "HelmRepository"
                && let Some(other) = published.insert(name.clone(), i)
            {
                return Err((
                    at(i, "name"),
                    format!(
                        "sharedSources[{other}] is published as ExternalArtifact `{name}` already; share only one source of that namespace and name"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The settings the policy file left out, with the defaults that filled them
    /// (`configNamespace: cluster-config`).
    pub fn defaults_used(&self) -> Vec<String> {
        DOCUMENTED_DEFAULTS
            .iter()
            .filter(|(key, _)| self.defaulted.contains(key))
            .map(|(key, value)| format!("{key}: {value}"))
            .collect()
    }

    /// The severity of `code` under this policy, given the rule's default.
    pub fn severity(&self, code: &str, default: Severity) -> Severity {
        self.rules.get(code).copied().unwrap_or(default)
    }

    pub fn is_exempt(&self, namespace: &str) -> bool {
        self.exempt_namespaces
            .iter()
            .any(|p| glob_match(p, namespace))
    }

    /// The tenant owning `namespace`, when the policy names tenants.
    pub fn tenant_of(&self, namespace: &str) -> Option<&Tenant> {
        self.tenants
            .iter()
            .find(|t| t.namespaces.iter().any(|p| glob_match(p, namespace)))
    }

    /// Whether the platform provides service account `name` in `namespace`.
    pub fn provides_service_account(&self, namespace: &str, name: &str) -> bool {
        let default = self.default_service_account.as_ref().is_some_and(|sa| {
            sa.name == name && sa.namespaces.iter().any(|p| glob_match(p, namespace))
        });
        default
            || self
                .service_accounts
                .iter()
                .any(|sa| sa.name == name && glob_match(&sa.namespace, namespace))
    }

    /// Whether the policy says anything about service account `name`: it is the default
    /// account, one a tenant may use, or one the platform creates somewhere. Where such an
    /// account exists is the policy's to say, so it is never taken on trust.
    pub fn knows_service_account(&self, name: &str) -> bool {
        self.default_service_account
            .as_ref()
            .is_some_and(|sa| sa.name == name)
            || self.service_accounts.iter().any(|sa| sa.name == name)
            || self
                .tenants
                .iter()
                .any(|t| t.service_accounts.iter().any(|a| a == name))
    }

    /// Whether a reference from `from_namespace` to a source is allowed as a shared source.
    pub fn is_shared_source(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        from_namespace: &str,
    ) -> bool {
        self.shared_source_entry(kind, namespace, name)
            .is_some_and(|(_, source)| self.shares_with(source, from_namespace))
    }
}

/// Shell-style matching with `*` only — what namespace patterns need.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(head) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// The deepest node of `root` along a serde error path (best effort: stops where it can't go).
fn locate<'a>(root: &'a Node, path: &serde_path_to_error::Path, at_key: bool) -> &'a Node {
    let keys: Vec<String> = path
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => index.to_string(),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => key.clone(),
            serde_path_to_error::Segment::Unknown => String::new(),
        })
        .collect();
    locate_pointer(root, &keys, at_key)
}

/// The node at `keys`; with `at_key`, the last step stops at the mapping key.
fn locate_pointer<'a>(root: &'a Node, keys: &[String], at_key: bool) -> &'a Node {
    let mut node = root;
    for (i, key) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        let next = match &node.value {
            yaml::Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(key.as_str()))
                .map(|(k, v)| {
                    if v.is_null() || (last && at_key) {
                        k
                    } else {
                        v
                    }
                }),
            yaml::Value::Seq(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            yaml::Value::Scalar(_) => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_azure_enforce_true() {
        let policy = Policy::parse(DEFAULT_POLICY_YAML, "default.yaml").unwrap();
        assert!(policy.enforce);
        assert_eq!(policy.config_namespace, "cluster-config");
        assert!(policy.provides_service_account("cluster-config", "flux-applier"));
        assert!(!policy.provides_service_account("nginx", "flux-applier"));
        assert!(policy.is_exempt("flux-system"));
        assert!(policy.ratchet_updates);
        assert!(policy.knows_service_account("flux-applier"));
        assert!(!policy.knows_service_account("deployer"));
        assert_eq!(Policy::azure_default(), policy);
    }

    #[test]
    fn example_policies_parse() {
        for name in ["per-tenant.yaml", "opt-out.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../policies/examples")
                .join(name);
            Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_wrong_type_is_reported_at_its_line_and_column() {
        let text = "enforce: true\ndefaultServiceAccount:\n  name: flux-applier\n  namespaces: cluster-config\n";
        let err = Policy::parse(text, "p.yaml").unwrap_err();
        assert_eq!((err.line, err.column), (4, 15), "{err}");
        assert!(err.to_string().starts_with("p.yaml:4:15: invalid policy: defaultServiceAccount.namespaces: invalid type: string"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_reported_not_ignored() {
        let err =
            Policy::parse("enforce: true\nexemptNamespace: [flux-system]\n", "p.yaml").unwrap_err();
        assert_eq!((err.line, err.column), (2, 1), "{err}");
        assert!(
            err.message.contains("unknown field `exemptNamespace`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_rule_code_is_reported() {
        let err = Policy::parse("rules:\n  FF999: deny\n", "p.yaml").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("unknown rule code `FF999`"), "{err}");
    }

    #[test]
    fn an_allowed_url_that_is_not_a_url_is_located() {
        let text = "tenants:\n  - name: a\n    namespaces: [a]\n    sourceUrls:\n      - https://github.com/org\n      - https://github.com:git/org\n";
        let err = Policy::parse(text, "p.yaml").unwrap_err();
        assert_eq!((err.line, err.column), (6, 9), "{err}");
        assert!(err.message.contains("is not a URL"), "{err}");
    }

    #[test]
    fn suppressions_are_allow_deny_or_codes() {
        let allow = Policy::parse("enforce: true\n", "p.yaml").unwrap();
        assert!(allow.suppressions.allows("FF101"));
        let deny = Policy::parse("suppressions: deny\n", "p.yaml").unwrap();
        assert!(!deny.suppressions.allows("FF110"));
        let some = Policy::parse("suppressions: [FF110, ff002]\n", "p.yaml").unwrap();
        assert!(some.suppressions.allows("FF110") && some.suppressions.allows("FF002"));
        assert!(!some.suppressions.allows("FF101"));
        let err = Policy::parse("suppressions: sometimes\n", "p.yaml").unwrap_err();
        assert_eq!((err.line, err.column), (1, 15), "{err}");
        assert!(err.message.contains("expected `allow`, `deny`"), "{err}");
        let err = Policy::parse("suppressions:\n  - FF110\n  - FF999\n", "p.yaml").unwrap_err();
        assert_eq!((err.line, err.column), (3, 5), "{err}");
    }

    #[test]
    fn enforce_true_alone_is_the_documented_defaults() {
        let alone = Policy::parse("enforce: true\n", "p.yaml").unwrap();
        assert_eq!(
            alone.defaults_used(),
            [
                "configNamespace: cluster-config",
                "defaultServiceAccount: flux-applier in [cluster-config]",
                "exemptNamespaces: [flux-system]",
                "ratchetUpdates: true",
                "suppressions: allow",
            ]
        );
        // Equal whatever each left to its defaults: the comparison is of what they say.
        assert_eq!(alone, Policy::azure_default());
        // Written out as empty, they are empty.
        let none = Policy::parse(
            "defaultServiceAccount: null\nexemptNamespaces: []\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(none.default_service_account, None);
        assert!(none.exempt_namespaces.is_empty());
        assert!(!none.defaults_used().iter().any(|d| d.starts_with("exempt")));
    }

    #[test]
    fn a_list_an_empty_mapping_or_a_scalar_is_no_policy() {
        for (text, position, says) in [
            ("[]\n", (1, 1), "not a list"),
            ("# the platform's\n- enforce: true\n", (2, 1), "not a list"),
            ("{}\n", (1, 1), "the policy is empty"),
            ("\n\n  {}\n", (3, 3), "the policy is empty"),
            ("enforce\n", (1, 1), "not a single value"),
            ("\"null\"\n", (1, 1), "not a single value"),
            ("null\n", (1, 1), "the file is empty"),
        ] {
            let err = Policy::parse(text, "p.yaml").unwrap_err();
            assert_eq!((err.line, err.column), position, "{text:?}: {err}");
            assert!(err.message.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn shared_sources_are_validated_where_they_are_written() {
        let head = "tenants:\n  - {name: team-a, namespaces: [team-a]}\nsharedSources:\n";
        let cases = [
            (
                "  - {kind: HelmChart, namespace: flux-system, name: x}\n",
                (4, 12),
                "`HelmChart` cannot be shared",
            ),
            (
                "  - kind: HelmRepository\n    namespace: flux-system\n    name: bitnami\n    tenants: [team-a, team-z]\n",
                (7, 23),
                "no tenant is named `team-z`",
            ),
            (
                "  - {kind: GitRepository, namespace: flux-system, name: apps}\n  - {kind: OCIRepository, namespace: flux-system, name: apps}\n",
                (5, 57),
                "sharedSources[0] is published as ExternalArtifact `flux-system.apps` already",
            ),
            (
                "  - {kind: GitRepository, namespace: flux-system, name: a-name-that-is-far-too-long-for-any-label-value-at-all}\n",
                (4, 57),
                "longer than 63 characters",
            ),
            (
                "  - {kind: GitRepository, namespace: flux-system, name: apps, copySecret: true}\n",
                (4, 63),
                "unknown field `copySecret`",
            ),
        ];
        for (entries, position, message) in cases {
            let err = Policy::parse(&format!("{head}{entries}"), "p.yaml").unwrap_err();
            assert_eq!((err.line, err.column), position, "{err}");
            assert!(err.message.contains(message), "{err}");
        }
        let ok = "  - {kind: HelmRepository, namespace: flux-system, name: apps, tenants: [team-a], namespaces: [apps-*], copySecrets: true}\n  - {kind: GitRepository, namespace: flux-system, name: apps}\n";
        let policy = Policy::parse(&format!("{head}{ok}"), "p.yaml").unwrap();
        assert!(policy.shared_sources[0].copy_secrets);
        assert!(!policy.shared_sources[1].copy_secrets);
        assert_eq!(policy.shared_sources[0].namespaces, ["apps-*"]);
    }

    #[test]
    fn malformed_yaml_is_located() {
        let err = Policy::parse("enforce: [true\n", "p.yaml").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("team-a-*", "team-a-dev"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("team-a-*", "team-b-dev"));
        assert!(!glob_match("a*bc", "abc-"));
        assert!(glob_match("team-a", "team-a"));
        assert!(!glob_match("team-a", "team-ab"));
    }
}
