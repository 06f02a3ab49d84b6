use super::url::{Location, image_location};
use super::{Context, Rule, RuleMeta, Subject};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;
use crate::model::FluxObject;
use crate::policy::Tenant;
use crate::yaml::Node;

/// Flags URLs of a tenant's objects outside what the tenant is allowed to reach.
pub struct SourceUrlNotAllowed;

static META: RuleMeta = RuleMeta {
    code: "FF140",
    name: "source-url-not-allowed",
    summary: "A tenant object reaches a URL the policy does not allow",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
In a tenant namespace, checks every URL the tenant writes against the tenant's allowed URLs:
GitRepository, HelmRepository and OCIRepository `spec.url`, Bucket `spec.endpoint` and
`spec.sts.endpoint`, and ImageRepository `spec.image` against `sourceUrls`; Provider
`spec.address` (when it is a URL: for some provider types it is a channel or project name)
and `spec.proxy` against `providerUrls`. A tenant without the list may use any URL.

URLs are compared as URLs, not as text: the scheme (an allowed URL written without one allows
any), the host (whole labels; `*` is one label), the port (unwritten: the scheme's default) and
the path by whole segments (`*` matches within one segment), after `%`-escapes are decoded and
`.`/`..` resolved; userinfo, query and fragment are ignored and a final `.git` is dropped. So
`https://github.com/org/team-a` allows `https://github.com/org/team-a.git` and
`https://github.com/org/team-a/sub`, but not `https://github.com/org/team-a-evil`,
`https://github.com.evil.example/org/team-a` or `https://github.com:8443/org/team-a`. A Bucket
endpoint without a scheme is `https` (`http` with `spec.insecure: true`); an image is an
`oci://` location, Docker Hub's `docker.io` and `library/` spelled out (`nginx` is
`oci://docker.io/library/nginx`). A URL that does not parse is flagged.

fluxfence-controller's copy of a shared source (`sharedSources`) in a tenant namespace reaches
what the platform shares with the tenant, not what the tenant chose: it is not judged where it
is known to be the controller's — at admission, written by the identity the webhook trusts
(`--trusted-publisher`); in `audit`, when it reaches the place its source reaches. Its labels
alone vouch for nothing: a tenant can write them, and in files FF140 judges every object.

## Why is this bad?
A source is code the cluster will run, and a Provider's address is where the tenant's events
(and their object names, revisions and messages) are sent. Pinning each tenant to its own
organisation's repositories stops a typo-squatted or personal fork from being deployed; a
string prefix would not: `https://github.com/org/team-a` is a prefix of
`https://github.com/org/team-a-evil`.

## Example
```yaml
kind: GitRepository
metadata:
  namespace: team-a
spec:
  url: https://github.com/example-org/team-a-evil
```
with `sourceUrls: [https://github.com/example-org/team-a]`.

## Use instead
```yaml
spec:
  url: https://github.com/example-org/team-a
```
or allow a family of repositories with `https://github.com/example-org/team-a-*`.
",
};

/// Which of a tenant's lists a field is judged against.
#[derive(Clone, Copy)]
enum Allowed {
    Sources,
    Providers,
}

impl Allowed {
    fn list(self, tenant: &Tenant) -> &[String] {
        match self {
            Allowed::Sources => &tenant.source_urls,
            Allowed::Providers => &tenant.provider_urls,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Allowed::Sources => "sourceUrls",
            Allowed::Providers => "providerUrls",
        }
    }
}

/// One URL field of an object.
struct UrlField<'a> {
    path: &'static [&'static str],
    node: &'a Node,
    value: &'a str,
    location: Result<Location, String>,
    allowed: Allowed,
}

impl Rule for SourceUrlNotAllowed {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        let Some(tenant) = cx.policy.tenant_of(subject.namespace) else {
            return;
        };
        if cx.is_vouched_copy(object, subject.namespace) {
            return; // reaches what the platform shares with the tenant
        }
        for field in url_fields(object) {
            let list = field.allowed.list(tenant);
            if list.is_empty() {
                continue;
            }
            let why = match &field.location {
                Ok(url) if list.iter().any(|p| pattern_allows(p, url)) => continue,
                Ok(_) => format!("outside tenant `{}`'s {}", tenant.name, field.allowed.key()),
                Err(reason) => format!(
                    "which cannot be read as a URL ({reason}), so tenant `{}`'s {} cannot allow it",
                    tenant.name,
                    field.allowed.key()
                ),
            };
            out.push(META.finding(
                super::pointer(field.path),
                field.node.span,
                format!(
                    "{} reaches `{}`, {why}",
                    object.display_name(),
                    field.value
                ),
                format!(
                    "use a URL at or below one of: {} (compared by scheme, host, port and whole path segments)",
                    list.join(", ")
                ),
            ));
        }
    }
}

/// Whether policy pattern `pattern` allows `url`; the policy's own check refuses patterns that
/// do not parse, so one that does not here allows nothing.
fn pattern_allows(pattern: &str, url: &Location) -> bool {
    Location::parse(pattern, None).is_ok_and(|p| p.allows(url))
}

/// The URL fields of `object` that are written as plain strings (a `${VAR}` is substituted by
/// Flux and judged where the build resolves it).
fn url_fields(object: &FluxObject) -> Vec<UrlField<'_>> {
    let insecure = object
        .root
        .path(&["spec", "insecure"])
        .and_then(Node::as_str)
        == Some("true");
    let bucket_scheme = if insecure { "http" } else { "https" };
    let fields: &[(&'static [&'static str], Allowed)] = match object.kind {
        FluxKind::GitRepository | FluxKind::HelmRepository | FluxKind::OCIRepository => {
            &[(&["spec", "url"], Allowed::Sources)]
        }
        FluxKind::Bucket => &[
            (&["spec", "endpoint"], Allowed::Sources),
            (&["spec", "sts", "endpoint"], Allowed::Sources),
        ],
        FluxKind::ImageRepository => &[(&["spec", "image"], Allowed::Sources)],
        FluxKind::Provider => &[
            (&["spec", "address"], Allowed::Providers),
            (&["spec", "proxy"], Allowed::Providers),
        ],
        _ => &[],
    };
    fields
        .iter()
        .filter_map(|&(path, allowed)| {
            let node = object.root.path(path)?;
            let value = node.as_str()?;
            if value.contains("${") {
                return None;
            }
            let location = match (object.kind, path.last()) {
                (FluxKind::ImageRepository, _) => image_location(value),
                (FluxKind::Bucket, Some(&"endpoint")) if path.len() == 2 => {
                    Location::parse(value, Some(bucket_scheme))
                }
                // An address that is no URL is a channel, a project or a namespace.
                (FluxKind::Provider, Some(&"address")) if !value.contains("://") => return None,
                _ => Location::parse(value, None),
            };
            Some(UrlField {
                path,
                node,
                value,
                location,
                allowed,
            })
        })
        .collect()
}
