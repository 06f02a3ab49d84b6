//! Any bytes as the body of `POST /validate` and `POST /mutate`, through the webhook's router
//! in process (no TLS, no socket) → a well-formed answer, never a panic:
//! - a body over the limit: 413; a body that is not a review naming a uid: 400; both with a
//!   JSON error carrying the same code;
//! - otherwise 200 with an AdmissionReview (in the request's version, or v1) whose response
//!   echoes the request's uid, says whether it is allowed, and gives a reason when it is not;
//! - a patch is a base64 JSON Patch that applies to the request's object.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use fluxfence::Policy;
use fluxfence_webhook::app::router;
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::state::AppState;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Above every review of `testdata/admission` and below the fuzzer's longest input
/// (`fuzz/run.sh` gives 8 KiB), so that both answers are reached.
pub const MAX_BODY_BYTES: usize = 6144;

pub fn check(data: &[u8]) {
    let (runtime, app) = server();
    let request = parse_json(data);
    let uid = readable_uid(data);
    for endpoint in ["/validate", "/mutate"] {
        let (status, body) = runtime.block_on(post(app, endpoint, data.to_vec()));
        let answer = parse_json(&body)
            .unwrap_or_else(|| panic!("{endpoint}: {status} answer is not JSON: {body:?}"));
        match status {
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => {
                let expected = if data.len() > MAX_BODY_BYTES {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                assert_eq!(status, expected, "{endpoint}: {answer}");
                assert_eq!(answer["code"], status.as_u16(), "{endpoint}: {answer}");
                assert!(answer["error"].is_string(), "{endpoint}: {answer}");
                assert!(
                    status != StatusCode::BAD_REQUEST || uid.is_none(),
                    "{endpoint}: a review naming its uid was refused: {answer}"
                );
            }
            StatusCode::OK => {
                assert!(
                    data.len() <= MAX_BODY_BYTES,
                    "{endpoint}: body over the limit answered"
                );
                let Some(uid) = uid.as_deref() else {
                    panic!("{endpoint}: answered 200 without a uid: {answer}");
                };
                check_review(endpoint, &answer, uid, request.as_ref(), data);
            }
            other => panic!("{endpoint}: unexpected status {other}: {answer}"),
        }
    }
}

fn check_review(endpoint: &str, answer: &Value, uid: &str, request: Option<&Value>, raw: &[u8]) {
    // The answer is in the version the review came in (kube-core echoes the request's type),
    // or in v1 when the request could not be read; a body this oracle cannot read as JSON
    // (invalid UTF-8 in a field the webhook skips) may name any.
    for (field, default) in [
        ("apiVersion", "admission.k8s.io/v1"),
        ("kind", "AdmissionReview"),
    ] {
        let sent = request.and_then(|r| r[field].as_str());
        let answered = answer[field].as_str();
        assert!(
            answered.is_some()
                && (answered == Some(default) || sent.is_none_or(|s| answered == Some(s))),
            "{endpoint}: `{field}` {answered:?}, sent {sent:?}: {answer}"
        );
    }
    let response = &answer["response"];
    assert_eq!(
        response["uid"], uid,
        "{endpoint}: the uid is not echoed: {answer}"
    );
    let Some(allowed) = response["allowed"].as_bool() else {
        panic!("{endpoint}: no `allowed`: {answer}");
    };
    if !allowed {
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{endpoint}: a denial without a reason: {answer}"
        );
    }
    let Some(patch) = response.get("patch") else {
        return;
    };
    assert_eq!(response["patchType"], "JSONPatch", "{endpoint}: {answer}");
    let bytes: k8s_openapi::ByteString = serde_json::from_value(patch.clone())
        .unwrap_or_else(|e| panic!("{endpoint}: the patch is not base64 ({e}): {answer}"));
    let patch: json_patch::Patch = serde_json::from_slice(&bytes.0)
        .unwrap_or_else(|e| panic!("{endpoint}: the patch is not a JSON Patch ({e}): {answer}"));
    let mut object = request
        .and_then(|r| r["request"].get("object"))
        .cloned()
        .or_else(|| readable_object(raw))
        // Invalid UTF-8 in a string the webhook does not read (a HelmRelease's values): it
        // judges the rest, and its patch must apply to the object with that string replaced.
        .or_else(|| readable_object(String::from_utf8_lossy(raw).as_bytes()))
        .unwrap_or_else(|| panic!("{endpoint}: a patch for a request without an object"));
    if let Err(e) = json_patch::patch(&mut object, &patch) {
        panic!("{endpoint}: the patch does not apply ({e}): {answer}");
    }
}

/// The request's uid, when the body is JSON that names one at `request.uid`: the webhook must
/// answer it, even when the rest cannot be read (a lone surrogate in some string, nesting past
/// the limit), so only the path to the uid is read. A key given twice on that path makes the
/// body ambiguous: no uid.
fn readable_uid(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Review {
        request: Option<RequestUid>,
    }
    #[derive(serde::Deserialize)]
    struct RequestUid {
        uid: Option<String>,
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let review: Review = serde::Deserialize::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    review.request?.uid.filter(|uid| !uid.is_empty())
}

/// `request.object`, read as the webhook reads it: fields it does not know (invalid UTF-8 in
/// one, say) are skipped unread.
fn readable_object(bytes: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Review {
        request: RequestObject,
    }
    #[derive(serde::Deserialize)]
    struct RequestObject {
        object: Option<Value>,
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let review: Review = serde::Deserialize::deserialize(&mut deserializer).ok()?;
    review.request.object
}

/// JSON as the webhook reads it: nesting unbounded (it bounds nesting itself).
fn parse_json(bytes: &[u8]) -> Option<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

async fn post(app: &Router, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = match Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
    {
        Ok(request) => request,
        Err(e) => panic!("cannot build the request: {e}"),
    };
    let response = match app.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => (status, body.to_bytes().to_vec()),
        Err(e) => panic!("{path}: cannot read the answer: {e}"),
    }
}

/// One runtime and one router for the whole run, as one webhook process serves every review.
fn server() -> &'static (tokio::runtime::Runtime, Router) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => panic!("cannot start a runtime: {e}"),
        };
        let state = AppState::new(
            Policy::azure_default(),
            Arc::new(Metrics::new()),
            Some("fluxfence-system".to_owned()),
            MAX_BODY_BYTES,
        );
        (runtime, router(Arc::new(state)))
    })
}
