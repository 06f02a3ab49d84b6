//! The rules as CEL, one entry per rule: what each admission policy evaluates.
//!
//! Each rule is a function from the object's root variable (`object`, or `oldObject` when an
//! update is ratcheted) to a CEL list of findings, one string per finding the engine would
//! report: `at <pointer>: <message>. Fix: <help>`, the engine's own words. A rule that changes
//! in `rules/` changes here, in its one function; `linter/tests/admission_policy.rs` holds the
//! two to the same findings on every fixture.
//!
//! What the expressions may use besides the object: `request.namespace` (the namespace the
//! object is created in, as the webhook reads it), `variables.tenant` (the tenant owning that
//! namespace, `''` for none, from the tenants ConfigMap), `variables.exempt`, and `params.data`
//! (the tenants ConfigMap). Everything else the policy says is written into the expression.
//!
//! Field names: the API server hands `object` to CEL as an untyped map of the JSON it stores,
//! keys as they are. A field named after a CEL reserved word (`namespace`) is therefore read as
//! `r['namespace']` and tested as `'namespace' in r`: the escaped `__namespace__` that CRD
//! validation rules use names no key of that map, so `has(r.__namespace__)` is false even when
//! the field is set.

use crate::kinds::FluxKind;
use crate::policy::Policy;
use crate::rules::url::Location;

/// One rule's CEL.
pub struct RuleCel {
    pub code: &'static str,
    /// The kinds the rule reads; the policy matches only these.
    pub kinds: &'static [FluxKind],
    /// Whether exempt namespaces skip the rule. The engine skips every rule there today
    /// (`rules::check_object`); a rule that applies everywhere sets `false` and nothing else
    /// changes.
    pub skipped_in_exempt_namespaces: bool,
    /// Whether the rule reads the tenants (`variables.tenant`, `params`).
    pub reads_tenants: bool,
    /// The CEL list of findings on the object at `root`.
    pub findings: fn(&Policy, &str) -> String,
    /// For the rules that read `spec.serviceAccountName`: the findings on `root` as the
    /// mutating policy leaves it, the default account written out. A ratcheted update compares
    /// with the old object both as it was and so, as the webhook does.
    pub findings_defaulted: Option<fn(&Policy, &str) -> String>,
}

const IMPERSONATING: &[FluxKind] = &[FluxKind::Kustomization, FluxKind::HelmRelease];

/// The rules an admission policy can judge from the object alone, in code order.
pub static RULES: &[RuleCel] = &[
    RuleCel {
        code: "FF101",
        kinds: &[
            FluxKind::Kustomization,
            FluxKind::HelmRelease,
            FluxKind::ImagePolicy,
            FluxKind::ImageUpdateAutomation,
            FluxKind::ArtifactGenerator,
        ],
        skipped_in_exempt_namespaces: false,
        reads_tenants: true,
        findings: ff101_cross_namespace_source_ref,
        findings_defaulted: None,
    },
    RuleCel {
        code: "FF102",
        kinds: &[FluxKind::Alert, FluxKind::Receiver],
        skipped_in_exempt_namespaces: false,
        reads_tenants: false,
        findings: ff102_cross_namespace_event_source,
        findings_defaulted: None,
    },
    RuleCel {
        code: "FF110",
        kinds: IMPERSONATING,
        skipped_in_exempt_namespaces: true,
        reads_tenants: false,
        findings: ff110_missing_service_account,
        // Written out, the account is no longer missing.
        findings_defaulted: Some(|_, _| "[]".to_owned()),
    },
    RuleCel {
        code: "FF111",
        kinds: IMPERSONATING,
        skipped_in_exempt_namespaces: true,
        reads_tenants: true,
        findings: ff111_service_account_unavailable,
        findings_defaulted: Some(ff111_with_the_default_written_out),
    },
    RuleCel {
        code: "FF120",
        kinds: IMPERSONATING,
        skipped_in_exempt_namespaces: true,
        reads_tenants: false,
        findings: ff120_remote_cluster_kubeconfig,
        findings_defaulted: None,
    },
    RuleCel {
        code: "FF121",
        kinds: IMPERSONATING,
        skipped_in_exempt_namespaces: true,
        reads_tenants: true,
        findings: ff121_target_namespace_outside_tenant,
        findings_defaulted: None,
    },
    RuleCel {
        code: "FF140",
        kinds: &[
            FluxKind::GitRepository,
            FluxKind::HelmRepository,
            FluxKind::OCIRepository,
            FluxKind::Bucket,
            FluxKind::ImageRepository,
            FluxKind::Provider,
        ],
        skipped_in_exempt_namespaces: true,
        reads_tenants: true,
        findings: ff140_source_url_not_allowed,
        findings_defaulted: None,
    },
];

/// What no admission policy can judge, and why: the export prints it and the docs list it.
pub const NOT_EXPRESSIBLE: &[&str] = &[
    "FF111 cannot see which ServiceAccounts exist in the namespace (that needs another object): \
     like the webhook, it trusts an explicit serviceAccountName the policy says nothing about, \
     and the API server's impersonation check at apply time is the backstop",
    "FF130 (remote bases) judges kustomization.yaml files, which never reach the API server",
    "FF001 and FF002 are the API server's own: it validates a custom resource against its CRD \
     schema before admission and does not serve removed versions",
    "FF003 judges suppression comments in files",
    "the webhook's denial shows the rewritten manifest `fluxfence fix` would write; a policy's \
     message names the rule, field and fix only",
    "the webhook's rewrite of references to shared sources into the tenant's copy is not \
     exported (the mutating policy only defaults spec.serviceAccountName)",
    "FF101 names an ArtifactGenerator's `spec.sources[]` entry by its index; two identical \
     entries are both named at the first one's index",
    "FF102 names a list entry by its index; two identical entries are both named at the \
     first one's index (CEL's list functions give no position)",
    "an object in an API version newer than the kinds table is judged only while its CRD also \
     serves a version the table lists (matchPolicy Equivalent converts the request to it); \
     the engine judges every version of a Flux group",
    "FF140 compares URLs through regular expressions compiled from the allowed URLs (the \
     tenants ConfigMap's `.sourceUrlRegex`, `.imageRegex` and `.providerUrlRegex`): a URL with \
     a %-escape or a `.`/`..` path segment, which the engine decodes and resolves, is denied \
     whatever it resolves to",
    "FF140 names why a URL cannot be read only for white space, a scheme that is none and a \
     backslash in the host; a URL that is unreadable otherwise (a bad port, host or escape) is \
     denied as outside the tenant's list",
    "FF140: a `*` in an allowed URL's last segment may also match the URL's `.git`, which the \
     engine drops first (`repo*t` allows `repo.git` here); an allowed `*.docker.io` matches an \
     image on `index.docker.io`, which the engine reads as `docker.io`",
];

/// A CEL string literal.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list of string literals.
pub fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(quote).collect();
    format!("[{}]", quoted.join(", "))
}

/// An anchored regular expression (RE2 and Rust's `regex` read it alike) matching what any of
/// the `*` patterns matches, as `policy::glob_match` does; `None` for no patterns.
pub fn glob_regex<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let alternatives: Vec<String> = patterns
        .into_iter()
        .map(|pattern| {
            pattern
                .split('*')
                .map(escape_regex)
                .collect::<Vec<_>>()
                .join(".*")
        })
        .collect();
    (!alternatives.is_empty()).then(|| format!("^(?:{})$", alternatives.join("|")))
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// CEL words that cannot be field selectors of an untyped map (see the module doc).
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// `parent.key`, or `parent['key']` for a reserved word.
fn select(parent: &str, key: &str) -> String {
    if RESERVED.contains(&key) {
        format!("{parent}[{}]", quote(key))
    } else {
        format!("{parent}.{key}")
    }
}

/// Whether `parent` has `key` set to something other than null.
fn present(parent: &str, key: &str) -> String {
    let test = if RESERVED.contains(&key) {
        format!("{} in {parent}", quote(key))
    } else {
        format!("has({parent}.{key})")
    };
    format!("({test} && {} != null)", select(parent, key))
}

/// Whether `parent` has `key` set to a string other than `''`: the engine reads an empty
/// string as an omitted field (`Node::as_str`), as Flux does for an empty namespace.
fn present_str(parent: &str, key: &str) -> String {
    format!(
        "({} && {} != '')",
        present(parent, key),
        select(parent, key)
    )
}

/// Whether the string at `path` below `root` is set and not empty.
fn present_str_path(root: &str, path: &[&str]) -> String {
    let (last, parents) = path.split_last().map_or(("", path), |(l, p)| (*l, p));
    let mut tests = vec![present_path(root, parents)];
    tests.push(present_str(&path_expr(root, parents), last));
    tests.retain(|t| !t.is_empty());
    tests.join(" && ")
}

/// Whether every step of `path` below `root` is set: the guard before reading it.
fn present_path(root: &str, path: &[&str]) -> String {
    let mut parent = root.to_owned();
    let mut tests = Vec::new();
    for key in path {
        tests.push(present(&parent, key));
        parent = select(&parent, key);
    }
    tests.join(" && ")
}

fn path_expr(root: &str, path: &[&str]) -> String {
    path.iter()
        .fold(root.to_owned(), |parent, key| select(&parent, key))
}

/// `root` is one of `kinds`.
fn kind_is(root: &str, kinds: &[FluxKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    format!("{root}.kind in {}", quote_list(names))
}

/// `Kind/name`, as `FluxObject::display_name` writes it.
fn display(root: &str) -> String {
    format!(
        "{root}.kind + '/' + ({} ? {root}.metadata.name : '')",
        present_str_path(root, &["metadata", "name"])
    )
}

/// A finding string: `at <pointer>: <message>. Fix: <help>` (each part a CEL string).
fn finding(pointer: &str, message: &str, help: &str) -> String {
    format!("'at ' + {pointer} + ': ' + {message} + '. Fix: ' + {help}")
}

/// `[value].filter(v, keep).map(v, make)`: CEL without `cel.bind` names a value this way.
fn with(value: &str, var: &str, keep: &str, make: &str) -> String {
    format!("[{value}].filter({var}, {keep}).map({var}, {make})")
}

const NAMESPACE: &str = "request.namespace";
const TENANT: &str = "variables.tenant";

/// A tenant's entry in the tenants ConfigMap (see `admission_policy::tenants_data`).
fn tenant_data(suffix: &str) -> String {
    format!("params.data[{TENANT} + {}]", quote(&format!(".{suffix}")))
}

fn ff101_cross_namespace_source_ref(policy: &Policy, root: &str) -> String {
    let references: &[(FluxKind, &[&str])] = &[
        (FluxKind::Kustomization, &["spec", "sourceRef"]),
        (FluxKind::ImageUpdateAutomation, &["spec", "sourceRef"]),
        (
            FluxKind::HelmRelease,
            &["spec", "chart", "spec", "sourceRef"],
        ),
        (FluxKind::HelmRelease, &["spec", "chartRef"]),
        (FluxKind::ImagePolicy, &["spec", "imageRepositoryRef"]),
    ];
    let r = "x.r";
    let ns = select(r, "namespace");
    let source_kind = format!("({} ? {r}.kind : 'source')", present_str(r, "kind"));
    let name = format!("({} ? {r}.name : '')", present_str(r, "name"));
    // A shared source is refused as written too: Flux has no exception for it. At admission a
    // `${VAR}` is final (Flux substitutes before it applies): judged as written.
    let keep = format!("{} && {ns} != {NAMESPACE}", present_str(r, "namespace"));
    let message = format!(
        "{} + ' in namespace `' + {NAMESPACE} + '` references ' + {source_kind} + ' ' + {ns} + '/' + {name} + ' in another namespace'",
        display(root)
    );
    let config_q = quote(&policy.config_namespace);
    let declare = format!("'declare the ' + {source_kind} + ' in `' + {NAMESPACE} + '`'");
    // Only what Flux applies can move next to its source and still deploy into the namespace.
    let unlisted_from = |referrer: FluxKind| {
        if referrer.impersonates() {
            format!(
                "'Flux refuses cross-namespace references (AccessDenied); ' + (({NAMESPACE} == {config_q} || variables.exempt) \
                 ? {declare} \
                 : 'move this object and its source into `' + {config_q} + '` with spec.targetNamespace: ' + {NAMESPACE} + ' (`fluxfence fix --unsafe-fixes`), or put the ' + {source_kind} + ' in `' + {NAMESPACE} + '`')"
            )
        } else {
            format!("'Flux refuses cross-namespace references (AccessDenied); ' + {declare}")
        }
    };
    // One list per reference field: which published object a shared source has depends on
    // the field (`shared::form_for`), known here for each.
    let parts: Vec<String> = references
        .iter()
        .map(|(kind, path)| {
            let pointer = crate::rules::pointer(path);
            let unlisted = unlisted_from(*kind);
            let help = shared_help(policy, *kind, &pointer, &source_kind, &ns, &name, &unlisted);
            format!(
                "({} && {} ? [{{'r': {}}}].filter(x, {keep}).map(x, {}) : [])",
                kind_is(root, &[*kind]),
                present_path(root, path),
                path_expr(root, path),
                finding(&quote(&format!("{pointer}/namespace")), &message, &help)
            )
        })
        .collect();
    // ArtifactGenerator `spec.sources[]`: one reference per entry, named by its index.
    let sources = ["spec", "sources"];
    let items = path_expr(root, &sources);
    let generator = FluxKind::ArtifactGenerator;
    let help = shared_help(
        policy,
        generator,
        "/spec/sources",
        &source_kind,
        &ns,
        &name,
        &unlisted_from(generator),
    );
    let pointer = format!("'/spec/sources/' + string({items}.indexOf({r})) + '/namespace'");
    let listed = format!(
        "({} && {} ? {items}.map(s, {{'r': s}}).filter(x, {keep}).map(x, {}) : [])",
        kind_is(root, &[generator]),
        present_path(root, &sources),
        finding(&pointer, &message, &help)
    );
    parts
        .into_iter()
        .chain(std::iter::once(listed))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// FF101's help for a reference from `referrer` at `pointer` to source `kind namespace/name`:
/// for each `sharedSources` entry (the first listing the source decides, as
/// `Policy::shared_source_entry` finds it) what `rules::ff101`'s `shared_help` says, else
/// `unlisted`.
fn shared_help(
    policy: &Policy,
    referrer: FluxKind,
    pointer: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    unlisted: &str,
) -> String {
    let mut help = unlisted.to_owned();
    for (entry, source) in policy.shared_sources.iter().enumerate().rev() {
        let entry_name = format!(
            "sharedSources[{entry}] ({} {}/{})",
            source.kind, source.namespace, source.name
        );
        let listed = format!(
            "({kind} == {} && {namespace} == {} && {name} == {})",
            quote(&source.kind),
            quote(&source.namespace),
            quote(&source.name)
        );
        let allowed = match crate::shared::form_for(referrer.as_str(), pointer, &source.kind) {
            Some(form) => {
                let published = crate::shared::published(source, form);
                format!(
                    "{} + {NAMESPACE} + {}",
                    quote(&format!(
                        "Flux refuses cross-namespace references (AccessDenied); {entry_name} is published in `"
                    )),
                    quote(&format!(
                        "` by fluxfence-controller: reference kind: {}, name: {} with no namespace \
                         (the fluxfence webhook rewrites it so at admission)",
                        published.kind, published.name
                    ))
                )
            }
            None => format!(
                "{} + {NAMESPACE} + '`'",
                quote(&format!(
                    "{entry_name} is shared, but Flux can read no published copy through this field; \
                     declare the source in `"
                ))
            ),
        };
        let refused = format!(
            "{} + {NAMESPACE} + {}",
            quote(&format!("{entry_name} is not shared with namespace `")),
            quote(
                "`; add its tenant to the entry's `tenants` or the namespace to its `namespaces`"
            )
        );
        help = format!(
            "({listed} ? ({} ? {allowed} : {refused}) : {help})",
            shares_with(source)
        );
    }
    help
}

/// `Policy::shares_with` for the object's namespace: the entry names the namespace's tenant
/// (or `*`) or a pattern matching it, or names neither tenants nor namespaces.
fn shares_with(source: &crate::policy::SharedSource) -> String {
    let own = format!("{NAMESPACE} != {}", quote(&source.namespace));
    if source.tenants.is_empty() && source.namespaces.is_empty() {
        return format!("({own})");
    }
    let mut tests = Vec::new();
    if source.tenants.iter().any(|t| t == "*") {
        tests.push("true".to_owned());
    } else if !source.tenants.is_empty() {
        tests.push(format!(
            "({TENANT} != '' && {TENANT} in {})",
            quote_list(source.tenants.iter().map(String::as_str))
        ));
    }
    if let Some(regex) = glob_regex(source.namespaces.iter().map(String::as_str)) {
        tests.push(format!("{NAMESPACE}.matches({})", quote(&regex)));
    }
    format!("({own} && ({}))", tests.join(" || "))
}

fn ff102_cross_namespace_event_source(_policy: &Policy, root: &str) -> String {
    let lists = [
        (FluxKind::Receiver, "resources"),
        (FluxKind::Alert, "eventSources"),
    ];
    let parts: Vec<String> = lists
        .iter()
        .map(|(kind, field)| {
            let items = path_expr(root, &["spec", field]);
            let ns = select("e", "namespace");
            let event_kind = format!("({} ? e.kind : 'object')", present_str("e", "kind"));
            let name = format!("({} ? e.name : '')", present_str("e", "name"));
            let pointer = format!("'/spec/{field}/' + string({items}.indexOf(e)) + '/namespace'");
            let star = finding(
                &pointer,
                &format!("{} + ' uses namespace \\'*\\' for ' + {event_kind} + ' ' + {name} + ': it matches no namespace'", display(root)),
                "'only `name: \\'*\\'` is a wildcard; drop `namespace` to match the object\\'s own namespace'",
            );
            let other = finding(
                &pointer,
                &format!("{} + ' in namespace `' + {NAMESPACE} + '` watches ' + {event_kind} + ' ' + {ns} + '/' + {name} + ' in another namespace'", display(root)),
                &format!("'drop `namespace` or set it to `' + {NAMESPACE} + '`; create the {kind} in `' + {ns} + '` instead'"),
            );
            format!(
                "({} && {} ? {items}.filter(e, {} && {ns} != {NAMESPACE}).map(e, {ns} == '*' ? {star} : {other}) : [])",
                kind_is(root, &[*kind]),
                present_path(root, &["spec", field]),
                present_str("e", "namespace"),
            )
        })
        .collect();
    parts.join(" + ")
}

fn default_account(policy: &Policy) -> Option<&str> {
    policy
        .default_service_account
        .as_ref()
        .map(|sa| sa.name.as_str())
}

fn ff110_missing_service_account(policy: &Policy, root: &str) -> String {
    let (consequence, help) = match default_account(policy) {
        Some(name) => (
            format!("it is applied as the controllers' default service account `{name}`"),
            format!("set spec.serviceAccountName: {name} (`fluxfence fix`)"),
        ),
        None => (
            "it is applied with the controller's own cluster-admin permissions".to_owned(),
            "set spec.serviceAccountName to the tenant's service account".to_owned(),
        ),
    };
    let message = format!(
        "{} + {}",
        display(root),
        quote(&format!(" has no spec.serviceAccountName: {consequence}"))
    );
    format!(
        "({} && !({}) ? [{}] : [])",
        kind_is(root, IMPERSONATING),
        present_str_path(root, &["spec", "serviceAccountName"]),
        finding("'/spec/serviceAccountName'", &message, &quote(&help))
    )
}

fn ff111_service_account_unavailable(policy: &Policy, root: &str) -> String {
    ff111(policy, root, false)
}

fn ff111_with_the_default_written_out(policy: &Policy, root: &str) -> String {
    ff111(policy, root, true)
}

/// FF111; with `written_out`, an omitted account counts as spelled out (what the mutating
/// policy makes of it).
fn ff111(policy: &Policy, root: &str, written_out: bool) -> String {
    let has_account = present_str_path(root, &["spec", "serviceAccountName"]);
    let explicit = if written_out {
        "true".to_owned()
    } else {
        has_account.clone()
    };
    let account = path_expr(root, &["spec", "serviceAccountName"]);
    let default = default_account(policy);
    let candidates = match default {
        Some(name) => format!("({has_account} ? [{account}] : [{}])", quote(name)),
        None => format!("({has_account} ? [{account}] : [])"),
    };
    let default_q = default.map_or_else(|| "null".to_owned(), quote);
    let tenant_accounts = tenant_data("serviceAccounts");
    let not_allowed = format!(
        "({TENANT} != '' && {tenant_accounts} != '' && a != {default_q} && !(a in {tenant_accounts}.split(',')))"
    );
    // Where the platform provides an account: the default in its namespaces, and the policy's
    // `serviceAccounts`.
    let mut provided = Vec::new();
    if let Some(sa) = &policy.default_service_account
        && let Some(regex) = glob_regex(sa.namespaces.iter().map(String::as_str))
    {
        provided.push(format!(
            "(a == {} && {NAMESPACE}.matches({}))",
            quote(&sa.name),
            quote(&regex)
        ));
    }
    for sa in &policy.service_accounts {
        if let Some(regex) = glob_regex([sa.namespace.as_str()]) {
            provided.push(format!(
                "(a == {} && {NAMESPACE}.matches({}))",
                quote(&sa.name),
                quote(&regex)
            ));
        }
    }
    let mut known: Vec<&str> = default.into_iter().collect();
    known.extend(policy.service_accounts.iter().map(|sa| sa.name.as_str()));
    let known_by_tenants =
        "(params.data.serviceAccounts != '' && a in params.data.serviceAccounts.split(','))";
    let knows = format!("(a in {} || {known_by_tenants})", quote_list(known));
    let exists = format!(
        "({} || ({explicit} && !{knows}))",
        if provided.is_empty() {
            "false".to_owned()
        } else {
            provided.join(" || ")
        }
    );
    let how = format!(
        "({explicit} ? 'spec.serviceAccountName' : 'the policy\\'s default service account')"
    );
    let config_q = quote(&policy.config_namespace);
    let not_allowed_finding = finding(
        "'/spec/serviceAccountName'",
        &format!(
            "{} + ' is applied as service account `' + a + '` (' + {how} + '), which tenant `' + {TENANT} + '` may not use'",
            display(root)
        ),
        &format!("'use one of: ' + {tenant_accounts}.split(',').join(', ')"),
    );
    let missing_finding = finding(
        "'/spec/serviceAccountName'",
        &format!(
            "{} + ' is applied as service account `' + a + '` (' + {how} + '), which does not exist in its namespace `' + {NAMESPACE} + '`'",
            display(root)
        ),
        &format!(
            "'Flux impersonates ' + {NAMESPACE} + ':' + a + '; move the object to `' + {config_q} + '` with spec.targetNamespace: ' + {NAMESPACE} + ' (`fluxfence fix --unsafe-fixes`), or declare ServiceAccount ' + a + ' in `' + {NAMESPACE} + '`'"
        ),
    );
    let keep = format!("!a.contains('${{') && ({not_allowed} || !{exists})");
    format!(
        "({} ? {candidates}.filter(a, {keep}).map(a, {not_allowed} ? {not_allowed_finding} : {missing_finding}) : [])",
        kind_is(root, IMPERSONATING)
    )
}

fn ff120_remote_cluster_kubeconfig(_policy: &Policy, root: &str) -> String {
    let message = format!(
        "{} + ' in namespace `' + {NAMESPACE} + '` applies to a remote cluster (spec.kubeConfig)'",
        display(root)
    );
    format!(
        "({} && {} ? [{}] : [])",
        kind_is(root, IMPERSONATING),
        present_path(root, &["spec", "kubeConfig"]),
        finding(
            "'/spec/kubeConfig'",
            &message,
            "'remove spec.kubeConfig; remote clusters are managed from an exempt platform namespace'"
        )
    )
}

fn ff121_target_namespace_outside_tenant(_policy: &Policy, root: &str) -> String {
    let fields: &[(FluxKind, &str)] = &[
        (FluxKind::Kustomization, "targetNamespace"),
        (FluxKind::HelmRelease, "targetNamespace"),
        (FluxKind::HelmRelease, "storageNamespace"),
    ];
    let parts: Vec<String> = fields
        .iter()
        .map(|(kind, field)| {
            let keep = format!(
                "!t.contains('${{') && !t.matches({})",
                tenant_data("targetNamespaces")
            );
            let message = format!(
                "{} + ' deploys into `' + t + '`, outside tenant `' + {TENANT} + '`'",
                display(root)
            );
            let help = format!(
                "'use a namespace matching ' + {}",
                tenant_data("targetPatterns")
            );
            format!(
                "({TENANT} != '' && {} && {} ? {} : [])",
                kind_is(root, &[*kind]),
                present_str_path(root, &["spec", field]),
                with(
                    &path_expr(root, &["spec", field]),
                    "t",
                    &keep,
                    &finding(&quote(&format!("/spec/{field}")), &message, &help)
                )
            )
        })
        .collect();
    parts.join(" + ")
}

/// How a URL field's text becomes the URL FF140 compares (`rules::ff140`'s `url_fields`), and
/// which of the tenant's lists judges it.
#[derive(Clone, Copy)]
enum UrlText {
    /// A source's URL, as written.
    Source,
    /// A Bucket endpoint: without a scheme, `https` (`http` with `spec.insecure: true`).
    BucketEndpoint,
    /// An image reference: Docker Hub's host and `library/` spelled out, `oci://` in front.
    Image,
    /// A Provider address: judged only when it is a URL (else a channel or project name).
    ProviderAddress,
    /// A Provider proxy, as written.
    ProviderProxy,
}

impl UrlText {
    /// The tenant's list (policy key and ConfigMap key).
    fn list_key(self) -> &'static str {
        match self {
            UrlText::ProviderAddress | UrlText::ProviderProxy => "providerUrls",
            _ => "sourceUrls",
        }
    }

    /// The ConfigMap key of the list compiled for this field.
    fn regex_key(self) -> &'static str {
        match self {
            UrlText::ProviderAddress | UrlText::ProviderProxy => "providerUrlRegex",
            UrlText::Image => "imageRegex",
            _ => "sourceUrlRegex",
        }
    }
}

/// A URL field: the kinds that have it, its path, how it is read.
type UrlField = (&'static [FluxKind], &'static [&'static str], UrlText);

fn ff140_source_url_not_allowed(_policy: &Policy, root: &str) -> String {
    const SOURCES: &[FluxKind] = &[
        FluxKind::GitRepository,
        FluxKind::HelmRepository,
        FluxKind::OCIRepository,
    ];
    const FIELDS: &[UrlField] = &[
        (SOURCES, &["spec", "url"], UrlText::Source),
        (
            &[FluxKind::Bucket],
            &["spec", "endpoint"],
            UrlText::BucketEndpoint,
        ),
        (
            &[FluxKind::Bucket],
            &["spec", "sts", "endpoint"],
            UrlText::Source,
        ),
        (
            &[FluxKind::ImageRepository],
            &["spec", "image"],
            UrlText::Image,
        ),
        (
            &[FluxKind::Provider],
            &["spec", "address"],
            UrlText::ProviderAddress,
        ),
        (
            &[FluxKind::Provider],
            &["spec", "proxy"],
            UrlText::ProviderProxy,
        ),
    ];
    let parts: Vec<String> = FIELDS
        .iter()
        .map(|&(kinds, path, text)| {
            let (list_key, regex_key) = (text.list_key(), text.regex_key());
            let urls = tenant_data(list_key);
            let value = path_expr(root, path);
            let url = url_text(root, &value, text);
            let judged = match text {
                UrlText::ProviderAddress => "!x.v.contains('${') && x.v.contains('://')".to_owned(),
                _ => "!x.v.contains('${')".to_owned(),
            };
            // `%`-escapes and `.`/`..` segments are decoded and resolved by the engine; a regular
            // expression cannot, so such a URL is never allowed here.
            let plain_path = format!("!x.u.matches({})", quote("^[^?#]*(?:%|/\\.\\.?(?:[/?#]|$))"));
            let keep = format!(
                "{judged} && !({plain_path} && x.u.matches({}))",
                tenant_data(regex_key)
            );
            let message = format!(
                "{} + ' reaches `' + x.v + '`, ' + {}",
                display(root),
                url_refusal(list_key)
            );
            let help = format!(
                "'use a URL at or below one of: ' + {urls}.split('\\n').join(', ') + ' (compared by scheme, host, port and whole path segments)'"
            );
            format!(
                "({TENANT} != '' && {urls} != '' && {} && {} ? [{{'v': {value}, 'u': {url}}}].filter(x, {keep}).map(x, {}) : [])",
                kind_is(root, kinds),
                present_str_path(root, path),
                finding(&quote(&crate::rules::pointer(path)), &message, &help)
            )
        })
        .collect();
    parts.join(" + ")
}

/// Why FF140 does not allow `x.u`: the reason it cannot be read as a URL, for the reasons of
/// the engine's parser a regular expression tells apart (white space, a scheme that is none,
/// a backslash in the host), else that it is outside the tenant's list.
fn url_refusal(list_key: &str) -> String {
    let unreadable = |reason: &str| {
        format!(
            "'which cannot be read as a URL (' + {reason} + '), so tenant `' + {TENANT} + {}",
            quote(&format!("`'s {list_key} cannot allow it"))
        )
    };
    format!(
        "(x.u.matches({}) ? {} : (x.u.contains('://') && !x.u.matches({})) ? {} : x.u.matches({}) ? {} : 'outside tenant `' + {TENANT} + {})",
        quote("[\\s\\p{Z}\\p{Cc}]"),
        unreadable("'it is empty or holds white space'"),
        quote("^[A-Za-z][A-Za-z0-9+.-]*://"),
        unreadable("'`' + x.u.split('://')[0] + '` is not a URL scheme'"),
        quote("^(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*\\\\"),
        unreadable("'a backslash in the host'"),
        quote(&format!("`'s {list_key}"))
    )
}

/// The URL FF140 compares for the field at `value`, as CEL.
fn url_text(root: &str, value: &str, text: UrlText) -> String {
    match text {
        UrlText::Source | UrlText::ProviderAddress | UrlText::ProviderProxy => value.to_owned(),
        UrlText::BucketEndpoint => {
            let insecure = path_expr(root, &["spec", "insecure"]);
            let is_insecure = format!(
                "({} && (type({insecure}) == bool || type({insecure}) == string) && string({insecure}) == 'true')",
                present_path(root, &["spec", "insecure"])
            );
            format!(
                "({value}.contains('://') ? {value} : ({is_insecure} ? 'http://' : 'https://') + {value})"
            )
        }
        UrlText::Image => {
            let first = format!("{value}.split('/')[0]");
            let has_registry = format!(
                "({value}.contains('/') && ({first}.contains('.') || {first}.contains(':') || {first} == 'localhost'))"
            );
            let full = format!(
                "({has_registry} ? {value} : ({value}.contains('/') ? 'docker.io/' + {value} : 'docker.io/library/' + {value}))"
            );
            format!("({full}.contains('://') ? {full} : 'oci://' + {full})")
        }
    }
}

/// An anchored regular expression over a URL's text that matches exactly the URLs one of
/// `patterns` allows (`rules::url::Location::allows`), for URLs without `%`-escapes or `.`/`..`
/// segments (the CEL refuses those); `image` adds Docker Hub's other host names for
/// `docker.io`, as image references are read. A pattern that does not parse allows nothing.
pub fn allowed_urls_regex(patterns: &[String], image: bool) -> String {
    let alternatives: Vec<String> = patterns
        .iter()
        .filter_map(|p| Location::parse(p, None).ok())
        .map(|p| location_regex(&p, image))
        .collect();
    if alternatives.is_empty() {
        // The URL is never empty: nothing matches.
        return "^$".to_owned();
    }
    format!("^(?:{})$", alternatives.join("|"))
}

const KNOWN_SCHEMES: [&str; 4] = ["http", "https", "oci", "ssh"];

fn scheme_default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme? {
        "http" => Some(80),
        "https" | "oci" => Some(443),
        "ssh" => Some(22),
        _ => None,
    }
}

fn location_regex(pattern: &Location, image: bool) -> String {
    // Each way the URL may start: its scheme, with the ports that then equal the pattern's.
    let mut starts: Vec<(String, Option<u16>, Option<u16>)> = Vec::new();
    match &pattern.scheme {
        Some(scheme) => {
            let default = scheme_default_port(Some(scheme));
            starts.push((
                format!("(?i:{})://", escape_regex(scheme)),
                pattern.port.or(default),
                default,
            ));
        }
        None => {
            for scheme in KNOWN_SCHEMES {
                let default = scheme_default_port(Some(scheme));
                starts.push((
                    format!("(?i:{scheme})://"),
                    pattern.port.or(default),
                    default,
                ));
            }
            // Any other scheme, and none: no default port.
            starts.push(("[A-Za-z][A-Za-z0-9+.-]*://".to_owned(), pattern.port, None));
            starts.push((String::new(), pattern.port, None));
        }
    }
    let host = host_regex(&pattern.host, image);
    let authorities: Vec<String> = starts
        .into_iter()
        .filter_map(|(scheme, wanted, default)| {
            let mut ports = Vec::new();
            if wanted == default {
                ports.push(":?".to_owned());
            }
            if let Some(port) = wanted {
                ports.push(format!(":0*{port}"));
            }
            (!ports.is_empty())
                .then(|| format!("{scheme}(?:[^/?#\\\\]*@)?{host}(?:{})", ports.join("|")))
        })
        .collect();
    format!(
        "(?:{}){}",
        authorities.join("|"),
        path_regex(&pattern.segments)
    )
}

/// The host: whole labels, any case, trailing dots ignored; `*` is part of one label.
fn host_regex(host: &str, image: bool) -> String {
    let own = if host.contains(':') {
        format!("\\[{}\\]", escape_regex(host))
    } else {
        host.split('.')
            .map(|label| glob_part(label, "[A-Za-z0-9_-]*"))
            .collect::<Vec<_>>()
            .join("\\.")
    };
    let docker_hub = image
        && host.split('.').count() == 2
        && host
            .split('.')
            .zip(["docker", "io"])
            .all(|(p, l)| crate::policy::glob_match(p, l));
    if docker_hub {
        format!("(?i:{own}|index\\.docker\\.io|registry-1\\.docker\\.io)\\.*")
    } else {
        format!("(?i:{own})\\.*")
    }
}

/// The path: the pattern's segments first, whole (empty segments skipped), then more segments,
/// or the end with an optional `.git`, and any query or fragment.
fn path_regex(segments: &[String]) -> String {
    if segments.is_empty() {
        return "(?:[/?#].*)?".to_owned();
    }
    let own: String = segments
        .iter()
        .map(|s| format!("/+{}", glob_part(s, "[^/?#]*")))
        .collect();
    format!("{own}(?:/+[^/?#].*|(?:\\.git)?/*(?:[?#].*)?)")
}

/// A `*` pattern as a regular expression, `*` standing for `any`.
fn glob_part(pattern: &str, any: &str) -> String {
    pattern
        .split('*')
        .map(escape_regex)
        .collect::<Vec<_>>()
        .join(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_skips_exempt_namespaces_exactly_where_the_engine_does() {
        for cel in RULES {
            let meta = crate::rules::ALL
                .iter()
                .map(|rule| rule.meta())
                .find(|meta| meta.code == cel.code)
                .unwrap_or_else(|| panic!("{} is not a rule", cel.code));
            let skipped = meta.exemption == crate::rules::Exemption::OutsideExemptNamespaces;
            assert_eq!(cel.skipped_in_exempt_namespaces, skipped, "{}", cel.code);
        }
    }

    #[test]
    fn reserved_words_are_read_by_index_and_tested_with_in() {
        assert_eq!(select("r", "namespace"), "r['namespace']");
        assert_eq!(
            present("r", "namespace"),
            "('namespace' in r && r['namespace'] != null)"
        );
        assert_eq!(present("r", "kind"), "(has(r.kind) && r.kind != null)");
    }

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(
            glob_regex(["team-a", "team-a-*"]).as_deref(),
            Some("^(?:team-a|team-a-.*)$")
        );
        assert_eq!(glob_regex(["a.b"]).as_deref(), Some("^(?:a\\.b)$"));
        assert_eq!(glob_regex([]), None);
    }

    /// The compiled regular expression accepts a URL exactly when the engine's parsed
    /// comparison does, for URLs without `%`-escapes or `.`/`..` segments (refused in CEL).
    #[test]
    fn allowed_url_regexes_accept_what_the_engine_allows() {
        let patterns = [
            "https://github.com/org/team-a",
            "https://github.com/org/team-a-*",
            "github.com/org",
            "https://*.example.com",
            "http://proxy.internal:3128",
            "oci://ghcr.io/org/team-a/",
            "https://s3.amazonaws.com",
        ];
        let urls = [
            "https://github.com/org/team-a",
            "https://github.com/org/team-a/",
            "https://github.com/org/team-a.git",
            "https://github.com/org/team-a/sub/repo",
            "https://GitHub.com./org/team-a?ref=main#x",
            "HTTPS://github.com//org//team-a//",
            "https://github.com/org/team-a-evil",
            "https://github.com/org/team-a-app.git",
            "https://github.com/org",
            "https://github.com.evil.example/org/team-a",
            "https://evil.example/github.com/org/team-a",
            "https://github.com@evil.example/org/team-a",
            "https://token@github.com/org/team-a",
            "https://a@b@github.com/org/team-a",
            "https://github.com:443/org/team-a",
            "https://github.com:/org/team-a",
            "https://github.com:8443/org/team-a",
            "http://github.com/org/team-a",
            "http://github.com:443/org/team-a",
            "ssh://git@github.com/org/app",
            "ssh://git@github.com:22/org/app",
            "ssh://git@github.com:2222/org/app",
            "git+ssh://github.com/org/app",
            "github.com/org/app",
            "https://git.example.com/x",
            "https://a.b.example.com/x",
            "https://example.com/x",
            "http://proxy.internal:3128",
            "http://proxy.internal",
            "https://proxy.internal:3128",
            "oci://ghcr.io/org/team-a/app",
            "oci://ghcr.io/org/team-a-evil/app",
            "oci://ghcr.io:443/org/team-a",
            "https://s3.amazonaws.com",
            "https://s3.amazonaws.com/bucket?x=1",
            "https://s3.amazonaws.com.evil",
        ];
        for pattern in patterns {
            let compiled = regex::Regex::new(&allowed_urls_regex(&[pattern.to_owned()], false))
                .unwrap_or_else(|e| panic!("{pattern}: {e}"));
            let parsed = Location::parse(pattern, None).unwrap();
            for url in urls {
                let engine = Location::parse(url, None).is_ok_and(|u| parsed.allows(&u));
                assert_eq!(compiled.is_match(url), engine, "{pattern} on {url}");
            }
        }
    }

    #[test]
    fn an_image_regex_reads_docker_hub_as_the_engine_does() {
        let patterns = ["oci://docker.io/library".to_owned()];
        let compiled = regex::Regex::new(&allowed_urls_regex(&patterns, true)).unwrap();
        assert!(compiled.is_match("oci://index.docker.io/library/nginx"));
        assert!(compiled.is_match("oci://docker.io/library/nginx"));
        assert!(!compiled.is_match("oci://docker.io/fluxcd/flux"));
        let plain = regex::Regex::new(&allowed_urls_regex(&patterns, false)).unwrap();
        assert!(!plain.is_match("oci://index.docker.io/library/nginx"));
    }

    #[test]
    fn an_unreadable_pattern_allows_nothing() {
        assert_eq!(allowed_urls_regex(&["https://".to_owned()], false), "^$");
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("it's \\ x"), "'it\\'s \\\\ x'");
    }

    #[test]
    fn every_rule_is_an_engine_rule() {
        for rule in RULES {
            assert!(crate::rules::by_code(rule.code).is_some(), "{}", rule.code);
        }
    }
}
