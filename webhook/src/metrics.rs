//! Every metric the webhook exports, in Prometheus text format.
//!
//! All label values come from closed sets (endpoints, Flux kinds, verdicts, rule codes), so
//! each series is a slot in a fixed array of atomics: recording is lock-free and allocation-free
//! on the request path, and no request can create new series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxfence::Severity;
use fluxfence::kinds::{FLUX_KINDS, FluxKind};

use crate::review::{Endpoint, Verdict};

/// Admission reviews answered, by endpoint, Flux kind (`other` for the rest) and verdict.
pub const REQUESTS: &str = "fluxfence_webhook_requests_total";
/// Rule findings reported, by endpoint, rule code and severity.
pub const FINDINGS: &str = "fluxfence_webhook_findings_total";
/// Time from reading the request to having the response, by endpoint.
pub const LATENCY: &str = "fluxfence_webhook_request_duration_seconds";
/// Policy file reloads after a change, by result (`success`, `error`).
pub const POLICY_RELOADS: &str = "fluxfence_webhook_policy_reloads_total";
/// Reloads of the serving certificate/key or of the client CA after a change, by result
/// (`success`, `error`).
pub const CERTIFICATE_RELOADS: &str = "fluxfence_webhook_certificate_reloads_total";
/// Requests that could not be judged normally, by endpoint and reason.
pub const ERRORS: &str = "fluxfence_webhook_errors_total";
/// 1, labelled with the version of the binary.
pub const BUILD_INFO: &str = "fluxfence_build_info";
/// When the serving certificate loaded last stops being valid (its notAfter), in Unix seconds.
pub const CERTIFICATE_EXPIRY: &str = "fluxfence_webhook_certificate_expiry_timestamp_seconds";
/// 1 while the policy file cannot be read (deleted, unmounted): the policy loaded last is
/// still enforced.
pub const POLICY_FILE_UNREADABLE: &str = "fluxfence_webhook_policy_file_unreadable";
/// The standard process metrics (Linux: read from /proc/self).
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START: &str = "process_start_time_seconds";

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Why a request counted in [`ERRORS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReason {
    /// The body was not an AdmissionReview with a uid: answered 400.
    BadRequest,
    /// The body was over `--max-body-bytes`: answered 413.
    BodyTooLarge,
    /// The body did not arrive within `--body-read-timeout-seconds`: answered 408.
    BodyTimeout,
    /// An AdmissionReview with a uid whose object could not be read: denied.
    UnreadableReview,
    /// The engine refused the object (e.g. nested too deep): denied.
    Engine,
}

impl ErrorReason {
    const ALL: [ErrorReason; 5] = [
        ErrorReason::BadRequest,
        ErrorReason::BodyTooLarge,
        ErrorReason::BodyTimeout,
        ErrorReason::UnreadableReview,
        ErrorReason::Engine,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ErrorReason::BadRequest => "bad_request",
            ErrorReason::BodyTooLarge => "body_too_large",
            ErrorReason::BodyTimeout => "body_timeout",
            ErrorReason::UnreadableReview => "unreadable_review",
            ErrorReason::Engine => "engine",
        }
    }
}

/// Whether a reload of a watched file took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Error,
}

impl ReloadResult {
    const ALL: [ReloadResult; 2] = [ReloadResult::Success, ReloadResult::Error];

    fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Error => "error",
        }
    }
}

const ENDPOINTS: [Endpoint; 2] = [Endpoint::Validate, Endpoint::Mutate];
/// Flux kinds plus one slot for anything else.
const KIND_SLOTS: usize = FLUX_KINDS.len() + 1;
const SEVERITIES: [Severity; 2] = [Severity::Warn, Severity::Deny];

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn endpoint_index(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::Validate => 0,
        Endpoint::Mutate => 1,
    }
}

fn kind_index(kind: Option<FluxKind>) -> usize {
    kind.and_then(|k| FLUX_KINDS.iter().position(|info| info.kind == k))
        .unwrap_or(FLUX_KINDS.len())
}

fn kind_label(slot: usize) -> &'static str {
    FLUX_KINDS
        .get(slot)
        .map_or("other", |info| info.kind.as_str())
}

fn rule_index(code: &str) -> Option<usize> {
    fluxfence::rules::ALL
        .iter()
        .position(|rule| rule.meta().code == code)
}

struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: counters(BUCKETS.len()),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        // Buckets are stored non-cumulatively and summed when rendered.
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The webhook's metrics registry; one per server, shared through the app state.
pub struct Metrics {
    requests: Box<[AtomicU64]>,
    findings: Box<[AtomicU64]>,
    latency: [Histogram; 2],
    errors: Box<[AtomicU64]>,
    policy_reloads: [AtomicU64; 2],
    certificate_reloads: [AtomicU64; 2],
    /// `i64::MIN` until a certificate with a readable notAfter is loaded.
    certificate_expiry: AtomicI64,
    policy_file_unreadable: AtomicBool,
    /// Unix seconds when the registry (the process, near enough) started.
    started: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: counters(ENDPOINTS.len() * KIND_SLOTS * Verdict::ALL.len()),
            findings: counters(ENDPOINTS.len() * fluxfence::rules::ALL.len() * SEVERITIES.len()),
            latency: [Histogram::new(), Histogram::new()],
            errors: counters(ENDPOINTS.len() * ErrorReason::ALL.len()),
            policy_reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            certificate_reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            certificate_expiry: AtomicI64::new(i64::MIN),
            policy_file_unreadable: AtomicBool::new(false),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// The serving certificate's notAfter, in Unix seconds.
    pub fn set_certificate_expiry(&self, not_after: Option<i64>) {
        self.certificate_expiry
            .store(not_after.unwrap_or(i64::MIN), Ordering::Relaxed);
    }

    pub fn set_policy_file_unreadable(&self, unreadable: bool) {
        self.policy_file_unreadable
            .store(unreadable, Ordering::Relaxed);
    }

    fn request_slot(endpoint: Endpoint, kind: usize, verdict: Verdict) -> usize {
        (endpoint_index(endpoint) * KIND_SLOTS + kind) * Verdict::ALL.len() + verdict.index()
    }

    fn finding_slot(endpoint: Endpoint, rule: usize, severity: usize) -> usize {
        (endpoint_index(endpoint) * fluxfence::rules::ALL.len() + rule) * SEVERITIES.len()
            + severity
    }

    /// Records one answered review.
    pub fn review(
        &self,
        endpoint: Endpoint,
        kind: Option<FluxKind>,
        verdict: Verdict,
        findings: &[(&'static str, Severity)],
        elapsed: Duration,
    ) {
        let slot = Metrics::request_slot(endpoint, kind_index(kind), verdict);
        self.requests[slot].fetch_add(1, Ordering::Relaxed);
        for (code, severity) in findings {
            let Some(rule) = rule_index(code) else {
                continue;
            };
            let Some(sev) = SEVERITIES.iter().position(|s| s == severity) else {
                continue;
            };
            self.findings[Metrics::finding_slot(endpoint, rule, sev)]
                .fetch_add(1, Ordering::Relaxed);
        }
        self.latency[endpoint_index(endpoint)].observe(elapsed);
    }

    pub fn error(&self, endpoint: Endpoint, reason: ErrorReason) {
        let reason_index = ErrorReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        let slot = endpoint_index(endpoint) * ErrorReason::ALL.len() + reason_index;
        self.errors[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn policy_reload(&self, result: ReloadResult) {
        self.policy_reloads[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn certificate_reload(&self, result: ReloadResult) {
        self.certificate_reloads[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_findings(&mut out);
        self.render_latency(&mut out);
        self.render_errors(&mut out);
        render_reloads(
            &mut out,
            POLICY_RELOADS,
            "Policy file reloads after a change.",
            &self.policy_reloads,
        );
        render_reloads(
            &mut out,
            CERTIFICATE_RELOADS,
            "Serving certificate reloads after a change.",
            &self.certificate_reloads,
        );
        self.render_state(&mut out);
        render_process(&mut out, self.started);
        out
    }

    fn render_state(&self, out: &mut String) {
        header(out, BUILD_INFO, "gauge", "The running binary's version.");
        let _ = writeln!(
            out,
            "{BUILD_INFO}{{component=\"webhook\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let expiry = self.certificate_expiry.load(Ordering::Relaxed);
        if expiry != i64::MIN {
            header(
                out,
                CERTIFICATE_EXPIRY,
                "gauge",
                "notAfter of the serving certificate, in Unix seconds.",
            );
            let _ = writeln!(out, "{CERTIFICATE_EXPIRY} {expiry}");
        }
        header(
            out,
            POLICY_FILE_UNREADABLE,
            "gauge",
            "1 while the policy file cannot be read; the policy loaded last is enforced.",
        );
        let unreadable = u8::from(self.policy_file_unreadable.load(Ordering::Relaxed));
        let _ = writeln!(out, "{POLICY_FILE_UNREADABLE} {unreadable}");
    }

    fn render_requests(&self, out: &mut String) {
        header(out, REQUESTS, "counter", "Admission reviews answered.");
        for endpoint in ENDPOINTS {
            for kind in 0..KIND_SLOTS {
                for verdict in Verdict::ALL {
                    let value = self.requests[Metrics::request_slot(endpoint, kind, verdict)]
                        .load(Ordering::Relaxed);
                    // Only series that happened: 180 zero lines would drown the useful ones.
                    if value > 0 {
                        let _ = writeln!(
                            out,
                            "{REQUESTS}{{endpoint=\"{}\",kind=\"{}\",verdict=\"{}\"}} {value}",
                            endpoint.as_str(),
                            kind_label(kind),
                            verdict.as_str()
                        );
                    }
                }
            }
        }
    }

    fn render_findings(&self, out: &mut String) {
        header(out, FINDINGS, "counter", "Rule findings reported.");
        for endpoint in ENDPOINTS {
            for (rule, meta) in fluxfence::rules::ALL.iter().map(|r| r.meta()).enumerate() {
                for (sev, severity) in SEVERITIES.iter().enumerate() {
                    let value = self.findings[Metrics::finding_slot(endpoint, rule, sev)]
                        .load(Ordering::Relaxed);
                    if value > 0 {
                        let _ = writeln!(
                            out,
                            "{FINDINGS}{{endpoint=\"{}\",rule=\"{}\",severity=\"{}\"}} {value}",
                            endpoint.as_str(),
                            meta.code,
                            severity.as_str()
                        );
                    }
                }
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        header(
            out,
            LATENCY,
            "histogram",
            "Time to judge an admission review, body read to response.",
        );
        for endpoint in ENDPOINTS {
            let histogram = &self.latency[endpoint_index(endpoint)];
            let name = endpoint.as_str();
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(histogram.buckets.iter()) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{LATENCY}_bucket{{endpoint=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = histogram.count.load(Ordering::Relaxed);
            let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{LATENCY}_bucket{{endpoint=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "{LATENCY}_sum{{endpoint=\"{name}\"}} {sum}");
            let _ = writeln!(out, "{LATENCY}_count{{endpoint=\"{name}\"}} {count}");
        }
    }

    fn render_errors(&self, out: &mut String) {
        header(
            out,
            ERRORS,
            "counter",
            "Requests that could not be judged normally.",
        );
        for endpoint in ENDPOINTS {
            for (i, reason) in ErrorReason::ALL.iter().enumerate() {
                let value = self.errors[endpoint_index(endpoint) * ErrorReason::ALL.len() + i]
                    .load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{ERRORS}{{endpoint=\"{}\",reason=\"{}\"}} {value}",
                    endpoint.as_str(),
                    reason.as_str()
                );
            }
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render_reloads(out: &mut String, name: &str, help: &str, values: &[AtomicU64; 2]) {
    header(out, name, "counter", help);
    for result in ReloadResult::ALL {
        let _ = writeln!(
            out,
            "{name}{{result=\"{}\"}} {}",
            result.as_str(),
            values[result as usize].load(Ordering::Relaxed)
        );
    }
}

/// CPU time, resident memory and file descriptors of this process, as every Prometheus
/// client library names them. Whatever cannot be read (not Linux) is left out.
fn render_process(out: &mut String, started: f64) {
    header(
        out,
        PROCESS_START,
        "gauge",
        "Start time of the process, in Unix seconds.",
    );
    let _ = writeln!(out, "{PROCESS_START} {started}");
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            let ticks = rustix::param::clock_ticks_per_second().max(1);
            header(
                out,
                PROCESS_CPU,
                "counter",
                "User and system CPU time, in seconds.",
            );
            let _ = writeln!(
                out,
                "{PROCESS_CPU} {}",
                (user + system) as f64 / ticks as f64
            );
        }
        if let Some(pages) = field(21) {
            let bytes = pages.saturating_mul(rustix::param::page_size() as u64);
            header(out, PROCESS_RSS, "gauge", "Resident memory, in bytes.");
            let _ = writeln!(out, "{PROCESS_RSS} {bytes}");
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        header(out, PROCESS_OPEN_FDS, "gauge", "Open file descriptors.");
        let _ = writeln!(out, "{PROCESS_OPEN_FDS} {}", entries.count());
    }
    if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        header(out, PROCESS_MAX_FDS, "gauge", "The open-file limit.");
        let _ = writeln!(out, "{PROCESS_MAX_FDS} {max}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_review_shows_up_in_every_family() {
        let metrics = Metrics::new();
        metrics.review(
            Endpoint::Validate,
            Some(FluxKind::HelmRelease),
            Verdict::Denied,
            &[("FF101", Severity::Deny), ("FF110", Severity::Warn)],
            Duration::from_micros(300),
        );
        metrics.review(
            Endpoint::Mutate,
            None,
            Verdict::Skipped,
            &[],
            Duration::from_secs(5),
        );
        metrics.error(Endpoint::Validate, ErrorReason::BodyTooLarge);
        metrics.certificate_reload(ReloadResult::Error);
        metrics.set_certificate_expiry(Some(1_924_991_999));
        metrics.set_policy_file_unreadable(true);
        let text = metrics.render();
        for line in [
            "fluxfence_webhook_requests_total{endpoint=\"validate\",kind=\"HelmRelease\",verdict=\"denied\"} 1",
            "fluxfence_webhook_requests_total{endpoint=\"mutate\",kind=\"other\",verdict=\"skipped\"} 1",
            "fluxfence_webhook_findings_total{endpoint=\"validate\",rule=\"FF101\",severity=\"deny\"} 1",
            "fluxfence_webhook_findings_total{endpoint=\"validate\",rule=\"FF110\",severity=\"warn\"} 1",
            "fluxfence_webhook_request_duration_seconds_bucket{endpoint=\"validate\",le=\"0.00025\"} 0",
            "fluxfence_webhook_request_duration_seconds_bucket{endpoint=\"validate\",le=\"0.0005\"} 1",
            "fluxfence_webhook_request_duration_seconds_bucket{endpoint=\"mutate\",le=\"1\"} 0",
            "fluxfence_webhook_request_duration_seconds_bucket{endpoint=\"mutate\",le=\"+Inf\"} 1",
            "fluxfence_webhook_request_duration_seconds_count{endpoint=\"mutate\"} 1",
            "fluxfence_webhook_errors_total{endpoint=\"validate\",reason=\"body_too_large\"} 1",
            "fluxfence_webhook_certificate_reloads_total{result=\"error\"} 1",
            "fluxfence_webhook_policy_reloads_total{result=\"success\"} 0",
            "fluxfence_webhook_certificate_expiry_timestamp_seconds 1924991999",
            "fluxfence_webhook_policy_file_unreadable 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        let build = format!(
            "fluxfence_build_info{{component=\"webhook\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{text}");
        #[cfg(target_os = "linux")]
        for (family, least) in [
            (PROCESS_CPU, 0.0),
            (PROCESS_RSS, 1.0),
            (PROCESS_OPEN_FDS, 1.0),
            (PROCESS_MAX_FDS, 1.0),
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{family} ")))
                .unwrap_or_else(|| panic!("no {family} in\n{text}"));
            assert!(value.parse::<f64>().unwrap() >= least, "{family} {value}");
        }
    }
}
