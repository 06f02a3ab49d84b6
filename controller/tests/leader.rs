//! Leader election against the in-memory API server: who takes the Lease, when, and how.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::FakeApi;
use fluxfence_controller::leader::Elector;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/flux-system/leases/fluxfence-controller";

fn elector(fake_client: &kube::Client, identity: &str, seconds: u64) -> Elector {
    Elector::new(
        Api::<Lease>::namespaced(fake_client.clone(), "flux-system"),
        "fluxfence-controller",
        identity,
        Duration::from_secs(seconds),
    )
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_the_second_waits() {
    let (fake, client) = FakeApi::client();
    let mut a = elector(&client, "pod-a", 15);
    let mut b = elector(&client, "pod-b", 15);
    assert!(a.try_acquire_or_renew().await.unwrap());
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        create.path,
        "/apis/coordination.k8s.io/v1/namespaces/flux-system/leases"
    );
    assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(create.body["spec"]["leaseTransitions"], 0);

    fake.clear_requests();
    assert!(!b.try_acquire_or_renew().await.unwrap());
    let lines: Vec<String> = fake.requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        vec![format!("GET {LEASE}")],
        "a candidate only reads a held Lease"
    );

    let before = fake.get(LEASE).unwrap()["spec"]["renewTime"].clone();
    std::thread::sleep(Duration::from_millis(2));
    assert!(a.try_acquire_or_renew().await.unwrap());
    let renewed = fake.get(LEASE).unwrap();
    assert_eq!(renewed["spec"]["holderIdentity"], "pod-a");
    assert_ne!(renewed["spec"]["renewTime"], before);
    assert_eq!(fake.requests().last().unwrap().method, "PUT");
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let (fake, client) = FakeApi::client();
    let mut a = elector(&client, "pod-a", 15);
    let mut b = elector(&client, "pod-b", 15);
    assert!(a.try_acquire_or_renew().await.unwrap());
    a.release().await;
    assert!(
        fake.get(LEASE).unwrap()["spec"]
            .get("holderIdentity")
            .is_none()
    );
    assert!(b.try_acquire_or_renew().await.unwrap());
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn expiry_is_judged_on_the_candidates_own_clock() {
    let (fake, client) = FakeApi::client();
    // A holder whose clock is far behind: its renewTime looks decades old. A candidate still
    // waits a whole lease duration from when it first saw this record.
    fake.put(
        LEASE,
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": "fluxfence-controller", "namespace": "flux-system", "resourceVersion": "7" },
            "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 15, "renewTime": "2000-01-01T00:00:00.000000Z" },
        }),
    );
    let mut b = elector(&client, "pod-b", 15);
    assert!(!b.try_acquire_or_renew().await.unwrap());

    // A holder that stopped renewing a lease of zero seconds: expired as soon as it is seen.
    fake.put(
        LEASE,
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": "fluxfence-controller", "namespace": "flux-system", "resourceVersion": "8" },
            "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 0, "leaseTransitions": 3 },
        }),
    );
    assert!(b.try_acquire_or_renew().await.unwrap());
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn a_stale_read_loses_the_race() {
    let (fake, client) = FakeApi::client();
    fake.put(
        LEASE,
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": "fluxfence-controller", "namespace": "flux-system", "resourceVersion": "1" },
            "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 15 },
        }),
    );
    // Another replica's write lands between this one's read and its write.
    fake.fail("PUT", LEASE, 409);
    let mut a = elector(&client, "pod-a", 15);
    assert!(!a.try_acquire_or_renew().await.unwrap());
}
