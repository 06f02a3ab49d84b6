//! The optional ServiceAccount cache: every ServiceAccount's name and namespace, kept by a kube
//! reflector (list, then watch), so that FF111 can deny an object applied as an account that
//! does not exist in its namespace at admission rather than at its first reconcile.
//!
//! Only metadata is watched (`PartialObjectMetadata`): the webhook needs names, not tokens or
//! image pull secrets. Until the first list has arrived the webhook is not ready (`/readyz`),
//! so it never judges against an empty cache. Without the cache the webhook behaves as before:
//! an explicit account the policy says nothing about is taken to exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};

/// Which ServiceAccounts exist, as the review asks it.
pub trait ServiceAccounts: Send + Sync {
    fn exists(&self, namespace: &str, name: &str) -> bool;
}

type Meta = PartialObjectMeta<ServiceAccount>;

pub struct ServiceAccountCache {
    store: Store<Meta>,
    synced: Arc<AtomicBool>,
}

impl ServiceAccountCache {
    /// Starts the list/watch of every namespace's ServiceAccounts on the current runtime; it
    /// runs (retrying with backoff, each failure logged) for as long as the process does.
    pub fn start(client: Client) -> Arc<ServiceAccountCache> {
        // An `Api` of `PartialObjectMeta` asks for metadata only.
        let api: Api<Meta> = Api::all(client);
        let (store, writer) = reflector::store::<Meta>();
        let events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            events
                .for_each(|event| async move {
                    if let Err(error) = event {
                        tracing::warn!(
                            error = %error,
                            "ServiceAccount cache: list/watch of serviceaccounts failed (the \
                             webhook needs list and watch on serviceaccounts in every \
                             namespace); retrying"
                        );
                    }
                })
                .await;
        });
        let synced = Arc::new(AtomicBool::new(false));
        let first_sync = store.clone();
        let flag = Arc::clone(&synced);
        tokio::spawn(async move {
            if first_sync.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::Release);
                tracing::info!("ServiceAccount cache: first list done");
            }
        });
        Arc::new(ServiceAccountCache { store, synced })
    }

    /// Whether the first list has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

impl ServiceAccounts for ServiceAccountCache {
    fn exists(&self, namespace: &str, name: &str) -> bool {
        self.store
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }
}
