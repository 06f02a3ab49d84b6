//! PolicyReports of the live audit, kept current: the leader keeps watch caches of every Flux
//! kind the cluster serves, its ServiceAccounts and its Namespaces
//! ([`AuditCache`](crate::audit_cache::AuditCache)), and judges what they hold with the engine
//! and policy of `fluxfence audit -A`, writing one `wgpolicyk8s.io/v1alpha2` PolicyReport per
//! namespace. A pass runs only when a cache changed (an event arrived), at most once per
//! interval, and writes only the reports whose content changed: a quiet cluster costs no list
//! and no write, and a busy one at most one pass per interval. The
//! `fluxfence_policy_results{rule,severity,namespace}` gauges count the findings of the last
//! pass. Nothing is watched, judged or written while the PolicyReport CRD is not installed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use fluxfence::Policy;
use fluxfence::audit::cluster::{self, ServedKind};
use fluxfence::audit::{self, Snapshot, policy_report};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use crate::audit_cache::AuditCache;
use crate::metrics::{Metrics, POLICY_RESULTS};

/// The field manager of every report write.
pub const FIELD_MANAGER: &str = "fluxfence-controller";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The flags of the reports (flattened into `run`'s).
#[derive(clap::Args, Debug, Clone)]
pub struct ReportConfig {
    /// Keep one PolicyReport (wgpolicyk8s.io/v1alpha2) per namespace with the audit's findings,
    /// when the PolicyReport CRD is installed. Needs list and watch on every Flux kind,
    /// serviceaccounts and namespaces, and get/list/create/patch/delete on policyreports.
    #[arg(long, env = "FLUXFENCE_POLICY_REPORTS")]
    pub policy_reports: bool,
    /// Least seconds between two audits (an audit runs only after a change), and how often
    /// discovery looks for the PolicyReport CRD and for Flux kinds installed since; a report
    /// is written at most once per interval.
    #[arg(
        long,
        env = "FLUXFENCE_POLICY_REPORT_INTERVAL_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub policy_report_interval_seconds: u64,
}

fn report_resource() -> ApiResource {
    ApiResource {
        group: "wgpolicyk8s.io".into(),
        version: "v1alpha2".into(),
        api_version: policy_report::API_VERSION.into(),
        kind: policy_report::KIND.into(),
        plural: "policyreports".into(),
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Namespaces whose report was written (created or changed).
    pub written: Vec<String>,
    /// Namespaces whose report was deleted: they hold no Flux object any more.
    pub deleted: Vec<String>,
    /// False when the PolicyReport CRD is not served: nothing was read or written.
    pub crd_installed: bool,
}

/// The reports as last written (or found at start), by namespace: what a pass compares with.
#[derive(Default)]
pub struct Reporter {
    written: Option<BTreeMap<String, Value>>,
}

/// The part of a stored report that fluxfence writes: what is compared.
fn written_part(report: &Value) -> Value {
    let mut part = serde_json::Map::new();
    for key in ["apiVersion", "kind", "summary", "results"] {
        if let Some(value) = report.get(key) {
            part.insert(key.into(), value.clone());
        }
    }
    let metadata = &report["metadata"];
    part.insert(
        "metadata".into(),
        serde_json::json!({
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": {MANAGED_BY: metadata["labels"][MANAGED_BY]},
        }),
    );
    Value::Object(part)
}

impl Reporter {
    /// Judges `snapshot` and makes the writes it calls for.
    pub async fn pass(
        &mut self,
        client: &Client,
        snapshot: Snapshot,
        policy: &Policy,
        results: &PolicyResults,
    ) -> anyhow::Result<Pass> {
        if !crd_installed(client).await? {
            return Ok(Pass::default());
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &report_resource());
        if self.written.is_none() {
            // After a restart: the reports already there count as written.
            let existing = api
                .list(
                    &ListParams::default()
                        .labels(&format!("{MANAGED_BY}={}", policy_report::SOURCE)),
                )
                .await?;
            let mut found = BTreeMap::new();
            for report in existing {
                if report.metadata.name.as_deref() != Some(policy_report::NAME) {
                    continue;
                }
                let namespace = report.metadata.namespace.clone().unwrap_or_default();
                found.insert(namespace, written_part(&serde_json::to_value(&report)?));
            }
            self.written = Some(found);
        }
        let audit = audit::judge(snapshot, policy, &|_| true);
        results.set(&audit);
        let desired = policy_report::reports(&audit);
        let written = self.written.get_or_insert_with(BTreeMap::new);
        let mut pass = Pass {
            crd_installed: true,
            ..Pass::default()
        };
        for (namespace, report) in &desired {
            let part = written_part(report);
            if written.get(namespace) == Some(&part) {
                continue;
            }
            let namespaced: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &report_resource());
            namespaced
                .patch(
                    policy_report::NAME,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(report),
                )
                .await?;
            written.insert(namespace.clone(), part);
            pass.written.push(namespace.clone());
        }
        let gone: Vec<String> = written
            .keys()
            .filter(|namespace| !desired.contains_key(*namespace))
            .cloned()
            .collect();
        for namespace in gone {
            let namespaced: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &report_resource());
            match namespaced
                .delete(policy_report::NAME, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                // Deleted with its namespace, or by hand: the goal holds.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
            written.remove(&namespace);
            pass.deleted.push(namespace);
        }
        Ok(pass)
    }
}

/// Whether the API server serves `wgpolicyk8s.io/v1alpha2` PolicyReports.
async fn crd_installed(client: &Client) -> anyhow::Result<bool> {
    match client
        .list_api_group_resources(policy_report::API_VERSION)
        .await
    {
        Ok(resources) => Ok(resources
            .resources
            .iter()
            .any(|r| r.name == "policyreports")),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Keeps the reports current until `stop` says so. Until the PolicyReport CRD is installed it
/// only looks for it, once per interval. Then it discovers the Flux kinds, starts the watch
/// caches and, each time a cache changes, runs a pass over their content once they are all
/// synced and an interval has gone by since the last pass. Discovery runs again every
/// interval: a Flux kind installed or a version added later gets its cache. A failed pass is
/// logged and the next interval tries again.
pub async fn run(
    client: Client,
    policy: Policy,
    interval: Duration,
    metrics: std::sync::Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut discovery = tokio::time::interval(interval);
    discovery.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut said_no_crd = false;
    let Some(mut cache) = start_caches(&client, &mut discovery, &mut said_no_crd, &mut stop).await
    else {
        return;
    };
    info!(kinds = ?cache.kinds().iter().map(ServedKind::resource).collect::<Vec<_>>(), "PolicyReports: watching the Flux kinds, serviceaccounts and namespaces; the first pass runs once every cache is listed");
    let mut reporter = Reporter::default();
    let mut next_pass = Instant::now();
    loop {
        let pass_due = cache.changed() && cache.is_synced();
        let wake = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = cache.next_signal() => continue,
            _ = discovery.tick() => Wake::Discovery,
            () = tokio::time::sleep_until(next_pass), if pass_due => Wake::Pass,
        };
        match wake {
            Wake::Discovery => {
                if let Some(found) = rediscover(&client, &cache.kinds()).await {
                    info!(kinds = ?found.iter().map(ServedKind::resource).collect::<Vec<_>>(), "PolicyReports: the served Flux kinds changed; listing everything again");
                    cache = AuditCache::start(&client, &found);
                }
            }
            Wake::Pass => {
                next_pass = Instant::now() + interval;
                run_pass(
                    &mut reporter,
                    &mut cache,
                    &client,
                    &policy,
                    &metrics,
                    &mut said_no_crd,
                )
                .await;
            }
        }
    }
}

/// Waits for the PolicyReport CRD (looked for at each tick of `discovery`), then discovers the
/// served Flux kinds and starts their caches; `None` when `stop` came first.
async fn start_caches(
    client: &Client,
    discovery: &mut tokio::time::Interval,
    said_no_crd: &mut bool,
    stop: &mut watch::Receiver<bool>,
) -> Option<AuditCache> {
    loop {
        tokio::select! {
            _ = discovery.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return None,
        }
        match crd_installed(client).await {
            Ok(true) => {}
            Ok(false) => {
                if !*said_no_crd {
                    info!(
                        "PolicyReports: the wgpolicyk8s.io/v1alpha2 PolicyReport CRD is not installed; checking again every interval"
                    );
                    *said_no_crd = true;
                }
                continue;
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "PolicyReports: cannot tell whether the PolicyReport CRD is installed; checking again next interval");
                continue;
            }
        }
        match cluster::discover(client).await {
            Ok(kinds) => return Some(AuditCache::start(client, &kinds)),
            Err(error) => {
                warn!(%error, "PolicyReports: discovery of the Flux kinds failed; trying again next interval")
            }
        }
    }
}

/// What the loop woke for, besides a cache's event.
enum Wake {
    Discovery,
    Pass,
}

/// The served Flux kinds, when they differ from `watched`; `None` when they do not, or when
/// discovery fails (logged; the caches keep running).
async fn rediscover(client: &Client, watched: &[ServedKind]) -> Option<Vec<ServedKind>> {
    match cluster::discover(client).await {
        Ok(found) if found != watched => Some(found),
        Ok(_) => None,
        Err(error) => {
            warn!(%error, "PolicyReports: discovery of the Flux kinds failed; the watches run on");
            None
        }
    }
}

/// One pass over the caches' content, logged. The caches stay marked changed when nothing
/// could be reported, so the next interval tries again.
async fn run_pass(
    reporter: &mut Reporter,
    cache: &mut AuditCache,
    client: &Client,
    policy: &Policy,
    metrics: &Metrics,
    said_no_crd: &mut bool,
) {
    let Some(snapshot) = cache.snapshot() else {
        info!(unsynced = ?cache.unsynced(), "PolicyReports: a watch cache is not listed; no report is written until it is");
        return;
    };
    metrics.policy_report_pass();
    match reporter
        .pass(client, snapshot, policy, &metrics.policy_results)
        .await
    {
        Ok(pass) if !pass.crd_installed => {
            cache.keep_changed();
            if !*said_no_crd {
                info!(
                    "PolicyReports: the wgpolicyk8s.io/v1alpha2 PolicyReport CRD is not installed; checking again every interval"
                );
                *said_no_crd = true;
            }
        }
        Ok(pass) => {
            *said_no_crd = false;
            if !pass.written.is_empty() || !pass.deleted.is_empty() {
                info!(written = ?pass.written, deleted = ?pass.deleted, "PolicyReports updated");
            }
        }
        Err(error) => {
            cache.keep_changed();
            warn!(error = %format!("{error:#}"), "PolicyReports: the audit failed; the reports keep their last content");
        }
    }
}

/// `fluxfence_policy_results{rule,severity,namespace}`: the findings of the last pass.
#[derive(Default)]
pub struct PolicyResults {
    counts: Mutex<BTreeMap<(String, String, String), usize>>,
}

impl PolicyResults {
    pub fn set(&self, audit: &audit::Audit) {
        let mut counts = BTreeMap::new();
        for (object, diagnostic) in audit.objects.iter().flat_map(|o| {
            audit.report.diagnostics[o.diagnostics.clone()]
                .iter()
                .map(move |d| (o, d))
        }) {
            let key = (
                diagnostic.finding.code.to_owned(),
                diagnostic.finding.severity.as_str().to_owned(),
                object.namespace.clone(),
            );
            *counts.entry(key).or_insert(0) += 1;
        }
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }

    /// The gauge in Prometheus text format: one series per rule, severity and namespace with
    /// findings (a series whose findings are gone goes with them).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {POLICY_RESULTS} Findings of the last live audit, by rule, severity and namespace."
        );
        let _ = writeln!(out, "# TYPE {POLICY_RESULTS} gauge");
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for ((rule, severity, namespace), count) in counts.iter() {
            let _ = writeln!(
                out,
                "{POLICY_RESULTS}{{rule=\"{rule}\",severity=\"{severity}\",namespace=\"{namespace}\"}} {count}"
            );
        }
    }
}
