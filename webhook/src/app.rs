//! The HTTP surface: routes, body handling and the mapping of outcomes to responses.
//! The decision itself is [`crate::review`]'s.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde::Deserialize;

use crate::accounts::ServiceAccounts;
use crate::metrics::ErrorReason;
use crate::review::{self, Endpoint, Outcome};
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    #[cfg(feature = "bench")]
    let router = router.route("/bench/allow", post(bench_allow));
    router.with_state(state)
}

async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    admit(&state, Endpoint::Validate, request.into_body()).await
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    admit(&state, Endpoint::Mutate, request.into_body()).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down, still answering for the drain period",
        )
            .into_response()
    } else if state.is_ready() {
        "ok".into_response()
    } else if state.awaits_service_accounts() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the ServiceAccount cache has not listed the ServiceAccounts yet",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: certificate or policy not loaded",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The allow-everything handler the benchmark compares against: same TLS, HTTP and
/// AdmissionReview parsing, no judgement.
#[cfg(feature = "bench")]
async fn bench_allow(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let bytes = match read_body(request.into_body(), &state).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    match parse_review(&bytes) {
        Parsed::Request(request) => {
            Json(AdmissionResponse::from(&*request).into_review()).into_response()
        }
        Parsed::Unreadable { uid, reason } => Json(unreadable(uid, &reason)).into_response(),
        Parsed::Invalid(reason) => error_response(StatusCode::BAD_REQUEST, &reason),
    }
}

/// Reads, parses and judges one AdmissionReview. Whatever the object says, the answer is HTTP
/// 200 with a review echoing the uid; only a body that is not a review with a uid gets a 4xx.
async fn admit(state: &AppState, endpoint: Endpoint, body: Body) -> Response {
    let bytes = match read_body(body, state).await {
        Ok(bytes) => bytes,
        Err(response) => {
            let reason = match response.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ErrorReason::BodyTooLarge,
                StatusCode::REQUEST_TIMEOUT => ErrorReason::BodyTimeout,
                _ => ErrorReason::BadRequest,
            };
            state.metrics.error(endpoint, reason);
            return response;
        }
    };
    let started = Instant::now();
    let request = match parse_review(&bytes) {
        Parsed::Request(request) => request,
        Parsed::Unreadable { uid, reason } => {
            state.metrics.error(endpoint, ErrorReason::UnreadableReview);
            tracing::warn!(endpoint = endpoint.as_str(), uid = %uid, verdict = "error", error = %reason, "unreadable admission review denied");
            return Json(unreadable(uid, &reason)).into_response();
        }
        Parsed::Invalid(reason) => {
            state.metrics.error(endpoint, ErrorReason::BadRequest);
            tracing::warn!(endpoint = endpoint.as_str(), error = %reason, "request is not an admission review");
            return error_response(StatusCode::BAD_REQUEST, &reason);
        }
    };
    let policy = state.policy();
    let accounts = state
        .service_accounts
        .as_deref()
        .map(|cache| cache as &dyn ServiceAccounts);
    let cluster = review::ClusterView {
        accounts,
        trusted_publishers: &state.trusted_publishers,
    };
    let outcome = review::review_with(
        endpoint,
        &request,
        &policy,
        state.own_namespace.as_deref(),
        cluster,
    );
    if outcome.verdict == review::Verdict::Error {
        state.metrics.error(endpoint, ErrorReason::Engine);
    }
    state.metrics.review(
        endpoint,
        outcome.kind,
        outcome.verdict,
        &outcome.findings,
        started.elapsed(),
    );
    log(endpoint, &request, &outcome);
    answer(outcome.response)
}

/// The review answering `response`. kube-core writes `patch` as a JSON array of numbers; the
/// admission API documents base64 (Go's `[]byte`), so the patch is sent in that form.
fn answer(mut response: AdmissionResponse) -> Response {
    let patch = response.patch.take();
    let review = response.into_review();
    let Some(patch) = patch else {
        return Json(review).into_response();
    };
    let json = serde_json::to_value(&review).and_then(|mut json| {
        json["response"]["patch"] = serde_json::to_value(k8s_openapi::ByteString(patch))?;
        Ok(json)
    });
    match json {
        Ok(json) => Json(json).into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the admission response: {e}"),
        ),
    }
}

fn log(endpoint: Endpoint, request: &AdmissionRequest<DynamicObject>, outcome: &Outcome) {
    let rules: Vec<&str> = outcome.findings.iter().map(|(code, _)| *code).collect();
    tracing::info!(
        endpoint = endpoint.as_str(),
        uid = %request.uid,
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = %request.name,
        operation = ?request.operation,
        dry_run = request.dry_run,
        verdict = outcome.verdict.as_str(),
        allowed = outcome.response.allowed,
        rules = %rules.join(","),
        findings = %outcome.messages.join("; "),
        note = outcome.note.as_deref().unwrap_or(""),
        "admission review"
    );
}

/// The body, or the 4xx response to send instead. Over HTTP/2 the 413 goes out whole: the
/// stream is reset only after it (NO_ERROR, RFC 9113 section 8.1: stop sending, keep the
/// response), which the limits tests hold hyper and h2 to.
async fn read_body(body: Body, state: &AppState) -> Result<Bytes, Response> {
    let (limit, timeout) = (state.max_body_bytes, state.body_read_timeout);
    let Ok(read) = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await else {
        return Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body did not arrive within {}s (--body-read-timeout-seconds)",
                timeout.as_secs_f64()
            ),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is over the limit of {limit} bytes (--max-body-bytes)"),
        )),
        Err(e) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the request body: {e}"),
        )),
    }
}

enum Parsed {
    Request(Box<AdmissionRequest<DynamicObject>>),
    /// A review with a uid that cannot be read in full: it can still be answered (denied).
    Unreadable {
        uid: String,
        reason: String,
    },
    /// Not a review, or no uid to answer to.
    Invalid(String),
}

/// Just enough of a review to answer it. serde_json skips unknown fields without recursing,
/// so this reads even objects nested too deep for the full parse.
#[derive(Deserialize)]
struct Envelope {
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
struct EnvelopeRequest {
    #[serde(default)]
    uid: String,
}

/// How deep the review's own wrapping goes: the objects sit inside `{"request": {"object":`.
const REVIEW_WRAPPING: usize = 2;

/// Whether `bytes`, as JSON, nests objects and arrays deeper than an object may be (the
/// linter's limit, [`fluxfence::yaml::MAX_DEPTH`]) plus the review's wrapping. Checked
/// before parsing, so the parse (with serde_json's own limit of 128 lifted) stays shallow.
fn nested_too_deep(bytes: &[u8]) -> bool {
    let limit = fluxfence::yaml::MAX_DEPTH + REVIEW_WRAPPING + 1;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn parse_review(bytes: &[u8]) -> Parsed {
    if nested_too_deep(bytes) {
        let reason = format!(
            "the object nests deeper than {} levels, the limit fluxfence lint has too",
            fluxfence::yaml::MAX_DEPTH
        );
        return match serde_json::from_slice::<Envelope>(bytes) {
            Ok(Envelope {
                request: Some(EnvelopeRequest { uid }),
            }) if !uid.is_empty() => Parsed::Unreadable { uid, reason },
            _ => Parsed::Invalid(format!("the body is not an AdmissionReview: {reason}")),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let parsed = AdmissionReview::<DynamicObject>::deserialize(&mut deserializer)
        .and_then(|review| deserializer.end().map(|()| review));
    let error = match parsed {
        Ok(review) => match TryInto::<AdmissionRequest<DynamicObject>>::try_into(review) {
            Ok(request) if request.uid.is_empty() => {
                return Parsed::Invalid(
                    "the AdmissionReview request has an empty uid; it cannot be answered".into(),
                );
            }
            Ok(request) => return Parsed::Request(Box::new(request)),
            Err(_) => {
                return Parsed::Invalid(
                    "the AdmissionReview has no `request`; send admission.k8s.io/v1 AdmissionReview requests".into(),
                );
            }
        },
        Err(e) => e,
    };
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(Envelope {
            request: Some(EnvelopeRequest { uid }),
        }) if !uid.is_empty() => Parsed::Unreadable {
            uid,
            reason: format!("the AdmissionReview cannot be read: {error}"),
        },
        Ok(_) if error.to_string().contains("missing field `uid`") => {
            Parsed::Invalid("the AdmissionReview request has no uid; it cannot be answered".into())
        }
        _ => Parsed::Invalid(format!("the body is not an AdmissionReview: {error}")),
    }
}

/// A denial for a review that names its uid but cannot be judged: never an allow.
fn unreadable(uid: String, reason: &str) -> AdmissionReview<DynamicObject> {
    let mut response =
        AdmissionResponse::invalid(format!("fluxfence denied the request: {reason}"));
    response.uid = uid;
    response.result.code = 400;
    response.into_review()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message, "code": status.as_u16() })),
    )
        .into_response()
}
