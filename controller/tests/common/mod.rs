//! A small in-memory API server behind kube's `Client`, over a `tower-test` mock pair.
//!
//! It keeps objects by path, answers server-side apply (the controller is the only manager, so
//! an apply replaces what it wrote and keeps `status`), merge patches, gets, label-selected lists
//! and deletes, and records every request. A write that changes nothing keeps the object's
//! resourceVersion, as a real API server's no-op apply does; `changes()` counts the others.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod cluster;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fluxfence_controller::crd::FluxConfig;
use fluxfence_controller::desired::Settings;
use fluxfence_controller::metrics::Metrics;
use fluxfence_controller::reconcile::Context;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    /// `METHOD path`, for asserting the order of requests.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    resource_version: u64,
    changes: usize,
    uids: u64,
    /// (method, path) answered with this HTTP status instead.
    failures: Vec<(String, String, u16)>,
}

#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

pub const NS: &str = "cluster-config";
pub const CONFIG_PATH: &str = "/apis/fluxfence.dev/v1alpha1/namespaces/cluster-config/fluxconfigs";

/// A clock that moves a second each time it is read: a status that keeps a transition time
/// must keep it because it did not change, not because the clock stood still.
pub fn fixed_clock() -> String {
    static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tick = TICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        tick / 3600 % 24,
        tick / 60 % 60,
        tick % 60
    )
}

impl FakeApi {
    /// The fake and a Context whose client talks to it.
    pub fn start() -> (FakeApi, Arc<Context>) {
        FakeApi::start_with(fluxfence::Policy::azure_default())
    }

    /// The fake and a Context judging with `policy`.
    pub fn start_with(policy: fluxfence::Policy) -> (FakeApi, Arc<Context>) {
        let (fake, client) = FakeApi::client();
        let ctx = Context::new(
            client,
            Settings {
                service_account: "flux-applier".into(),
            },
            policy,
            Arc::new(Metrics::new()),
        )
        .with_clock(fixed_clock);
        (fake, Arc::new(ctx))
    }

    /// The fake and a Context that records events.
    pub fn start_with_events() -> (FakeApi, Arc<Context>) {
        let (fake, client) = FakeApi::client();
        let recorder = kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "fluxfence-controller".into(),
                instance: Some("test".into()),
            },
        );
        let ctx = Context::new(
            client,
            Settings {
                service_account: "flux-applier".into(),
            },
            fluxfence::Policy::azure_default(),
            Arc::new(Metrics::new()),
        )
        .with_clock(fixed_clock)
        .with_recorder(recorder);
        (fake, Arc::new(ctx))
    }

    /// The fake and a kube Client talking to it.
    pub fn client() -> (FakeApi, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi {
            state: Arc::new(Mutex::new(State::default())),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = server.answer(request).await;
                send.send_response(response);
            }
        });
        (fake, Client::new(service, NS))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Stores a FluxConfig as the API server would: uid, generation 1, resourceVersion.
    pub fn create_config(&self, manifest: Value) -> FluxConfig {
        let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
        let path = format!("{CONFIG_PATH}/{name}");
        let mut state = self.lock();
        state.uids += 1;
        state.resource_version += 1;
        let mut object = manifest;
        object["metadata"]["namespace"] = json!(NS);
        object["metadata"]["uid"] = json!(format!("uid-{}", state.uids));
        object["metadata"]["generation"] = json!(1);
        object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        state.objects.insert(path.clone(), object);
        drop(state);
        self.config(&name)
    }

    /// Replaces a FluxConfig's spec, as `kubectl apply` would: generation + 1.
    pub fn update_spec(&self, name: &str, spec: Value) -> FluxConfig {
        let path = format!("{CONFIG_PATH}/{name}");
        let mut state = self.lock();
        state.resource_version += 1;
        let rv = state.resource_version.to_string();
        let object = state.objects.get_mut(&path).unwrap();
        object["spec"] = spec;
        let generation = object["metadata"]["generation"].as_i64().unwrap() + 1;
        object["metadata"]["generation"] = json!(generation);
        object["metadata"]["resourceVersion"] = json!(rv);
        drop(state);
        self.config(name)
    }

    /// The FluxConfig as stored now: what the watch would hand the next reconcile.
    pub fn config(&self, name: &str) -> FluxConfig {
        serde_json::from_value(self.get(&format!("{CONFIG_PATH}/{name}")).unwrap()).unwrap()
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Deletes an object behind the controller's back (another client, garbage collection).
    pub fn remove(&self, path: &str) -> Option<Value> {
        self.lock().objects.remove(path)
    }

    pub fn put(&self, path: &str, object: Value) {
        self.lock().objects.insert(path.to_owned(), object);
    }

    /// Sets an object's status as Flux would, with its observedGeneration.
    pub fn set_status(&self, path: &str, status: Value) {
        let mut state = self.lock();
        let object = state.objects.get_mut(path).unwrap();
        object["status"] = status;
    }

    pub fn paths(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    pub fn changes(&self) -> usize {
        self.lock().changes
    }

    pub fn fail(&self, method: &str, path: &str, code: u16) {
        self.lock()
            .failures
            .push((method.to_owned(), path.to_owned(), code));
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query: BTreeMap<String, String> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_owned(), percent_decode(v))
            })
            .collect();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let recorded = Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        };
        let mut state = self.lock();
        state.requests.push(recorded);
        if let Some((_, _, code)) = state
            .failures
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
        {
            let code = *code;
            return status_response(code, "injected failure");
        }
        let (code, value) = match method.as_str() {
            "GET" if state.objects.contains_key(&path) => (200, state.objects[&path].clone()),
            "GET" if is_collection(&path) => (200, list(&state, &path, &query)),
            "GET" => return status_response(404, "not found"),
            "PATCH" if content_type.starts_with("application/apply-patch") => {
                apply(&mut state, &path, body)
            }
            "PATCH" if content_type.starts_with("application/merge-patch") => {
                merge(&mut state, &path, body)
            }
            "POST" => create(&mut state, &path, body),
            "PUT" => replace(&mut state, &path, body),
            "DELETE" => match state.objects.remove(&path) {
                Some(object) => {
                    state.changes += 1;
                    (200, object)
                }
                None => return status_response(404, "not found"),
            },
            _ => return status_response(405, "not supported by the fake"),
        };
        json_response(code, &value)
    }
}

/// Collection paths end in a plural: `/api/v1/namespaces/ns/secrets` has an odd number of
/// segments after the version prefix.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let prefix = if segments.first() == Some(&"api") {
        2
    } else {
        3
    };
    let rest = segments.len().saturating_sub(prefix);
    rest == 1 || (rest == 3 && segments.get(prefix) == Some(&"namespaces"))
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let label = &object["metadata"]["labels"];
        match term.split_once('=') {
            Some((key, value)) => label[key].as_str() == Some(value),
            // A bare key selects the objects that carry the label.
            None => label.get(term).is_some(),
        }
    })
}

fn list(state: &State, path: &str, query: &BTreeMap<String, String>) -> Value {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let prefix = format!("{path}/");
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(p, _)| {
            (p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                || in_all_namespaces(path, p)
        })
        .filter(|(_, o)| labels_match(o, &selector))
        .map(|(_, o)| {
            json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": o["metadata"],
            })
        })
        .collect();
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": { "resourceVersion": state.resource_version.to_string() },
        "items": items,
    })
}

/// Whether `object_path` is a namespaced object of the collection `path` lists across all
/// namespaces (`/apis/g/v/plural` lists `/apis/g/v/namespaces/ns/plural/name`).
fn in_all_namespaces(path: &str, object_path: &str) -> bool {
    let Some((version_prefix, plural)) = path.rsplit_once('/') else {
        return false;
    };
    let Some(rest) = object_path
        .strip_prefix(version_prefix)
        .and_then(|r| r.strip_prefix("/namespaces/"))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    parts.len() == 3 && parts[1] == plural
}

/// What an apply sets: everything but the server's own fields.
fn content(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            meta.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

fn apply(state: &mut State, path: &str, body: Value) -> (u16, Value) {
    if let Some(object_path) = path.strip_suffix("/status") {
        let Some(existing) = state.objects.get(object_path).cloned() else {
            return (404, json!({}));
        };
        let mut updated = existing.clone();
        updated["status"] = body["status"].clone();
        if updated != existing {
            state.resource_version += 1;
            state.changes += 1;
            updated["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
            state
                .objects
                .insert(object_path.to_owned(), updated.clone());
        }
        return (200, updated);
    }
    let existing = state.objects.get(path).cloned();
    let mut stored = body.clone();
    match &existing {
        Some(old) if content(old) == content(&body) => return (200, old.clone()),
        Some(old) => {
            stored["metadata"]["uid"] = old["metadata"]["uid"].clone();
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            stored["metadata"]["generation"] = json!(generation + 1);
            if let Some(status) = old.get("status") {
                stored["status"] = status.clone();
            }
        }
        None => {
            state.uids += 1;
            stored["metadata"]["uid"] = json!(format!("uid-{}", state.uids));
            stored["metadata"]["generation"] = json!(1);
        }
    }
    state.resource_version += 1;
    state.changes += 1;
    stored["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    state.objects.insert(path.to_owned(), stored.clone());
    (if existing.is_some() { 200 } else { 201 }, stored)
}

fn create(state: &mut State, collection: &str, mut body: Value) -> (u16, Value) {
    state.uids += 1;
    let name = match body["metadata"]["name"].as_str() {
        Some(name) => name.to_owned(),
        None => format!(
            "{}{}",
            body["metadata"]["generateName"]
                .as_str()
                .unwrap_or("object-"),
            state.uids
        ),
    };
    let path = format!("{collection}/{name}");
    if state.objects.contains_key(&path) {
        return (
            409,
            json!({ "kind": "Status", "code": 409, "reason": "AlreadyExists" }),
        );
    }
    state.resource_version += 1;
    state.changes += 1;
    body["metadata"]["name"] = json!(name);
    body["metadata"]["uid"] = json!(format!("uid-{}", state.uids));
    body["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    state.objects.insert(path, body.clone());
    (201, body)
}

/// PUT: optimistic concurrency, as the API server does it.
fn replace(state: &mut State, path: &str, mut body: Value) -> (u16, Value) {
    let Some(existing) = state.objects.get(path) else {
        return (
            404,
            json!({ "kind": "Status", "code": 404, "reason": "NotFound" }),
        );
    };
    if body["metadata"]["resourceVersion"] != existing["metadata"]["resourceVersion"] {
        return (
            409,
            json!({ "kind": "Status", "code": 409, "reason": "Conflict" }),
        );
    }
    state.resource_version += 1;
    state.changes += 1;
    body["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    state.objects.insert(path.to_owned(), body.clone());
    (200, body)
}

fn merge(state: &mut State, path: &str, body: Value) -> (u16, Value) {
    let Some(mut object) = state.objects.get(path).cloned() else {
        return (404, json!({}));
    };
    let expected = body["metadata"]["resourceVersion"].as_str();
    if expected.is_some() && expected != object["metadata"]["resourceVersion"].as_str() {
        return (409, json!({}));
    }
    json_merge(&mut object, &body);
    state.resource_version += 1;
    state.changes += 1;
    object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    state.objects.insert(path.to_owned(), object.clone());
    (200, object)
}

fn json_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    json_merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn status_response(code: u16, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": if code == 404 { "NotFound" } else { "InternalError" },
            "code": code,
        }),
    )
}
