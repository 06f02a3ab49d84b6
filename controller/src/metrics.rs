//! Every metric the controller exports, in Prometheus text format.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::crd::ComplianceState;

/// Reconciles run, whatever their result.
pub const RECONCILES: &str = "fluxfence_controller_reconciles_total";
/// Reconciles that failed, by reason (the error's kind).
pub const ERRORS: &str = "fluxfence_controller_reconcile_errors_total";
/// Time one reconcile took, API calls included.
pub const DURATION: &str = "fluxfence_controller_reconcile_duration_seconds";
/// FluxConfigs by their last reported compliance state.
pub const CONFIGS: &str = "fluxfence_controller_configs";
/// 1 while this replica holds the leader Lease, else 0.
pub const LEADER: &str = "fluxfence_controller_leader";
/// Passes of the live audit over the watch caches (PolicyReports on).
pub const POLICY_REPORT_PASSES: &str = "fluxfence_policy_report_passes_total";
/// Findings of the last live audit (PolicyReports on), by rule, severity and namespace.
pub const POLICY_RESULTS: &str = "fluxfence_policy_results";

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Why a reconcile failed: a closed set, so no error can create new series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// The API server refused or failed a request.
    Api,
    /// The auth Secret exists but cannot be used.
    Secret,
    /// Key generation failed.
    Key,
    /// An object could not be serialised.
    Serialize,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 4] = [
        ErrorReason::Api,
        ErrorReason::Secret,
        ErrorReason::Key,
        ErrorReason::Serialize,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Api => "api",
            ErrorReason::Secret => "secret",
            ErrorReason::Key => "key",
            ErrorReason::Serialize => "serialize",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    errors: [AtomicU64; ErrorReason::ALL.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_nanos: AtomicU64,
    /// The last state of each FluxConfig (`namespace/name`), for the gauge.
    states: Mutex<HashMap<String, ComplianceState>>,
    leader: AtomicU64,
    policy_report_passes: AtomicU64,
    pub policy_results: crate::reports::PolicyResults,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.duration_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn error(&self, reason: ErrorReason) {
        if let Some(i) = ErrorReason::ALL.iter().position(|r| *r == reason) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn compliance(&self, config: &str, state: Option<ComplianceState>) {
        // A poisoned lock only means another thread panicked mid-insert: the map is still a map.
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            Some(state) => states.insert(config.to_owned(), state),
            None => states.remove(config),
        };
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(u64::from(leader), Ordering::Relaxed);
    }

    pub fn policy_report_pass(&self) {
        self.policy_report_passes.fetch_add(1, Ordering::Relaxed);
    }

    /// Passes of the live audit so far.
    pub fn policy_report_passes(&self) -> u64 {
        self.policy_report_passes.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        header(&mut out, RECONCILES, "counter", "Reconciles run.");
        let _ = writeln!(
            out,
            "{RECONCILES} {}",
            self.reconciles.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            ERRORS,
            "counter",
            "Reconciles that failed, by reason.",
        );
        for (i, reason) in ErrorReason::ALL.iter().enumerate() {
            let value = self.errors[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{ERRORS}{{reason=\"{}\"}} {value}", reason.as_str());
        }

        header(&mut out, DURATION, "histogram", "Time one reconcile took.");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{DURATION}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{DURATION}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.duration_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{DURATION}_sum {sum}");
        let _ = writeln!(out, "{DURATION}_count {count}");

        header(
            &mut out,
            CONFIGS,
            "gauge",
            "FluxConfigs by compliance state.",
        );
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        for state in ComplianceState::ALL {
            let n = states.values().filter(|s| **s == state).count();
            let _ = writeln!(
                out,
                "{CONFIGS}{{compliance_state=\"{}\"}} {n}",
                state.as_str()
            );
        }
        drop(states);

        header(
            &mut out,
            LEADER,
            "gauge",
            "1 while this replica holds the leader Lease.",
        );
        let _ = writeln!(out, "{LEADER} {}", self.leader.load(Ordering::Relaxed));
        header(
            &mut out,
            POLICY_REPORT_PASSES,
            "counter",
            "Passes of the live audit over the watch caches.",
        );
        let _ = writeln!(
            out,
            "{POLICY_REPORT_PASSES} {}",
            self.policy_report_passes()
        );
        self.policy_results.render(&mut out);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let metrics = Metrics::new();
        metrics.reconciled(Duration::from_millis(20));
        metrics.reconciled(Duration::from_secs(20));
        metrics.error(ErrorReason::Api);
        metrics.compliance("ns/a", Some(ComplianceState::Compliant));
        metrics.compliance("ns/b", Some(ComplianceState::Compliant));
        metrics.compliance("ns/c", Some(ComplianceState::NonCompliant));
        metrics.compliance("ns/b", None);
        let text = metrics.render();
        assert!(text.contains("fluxfence_controller_reconciles_total 2\n"));
        assert!(text.contains("fluxfence_controller_reconcile_errors_total{reason=\"api\"} 1\n"));
        assert!(
            text.contains(
                "fluxfence_controller_reconcile_duration_seconds_bucket{le=\"0.025\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "fluxfence_controller_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n"
            )
        );
        assert!(text.contains("fluxfence_controller_configs{compliance_state=\"Compliant\"} 1\n"));
        assert!(
            text.contains("fluxfence_controller_configs{compliance_state=\"Non-Compliant\"} 1\n")
        );
        assert!(text.contains("fluxfence_controller_leader 0\n"));
    }
}
