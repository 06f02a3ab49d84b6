//! The real router, driven in-process with AdmissionReview fixtures from testdata/admission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use fluxfence::Policy;
use fluxfence::kinds::{FLUX_KINDS, FluxKind};
use fluxfence_webhook::app::router;
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::state::AppState;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const OWN_NAMESPACE: &str = "fluxfence-system";
const MAX_BODY: usize = 3 * 1024 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> Value {
    let path = root()
        .join("testdata/admission")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn per_tenant() -> Policy {
    Policy::load(&root().join("policies/examples/per-tenant.yaml")).unwrap()
}

fn app_with(policy: Policy, own_namespace: Option<&str>, max_body: usize) -> Router {
    router(Arc::new(AppState::new(
        policy,
        Arc::new(Metrics::new()),
        own_namespace.map(str::to_owned),
        max_body,
    )))
}

fn app() -> Router {
    app_with(Policy::azure_default(), Some(OWN_NAMESPACE), MAX_BODY)
}

async fn send(app: &Router, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

/// Posts a review and returns the HTTP status and the parsed JSON answer.
async fn post(app: &Router, path: &str, review: &Value) -> (StatusCode, Value) {
    let (status, body) = send(app, "POST", path, serde_json::to_vec(review).unwrap()).await;
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, json)
}

/// The AdmissionResponse of a 200 answer, after checking it echoes the request's uid.
async fn respond(app: &Router, path: &str, review: &Value) -> Value {
    let (status, answer) = post(app, path, review).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = answer["response"].clone();
    assert_eq!(
        response["uid"], review["request"]["uid"],
        "uid not echoed: {answer}"
    );
    response
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or("")
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The JSON Patch of a mutate response, decoded from base64 as the API server does.
fn patch(response: &Value) -> Option<Vec<Value>> {
    let encoded = response
        .get("patch")?
        .as_str()
        .expect("patch is a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&decode_base64(encoded)).unwrap())
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// Applies a mutate response's patch to the review's object, as the API server would.
fn apply(review: &Value, response: &Value) -> Value {
    let mut next = review.clone();
    let ops: json_patch::Patch =
        serde_json::from_value(Value::Array(patch(response).unwrap())).unwrap();
    json_patch::patch(&mut next["request"]["object"], &ops).unwrap();
    next
}

#[tokio::test]
async fn ff101_and_ff111_deny_the_seed_helmrelease_with_the_rewrite() {
    let review = fixture("helmrelease-cross-namespace");
    let response = respond(&app(), "/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let text = message(&response);
    assert!(
        text.contains("FF101 cross-namespace-source-ref at /spec/chart/spec/sourceRef/namespace"),
        "{text}"
    );
    assert!(
        text.contains("HelmRepository flux-system/bitnami"),
        "{text}"
    );
    assert!(
        text.contains("Fix: Flux refuses cross-namespace references"),
        "{text}"
    );
    // Each denied rule links its documentation page.
    for code in ["FF101", "FF111"] {
        let url =
            format!("Docs: https://github.com/fluxfence/fluxfence/blob/main/docs/rules/{code}.md");
        assert!(text.contains(&url), "{text}");
    }
    assert!(
        text.contains("FF111 service-account-unavailable at /spec/serviceAccountName"),
        "{text}"
    );
    // The rewritten manifest: moved to the config namespace, deploying into nginx.
    assert!(
        text.contains("metadata:\n  name: nginx\n  namespace: cluster-config\nspec:\n"),
        "{text}"
    );
    assert!(text.contains("  targetNamespace: nginx\n"), "{text}");
    assert!(
        text.contains("        namespace: cluster-config\n"),
        "{text}"
    );
    // FF110 (warn by default) travels as a warning, each at most 120 characters.
    let warnings = warnings(&response);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("FF110: "), "{warnings:?}");
    assert!(warnings.iter().all(|w| w.chars().count() <= 120));
    assert_eq!(response["auditAnnotations"]["rules"], "FF101,FF110,FF111");
}

#[tokio::test]
async fn update_is_judged_like_create() {
    let created = respond(&app(), "/validate", &fixture("helmrelease-cross-namespace")).await;
    let updated = respond(
        &app(),
        "/validate",
        &fixture("helmrelease-cross-namespace-update"),
    )
    .await;
    assert_eq!(updated["allowed"], false);
    assert_eq!(message(&updated), message(&created));
}

#[tokio::test]
async fn dry_run_gets_the_same_verdict() {
    let app = app();
    let real = respond(&app, "/validate", &fixture("helmrelease-cross-namespace")).await;
    let dry = respond(
        &app,
        "/validate",
        &fixture("helmrelease-cross-namespace-dry-run"),
    )
    .await;
    assert_eq!(dry["allowed"], false);
    assert_eq!(message(&dry), message(&real));
    assert_eq!(dry["warnings"], real["warnings"]);
}

#[tokio::test]
async fn delete_status_and_own_namespace_are_never_blocked() {
    let app = app();
    for name in [
        "helmrelease-delete",
        "helmrelease-status-update",
        "helmrelease-own-namespace",
    ] {
        for endpoint in ["/validate", "/mutate"] {
            let response = respond(&app, endpoint, &fixture(name)).await;
            assert_eq!(response["allowed"], true, "{name} {endpoint}: {response}");
            assert!(
                response.get("patch").is_none(),
                "{name} {endpoint}: {response}"
            );
            assert!(
                response.get("warnings").is_none(),
                "{name} {endpoint}: {response}"
            );
        }
    }
    // The own-namespace fixture is otherwise a violation: without --namespace it is denied.
    let no_own = app_with(Policy::azure_default(), None, MAX_BODY);
    let response = respond(&no_own, "/validate", &fixture("helmrelease-own-namespace")).await;
    assert_eq!(response["allowed"], false);
}

/// `--no-cross-namespace-refs` has no namespace exemption: in the exempt flux-system a
/// cross-namespace reference is denied (FF101) as the linter reports it, while the rules the
/// exemption covers (FF110, FF111, …) stay silent and nothing is mutated.
#[tokio::test]
async fn an_exempt_namespace_is_judged_for_cross_namespace_references_only() {
    let app = app();
    let review = fixture("helmrelease-exempt-namespace");
    let denied = respond(&app, "/validate", &review).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["auditAnnotations"]["rules"], "FF101", "{denied}");
    let text = message(&denied);
    assert!(
        text.contains("FF101 cross-namespace-source-ref at /spec/chart/spec/sourceRef/namespace"),
        "{text}"
    );
    assert!(
        text.contains("declare the HelmRepository in `flux-system`"),
        "{text}"
    );
    // The platform's objects are not moved into the config namespace.
    assert!(!text.contains("fluxfence fix"), "{text}");
    let mutated = respond(&app, "/mutate", &review).await;
    assert!(mutated.get("patch").is_none(), "{mutated}");

    // The same object with its source beside it: no FF110 warning, no mutation.
    let mut same = review.clone();
    same["request"]["object"]["spec"]["chart"]["spec"]["sourceRef"]["namespace"] =
        json!("flux-system");
    for endpoint in ["/validate", "/mutate"] {
        let response = respond(&app, endpoint, &same).await;
        assert_eq!(response["allowed"], true, "{endpoint}: {response}");
        assert!(response.get("warnings").is_none(), "{endpoint}: {response}");
        assert!(response.get("patch").is_none(), "{endpoint}: {response}");
    }

    // An Alert of flux-system watching a tenant namespace: events dropped, so FF102.
    let mut alert = fixture("alert-cross-namespace");
    alert["request"]["namespace"] = json!("flux-system");
    alert["request"]["object"]["metadata"]["namespace"] = json!("flux-system");
    let response = respond(&app, "/validate", &alert).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).contains("FF102"), "{response}");
}

#[tokio::test]
async fn a_policy_that_does_not_enforce_allows_everything() {
    let mut policy = Policy::azure_default();
    policy.enforce = false;
    let app = app_with(policy, None, MAX_BODY);
    let response = respond(&app, "/validate", &fixture("helmrelease-cross-namespace")).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none());
}

#[tokio::test]
async fn ff110_warns_on_validate_and_mutate_defaults_the_service_account_once() {
    let app = app();
    for name in ["helmrelease-cluster-config", "kustomization-cluster-config"] {
        let review = fixture(name);
        let validated = respond(&app, "/validate", &review).await;
        assert_eq!(validated["allowed"], true, "{name}");
        assert_eq!(validated["auditAnnotations"]["rules"], "FF110", "{name}");
        assert!(warnings(&validated)[0].starts_with("FF110: "), "{name}");

        let mutated = respond(&app, "/mutate", &review).await;
        assert_eq!(mutated["allowed"], true);
        assert_eq!(
            patch(&mutated).unwrap(),
            vec![json!({"op": "add", "path": "/spec/serviceAccountName", "value": "flux-applier"})],
            "{name}"
        );
        assert_eq!(
            warnings(&mutated),
            vec!["fluxfence: set spec.serviceAccountName: flux-applier"]
        );

        // Re-invoked on its own output (reinvocationPolicy: IfNeeded): nothing more to do,
        // and validation now passes cleanly.
        let patched = apply(&review, &mutated);
        assert_eq!(
            patched["request"]["object"]["spec"]["serviceAccountName"],
            "flux-applier"
        );
        let again = respond(&app, "/mutate", &patched).await;
        assert!(again.get("patch").is_none(), "{name}: {again}");
        let validated = respond(&app, "/validate", &patched).await;
        assert_eq!(validated["allowed"], true);
        assert!(validated.get("warnings").is_none(), "{validated}");
    }
    let already = respond(
        &app,
        "/mutate",
        &fixture("kustomization-cluster-config-with-service-account"),
    )
    .await;
    assert!(already.get("patch").is_none(), "{already}");
}

#[tokio::test]
async fn mutate_adds_a_missing_spec_before_the_service_account() {
    let mut review = fixture("kustomization-cluster-config");
    review["request"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("spec");
    let response = respond(&app(), "/mutate", &review).await;
    assert_eq!(
        patch(&response).unwrap(),
        vec![
            json!({"op": "add", "path": "/spec", "value": {}}),
            json!({"op": "add", "path": "/spec/serviceAccountName", "value": "flux-applier"}),
        ]
    );
    let patched = apply(&review, &response);
    assert_eq!(
        patched["request"]["object"]["spec"],
        json!({"serviceAccountName": "flux-applier"})
    );
}

/// The verdict and the denial's rule codes of `review` on /validate.
async fn verdict(app: &Router, review: &Value) -> (bool, Vec<String>) {
    let response = respond(app, "/validate", review).await;
    let codes = message(&response)
        .lines()
        .filter_map(|line| line.strip_prefix("- "))
        .filter_map(|line| line.split(' ').next())
        .map(str::to_owned)
        .collect();
    (response["allowed"].as_bool().unwrap(), codes)
}

#[tokio::test]
async fn the_default_account_written_out_or_implied_gets_one_verdict() {
    // Flux impersonates team-a:flux-applier whether the field is written or not, and
    // flux-applier exists only in cluster-config.
    let app = app();
    let implied = fixture("tenant-kustomization-missing-service-account");
    assert_eq!(verdict(&app, &implied).await, (false, vec!["FF111".into()]));

    // The mutating webhook writes the default in, and validation judges it the same.
    let mutated = respond(&app, "/mutate", &implied).await;
    assert_eq!(
        patch(&mutated).unwrap(),
        vec![json!({"op": "add", "path": "/spec/serviceAccountName", "value": "flux-applier"})]
    );
    let written = apply(&implied, &mutated);
    assert_eq!(verdict(&app, &written).await, (false, vec!["FF111".into()]));

    // The same on the seed HelmRelease: patched or not, FF101 and FF111.
    let seed = fixture("helmrelease-cross-namespace");
    let mutated = respond(&app, "/mutate", &seed).await;
    let patched = apply(&seed, &mutated);
    let expected = (false, vec!["FF101".to_owned(), "FF111".to_owned()]);
    assert_eq!(verdict(&app, &seed).await, expected);
    assert_eq!(verdict(&app, &patched).await, expected);
}

#[tokio::test]
async fn an_explicit_account_the_policy_places_is_judged_by_the_policy() {
    let app = app_with(per_tenant(), Some(OWN_NAMESPACE), MAX_BODY);
    let with_account = |namespace: &str, account: &str| {
        let mut review = fixture("tenant-kustomization-missing-service-account");
        review["request"]["namespace"] = json!(namespace);
        review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
        review["request"]["object"]["spec"]["serviceAccountName"] = json!(account);
        review
    };
    // The tenant's account, where the policy creates it.
    let review = with_account("team-a", "team-a-reconciler");
    assert_eq!(verdict(&app, &review).await, (true, vec![]));
    // The same account outside the namespace the policy creates it in.
    let review = with_account("apps", "team-a-reconciler");
    assert_eq!(verdict(&app, &review).await, (false, vec!["FF111".into()]));
    let review = with_account("apps", "flux-applier");
    assert_eq!(verdict(&app, &review).await, (false, vec!["FF111".into()]));
    // An account the policy says nothing about: the webhook cannot see the cluster's
    // ServiceAccounts, and the API server's impersonation check is the backstop.
    let review = with_account("apps", "deployer");
    assert_eq!(verdict(&app, &review).await, (true, vec![]));
}

#[tokio::test]
async fn a_violating_object_being_deleted_can_lose_its_finalizer() {
    let review = fixture("helmrelease-finalizer-removal");
    let mut strict = Policy::azure_default();
    strict.ratchet_updates = false;
    for app in [app(), app_with(strict, None, MAX_BODY)] {
        for endpoint in ["/validate", "/mutate"] {
            let response = respond(&app, endpoint, &review).await;
            assert_eq!(response["allowed"], true, "{endpoint}: {response}");
            assert!(response.get("patch").is_none(), "{endpoint}: {response}");
        }
    }
    // It is the deletion timestamp that admits it: without one, and without ratcheting, the
    // same update is denied.
    let mut not_deleting = review.clone();
    for side in ["object", "oldObject"] {
        let metadata = not_deleting["request"][side]["metadata"]
            .as_object_mut()
            .unwrap();
        metadata.remove("deletionTimestamp");
    }
    let mut strict = Policy::azure_default();
    strict.ratchet_updates = false;
    let strict = app_with(strict, None, MAX_BODY);
    assert!(!verdict(&strict, &not_deleting).await.0);
}

#[tokio::test]
async fn a_metadata_only_update_of_a_violating_object_is_admitted_with_warnings() {
    let app = app();
    let review = fixture("helmrelease-reconcile-annotation");
    let response = respond(&app, "/validate", &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    let said = warnings(&response);
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(
        said[0].starts_with("FF101 (admitted: there before this update): HelmRelease/nginx"),
        "{said:?}"
    );
    assert!(said[1].starts_with("FF110: "), "{said:?}");
    assert!(said[2].starts_with("FF111 (admitted"), "{said:?}");
    assert!(said.iter().all(|w| w.chars().count() <= 120), "{said:?}");
    assert_eq!(response["auditAnnotations"]["rules"], "FF101,FF110,FF111");

    // The mutating webhook runs first and writes the default account in; that is no change.
    let mutated = respond(&app, "/mutate", &review).await;
    let patched = apply(&review, &mutated);
    assert_eq!(
        patched["request"]["object"]["spec"]["serviceAccountName"],
        "flux-applier"
    );
    let response = respond(&app, "/validate", &patched).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(warnings(&response).len(), 2, "{response}");

    let (_, body) = send(&app, "GET", "/metrics", Vec::new()).await;
    let text = String::from_utf8(body).unwrap();
    let series = "fluxfence_webhook_requests_total{endpoint=\"validate\",kind=\"HelmRelease\",verdict=\"ratcheted\"} 2";
    assert!(text.lines().any(|l| l == series), "{text}");

    // With ratcheting off, the update is judged as a create.
    let mut strict = Policy::azure_default();
    strict.ratchet_updates = false;
    let strict = app_with(strict, None, MAX_BODY);
    let response = respond(&strict, "/validate", &review).await;
    assert_eq!(response["allowed"], false);
    let created = respond(
        &strict,
        "/validate",
        &fixture("helmrelease-cross-namespace"),
    )
    .await;
    assert_eq!(message(&response), message(&created));
}

#[tokio::test]
async fn an_update_that_adds_or_changes_a_violation_is_denied() {
    let app = app();
    // Adds FF101 to an object that violated FF111 only.
    let added = fixture("helmrelease-cross-namespace-update");
    assert_eq!(
        verdict(&app, &added).await,
        (false, vec!["FF101".to_owned(), "FF111".to_owned()])
    );
    // Points the cross-namespace reference somewhere else: a changed violation.
    let mut changed = fixture("helmrelease-reconcile-annotation");
    changed["request"]["object"]["spec"]["chart"]["spec"]["sourceRef"]["namespace"] =
        json!("platform");
    let (allowed, codes) = verdict(&app, &changed).await;
    assert!(!allowed);
    assert!(codes.contains(&"FF101".to_owned()), "{codes:?}");
    // Adds a remote cluster to an object that violated already.
    let mut remote = fixture("helmrelease-reconcile-annotation");
    remote["request"]["object"]["spec"]["kubeConfig"] =
        json!({"secretRef": {"name": "prod-kubeconfig"}});
    let (allowed, codes) = verdict(&app, &remote).await;
    assert!(!allowed);
    assert!(codes.contains(&"FF120".to_owned()), "{codes:?}");
    // Dropping the account where the policy denies FF110 adds a violation, even though the
    // mutating webhook would write the default back.
    let app_ff110 = app_with(per_tenant(), None, MAX_BODY);
    let mut dropped = fixture("kustomization-cluster-config-with-service-account");
    dropped["request"]["operation"] = json!("UPDATE");
    dropped["request"]["oldObject"] = dropped["request"]["object"].clone();
    dropped["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("serviceAccountName");
    let (allowed, codes) = verdict(&app_ff110, &dropped).await;
    assert!(!allowed);
    assert_eq!(codes, vec!["FF110".to_owned()]);
    // Fixing a violation is always admitted.
    let mut fixed = fixture("helmrelease-reconcile-annotation");
    fixed["request"]["object"]["spec"]["chart"]["spec"]["sourceRef"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let response = respond(&app, "/validate", &fixed).await;
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test]
async fn ff120_denies_a_remote_cluster() {
    let response = respond(&app(), "/validate", &fixture("kustomization-kubeconfig")).await;
    assert_eq!(response["allowed"], false);
    let text = message(&response);
    assert!(
        text.contains("FF120 remote-cluster-kubeconfig at /spec/kubeConfig"),
        "{text}"
    );
    assert!(text.contains("Fix: remove spec.kubeConfig"), "{text}");
    // Not a move problem: no rewritten manifest.
    assert!(!text.contains("fluxfence fix"), "{text}");
}

#[tokio::test]
async fn ff102_denies_event_sources_in_other_namespaces() {
    let app = app();
    let alert = respond(&app, "/validate", &fixture("alert-cross-namespace")).await;
    assert_eq!(alert["allowed"], false);
    assert!(
        message(&alert)
            .contains("FF102 cross-namespace-event-source at /spec/eventSources/1/namespace"),
        "{alert}"
    );
    let receiver = respond(&app, "/validate", &fixture("receiver-wildcard-namespace")).await;
    assert_eq!(receiver["allowed"], false);
    assert!(
        message(&receiver).contains("at /spec/resources/0/namespace"),
        "{receiver}"
    );
    assert!(message(&receiver).contains("only `name: '*'` is a wildcard"));
}

#[tokio::test]
async fn per_tenant_policy_ff121_ff140_ff110_ff111() {
    let app = app_with(per_tenant(), Some(OWN_NAMESPACE), MAX_BODY);

    let target = respond(
        &app,
        "/validate",
        &fixture("tenant-helmrelease-target-outside"),
    )
    .await;
    assert_eq!(target["allowed"], false);
    let text = message(&target);
    assert!(
        text.contains("FF121 target-namespace-outside-tenant at /spec/targetNamespace"),
        "{text}"
    );
    assert!(text.contains("outside tenant `team-a`"), "{text}");
    assert_eq!(target["auditAnnotations"]["rules"], "FF121");

    let url = respond(&app, "/validate", &fixture("tenant-gitrepository-url")).await;
    assert_eq!(url["allowed"], false);
    assert!(
        message(&url).contains("FF140 source-url-not-allowed at /spec/url"),
        "{url}"
    );
    let allowed = respond(
        &app,
        "/validate",
        &fixture("tenant-gitrepository-url-allowed"),
    )
    .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");

    // FF110 is `deny` in this policy, and flux-applier does not exist in team-a (FF111).
    let missing = fixture("tenant-kustomization-missing-service-account");
    let denied = respond(&app, "/validate", &missing).await;
    assert_eq!(denied["allowed"], false);
    let text = message(&denied);
    assert!(text.contains("FF110 missing-service-account"), "{text}");
    assert!(text.contains("FF111 service-account-unavailable"), "{text}");
    // Mutation writes the default in; validation still denies it for FF111, as before.
    let mutated = respond(&app, "/mutate", &missing).await;
    let patched = apply(&missing, &mutated);
    assert_eq!(verdict(&app, &patched).await, (false, vec!["FF111".into()]));

    let other = respond(
        &app,
        "/validate",
        &fixture("tenant-kustomization-other-service-account"),
    )
    .await;
    assert_eq!(other["allowed"], false);
    assert!(
        message(&other).contains("which tenant `team-a` may not use"),
        "{other}"
    );
}

/// URLs are compared as URLs: the allowed `https://github.com/example-org/team-a-*` admits
/// team-a's repositories only, not a look-alike host, a climb out of the path or another port.
#[tokio::test]
async fn ff140_compares_parsed_urls_as_the_linter_does() {
    let app = app_with(per_tenant(), Some(OWN_NAMESPACE), MAX_BODY);
    let review = fixture("tenant-gitrepository-url-allowed");
    let with_url = |url: &str| {
        let mut changed = review.clone();
        changed["request"]["object"]["spec"]["url"] = json!(url);
        changed
    };
    for (url, allowed) in [
        ("https://github.com/example-org/team-a-app.git", true),
        ("https://github.com/example-org/team-a-app/", true),
        (
            "https://github.com.evil.example/example-org/team-a-app",
            false,
        ),
        (
            "https://github.com/example-org/team-a-app/../team-b-app",
            false,
        ),
        ("https://github.com:8443/example-org/team-a-app", false),
        ("https://github.com/example-org/team-b-app", false),
        (
            "https://github.com\\@evil.example/example-org/team-a-app",
            false,
        ),
    ] {
        let response = respond(&app, "/validate", &with_url(url)).await;
        assert_eq!(response["allowed"], allowed, "{url}: {response}");
        if !allowed {
            assert!(
                message(&response).contains("FF140 source-url-not-allowed at /spec/url"),
                "{url}: {response}"
            );
        }
    }
}

/// FF150: a tenant Kustomization that decrypts without its own key, or with another's KMS
/// identity, is denied; the platform's exempt namespace may use the controller's keys.
#[tokio::test]
async fn ff150_denies_decryption_with_the_platforms_keys() {
    let app = app_with(per_tenant(), Some(OWN_NAMESPACE), MAX_BODY);
    let review = fixture("tenant-kustomization-missing-service-account");
    let with = |namespace: &str, decryption: Value| {
        let mut changed = review.clone();
        changed["request"]["namespace"] = json!(namespace);
        let object = &mut changed["request"]["object"];
        object["metadata"]["namespace"] = json!(namespace);
        object["spec"]["serviceAccountName"] = json!("team-a-reconciler");
        object["spec"]["decryption"] = decryption;
        changed
    };
    let own_key = json!({"provider": "sops", "secretRef": {"name": "team-a-age"}});
    assert_eq!(
        verdict(&app, &with("team-a", own_key.clone())).await,
        (true, vec![])
    );

    let no_key = with("team-a", json!({"provider": "sops"}));
    let denied = respond(&app, "/validate", &no_key).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        message(&denied).contains("FF150 decryption-with-platform-key at /spec/decryption:"),
        "{denied}"
    );
    let mut borrowed = own_key.clone();
    borrowed["serviceAccountName"] = json!("team-b-reconciler");
    let denied = respond(&app, "/validate", &with("team-a", borrowed)).await;
    assert!(
        message(&denied).contains("at /spec/decryption/serviceAccountName"),
        "{denied}"
    );
    let platform = with("flux-system", json!({"provider": "sops"}));
    assert_eq!(verdict(&app, &platform).await, (true, vec![]));
}

/// An ExternalArtifact is a source like the others: referenced from another namespace, FF101.
#[tokio::test]
async fn ff101_judges_external_artifact_references() {
    let app = app();
    let mut review = fixture("kustomization-cluster-config-with-service-account");
    review["request"]["object"]["spec"]["sourceRef"] =
        json!({"kind": "ExternalArtifact", "name": "apps", "namespace": "flux-system"});
    assert_eq!(verdict(&app, &review).await, (false, vec!["FF101".into()]));
    review["request"]["object"]["spec"]["sourceRef"]["namespace"] = json!("cluster-config");
    assert_eq!(verdict(&app, &review).await, (true, vec![]));

    let mut release = fixture("helmrelease-cluster-config");
    let spec = &mut release["request"]["object"]["spec"];
    spec["serviceAccountName"] = json!("flux-applier");
    spec.as_object_mut().unwrap().remove("chart");
    spec["chartRef"] =
        json!({"kind": "ExternalArtifact", "name": "chart", "namespace": "flux-system"});
    assert_eq!(verdict(&app, &release).await, (false, vec!["FF101".into()]));
}

/// At admission a value is final: Flux substitutes before it applies, so a `${VAR}` that
/// reaches the API server is the namespace Flux will look in — another one — and is denied,
/// default or not (the linter, which cannot know the substitution, lists `${VAR}` as
/// unresolved and judges `${VAR:-default}` as its default).
#[tokio::test]
async fn a_variable_reference_namespace_at_admission_is_literal() {
    let app = app();
    let mut review = fixture("kustomization-cluster-config-with-service-account");
    for namespace in ["${SRC_NS}", "${SRC_NS:-cluster-config}"] {
        review["request"]["object"]["spec"]["sourceRef"]["namespace"] = json!(namespace);
        assert_eq!(
            verdict(&app, &review).await,
            (false, vec!["FF101".into()]),
            "{namespace}"
        );
    }
}

/// FF160 is an opt-in: a cross-namespace dependsOn is admitted by the default policy and
/// denied once the policy turns the rule on.
#[tokio::test]
async fn ff160_cross_namespace_depends_on_is_an_opt_in() {
    let mut review = fixture("kustomization-cluster-config-with-service-account");
    review["request"]["object"]["spec"]["dependsOn"] =
        json!([{"name": "database", "namespace": "team-b", "readyExpr": "true"}]);
    assert_eq!(verdict(&app(), &review).await, (true, vec![]));
    let mut policy = Policy::azure_default();
    policy
        .rules
        .insert("FF160".into(), fluxfence::Severity::Deny);
    let strict = app_with(policy, None, MAX_BODY);
    let response = respond(&strict, "/validate", &review).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        message(&response)
            .contains("FF160 cross-namespace-depends-on at /spec/dependsOn/0/namespace"),
        "{response}"
    );
    review["request"]["object"]["spec"]["dependsOn"][0]["namespace"] = json!("cluster-config");
    assert_eq!(verdict(&strict, &review).await, (true, vec![]));
}

#[tokio::test]
async fn a_shared_source_reference_is_rewritten_to_the_published_copy() {
    let app = app_with(per_tenant(), Some(OWN_NAMESPACE), MAX_BODY);
    let review = fixture("tenant-helmrelease-shared-source");
    // As written, Flux refuses it: validation alone says what to reference instead.
    let validated = respond(&app, "/validate", &review).await;
    assert_eq!(validated["allowed"], false, "{validated}");
    assert!(
        message(&validated).contains("reference kind: HelmRepository, name: flux-system.bitnami"),
        "{validated}"
    );

    // The API server calls /mutate first: the reference becomes the copy fluxfence-controller
    // publishes in the tenant's namespace (a HelmRelease chart.spec.sourceRef takes no
    // ExternalArtifact, so the copy keeps the source's kind).
    let mutated = respond(&app, "/mutate", &review).await;
    assert_eq!(
        patch(&mutated).unwrap(),
        vec![
            json!({"op": "replace", "path": "/spec/chart/spec/sourceRef/namespace", "value": "team-a"}),
            json!({"op": "replace", "path": "/spec/chart/spec/sourceRef/name", "value": "flux-system.bitnami"}),
        ]
    );
    let said = warnings(&mutated);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("HelmRepository flux-system.bitnami"),
        "{said:?}"
    );
    assert!(said[0].chars().count() <= 120);

    let patched = apply(&review, &mutated);
    let again = respond(&app, "/mutate", &patched).await;
    assert!(again.get("patch").is_none(), "{again}");
    let validated = respond(&app, "/validate", &patched).await;
    assert_eq!(validated["allowed"], true, "{validated}");

    // Without the policy's opt-in, the same reference is a plain FF101 and is left alone.
    let mut strict = per_tenant();
    strict.shared_sources.clear();
    let strict = app_with(strict, None, MAX_BODY);
    let response = respond(&strict, "/mutate", &review).await;
    assert!(response.get("patch").is_none());
    let response = respond(&strict, "/validate", &review).await;
    assert!(message(&response).contains("FF101"), "{response}");
}

#[tokio::test]
async fn a_kustomization_of_a_shared_repository_is_rewritten_to_an_external_artifact() {
    let mut policy = per_tenant();
    policy.shared_sources = vec![fluxfence::policy::SharedSource {
        kind: "GitRepository".into(),
        namespace: "flux-system".into(),
        name: "platform".into(),
        tenants: vec!["team-a".into()],
        namespaces: Vec::new(),
        copy_secrets: false,
    }];
    let app = app_with(policy, Some(OWN_NAMESPACE), MAX_BODY);
    let review_in = |namespace: &str| {
        let object = json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": namespace},
            "spec": {
                "interval": "10m", "path": "./apps", "prune": true,
                "serviceAccountName": format!("{namespace}-reconciler"),
                "sourceRef": {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "platform", "namespace": "flux-system"}
            }
        });
        let mut review = review_of(
            object,
            "kustomize.toolkit.fluxcd.io",
            "v1",
            "kustomizations",
            "uid-shared",
        );
        review["request"]["namespace"] = json!(namespace);
        review["request"]["name"] = json!("apps");
        review
    };
    let review = review_in("team-a");
    let mutated = respond(&app, "/mutate", &review).await;
    assert_eq!(
        patch(&mutated).unwrap(),
        vec![
            json!({"op": "replace", "path": "/spec/sourceRef/namespace", "value": "team-a"}),
            json!({"op": "replace", "path": "/spec/sourceRef/name", "value": "flux-system.platform"}),
            json!({"op": "replace", "path": "/spec/sourceRef/kind", "value": "ExternalArtifact"}),
            json!({"op": "replace", "path": "/spec/sourceRef/apiVersion", "value": "source.toolkit.fluxcd.io/v1"}),
        ]
    );
    let patched = apply(&review, &mutated);
    let validated = respond(&app, "/validate", &patched).await;
    assert_eq!(validated["allowed"], true, "{validated}");

    // team-b is not in the entry: nothing is rewritten and the denial names the entry.
    let other = review_in("team-b");
    let response = respond(&app, "/mutate", &other).await;
    assert!(response.get("patch").is_none(), "{response}");
    let response = respond(&app, "/validate", &other).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("sharedSources[0] (GitRepository flux-system/platform) is not shared with namespace `team-b`"),
        "{response}"
    );
}

/// The user fluxfence-controller runs as in the chart's default install.
const CONTROLLER: &str = "system:serviceaccount:fluxfence-system:fluxfence-controller";

/// fluxfence-controller's copy of `flux-system/bitnami` (per-tenant.yaml shares it with every
/// tenant) in `namespace`, written by `user`.
fn published_copy(namespace: &str, user: &str, url: &str) -> Value {
    let object = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {
            "name": "flux-system.bitnami",
            "namespace": namespace,
            "labels": {
                "fluxfence.dev/shared-source": "flux-system.bitnami",
                "fluxfence.dev/shared-source-kind": "HelmRepository",
            },
        },
        "spec": {"interval": "1h", "url": url},
    });
    let mut review = review_of(
        object,
        "source.toolkit.fluxcd.io",
        "v1",
        "helmrepositories",
        "uid-copy",
    );
    review["request"]["namespace"] = json!(namespace);
    review["request"]["name"] = json!("flux-system.bitnami");
    review["request"]["userInfo"]["username"] = json!(user);
    review
}

#[tokio::test]
async fn the_controllers_copy_of_a_shared_source_is_not_held_to_the_tenants_urls() {
    let state = AppState::new(
        per_tenant(),
        Arc::new(Metrics::new()),
        Some(OWN_NAMESPACE.to_owned()),
        MAX_BODY,
    )
    .with_trusted_publishers(vec![CONTROLLER.to_owned()]);
    let app = router(Arc::new(state));
    let bitnami = "https://charts.bitnami.com/bitnami";
    // team-a's sourceUrls do not list the chart repository; the platform shares it.
    assert_eq!(
        verdict(&app, &published_copy("team-a", CONTROLLER, bitnami)).await,
        (true, vec![])
    );
    // The same object written by anybody else is the tenant's own HelmRepository.
    let forged = respond(
        &app,
        "/validate",
        &published_copy("team-a", "alice", bitnami),
    )
    .await;
    assert_eq!(forged["allowed"], false, "{forged}");
    assert!(message(&forged).contains("FF140"), "{forged}");
    // The controller's identity vouches only for a copy of a source shared with the namespace.
    let mut elsewhere = published_copy("team-a", CONTROLLER, bitnami);
    elsewhere["request"]["object"]["metadata"]["labels"]["fluxfence.dev/shared-source"] =
        json!("flux-system.other");
    let response = respond(&app, "/validate", &elsewhere).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).contains("FF140"), "{response}");

    // Without a trusted publisher (the default), the controller's copy is judged like any other.
    let untrusting = app_with(per_tenant(), Some(OWN_NAMESPACE), MAX_BODY);
    let response = respond(
        &untrusting,
        "/validate",
        &published_copy("team-a", CONTROLLER, bitnami),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
}

#[tokio::test]
async fn objects_that_are_not_flux_kinds_are_allowed() {
    let app = app();
    for endpoint in ["/validate", "/mutate"] {
        let response = respond(&app, endpoint, &fixture("configmap")).await;
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none());
    }
}

/// A minimal object of `kind`, in namespace `apps`, that crosses namespaces where it can.
fn object_of(kind: FluxKind, api_version: &str) -> (Value, bool) {
    let away = json!({"kind": "GitRepository", "name": "shared", "namespace": "elsewhere"});
    let (spec, violates) = match kind {
        FluxKind::Kustomization | FluxKind::ImageUpdateAutomation => {
            (json!({"interval": "5m", "sourceRef": away}), true)
        }
        FluxKind::HelmRelease => (
            json!({"interval": "5m", "chart": {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "shared", "namespace": "elsewhere"}}}}),
            true,
        ),
        FluxKind::ImagePolicy => (
            json!({"imageRepositoryRef": {"name": "app", "namespace": "elsewhere"}}),
            true,
        ),
        FluxKind::Alert => (
            json!({"providerRef": {"name": "slack"}, "eventSources": [away]}),
            true,
        ),
        FluxKind::Receiver => (json!({"type": "generic", "resources": [away]}), true),
        FluxKind::ArtifactGenerator => (
            json!({"sources": [{"alias": "app", "kind": "GitRepository", "name": "shared", "namespace": "elsewhere"}],
                   "artifacts": [{"name": "app", "copy": [{"from": "@app/**", "to": "@artifact/"}]}]}),
            true,
        ),
        _ => (
            json!({"interval": "5m", "url": "https://example.com/repo"}),
            false,
        ),
    };
    let object = json!({
        "apiVersion": api_version,
        "kind": kind.as_str(),
        "metadata": {"name": "x", "namespace": "apps"},
        "spec": spec,
    });
    (object, violates)
}

fn review_of(object: Value, group: &str, version: &str, plural: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": plural},
            "name": "x",
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": object,
            "dryRun": false,
        }
    })
}

#[tokio::test]
async fn every_flux_kind_and_version_is_judged() {
    let app = app();
    let mut expected_series = Vec::new();
    for info in FLUX_KINDS {
        for version in info.versions {
            let api_version = format!("{}/{version}", info.group);
            let (object, violates) = object_of(info.kind, &api_version);
            let uid = format!("uid-{}-{version}", info.plural);
            let review = review_of(object, info.group, version, info.plural, &uid);
            let response = respond(&app, "/validate", &review).await;
            assert_eq!(
                response["allowed"], !violates,
                "{api_version} {}: {response}",
                info.kind
            );
            if violates {
                let code = match info.kind {
                    FluxKind::Alert | FluxKind::Receiver => "FF102",
                    _ => "FF101",
                };
                assert!(
                    message(&response).contains(code),
                    "{api_version}: {response}"
                );
            }
            let mutated = respond(&app, "/mutate", &review).await;
            assert_eq!(mutated["allowed"], true, "{api_version}: {mutated}");
        }
        let verdict = if matches!(
            info.kind,
            FluxKind::Alert
                | FluxKind::Receiver
                | FluxKind::Kustomization
                | FluxKind::ImageUpdateAutomation
                | FluxKind::HelmRelease
                | FluxKind::ImagePolicy
                | FluxKind::ArtifactGenerator
        ) {
            "denied"
        } else {
            "allowed"
        };
        expected_series.push(format!(
            "fluxfence_webhook_requests_total{{endpoint=\"validate\",kind=\"{}\",verdict=\"{verdict}\"}} {}",
            info.kind,
            info.versions.len()
        ));
    }
    // Each kind was recognised as that Flux kind (not counted as `other`).
    let (status, body) = send(&app, "GET", "/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for series in expected_series {
        assert!(
            text.lines().any(|l| l == series),
            "missing {series} in\n{text}"
        );
    }
    assert!(!text.contains("kind=\"other\""), "{text}");
}

#[tokio::test]
async fn a_malformed_body_is_a_400_with_a_json_error() {
    let app = app();
    let body = std::fs::read(root().join("testdata/admission/malformed-body.json")).unwrap();
    for endpoint in ["/validate", "/mutate"] {
        let (status, answer) = send(&app, "POST", endpoint, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(error["code"], 400);
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("not an AdmissionReview"),
            "{error}"
        );
    }
    for junk in [
        &b""[..],
        b"null",
        b"[]",
        b"\xff\xfe",
        b"{\"kind\": \"AdmissionReview\"}",
    ] {
        let (status, answer) = send(&app, "POST", "/validate", junk.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{junk:?}");
        serde_json::from_slice::<Value>(&answer).unwrap();
    }
}

#[tokio::test]
async fn a_review_without_uid_is_a_400() {
    let (status, answer) = post(&app(), "/validate", &fixture("missing-uid")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("no uid"),
        "{answer}"
    );
    let mut empty = fixture("kustomization-cluster-config");
    empty["request"]["uid"] = json!("");
    let (status, _) = post(&app(), "/mutate", &empty).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let small = app_with(Policy::azure_default(), None, 4096);
    let mut review = fixture("helmrelease-cluster-config");
    review["request"]["object"]["spec"]["values"] = json!({"blob": "x".repeat(5000)});
    let (status, answer) = send(
        &small,
        "POST",
        "/validate",
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = serde_json::from_slice(&answer).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("4096 bytes"),
        "{error}"
    );

    // The default limit is 3 MiB: 4 MiB is refused, 2 MiB is judged.
    let app = app();
    review["request"]["object"]["spec"]["values"] = json!({"blob": "x".repeat(4 << 20)});
    let (status, _) = send(
        &app,
        "POST",
        "/validate",
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    review["request"]["object"]["spec"]["values"] = json!({"blob": "x".repeat(2 << 20)});
    let response = respond(&app, "/validate", &review).await;
    assert_eq!(response["allowed"], true);
}

/// JSON for `spec.values` that gives a HelmRelease `levels` levels of mappings in all (the
/// object is one, `spec` two, `values` three).
fn nested_values(levels: usize) -> String {
    let inner = levels - 2;
    format!("{}1{}", "{\"a\":".repeat(inner), "}".repeat(inner))
}

/// The HelmRelease fixture, its object `levels` levels deep, and its body.
fn nested_review(levels: usize) -> (Value, String) {
    let mut review = fixture("helmrelease-cluster-config");
    review["request"]["object"]["spec"]["values"] = json!("PLACEHOLDER");
    let body = serde_json::to_string(&review)
        .unwrap()
        .replace("\"PLACEHOLDER\"", &nested_values(levels));
    (review, body)
}

#[tokio::test]
async fn objects_nest_as_deep_as_the_linter_allows_and_no_deeper() {
    let app = app();
    for (levels, judged) in [
        (199, true),
        (200, true),
        (201, false),
        (202, false),
        (10_000, false),
        (100_000, false),
    ] {
        let (review, body) = nested_review(levels);
        for endpoint in ["/validate", "/mutate"] {
            let (status, answer) = send(&app, "POST", endpoint, body.clone().into_bytes()).await;
            assert_eq!(status, StatusCode::OK, "{levels} levels");
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            let response = &answer["response"];
            assert_eq!(response["uid"], review["request"]["uid"]);
            assert_eq!(
                response["allowed"], judged,
                "{levels} levels {endpoint}: {response}"
            );
            if !judged {
                assert!(
                    message(response).contains("deeper than 200 levels"),
                    "{levels} levels: {response}"
                );
            }
        }
    }
}

#[test]
fn the_linter_reads_objects_with_the_same_nesting_limit() {
    for (levels, read) in [(199, true), (200, true), (201, false), (10_000, false)] {
        let text = format!(
            "{{\"apiVersion\": \"helm.toolkit.fluxcd.io/v2\", \"kind\": \"HelmRelease\", \"metadata\": {{\"name\": \"x\"}}, \"spec\": {{\"values\": {}}}}}",
            nested_values(levels)
        );
        let result = fluxfence::yaml::load_documents(&text, |_| {});
        assert_eq!(result.is_ok(), read, "{levels} levels: {result:?}");
        // Far deeper, the YAML parser's own flow-nesting guard answers first, in its words.
        if let (201, Err(e)) = (levels, &result) {
            assert!(e.message.contains("200 levels"), "{}", e.message);
        }
    }
}

#[tokio::test]
async fn a_review_with_a_uid_but_unreadable_fields_is_denied() {
    let review = fixture("wrong-type-metadata");
    for endpoint in ["/validate", "/mutate"] {
        let response = respond(&app(), endpoint, &review).await;
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 400);
        assert!(message(&response).contains("cannot be read"), "{response}");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = app();
    let (status, body) = send(&app, "GET", "/healthz", Vec::new()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"ok"[..]));
    let (status, _) = send(&app, "GET", "/readyz", Vec::new()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before set_ready"
    );

    let state = Arc::new(AppState::new(
        Policy::azure_default(),
        Arc::new(Metrics::new()),
        None,
        MAX_BODY,
    ));
    state.set_ready();
    let app = router(Arc::clone(&state));
    let (status, _) = send(&app, "GET", "/readyz", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);

    respond(&app, "/validate", &fixture("helmrelease-cross-namespace")).await;
    respond(&app, "/mutate", &fixture("kustomization-cluster-config")).await;
    send(&app, "POST", "/validate", b"{".to_vec()).await;
    let (status, body) = send(&app, "GET", "/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "fluxfence_webhook_requests_total{endpoint=\"validate\",kind=\"HelmRelease\",verdict=\"denied\"} 1",
        "fluxfence_webhook_requests_total{endpoint=\"mutate\",kind=\"Kustomization\",verdict=\"mutated\"} 1",
        "fluxfence_webhook_findings_total{endpoint=\"validate\",rule=\"FF101\",severity=\"deny\"} 1",
        "fluxfence_webhook_findings_total{endpoint=\"validate\",rule=\"FF110\",severity=\"warn\"} 1",
        "fluxfence_webhook_errors_total{endpoint=\"validate\",reason=\"bad_request\"} 1",
        "fluxfence_webhook_request_duration_seconds_count{endpoint=\"validate\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

#[tokio::test]
async fn only_post_reviews() {
    let (status, _) = send(&app(), "GET", "/validate", Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = send(&app(), "POST", "/nope", Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
