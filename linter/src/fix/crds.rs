//! Edits the repository's own CustomResourceDefinitions would refuse. A repository that ships
//! an older Flux's CRDs (`gotk-components.yaml`) serves neither the API versions nor the fields
//! added since: an object moved to `v1`, or given a field its kind's schema there lacks, is
//! refused by the API server as long as those CRDs are applied. Every edit of such a unit is
//! left out, and the reason names the CRD; upgrading the CRDs first makes the fix possible.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::diagnostic::{Finding, FixOp};
use crate::input::Inventory;
use crate::model::FluxObject;
use crate::rules::ff001_schema_violation;
use crate::schema::{Schemas, prepare_instance};
use crate::yaml::Node;

use super::plan::{Planned, Unit};

/// `plan` without the units one edit of which the input's CRDs refuse, and one line per unit
/// left out, saying why.
pub(super) fn without_refused(
    inventory: &Inventory,
    plan: Vec<Planned>,
) -> (Vec<Planned>, Vec<String>) {
    if inventory.crds.is_empty() {
        return (plan, Vec::new());
    }
    // As lint judges: the fix is verified by linting its result.
    let schemas = Schemas::for_lint(inventory);
    let mut refused: HashSet<Unit> = HashSet::new();
    let mut reasons = Vec::new();
    for planned in &plan {
        if refused.contains(&planned.unit) {
            continue;
        }
        let Some(object) = planned
            .resource
            .and_then(|r| inventory.resources.get(r))
            .and_then(|r| r.flux.as_ref())
        else {
            continue;
        };
        if let Some(why) = refusal(&schemas, object, &planned.op) {
            refused.insert(planned.unit);
            reasons.push(format!(
                "{}: {}: {} (the repository's CRDs would refuse it: {why})",
                inventory.files[planned.file].path, planned.subject, planned.summary
            ));
        }
    }
    let plan = plan
        .into_iter()
        .filter(|p| !refused.contains(&p.unit))
        .collect();
    (plan, reasons)
}

/// What the CRDs would say of `object` after `op` that they do not say of it now (FF001).
fn refusal(schemas: &Schemas, object: &FluxObject, op: &FixOp) -> Option<String> {
    let FixOp::Set { pointer, value } = op;
    let mut json = prepare_instance(object);
    if !set_string(&mut json, pointer, value) {
        return None; // not an edit of this object's JSON: lowering decides
    }
    let edited = Node::from_json(&json)
        .ok()
        .and_then(FluxObject::from_node)?;
    let before = schema_findings(schemas, object);
    schema_findings(schemas, &edited)
        .into_iter()
        .find(|f| {
            !before
                .iter()
                .any(|b| b.pointer == f.pointer && b.message == f.message)
        })
        .map(|f| f.message)
}

fn schema_findings(schemas: &Schemas, object: &FluxObject) -> Vec<Finding> {
    let mut out = Vec::new();
    ff001_schema_violation::check(object, schemas, false, &mut out);
    out
}

/// Sets the string at JSON pointer `pointer`, creating missing parent mappings; `false` when
/// a parent is not a mapping.
fn set_string(json: &mut Value, pointer: &str, value: &str) -> bool {
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut node = json;
    for key in parents {
        let Value::Object(map) = node else {
            return false;
        };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), Value::String(value.to_owned()));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_string_creates_parents_and_refuses_to_write_through_a_scalar() {
        let mut json = serde_json::json!({"spec": {"path": "./a"}, "kind": "K"});
        assert!(set_string(&mut json, "/spec/serviceAccountName", "sa"));
        assert!(set_string(&mut json, "/metadata/namespace", "team-a"));
        assert_eq!(json["spec"]["serviceAccountName"], "sa");
        assert_eq!(json["metadata"]["namespace"], "team-a");
        assert!(!set_string(&mut json, "/kind/x", "y"));
        assert!(!set_string(&mut json, "", "y"));
    }
}
