//! Wiring for shared sources: the watches that decide when a policy entry is published again.
//!
//! One watch per shared source (its namespace, its name) and one each on Kustomizations and
//! HelmReleases in every namespace. [`ReferrerIndex`] keeps, per entry, only the objects that
//! reference its source, and says which entries an event changed; those entries (and every entry
//! whose source changed) are published again by [`publish`](crate::publish::publish). A source's
//! new revision is one watch event, so it reaches every published ExternalArtifact with the
//! next reconcile. Entries are reconciled one at a time: there are few, and each is quick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::time::Duration;

use fluxfence::Policy;
use futures::{FutureExt as _, Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::publish::{self, api_resource};
use crate::shared::{self, Referrer};

/// How often every entry is published again anyway (an object deleted by hand comes back).
pub const RESYNC: Duration = Duration::from_secs(10 * 60);
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

type ReferrerForms = BTreeMap<(String, fluxfence::shared::Form), Vec<Referrer>>;

/// Per policy entry, the Kustomizations and HelmReleases that reference its source.
pub struct ReferrerIndex {
    entries: Vec<BTreeMap<String, (Value, ReferrerForms)>>,
    /// Keys seen since the watch of a kind last restarted (its `Init`).
    relisting: HashMap<String, BTreeSet<String>>,
}

/// `Kind namespace/name`: what identifies a referrer across its updates.
fn key_of(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

impl ReferrerIndex {
    pub fn new(policy: &Policy) -> ReferrerIndex {
        ReferrerIndex {
            entries: vec![BTreeMap::new(); policy.shared_sources.len()],
            relisting: HashMap::new(),
        }
    }

    /// Records an object as it is now; returns the entries whose referrers changed.
    pub fn apply(&mut self, policy: &Policy, object: Value) -> BTreeSet<usize> {
        let key = key_of(&object);
        if let Some(seen) = object["kind"]
            .as_str()
            .and_then(|kind| self.relisting.get_mut(kind))
        {
            seen.insert(key.clone());
        }
        let mut changed = BTreeSet::new();
        for (entry, referrers) in self.entries.iter_mut().enumerate() {
            let forms = shared::referrers(policy, entry, std::slice::from_ref(&object));
            let before = referrers.get(&key).map(|(_, forms)| forms);
            if before != Some(&forms) && !(before.is_none() && forms.is_empty()) {
                changed.insert(entry);
            }
            if forms.is_empty() {
                referrers.remove(&key);
            } else {
                referrers.insert(key.clone(), (object.clone(), forms));
            }
        }
        changed
    }

    /// Forgets an object; returns the entries it referenced.
    pub fn delete(&mut self, object: &Value) -> BTreeSet<usize> {
        let key = key_of(object);
        self.forget(&key)
    }

    fn forget(&mut self, key: &str) -> BTreeSet<usize> {
        let mut changed = BTreeSet::new();
        for (entry, referrers) in self.entries.iter_mut().enumerate() {
            if referrers.remove(key).is_some() {
                changed.insert(entry);
            }
        }
        changed
    }

    /// The watch of `kind` lists everything again: what it does not list was deleted meanwhile.
    pub fn relist_started(&mut self, kind: &str) {
        self.relisting.insert(kind.to_owned(), BTreeSet::new());
    }

    /// The list of `kind` is complete: forgets what it did not give.
    pub fn relist_done(&mut self, kind: &str) -> BTreeSet<usize> {
        let Some(seen) = self.relisting.remove(kind) else {
            return BTreeSet::new();
        };
        let prefix = format!("{kind} ");
        let gone: BTreeSet<String> = self
            .entries
            .iter()
            .flat_map(|referrers| referrers.keys())
            .filter(|key| key.starts_with(&prefix) && !seen.contains(*key))
            .cloned()
            .collect();
        gone.iter().flat_map(|key| self.forget(key)).collect()
    }

    /// The objects that reference entry `entry`'s source.
    pub fn referrers(&self, entry: usize) -> Vec<Value> {
        self.entries
            .get(entry)
            .map(|referrers| {
                referrers
                    .values()
                    .map(|(object, _)| object.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What woke the loop.
enum Trigger {
    Referrer(&'static str, Box<Event<DynamicObject>>),
    Source(usize),
    WatchFailed(String),
}

const REFERRER_KINDS: [(&str, &str, &str, &str); 2] = [
    (
        "Kustomization",
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
    ),
    (
        "HelmRelease",
        "helm.toolkit.fluxcd.io",
        "v2",
        "helmreleases",
    ),
];

fn triggers(client: &Client, policy: &Policy) -> Pin<Box<dyn Stream<Item = Trigger> + Send>> {
    let mut streams: Vec<Pin<Box<dyn Stream<Item = Trigger> + Send>>> = Vec::new();
    for (kind, group, version, plural) in REFERRER_KINDS {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        streams.push(Box::pin(
            watcher::watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .map(move |event| match event {
                    Ok(event) => Trigger::Referrer(kind, Box::new(event)),
                    Err(error) => Trigger::WatchFailed(format!("{kind}: {error}")),
                }),
        ));
    }
    for (entry, source) in policy.shared_sources.iter().enumerate() {
        let Some(resource) = api_resource(&source.kind) else {
            continue;
        };
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), &source.namespace, &resource);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
        let what = format!("{} {}/{}", source.kind, source.namespace, source.name);
        streams.push(Box::pin(
            watcher::watcher(api, config)
                .default_backoff()
                .map(move |event| match event {
                    Ok(_) => Trigger::Source(entry),
                    Err(error) => Trigger::WatchFailed(format!("{what}: {error}")),
                }),
        ));
    }
    Box::pin(futures::stream::select_all(streams))
}

/// Publishes the policy's shared sources until `stop` turns true. Never returns an error: a
/// failing entry is retried with backoff, a failing watch by the watcher's own backoff.
pub async fn run(client: Client, policy: Policy, mut stop: watch::Receiver<bool>) {
    loop {
        match publish::sweep(&client, &policy).await {
            Ok(outcome) if !outcome.deleted.is_empty() => {
                info!(deleted = ?outcome.deleted, "removed objects published for sources the policy no longer shares");
                break;
            }
            Ok(_) => break,
            Err(error) => warn!(%error, "cannot sweep published shared sources; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(BACKOFF_FIRST) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
    if policy.shared_sources.is_empty() {
        return;
    }
    let mut index = ReferrerIndex::new(&policy);
    let mut events = triggers(&client, &policy);
    let mut listed: BTreeSet<&'static str> = BTreeSet::new();
    let mut dirty: BTreeSet<usize> = BTreeSet::new();
    let mut retries: BTreeMap<usize, (Instant, u32)> = BTreeMap::new();
    let mut resync = Instant::now() + RESYNC;
    loop {
        let wake = retries
            .values()
            .map(|(due, _)| *due)
            .min()
            .unwrap_or(resync)
            .min(resync);
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep_until(wake) => {}
            trigger = events.next() => match trigger {
                Some(trigger) => handle(trigger, &policy, &mut index, &mut listed, &mut dirty),
                None => return,
            },
        }
        // Take every event already waiting before publishing: a burst is one reconcile each.
        while let Some(Some(trigger)) = events.next().now_or_never() {
            handle(trigger, &policy, &mut index, &mut listed, &mut dirty);
        }
        let now = Instant::now();
        if now >= resync {
            dirty.extend(0..policy.shared_sources.len());
            resync = now + RESYNC;
        }
        dirty.extend(
            retries
                .iter()
                .filter(|(_, (due, _))| *due <= now)
                .map(|(e, _)| *e),
        );
        // Publishing before both lists are complete would prune what an unlisted referrer holds.
        if listed.len() < REFERRER_KINDS.len() {
            continue;
        }
        for entry in std::mem::take(&mut dirty) {
            match publish::publish(&client, &policy, entry, &index.referrers(entry)).await {
                Ok(outcome) => {
                    retries.remove(&entry);
                    debug!(entry, applied = ?outcome.applied, deleted = ?outcome.deleted, "published shared source");
                }
                Err(error) => {
                    let attempts = retries.get(&entry).map_or(0, |(_, n)| *n);
                    let delay = BACKOFF_FIRST
                        .saturating_mul(2u32.saturating_pow(attempts))
                        .min(BACKOFF_MAX);
                    warn!(entry = %format!("sharedSources[{entry}]"), %error, retry_in = ?delay, "cannot publish shared source");
                    retries.insert(entry, (now + delay, attempts.saturating_add(1)));
                }
            }
        }
    }
}

fn handle(
    trigger: Trigger,
    policy: &Policy,
    index: &mut ReferrerIndex,
    listed: &mut BTreeSet<&'static str>,
    dirty: &mut BTreeSet<usize>,
) {
    match trigger {
        Trigger::Source(entry) => {
            dirty.insert(entry);
        }
        Trigger::WatchFailed(error) => warn!(%error, "shared sources: watch failed; retrying"),
        Trigger::Referrer(kind, event) => match *event {
            Event::Apply(object) | Event::InitApply(object) => {
                if let Some(value) = as_value(kind, &object) {
                    dirty.extend(index.apply(policy, value));
                }
            }
            Event::Delete(object) => {
                if let Some(value) = as_value(kind, &object) {
                    dirty.extend(index.delete(&value));
                }
            }
            Event::Init => index.relist_started(kind),
            Event::InitDone => {
                dirty.extend(index.relist_done(kind));
                if listed.insert(kind) && listed.len() == REFERRER_KINDS.len() {
                    // Both lists complete: publish everything once.
                    dirty.extend(0..policy.shared_sources.len());
                }
            }
        },
    }
}

/// The object as JSON with its kind: the watch of a kind gives objects whose `types` are set.
fn as_value(kind: &str, object: &DynamicObject) -> Option<Value> {
    let mut value = serde_json::to_value(object).ok()?;
    if value.get("kind").is_none_or(Value::is_null) {
        value["kind"] = Value::String(kind.to_owned());
    }
    if value["metadata"]["namespace"].is_null() {
        value["metadata"]["namespace"] = Value::String(object.namespace().unwrap_or_default());
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy::parse(
            "sharedSources:
  - {kind: OCIRepository, namespace: flux-system, name: podinfo}
  - {kind: GitRepository, namespace: flux-system, name: apps}
",
            "p.yaml",
        )
        .unwrap()
    }

    fn release(namespace: &str, chart_ref: Value) -> Value {
        json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "web", "namespace": namespace, "uid": "u1"},
            "spec": {"chartRef": chart_ref, "interval": "5m"},
        })
    }

    #[test]
    fn an_event_marks_only_the_entries_whose_referrers_changed() {
        let policy = policy();
        let mut index = ReferrerIndex::new(&policy);
        let referencing = release(
            "team-a",
            json!({"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}),
        );
        assert_eq!(
            index.apply(&policy, referencing.clone()),
            BTreeSet::from([0])
        );
        assert_eq!(index.referrers(0), std::slice::from_ref(&referencing));
        // An update that keeps the reference (values, interval) publishes nothing again.
        let mut retuned = referencing.clone();
        retuned["spec"]["interval"] = json!("1m");
        assert!(index.apply(&policy, retuned).is_empty());
        // The webhook's rewrite names the same source: no change either.
        let rewritten = release(
            "team-a",
            json!({"kind": "ExternalArtifact", "name": "flux-system.podinfo"}),
        );
        assert!(index.apply(&policy, rewritten).is_empty());
        // Pointing elsewhere releases it; an unrelated object marks nothing.
        let elsewhere = release("team-a", json!({"kind": "OCIRepository", "name": "mine"}));
        assert_eq!(index.apply(&policy, elsewhere.clone()), BTreeSet::from([0]));
        assert!(index.referrers(0).is_empty());
        assert!(index.apply(&policy, elsewhere).is_empty());
    }

    #[test]
    fn a_deleted_referrer_and_one_missing_from_a_relist_are_forgotten() {
        let policy = policy();
        let mut index = ReferrerIndex::new(&policy);
        let referencing = release(
            "team-a",
            json!({"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}),
        );
        index.apply(&policy, referencing.clone());
        assert_eq!(index.delete(&referencing), BTreeSet::from([0]));
        assert!(index.referrers(0).is_empty());

        index.apply(&policy, referencing);
        index.relist_started("HelmRelease");
        assert_eq!(index.relist_done("HelmRelease"), BTreeSet::from([0]));
        assert!(index.referrers(0).is_empty());
    }
}
