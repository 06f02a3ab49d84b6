//! The watch caches the live audit judges: a kube-runtime reflector per Flux kind the cluster
//! serves (found by the audit's own discovery, in the version the audit reads), one on
//! ServiceAccounts and one on Namespaces (both metadata only: names and labels are all the
//! rules read). Once listed, a cache follows its watch: a quiet cluster costs no list.
//!
//! A cache is *synced* from the end of a complete list until its watch fails. A failed watch
//! is not resumed: its watcher is dropped and a fresh one lists again, after kube's backoff.
//! A resumed watch brings no event when nothing changed, so only a new list can show that the
//! cache is current again; until then no snapshot is taken, and nothing is reported from a
//! cache that may be missing objects.

use std::collections::BTreeMap;
use std::future::ready;

use fluxfence::audit::Snapshot;
use fluxfence::audit::cluster::ServedKind;
use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{Lookup, Store, reflector, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{info, warn};

/// What a watch did, as the cache's bookkeeping needs it.
#[derive(Debug)]
enum Signal {
    /// A list started: the cache keeps its old content until the list is complete.
    Listing,
    /// A list is complete: the cache holds every object.
    Listed,
    /// An object was added, changed or deleted.
    Changed,
    /// The list or the watch failed; it lists again after a backoff.
    Failed(String),
}

/// The caches of one audit, and which of them are synced.
pub struct AuditCache {
    flux: Vec<(ServedKind, Store<DynamicObject>)>,
    accounts: Store<PartialObjectMeta<ServiceAccount>>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// By cache name (`plural.group`, `serviceaccounts`, `namespaces`): whether it is synced.
    synced: BTreeMap<String, bool>,
    /// Something changed since the last [`AuditCache::snapshot`].
    changed: bool,
    signals: SelectAll<BoxStream<'static, (String, Signal)>>,
}

pub const SERVICE_ACCOUNTS: &str = "serviceaccounts";
pub const NAMESPACES: &str = "namespaces";

impl AuditCache {
    /// Starts a list/watch of every kind in `kinds`, ServiceAccounts and Namespaces. They run
    /// while [`AuditCache::next_signal`] is polled, and stop when the cache is dropped.
    pub fn start(client: &Client, kinds: &[ServedKind]) -> AuditCache {
        let mut signals = SelectAll::new();
        let mut synced = BTreeMap::new();
        let mut flux = Vec::new();
        for kind in kinds {
            let resource = api_resource(kind);
            let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
            let (store, stream) = cached(api, Writer::new(resource));
            signals.push(named(kind.resource(), stream));
            synced.insert(kind.resource(), false);
            flux.push((kind.clone(), store));
        }
        let (accounts, stream) = cached(Api::all(client.clone()), Writer::default());
        signals.push(named(SERVICE_ACCOUNTS.to_owned(), stream));
        let (namespaces, stream) = cached(Api::all(client.clone()), Writer::default());
        signals.push(named(NAMESPACES.to_owned(), stream));
        synced.insert(SERVICE_ACCOUNTS.to_owned(), false);
        synced.insert(NAMESPACES.to_owned(), false);
        AuditCache {
            flux,
            accounts,
            namespaces,
            synced,
            changed: false,
            signals,
        }
    }

    /// The Flux kinds cached, as discovery found them.
    pub fn kinds(&self) -> Vec<ServedKind> {
        self.flux.iter().map(|(kind, _)| kind.clone()).collect()
    }

    /// Waits for the next list or watch event of any cache and records it. Never returns
    /// while the caches are running (a watch that fails is retried); pending for ever when
    /// there are none.
    pub async fn next_signal(&mut self) {
        let Some((name, signal)) = self.signals.next().await else {
            return std::future::pending().await;
        };
        let was_synced = self.synced.get(&name).copied().unwrap_or(false);
        match signal {
            Signal::Listing => {}
            Signal::Listed => {
                self.synced.insert(name.clone(), true);
                self.changed = true;
                // Said once when the last cache comes in, not per cache.
                if !was_synced && self.is_synced() {
                    info!(cache = %name, "PolicyReports: every watch cache is listed; the reports follow their changes");
                }
            }
            Signal::Changed => self.changed = true,
            Signal::Failed(error) => {
                self.synced.insert(name.clone(), false);
                warn!(
                    cache = %name,
                    %error,
                    "PolicyReports: the list/watch of {name} failed; it lists again after a backoff, and no PolicyReport is written until it has (the reports keep their last content)"
                );
            }
        }
    }

    /// Whether every cache holds a complete list.
    pub fn is_synced(&self) -> bool {
        self.synced.values().all(|synced| *synced)
    }

    /// The caches not synced, by name.
    pub fn unsynced(&self) -> Vec<String> {
        self.synced
            .iter()
            .filter(|(_, synced)| !**synced)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether a cache changed since the last snapshot.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Marks the caches changed: the last snapshot was not reported, so the next pass must run.
    pub fn keep_changed(&mut self) {
        self.changed = true;
    }

    /// What the caches hold, as `fluxfence::audit::cluster::read` would list it; `None` while
    /// a cache is not synced. Clears [`AuditCache::changed`].
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        if !self.is_synced() {
            return None;
        }
        self.changed = false;
        let mut objects = Vec::new();
        for (kind, store) in &self.flux {
            let api_version = format!("{}/{}", kind.group, kind.version);
            for object in store.state() {
                objects.push(flux_object(&object, &api_version, kind.kind.as_str()));
            }
        }
        let service_accounts = self
            .accounts
            .state()
            .iter()
            .filter_map(|account| Some((ResourceExt::namespace(&**account)?, account.name_any())))
            .collect();
        let namespaces = self
            .namespaces
            .state()
            .iter()
            .map(|namespace| (namespace.name_any(), namespace.labels().clone()))
            .collect();
        Some(Snapshot {
            cluster: "the cluster".to_owned(),
            objects,
            service_accounts,
            namespaces,
        })
    }
}

/// The object as JSON with its type set, as a list item of its kind would be.
fn flux_object(object: &DynamicObject, api_version: &str, kind: &str) -> Value {
    let mut value = serde_json::json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": object.metadata,
    });
    if let (Some(fields), Value::Object(data)) = (value.as_object_mut(), &object.data) {
        for (key, field) in data {
            fields.insert(key.clone(), field.clone());
        }
    }
    value
}

fn api_resource(kind: &ServedKind) -> ApiResource {
    ApiResource {
        group: kind.group.to_owned(),
        version: kind.version.clone(),
        api_version: format!("{}/{}", kind.group, kind.version),
        kind: kind.kind.as_str().to_owned(),
        plural: kind.plural.clone(),
    }
}

/// A reflector over `api` that lists again after every failure (see the module's docs), with
/// kube's default backoff between attempts, and its events as [`Signal`]s. Managed fields are
/// dropped before an object is stored: they are most of its bytes and no rule reads them.
fn cached<K>(
    api: Api<K>,
    writer: Writer<K>,
) -> (Store<K>, impl Stream<Item = Signal> + Send + 'static)
where
    K: Resource + Lookup + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    <K as Resource>::DynamicType: Clone,
{
    let store = writer.as_reader();
    let config = watcher::Config::default().any_semantic();
    let relisting = futures::stream::repeat_with(move || {
        let events = watcher(api.clone(), config.clone())
            .modify(|object: &mut K| object.meta_mut().managed_fields = None)
            .boxed();
        // Yields up to the first failure, which ends this watcher at once: the next one
        // starts with a list.
        futures::stream::unfold(Some(events), |events| async move {
            let mut events = events?;
            let event = events.next().await?;
            let more = event.is_ok().then_some(events);
            Some((event, more))
        })
    })
    .flatten();
    let signals = reflector(writer, relisting)
        // A new watcher's first event says a list starts, not that anything succeeded: it
        // must not reset the backoff, or a list that keeps failing is retried every second.
        .try_filter(|event| ready(!matches!(event, Event::Init)))
        .default_backoff()
        .map(|event| match event {
            Ok(Event::Init | Event::InitApply(_)) => Signal::Listing,
            Ok(Event::InitDone) => Signal::Listed,
            Ok(Event::Apply(_) | Event::Delete(_)) => Signal::Changed,
            Err(error) => Signal::Failed(error.to_string()),
        });
    (store, signals)
}

fn named(
    name: String,
    signals: impl Stream<Item = Signal> + Send + 'static,
) -> BoxStream<'static, (String, Signal)> {
    signals.map(move |signal| (name.clone(), signal)).boxed()
}
