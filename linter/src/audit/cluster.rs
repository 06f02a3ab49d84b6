//! Reads a [`Snapshot`] from an API server: discovery finds every Flux kind the cluster
//! serves, and every object of each, the ServiceAccounts and the Namespaces are listed in
//! pages. Any request that fails fails the whole read, naming the verb and the resource: an
//! audit never reports on part of a cluster as if it were all of it.

use std::collections::{BTreeMap, HashSet};

use futures::future::try_join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, ListMeta};
use kube::Client;
use kube::core::Version;
use kube::core::params::ListParams;
use serde::Deserialize;
use serde_json::Value;

use super::Snapshot;
use crate::kinds::{FLUX_KINDS, FluxKind, KindInfo};

/// Objects per list request, as `kubectl get` pages (`--chunk-size`, 500).
pub const PAGE_SIZE: u32 = 500;

/// The namespaces an audit reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    AllNamespaces,
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::Namespace(ns) => format!("in namespace {ns}"),
            Scope::AllNamespaces => "in all namespaces".to_owned(),
        }
    }

    /// The collection path of a namespaced resource: `{prefix}/namespaces/{ns}/{plural}` or
    /// `{prefix}/{plural}`.
    fn path(&self, prefix: &str, plural: &str) -> String {
        match self {
            Scope::Namespace(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
            Scope::AllNamespaces => format!("{prefix}/{plural}"),
        }
    }
}

/// A request the audit could not do, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("cannot {verb} {resource} {scope}: {problem}")]
pub struct ReadError {
    pub verb: &'static str,
    pub resource: String,
    pub scope: String,
    pub problem: String,
}

/// What a request was for, to name it when it fails.
struct Request<'a> {
    verb: &'static str,
    resource: &'a str,
    scope: String,
}

impl Request<'_> {
    fn failed(&self, error: kube::Error) -> ReadError {
        ReadError {
            verb: self.verb,
            resource: self.resource.to_owned(),
            scope: self.scope.clone(),
            problem: problem(&error, self.verb, self.resource),
        }
    }
}

/// The API server's answer or the transport's failure, with the way out.
fn problem(error: &kube::Error, verb: &str, resource: &str) -> String {
    match error {
        kube::Error::Api(status) => match status.code {
            401 => format!(
                "the API server does not accept the credentials (HTTP 401: {}); check the \
                 kubeconfig's user, or log in again",
                status.message
            ),
            403 => format!(
                "forbidden by RBAC (HTTP 403: {}); the audit needs `{verb}` on `{resource}`: \
                 grant it (get and list on every Flux kind, serviceaccounts and namespaces), or \
                 audit one namespace you can read with -n",
                status.message
            ),
            410 => format!(
                "the list expired while it was read page by page (HTTP 410: {}); run the audit \
                 again",
                status.message
            ),
            code => format!("the API server answered HTTP {code}: {}", status.message),
        },
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            // Errors here often repeat their cause in their own text: say each once.
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            format!(
                "the API server cannot be reached ({text}); check --kubeconfig, --context and \
                 that the cluster is up"
            )
        }
    }
}

/// One Flux kind as the cluster serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedKind {
    pub kind: FluxKind,
    pub group: &'static str,
    pub plural: String,
    /// Every version the cluster serves it in, most stable first.
    pub served: Vec<String>,
    /// The version it is read in: the group's preferred version, else the most stable.
    pub version: String,
}

impl ServedKind {
    /// `plural.group`, as RBAC and `kubectl` name it.
    pub fn resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

/// Every Flux kind the cluster serves, with its versions (`GET /apis`, then each Flux group
/// version). A Flux group the cluster lacks is no error: there are no such objects.
pub async fn discover(client: &Client) -> Result<Vec<ServedKind>, ReadError> {
    let groups: APIGroupList = client.list_api_groups().await.map_err(|e| {
        Request {
            verb: "get",
            resource: "the API groups (/apis)",
            scope: "for discovery".into(),
        }
        .failed(e)
    })?;
    let flux_groups: HashSet<&str> = FLUX_KINDS.iter().map(|k| k.group).collect();
    let mut kinds: BTreeMap<FluxKind, ServedKind> = BTreeMap::new();
    for group in groups
        .groups
        .iter()
        .filter(|g| flux_groups.contains(g.name.as_str()))
    {
        let preferred = group.preferred_version.as_ref().map(|v| v.version.as_str());
        let mut versions: Vec<&str> = group.versions.iter().map(|v| v.version.as_str()).collect();
        versions.sort_by_cached_key(|v| std::cmp::Reverse(Version::parse(v).priority()));
        for version in versions {
            let group_version = format!("{}/{version}", group.name);
            let resources = client
                .list_api_group_resources(&group_version)
                .await
                .map_err(|e| {
                    Request {
                        verb: "get",
                        resource: &format!("the resources of {group_version}"),
                        scope: "for discovery".into(),
                    }
                    .failed(e)
                })?;
            for resource in resources.resources.iter().filter(|r| !r.name.contains('/')) {
                let Some(info) = flux_kind(&group.name, &resource.kind) else {
                    continue;
                };
                let served = kinds.entry(info.kind).or_insert_with(|| ServedKind {
                    kind: info.kind,
                    group: info.group,
                    plural: resource.name.clone(),
                    served: Vec::new(),
                    version: version.to_owned(),
                });
                served.served.push(version.to_owned());
                if Some(version) == preferred {
                    served.version = version.to_owned();
                }
            }
        }
    }
    Ok(kinds.into_values().collect())
}

fn flux_kind(group: &str, kind: &str) -> Option<&'static KindInfo> {
    FLUX_KINDS
        .iter()
        .find(|info| info.group == group && info.kind.as_str() == kind)
}

/// One page of a list.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Value>,
}

/// Every item of the collection at `path`, page by page.
async fn list_all(
    client: &Client,
    path: &str,
    what: &Request<'_>,
) -> Result<Vec<Value>, ReadError> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let request = kube::core::Request::new(path)
            .list(&params)
            .map_err(|e| ReadError {
                verb: what.verb,
                resource: what.resource.to_owned(),
                scope: what.scope.clone(),
                problem: format!("the request cannot be made: {e}"),
            })?;
        let page: Page = client.request(request).await.map_err(|e| what.failed(e))?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(items),
        }
    }
}

/// The Flux objects of one kind, in its read version.
async fn list_kind(
    client: &Client,
    kind: &ServedKind,
    scope: &Scope,
) -> Result<Vec<Value>, ReadError> {
    let resource = kind.resource();
    let prefix = format!("/apis/{}/{}", kind.group, kind.version);
    let what = Request {
        verb: "list",
        resource: &resource,
        scope: scope.describe(),
    };
    let mut items = list_all(client, &scope.path(&prefix, &kind.plural), &what).await?;
    // Items of a list carry their type for custom resources; set it for any that does not.
    let api_version = format!("{}/{}", kind.group, kind.version);
    for item in &mut items {
        if let Some(object) = item.as_object_mut() {
            object.insert("apiVersion".into(), Value::String(api_version.clone()));
            object.insert("kind".into(), Value::String(kind.kind.as_str().to_owned()));
        }
    }
    Ok(items)
}

async fn list_service_accounts(
    client: &Client,
    scope: &Scope,
) -> Result<HashSet<(String, String)>, ReadError> {
    let what = Request {
        verb: "list",
        resource: "serviceaccounts",
        scope: scope.describe(),
    };
    let items = list_all(client, &scope.path("/api/v1", "serviceaccounts"), &what).await?;
    Ok(items
        .iter()
        .filter_map(|sa| {
            let field = |name: &str| sa.pointer(&format!("/metadata/{name}"))?.as_str();
            Some((field("namespace")?.to_owned(), field("name")?.to_owned()))
        })
        .collect())
}

async fn read_namespaces(
    client: &Client,
    scope: &Scope,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ReadError> {
    let items = match scope {
        Scope::AllNamespaces => {
            let what = Request {
                verb: "list",
                resource: "namespaces",
                scope: "(cluster-scoped)".into(),
            };
            list_all(client, "/api/v1/namespaces", &what).await?
        }
        Scope::Namespace(ns) => {
            let what = Request {
                verb: "get",
                resource: "namespaces",
                scope: format!("(namespace {ns})"),
            };
            let request = http::Request::get(format!("/api/v1/namespaces/{ns}"))
                .body(Vec::new())
                .map_err(|e| ReadError {
                    verb: "get",
                    resource: "namespaces".into(),
                    scope: what.scope.clone(),
                    problem: format!("the request cannot be made: {e}"),
                })?;
            vec![
                client
                    .request::<Value>(request)
                    .await
                    .map_err(|e| what.failed(e))?,
            ]
        }
    };
    Ok(items
        .iter()
        .filter_map(|namespace| {
            let name = namespace.pointer("/metadata/name")?.as_str()?.to_owned();
            let labels = namespace
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            Some((name, labels))
        })
        .collect())
}

/// Reads everything an audit of `scope` judges. The lists run at once; the first that fails
/// fails the read.
pub async fn read(client: &Client, cluster: &str, scope: &Scope) -> Result<Snapshot, ReadError> {
    let kinds = discover(client).await?;
    let (lists, service_accounts, namespaces) = futures::try_join!(
        try_join_all(kinds.iter().map(|kind| list_kind(client, kind, scope))),
        list_service_accounts(client, scope),
        read_namespaces(client, scope),
    )?;
    Ok(Snapshot {
        cluster: cluster.to_owned(),
        objects: lists.into_iter().flatten().collect(),
        service_accounts,
        namespaces,
    })
}
