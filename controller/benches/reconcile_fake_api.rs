//! The controller's own cost, without an API server: 1,000 FluxConfigs reconciled against the
//! in-memory API server of the tests (`tests/common`), then a full resync of the unchanged
//! 1,000. Reports the time of each pass, the requests sent and the writes that changed an
//! object. The fake answers in microseconds, so this is the reconciler's CPU time (rendering,
//! the engine check, serialisation, kube's client), not a cluster's.
//!
//! `cargo bench -p fluxfence-controller --bench reconcile_fake_api` (CONFIGS=N for another count).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::FakeApi;
use fluxfence_controller::reconcile::reconcile;
use futures::StreamExt;
use serde_json::json;

fn manifest(index: usize) -> serde_json::Value {
    json!({
        "apiVersion": "fluxfence.dev/v1alpha1",
        "kind": "FluxConfig",
        "metadata": { "name": format!("tenant-{index:04}") },
        "spec": {
            "gitRepository": {
                "url": format!("https://git.example.com/org/tenant-{index:04}"),
                "repositoryRef": { "branch": "main" },
            },
            "kustomizations": {
                "infra": { "path": "./infrastructure", "prune": true },
                "apps": { "path": "./apps", "prune": true, "dependsOn": ["infra"] },
            },
        },
    })
}

async fn pass(fake: &FakeApi, ctx: &Arc<fluxfence_controller::reconcile::Context>, configs: usize) {
    futures::stream::iter(0..configs)
        .map(|i| {
            let config = Arc::new(fake.config(&format!("tenant-{i:04}")));
            let ctx = ctx.clone();
            async move { reconcile(config, ctx).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let configs: usize = std::env::var("CONFIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (fake, ctx) = FakeApi::start();
    for i in 0..configs {
        fake.create_config(manifest(i));
    }

    let started = Instant::now();
    pass(&fake, &ctx, configs).await;
    let first = started.elapsed();
    let first_requests = fake.requests().len();
    let first_changes = fake.changes();

    fake.clear_requests();
    let started = Instant::now();
    pass(&fake, &ctx, configs).await;
    let resync = started.elapsed();
    let resync_requests = fake.requests().len();
    let resync_changes = fake.changes() - first_changes;

    // The pure part alone: rendering the desired objects and the engine's check of them.
    let settings = fluxfence_controller::desired::Settings {
        service_account: "flux-applier".into(),
    };
    let policy = fluxfence::Policy::azure_default();
    let started = Instant::now();
    let mut denied = 0;
    for i in 0..configs {
        let config = fake.config(&format!("tenant-{i:04}"));
        let desired = fluxfence_controller::desired::desired(&config, &settings).unwrap();
        denied += fluxfence_controller::engine::denials(&desired.objects, &policy).len();
    }
    let pure = started.elapsed();
    assert_eq!(denied, 0);

    println!("configs: {configs}");
    println!(
        "desired objects and engine check alone: {:.3} s ({:.0} µs a config)",
        pure.as_secs_f64(),
        pure.as_secs_f64() * 1e6 / configs as f64
    );
    println!(
        "first pass: {:.3} s ({:.0} µs a config), {first_requests} requests, {first_changes} writes that changed an object",
        first.as_secs_f64(),
        first.as_secs_f64() * 1e6 / configs as f64
    );
    println!(
        "resync of the unchanged configs: {:.3} s ({:.0} µs a config), {resync_requests} requests, {resync_changes} writes that changed an object",
        resync.as_secs_f64(),
        resync.as_secs_f64() * 1e6 / configs as f64
    );
}
