//! The compliance state of a FluxConfig, from the Ready conditions of the Flux objects it owns.

use serde_json::Value;

use crate::crd::{ComplianceState, Condition, FluxConfigStatus, ObjectStatus};
use crate::owned::OwnedKind;

/// One owned Flux object as the API server last returned it.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub kind: OwnedKind,
    pub object: &'a Value,
}

/// The compliance of one Flux object: its Ready condition, counted only when Flux has reconciled
/// the object's current generation (a stale `True` says nothing about the new spec).
pub fn object_compliance(object: &Value) -> (ComplianceState, Option<String>, Option<String>) {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        });
    let text = |c: &Value, field: &str| c.get(field).and_then(Value::as_str).map(str::to_owned);
    let (reason, message) = ready.map_or((None, None), |c| (text(c, "reason"), text(c, "message")));
    if generation.is_none() || generation != observed {
        return (ComplianceState::Pending, reason, message);
    }
    let state = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
        Some("True") => ComplianceState::Compliant,
        Some("False") => ComplianceState::NonCompliant,
        _ => ComplianceState::Pending,
    };
    (state, reason, message)
}

/// The whole FluxConfig's compliance: suspended wins, then any non-compliant object, then any
/// pending one; compliant only when every object is.
pub fn aggregate(suspended: bool, statuses: &[ObjectStatus]) -> ComplianceState {
    if suspended {
        ComplianceState::Suspended
    } else if statuses
        .iter()
        .any(|s| s.compliance_state == ComplianceState::NonCompliant)
    {
        ComplianceState::NonCompliant
    } else if statuses.is_empty()
        || statuses
            .iter()
            .any(|s| s.compliance_state == ComplianceState::Pending)
    {
        ComplianceState::Pending
    } else {
        ComplianceState::Compliant
    }
}

/// `statuses[]` for the observed Flux objects, in the order given.
pub fn object_statuses(observed: &[Observed<'_>]) -> Vec<ObjectStatus> {
    observed
        .iter()
        .filter(|o| o.kind.is_flux())
        .map(|o| {
            let (compliance_state, reason, message) = object_compliance(o.object);
            let text = |pointer: &str| {
                o.object
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            ObjectStatus {
                kind: o.kind.kind().to_owned(),
                name: text("/metadata/name"),
                namespace: text("/metadata/namespace"),
                compliance_state,
                reason,
                message,
            }
        })
        .collect()
}

/// The source's last fetched revision (`main@sha1:…`).
pub fn source_revision(observed: &[Observed<'_>]) -> Option<String> {
    observed
        .iter()
        .find(|o| {
            matches!(
                o.kind,
                OwnedKind::GitRepository | OwnedKind::Bucket | OwnedKind::OciRepository
            )
        })
        .and_then(|o| o.object.pointer("/status/artifact/revision"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The Ready condition of the FluxConfig itself.
pub fn ready_condition(state: ComplianceState, generation: Option<i64>, now: &str) -> Condition {
    let (status, reason, message) = match state {
        ComplianceState::Compliant => (
            "True",
            "Compliant",
            "every Flux object is Ready at its current generation".to_owned(),
        ),
        ComplianceState::NonCompliant => (
            "False",
            "NonCompliant",
            "a Flux object is not Ready: see status.statuses".to_owned(),
        ),
        ComplianceState::Pending => (
            "Unknown",
            "Progressing",
            "applied; waiting for Flux to reconcile every object".to_owned(),
        ),
        ComplianceState::Suspended => (
            "True",
            "Suspended",
            "applied with spec.suspend: Flux does not reconcile these objects".to_owned(),
        ),
    };
    condition("Ready", status, reason, message, generation, now)
}

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: now.to_owned(),
        observed_generation: generation,
    }
}

/// Keeps a condition's `lastTransitionTime` while its status is what it was: a resync that
/// changes nothing must write nothing.
pub fn keep_transition_times(new: &mut FluxConfigStatus, old: Option<&FluxConfigStatus>) {
    let Some(old) = old else { return };
    for condition in &mut new.conditions {
        if let Some(previous) = old
            .conditions
            .iter()
            .find(|c| c.type_ == condition.type_ && c.status == condition.status)
        {
            condition.last_transition_time = previous.last_transition_time.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flux_object(generation: i64, observed: i64, ready: &str) -> Value {
        json!({
            "metadata": { "name": "demo-apps", "namespace": "cluster-config", "generation": generation },
            "status": {
                "observedGeneration": observed,
                "conditions": [{ "type": "Ready", "status": ready, "reason": "Why", "message": "because" }],
            },
        })
    }

    #[test]
    fn ready_counts_only_at_the_current_generation() {
        assert_eq!(
            object_compliance(&flux_object(2, 2, "True")).0,
            ComplianceState::Compliant
        );
        assert_eq!(
            object_compliance(&flux_object(3, 2, "True")).0,
            ComplianceState::Pending
        );
        assert_eq!(
            object_compliance(&flux_object(2, 2, "False")),
            (
                ComplianceState::NonCompliant,
                Some("Why".into()),
                Some("because".into())
            )
        );
        assert_eq!(
            object_compliance(&flux_object(2, 2, "Unknown")).0,
            ComplianceState::Pending
        );
        assert_eq!(
            object_compliance(&json!({"metadata": {"generation": 1}})).0,
            ComplianceState::Pending
        );
    }

    fn status(state: ComplianceState) -> ObjectStatus {
        ObjectStatus {
            kind: "Kustomization".into(),
            name: "n".into(),
            namespace: "ns".into(),
            compliance_state: state,
            reason: None,
            message: None,
        }
    }

    #[test]
    fn one_object_decides_against_the_rest() {
        use ComplianceState::*;
        assert_eq!(
            aggregate(false, &[status(Compliant), status(Compliant)]),
            Compliant
        );
        assert_eq!(
            aggregate(false, &[status(Compliant), status(Pending)]),
            Pending
        );
        assert_eq!(
            aggregate(false, &[status(Pending), status(NonCompliant)]),
            NonCompliant
        );
        assert_eq!(aggregate(true, &[status(NonCompliant)]), Suspended);
        assert_eq!(aggregate(false, &[]), Pending);
    }
}
