//! Flux objects against their CustomResourceDefinitions (FF001) and against the API versions
//! current Flux serves (FF002).
//!
//! Schemas come from the CRDs found in the input (a repository's `gotk-components.yaml`) and
//! from `fluxfence lint --crds DIR`. A CRD's `openAPIV3Schema` is a Kubernetes *structural*
//! schema, not plain JSON Schema; [`to_json_schema`] rewrites it into a draft-4 JSON Schema
//! that judges an object the way the apiserver does with `fieldValidation=Strict` (what
//! `kubectl apply` asks for):
//! - unknown fields are errors, except below `x-kubernetes-preserve-unknown-fields: true`
//!   (every other `type: object` schema gets `additionalProperties: false`);
//! - `x-kubernetes-int-or-string: true` accepts an integer or a string;
//! - `nullable: true` accepts null. The apiserver also prunes a null *field* that is not
//!   nullable before it validates, so an optional field may be null too; a required one may
//!   not (pruned, it would be missing);
//! - `x-kubernetes-embedded-resource: true` objects may carry `apiVersion`, `kind`, `metadata`;
//! - `metadata` is checked as ObjectMeta (known fields; labels and annotations map to strings);
//! - `status` is ignored: with the status subresource the apiserver drops it on create.
//!
//! Not evaluated: CEL rules (`x-kubernetes-validations`) and list-type uniqueness
//! (`x-kubernetes-list-type: set|map`). Values that Flux substitutes later (`${VAR}`) and
//! SOPS-encrypted values (`ENC[...]`) are not judged.
//!
//! Compiled schemas are cached per (group, kind, version) and compiled on first use, so a run
//! over thousands of documents pays for each schema once.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::diagnostic::{Diagnostic, Severity};
use crate::input::{CrdDocument, Inventory};
use crate::kustomize::PatchFiles;
use crate::model::FluxObject;
use crate::policy::Policy;
use crate::rules::{ff001_schema_violation, ff002_removed_api_version};
use crate::yaml::{Node, Span, Value as YamlValue};

/// Violations reported per object at most; past that the object is mostly wrong anyway.
pub const MAX_VIOLATIONS_PER_OBJECT: usize = 20;

/// The served versions of one CRD kind.
struct CrdKind<'a> {
    /// Where the CRD was read from.
    source: String,
    versions: Vec<CrdVersion<'a>>,
}

struct CrdVersion<'a> {
    name: String,
    /// The version's `openAPIV3Schema`, as written in the CRD. It is turned into JSON when an
    /// object of the version is first checked: a repository's CRDs hold a dozen kinds of a few
    /// versions each, and a pre-commit run judges one or two of them.
    schema: Option<&'a Node>,
    compiled: OnceLock<Result<jsonschema::Validator, String>>,
}

/// The schemas of every CRD of a lint run, keyed by (group, kind), borrowed from the CRDs.
#[derive(Default)]
pub struct Schemas<'a> {
    kinds: HashMap<(String, String), CrdKind<'a>>,
    /// Compile, for each object, only the part of its schema its fields reach, instead of the
    /// whole schema once for every object of the version (see [`Schemas::for_few_objects`]).
    per_object: bool,
}

/// Up to this many objects to check, each gets a schema cut down to its own fields: a
/// HelmRelease's whole schema costs a millisecond to compile, a pre-commit run checks one or
/// two objects and a repository hundreds.
const FEW_OBJECTS: usize = 4;

/// What a schema says about one object.
#[derive(Debug)]
pub enum Verdict {
    /// No CRD for the object's group and kind: nothing to check against.
    NoSchema,
    /// The CRD exists but does not serve the object's version.
    NotServed { served: Vec<String>, source: String },
    /// The CRD's schema could not be compiled.
    BrokenSchema { source: String, reason: String },
    /// Checked; empty when valid.
    Checked(Vec<Violation>),
}

/// One way an object breaks its schema, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending field (of the missing one, for a required field).
    pub pointer: String,
    /// Byte range of the field's value, or of its key for unknown and missing fields.
    pub span: Span,
    pub message: String,
    pub kind: ViolationKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    UnknownField,
    MissingField,
    WrongType,
    NotInEnum,
    PatternMismatch,
    BadFormat,
    Other,
}

impl<'a> Schemas<'a> {
    /// The schemas of the inventory's CRDs. A version defined twice keeps the first
    /// definition, except that CRDs given with `--crds` replace those of the input.
    pub fn from_inventory(inventory: &'a Inventory) -> Schemas<'a> {
        Schemas::from_crds(&inventory.crds)
    }

    pub fn from_crds(crds: &'a [CrdDocument]) -> Schemas<'a> {
        let mut schemas = Schemas::default();
        for crd in crds.iter().filter(|c| c.explicit) {
            schemas.add(crd);
        }
        for crd in crds.iter().filter(|c| !c.explicit) {
            schemas.add(crd);
        }
        schemas
    }

    /// The schemas as `lint` checks the inventory's objects against them: per object when the
    /// reported files hold few (see [`Schemas::for_few_objects`]).
    pub fn for_lint(inventory: &'a Inventory) -> Schemas<'a> {
        let checked = inventory
            .resources
            .iter()
            .filter(|r| r.flux.is_some() && inventory.files[r.file].reported)
            .count();
        Schemas::from_inventory(inventory).for_few_objects(checked)
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// These schemas, for a run that checks `objects` objects: when they are few, each is
    /// checked against its schema cut down to the fields it has. The verdicts are the same,
    /// since a property the object lacks has nothing to judge; only a schema broken in a part
    /// the object does not reach goes unnoticed.
    pub fn for_few_objects(mut self, objects: usize) -> Self {
        self.per_object = objects <= FEW_OBJECTS;
        self
    }

    /// Adds a CRD's served versions that are not defined yet.
    fn add(&mut self, crd: &'a CrdDocument) {
        let Some(spec) = crd.root.get("spec") else {
            return;
        };
        let (Some(group), Some(kind)) = (
            spec.get("group").and_then(Node::as_str),
            spec.path(&["names", "kind"]).and_then(Node::as_str),
        ) else {
            return;
        };
        // apiextensions.k8s.io/v1beta1 CRDs may hold one schema for every version.
        let shared = spec.path(&["validation", "openAPIV3Schema"]);
        let mut versions: Vec<CrdVersion> = spec
            .get("versions")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .filter(|v| v.get("served").and_then(Node::as_str) != Some("false"))
            .filter_map(|v| {
                Some(CrdVersion {
                    name: v.get("name")?.as_str()?.to_owned(),
                    schema: v.path(&["schema", "openAPIV3Schema"]).or(shared),
                    compiled: OnceLock::new(),
                })
            })
            .collect();
        if versions.is_empty()
            && let Some(name) = spec.get("version").and_then(Node::as_str)
        {
            versions.push(CrdVersion {
                name: name.to_owned(),
                schema: shared,
                compiled: OnceLock::new(),
            });
        }
        let entry = self
            .kinds
            .entry((group.to_owned(), kind.to_owned()))
            .or_insert_with(|| CrdKind {
                source: crd.path.clone(),
                versions: Vec::new(),
            });
        for version in versions {
            if !entry.versions.iter().any(|v| v.name == version.name) {
                entry.versions.push(version);
            }
        }
    }

    /// Checks one Flux object against the schema of its group, kind and version.
    pub fn validate(&self, object: &FluxObject) -> Verdict {
        let (group, version) = object
            .api_version
            .split_once('/')
            .unwrap_or(("", object.api_version.as_str()));
        let Some(crd) = self
            .kinds
            .get(&(group.to_owned(), object.kind.as_str().to_owned()))
        else {
            return Verdict::NoSchema;
        };
        let Some(served) = crd.versions.iter().find(|v| v.name == version) else {
            return Verdict::NotServed {
                served: crd.versions.iter().map(|v| v.name.clone()).collect(),
                source: crd.source.clone(),
            };
        };
        let Some(raw) = &served.schema else {
            // A served version without a schema accepts anything (apiextensions v1beta1).
            return Verdict::Checked(Vec::new());
        };
        let instance = prepare_instance(object);
        let own;
        let compiled = if self.per_object {
            own = compile_json(to_json_schema(reached_by(raw, &instance)));
            &own
        } else {
            served.compiled.get_or_init(|| compile(raw))
        };
        let validator = match compiled {
            Ok(v) => v,
            Err(reason) => {
                return Verdict::BrokenSchema {
                    source: crd.source.clone(),
                    reason: reason.clone(),
                };
            }
        };
        let mut violations: Vec<Violation> = Vec::new();
        for error in validator.iter_errors(&instance) {
            for violation in describe(&object.root, &error) {
                if !violations.contains(&violation) {
                    violations.push(violation);
                }
            }
            if violations.len() >= MAX_VIOLATIONS_PER_OBJECT {
                violations.truncate(MAX_VIOLATIONS_PER_OBJECT);
                break;
            }
        }
        violations.sort_by(|a, b| (a.span, &a.pointer).cmp(&(b.span, &b.pointer)));
        Verdict::Checked(violations)
    }
}

/// FF001 and FF002 over every Flux object of the reported files. Unlike the tenancy rules they
/// run whatever the policy's `enforce` and whatever the object's namespace.
pub fn check_inventory(
    inventory: &Inventory,
    policy: &Policy,
    patch_files: &PatchFiles,
) -> Vec<Diagnostic> {
    let schema_meta = ff001_schema_violation::meta();
    let version_meta = ff002_removed_api_version::meta();
    let schema_severity = policy.severity(schema_meta.code, schema_meta.default_severity);
    let version_severity = policy.severity(version_meta.code, version_meta.default_severity);
    let schemas = if schema_severity == Severity::Off || inventory.crds.is_empty() {
        Schemas::default()
    } else {
        Schemas::for_lint(inventory)
    };
    let mut diagnostics = Vec::new();
    for resource in &inventory.resources {
        let file = &inventory.files[resource.file];
        let Some(object) = resource.flux.as_ref().filter(|_| file.reported) else {
            continue;
        };
        let mut findings = Vec::new();
        if version_severity != Severity::Off {
            let start = findings.len();
            ff002_removed_api_version::check(object, &mut findings);
            findings[start..]
                .iter_mut()
                .for_each(|f| f.severity = version_severity);
        }
        if schema_severity != Severity::Off && !schemas.is_empty() {
            let start = findings.len();
            // Strategic-merge patches are partial objects: required fields may be missing there.
            let is_patch = patch_files.contains(&file.rel);
            ff001_schema_violation::check(object, &schemas, is_patch, &mut findings);
            findings[start..]
                .iter_mut()
                .for_each(|f| f.severity = schema_severity);
        }
        for finding in findings {
            let mut diagnostic = crate::lint::locate(file, finding);
            diagnostic.object = Some(match &object.declared_namespace {
                Some(ns) => format!("{}/{ns}/{}", object.kind, object.name),
                None => object.display_name(),
            });
            diagnostics.push(diagnostic);
        }
    }
    diagnostics
}

fn compile(k8s_schema: &Node) -> Result<jsonschema::Validator, String> {
    compile_json(to_json_schema(without_status(k8s_schema)))
}

fn compile_json(schema: Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .map_err(|e| e.to_string())
}

/// The JSON Schema (draft 4) that judges an object as the apiserver judges it against a
/// CRD's structural `openAPIV3Schema` (see the module documentation).
pub fn to_json_schema(mut schema: Value) -> Value {
    convert(&mut schema, false, 0);
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("metadata".into(), object_meta_schema());
        properties.remove("status");
    }
    schema
}

/// A CRD version's schema as JSON, its top-level `status` left out unbuilt: the controller
/// writes it and the check never reads it, and in Flux's CRDs it is a third of the schema.
fn without_status(k8s_schema: &Node) -> Value {
    with_properties(k8s_schema, |name, property| {
        (name != "status").then(|| property.to_json())
    })
}

/// A CRD version's schema as JSON with, at every level where `instance` is an object, only
/// the `properties` the instance has (those it lacks have nothing to judge). Junctions and
/// array items are kept whole.
fn reached_by(k8s_schema: &Node, instance: &Value) -> Value {
    let Some(fields) = instance.as_object() else {
        return k8s_schema.to_json();
    };
    with_properties(k8s_schema, |name, property| {
        Some(reached_by(property, fields.get(name)?))
    })
}

/// A schema as JSON, each of its `properties` as `pick` gives it, or left out where `pick`
/// gives nothing; the rest as it is.
fn with_properties(k8s_schema: &Node, pick: impl Fn(&str, &Node) -> Option<Value>) -> Value {
    let Some(entries) = k8s_schema.as_map() else {
        return k8s_schema.to_json();
    };
    let schema = entries
        .iter()
        .map(|(key, value)| {
            let key = key.as_scalar().unwrap_or_default();
            let json = match value.as_map() {
                Some(properties) if key == "properties" => Value::Object(
                    properties
                        .iter()
                        .filter_map(|(name, property)| {
                            let name = name.as_scalar().unwrap_or_default();
                            Some((name.to_owned(), pick(name, property)?))
                        })
                        .collect(),
                ),
                _ => value.to_json(),
            };
            (key.to_owned(), json)
        })
        .collect();
    Value::Object(schema)
}

/// Deeper schemas are left as they are (no CRD comes near; this bounds recursion).
const MAX_SCHEMA_DEPTH: usize = 128;

fn convert(schema: &mut Value, in_junction: bool, depth: usize) {
    let Value::Object(map) = schema else {
        return;
    };
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children
                .values_mut()
                .for_each(|c| convert(c, in_junction, depth + 1));
        }
    }
    for key in ["items", "additionalProperties", "additionalItems"] {
        match map.get_mut(key) {
            Some(Value::Array(children)) => children
                .iter_mut()
                .for_each(|c| convert(c, in_junction, depth + 1)),
            Some(child @ Value::Object(_)) => convert(child, in_junction, depth + 1),
            _ => {}
        }
    }
    // Structural schemas keep types and fields out of these; they only add value checks.
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            children
                .iter_mut()
                .for_each(|c| convert(c, true, depth + 1));
        }
    }
    if let Some(child) = map.get_mut("not") {
        convert(child, true, depth + 1);
    }

    let flag = |map: &Map<String, Value>, key: &str| map.get(key) == Some(&Value::Bool(true));
    if flag(map, "x-kubernetes-int-or-string") {
        map.insert("type".into(), json!(["integer", "string"]));
        // controller-gen spells the same as `anyOf: [{type: integer}, {type: string}]`.
        let only_types = map
            .get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|branches| {
                branches.iter().all(|b| {
                    b.as_object()
                        .is_some_and(|o| o.len() == 1 && o.contains_key("type"))
                })
            });
        if only_types {
            map.remove("anyOf");
        }
    }
    if flag(map, "x-kubernetes-embedded-resource") {
        let properties = map
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(properties) = properties {
            for (field, field_schema) in [
                ("apiVersion", json!({"type": "string"})),
                ("kind", json!({"type": "string"})),
                ("metadata", json!({"type": "object"})),
            ] {
                properties.entry(field).or_insert(field_schema);
            }
        }
    }
    let is_object = map.get("type").and_then(Value::as_str) == Some("object");
    if is_object
        && !in_junction
        && !flag(map, "x-kubernetes-preserve-unknown-fields")
        && !map.contains_key("additionalProperties")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    let required: Vec<String> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name) {
                allow_null(property);
            }
        }
    }
    if flag(map, "nullable") {
        allow_null(schema);
    }
}

fn allow_null(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    match map.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            map.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) if !types.contains(&json!("null")) => types.push(json!("null")),
        _ => {}
    }
    if let Some(Value::Array(options)) = map.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
}

/// ObjectMeta as an object in a manifest may set it (the apiserver validates `metadata`
/// itself; CRD schemas only say `type: object`).
fn object_meta_schema() -> Value {
    let string = json!({"type": "string"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": string,
            "generateName": string,
            "namespace": string,
            "labels": string_map,
            "annotations": string_map,
            "uid": string,
            "resourceVersion": string,
            "generation": {"type": "integer"},
            "selfLink": string,
            "creationTimestamp": {"type": ["string", "null"]},
            "deletionTimestamp": {"type": ["string", "null"]},
            "deletionGracePeriodSeconds": {"type": "integer"},
            "finalizers": {"type": "array", "items": string},
            "ownerReferences": {"type": "array"},
            "managedFields": {"type": "array"},
        }
    })
}

/// The object as the apiserver validates it: without `status` and without the SOPS metadata
/// that Flux strips when it decrypts. (HelmRelease `spec.values` is null here: the model drops
/// it, and an optional field may be null.)
pub fn prepare_instance(object: &FluxObject) -> Value {
    let mut json = object.root.to_json();
    if let Value::Object(map) = &mut json {
        map.remove("status");
        map.remove("sops");
    }
    json
}

/// A value fixed only later (post-build substitution) or encrypted: its type and shape are
/// not what the apiserver will see.
fn is_placeholder(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.contains("${") || s.starts_with("ENC["))
}

fn describe(root: &Node, error: &jsonschema::ValidationError<'_>) -> Vec<Violation> {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let path = error.instance_path().as_str();
    let instance = error.instance();
    let field = dotted(path);
    let value_span = || node_at(root, path).map_or(root.span, |(_, n)| n.span);
    let one = |kind, message: String| {
        vec![Violation {
            pointer: path.to_owned(),
            span: value_span(),
            message,
            kind,
        }]
    };
    match error.kind() {
        K::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                let pointer = format!("{path}/{}", escape(name));
                let span = node_at(root, &pointer)
                    .map_or_else(value_span, |(key, value)| key.unwrap_or(value).span);
                Violation {
                    message: format!("unknown field `{}`", dotted(&pointer)),
                    pointer,
                    span,
                    kind: ViolationKind::UnknownField,
                }
            })
            .collect(),
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let pointer = format!("{path}/{}", escape(name));
            // Point at the key of the mapping that lacks the field (`spec:`).
            let span = node_at(root, path)
                .map_or(root.span, |(key, value)| key.map_or(value.span, |k| k.span));
            vec![Violation {
                message: format!("missing required field `{}`", dotted(&pointer)),
                pointer,
                span,
                kind: ViolationKind::MissingField,
            }]
        }
        _ if is_placeholder(instance) => Vec::new(),
        K::Type { kind } => {
            let expected: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![t.as_str()],
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.as_str())
                    .filter(|t| *t != "null")
                    .collect(),
            };
            one(
                ViolationKind::WrongType,
                format!(
                    "`{field}` must be {}, not {}",
                    expected
                        .iter()
                        .map(|t| article(t))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    json_type_of(instance)
                ),
            )
        }
        K::Enum { options } => {
            let allowed = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter(|v| !v.is_null())
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            one(
                ViolationKind::NotInEnum,
                format!("`{field}` is {instance}, not one of {allowed}"),
            )
        }
        K::Pattern { pattern } => one(
            ViolationKind::PatternMismatch,
            format!("`{field}` is {instance}, which does not match `{pattern}`"),
        ),
        K::Format { format } => one(
            ViolationKind::BadFormat,
            format!("`{field}` is {instance}, not a valid {format}"),
        ),
        _ => one(ViolationKind::Other, format!("`{field}`: {error}")),
    }
}

fn article(json_type: &str) -> String {
    match json_type {
        "integer" | "object" | "array" => format!("an {json_type}"),
        "null" => "null".to_owned(),
        _ => format!("a {json_type}"),
    }
}

fn json_type_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// `/spec/chart/spec/sourceRef` → `spec.chart.spec.sourceRef`; `/spec/patches/0` →
/// `spec.patches[0]`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = unescape(segment);
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    if out.is_empty() {
        "(the object)".to_owned()
    } else {
        out
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// The node at a JSON pointer, with the mapping key it sits under when the last step is a key.
pub fn node_at<'a>(root: &'a Node, pointer: &str) -> Option<(Option<&'a Node>, &'a Node)> {
    let mut key = None;
    let mut node = root;
    for segment in pointer.split('/').skip(1) {
        let segment = unescape(segment);
        match &node.value {
            YamlValue::Map(entries) => {
                // The last of duplicated keys wins, as in the JSON the schema saw.
                let (k, v) = entries
                    .iter()
                    .rev()
                    .find(|(k, _)| k.as_scalar() == Some(segment.as_str()))?;
                key = Some(k);
                node = v;
            }
            YamlValue::Seq(items) => {
                node = items.get(segment.parse::<usize>().ok()?)?;
                key = None;
            }
            YamlValue::Scalar(_) => return None,
        }
    }
    Some((key, node))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(
            dotted("/spec/chart/spec/sourceRef"),
            "spec.chart.spec.sourceRef"
        );
        assert_eq!(dotted("/spec/patches/0/target"), "spec.patches[0].target");
        assert_eq!(
            dotted("/metadata/labels/app.kubernetes.io~1name"),
            "metadata.labels.app.kubernetes.io/name"
        );
        assert_eq!(dotted(""), "(the object)");
    }

    #[test]
    fn kubernetes_extensions_become_json_schema() {
        let k8s = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "port": {"x-kubernetes-int-or-string": true},
                        "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "note": {"type": "string", "nullable": true},
                        "either": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                            "anyOf": [{"required": ["a"]}, {"required": ["b"]}]
                        },
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                },
                "status": {"type": "object"}
            }
        });
        let schema = to_json_schema(k8s.clone());
        let spec = &schema["properties"]["spec"];
        assert_eq!(spec["additionalProperties"], json!(false));
        assert_eq!(
            spec["properties"]["port"]["type"],
            json!(["integer", "string", "null"])
        );
        assert!(spec["properties"]["values"]["additionalProperties"].is_null());
        assert_eq!(
            spec["properties"]["note"]["type"],
            json!(["string", "null"])
        );
        let required = to_json_schema(json!({
            "type": "object",
            "required": ["a"],
            "properties": {"a": {"type": "string"}, "b": {"type": "string", "enum": ["x"]}}
        }));
        assert_eq!(required["properties"]["a"]["type"], json!("string"));
        assert_eq!(
            required["properties"]["b"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(required["properties"]["b"]["enum"], json!(["x", null]));
        let either = &spec["properties"]["either"];
        assert_eq!(either["additionalProperties"], json!(false));
        assert!(either["anyOf"][0]["additionalProperties"].is_null());
        assert_eq!(
            spec["properties"]["labels"]["additionalProperties"],
            json!({"type": "string"})
        );
        assert!(schema["properties"]["status"].is_null());
        assert_eq!(
            schema["properties"]["metadata"]["additionalProperties"],
            json!(false)
        );
    }

    #[test]
    fn node_at_follows_maps_and_lists() {
        let mut docs = Vec::new();
        crate::yaml::load_documents("a:\n  b:\n  - x\n  - y: 1\n", |d| docs.push(d)).unwrap();
        let root = &docs[0].root;
        let (key, node) = node_at(root, "/a/b/1/y").unwrap();
        assert_eq!(key.and_then(Node::as_str), Some("y"));
        assert_eq!(node.as_str(), Some("1"));
        let (key, node) = node_at(root, "/a/b/0").unwrap();
        assert!(key.is_none());
        assert_eq!(node.as_str(), Some("x"));
        assert!(node_at(root, "/a/c").is_none());
        assert!(node_at(root, "/a/b/7").is_none());
    }
}

#[cfg(test)]
mod cut_schema_tests {
    use super::*;
    use std::path::Path;

    /// Every Flux object of the fixtures (and of the corpus, where it is beside the
    /// repository) gets the same verdict from its schema cut to its fields as from the whole.
    #[test]
    fn a_schema_cut_to_the_object_judges_as_the_whole_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut inputs = vec![root.join("testdata")];
        let corpus = root.join("../shared/corpus");
        if corpus.is_dir() {
            inputs.push(corpus);
        } else {
            crate::test_skipped("no ../shared (the corpus half)");
        }
        let mut checked = 0;
        let mut violations = 0;
        for input in inputs {
            // Each input is its own root: `../shared` may lie inside another Git repository.
            let mut inventory = Inventory::load_in_root(&input, std::slice::from_ref(&input));
            inventory.load_crds(&root.join("charts/flux-multitenancy/crds"));
            let whole = Schemas::from_inventory(&inventory).for_few_objects(usize::MAX);
            let cut = Schemas::from_inventory(&inventory).for_few_objects(0);
            assert!(!whole.per_object && cut.per_object);
            for object in inventory.resources.iter().filter_map(|r| r.flux.as_ref()) {
                let (expected, got) = (whole.validate(object), cut.validate(object));
                let name = object.display_name();
                match (&expected, &got) {
                    (Verdict::Checked(expected), Verdict::Checked(got)) => {
                        assert_eq!(expected, got, "{name}");
                        checked += 1;
                        violations += expected.len();
                    }
                    _ => assert_eq!(format!("{expected:?}"), format!("{got:?}"), "{name}"),
                }
            }
        }
        // Both valid objects and every kind of violation the fixtures hold were compared.
        assert!(
            checked > 40 && violations > 10,
            "{checked} objects, {violations} violations"
        );
    }
}
