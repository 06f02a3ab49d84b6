//! The reconciler: one FluxConfig in, its objects applied server-side, the ones it no longer
//! names deleted, its status written.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluxfence::Policy;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::crd::{API_VERSION, FluxConfig, FluxConfigStatus, KIND, Scope};
use crate::desired::{self, Auth, Desired, DesiredObject, Invalid, Settings};
use crate::engine;
use crate::keys::{self, KeyError, KeyPair};
use crate::metrics::{ErrorReason, Metrics};
use crate::owned::{CONFIG_LABEL, CONFIG_NAMESPACE_LABEL, FIELD_MANAGER, FINALIZER, OwnedKind};
use crate::status::{self, Observed};

/// How often an unchanged FluxConfig is reconciled anyway; the watches on what it owns bring
/// every change sooner.
pub const RESYNC: Duration = Duration::from_secs(30 * 60);
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error(
        "Secret {0} exists but holds no `identity` and `identity.pub`: delete it and a new key pair is generated"
    )]
    BrokenSecret(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot serialise an object: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::Api(_) => ErrorReason::Api,
            Error::BrokenSecret(_) => ErrorReason::Secret,
            Error::Key(_) => ErrorReason::Key,
            Error::Serialize(_) => ErrorReason::Serialize,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    /// `None` in tests that do not look at events.
    pub recorder: Option<Recorder>,
    /// RFC 3339 time for condition transitions; a parameter so tests can fix it.
    pub clock: fn() -> String,
    /// Consecutive failures per FluxConfig, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        policy: Policy,
        metrics: Arc<Metrics>,
    ) -> Context {
        Context {
            client,
            settings,
            policy,
            metrics,
            recorder: None,
            clock: now_rfc3339,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_recorder(mut self, recorder: Recorder) -> Context {
        self.recorder = Some(recorder);
        self
    }

    pub fn with_clock(mut self, clock: fn() -> String) -> Context {
        self.clock = clock;
        self
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now().to_string())
}

fn key_of(config: &FluxConfig) -> String {
    format!(
        "{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    )
}

/// Reconciles one FluxConfig.
pub async fn reconcile(config: Arc<FluxConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&config, &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    if result.is_ok() {
        ctx.failures().remove(&key_of(&config));
    }
    result
}

/// Requeues a failed FluxConfig with exponential backoff (5 s, doubling, at most 5 min).
pub fn error_policy(config: Arc<FluxConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.reason());
    warn!(config = %key_of(&config), %error, "reconcile failed");
    let mut failures = ctx.failures();
    let count = failures.entry(key_of(&config)).or_insert(0);
    let delay = BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(*count))
        .min(BACKOFF_MAX);
    *count = count.saturating_add(1);
    Action::requeue(delay)
}

async fn reconcile_inner(config: &FluxConfig, ctx: &Context) -> Result<Action, Error> {
    if config.meta().deletion_timestamp.is_some() {
        return finalize(config, ctx).await;
    }
    let desired = match desired::desired(config, &ctx.settings) {
        Ok(desired) => desired,
        Err(invalid) => return refuse(config, ctx, invalid).await,
    };
    let denials = engine::denials(&desired.objects, &ctx.policy);
    if !denials.is_empty() {
        let invalid = Invalid {
            reason: "PolicyViolation",
            message: format!(
                "the fluxfence policy denies what this FluxConfig would write: {}",
                denials.join("; ")
            ),
        };
        return refuse(config, ctx, invalid).await;
    }
    if config.spec.scope == Scope::Cluster && !config.finalizers().iter().any(|f| f == FINALIZER) {
        add_finalizer(config, ctx).await?;
    }

    let (secret, public_key) = auth_secret(config, ctx, &desired).await?;
    let mut applied: Vec<(OwnedKind, Value)> = Vec::with_capacity(desired.objects.len() + 1);
    for object in desired.objects.iter().chain(secret.as_ref()) {
        let body = apply(ctx, config, object).await?;
        applied.push((object.kind, body));
    }
    let generation_changed =
        config.status.as_ref().and_then(|s| s.observed_generation) != config.meta().generation;
    if generation_changed {
        prune(config, ctx, &desired).await?;
        publish(
            ctx,
            config,
            EventType::Normal,
            "Applied",
            format!(
                "applied {} objects for generation {}",
                applied.len(),
                config.meta().generation.unwrap_or_default()
            ),
        )
        .await;
    }

    let observed: Vec<Observed<'_>> = applied
        .iter()
        .map(|(kind, object)| Observed {
            kind: *kind,
            object,
        })
        .collect();
    let statuses = status::object_statuses(&observed);
    let state = status::aggregate(config.spec.suspend, &statuses);
    let mut new_status = FluxConfigStatus {
        compliance_state: Some(state),
        statuses,
        source_synced_commit_id: status::source_revision(&observed),
        repository_public_key: public_key,
        observed_generation: config.meta().generation,
        conditions: vec![status::ready_condition(
            state,
            config.meta().generation,
            &(ctx.clock)(),
        )],
    };
    status::keep_transition_times(&mut new_status, config.status.as_ref());
    write_status(config, ctx, new_status).await?;
    ctx.metrics.compliance(&key_of(config), Some(state));
    Ok(Action::requeue(RESYNC))
}

/// An invalid spec: only the Ready condition changes; nothing is created or deleted.
async fn refuse(config: &FluxConfig, ctx: &Context, invalid: Invalid) -> Result<Action, Error> {
    let mut new_status = config.status.clone().unwrap_or_default();
    new_status.conditions.retain(|c| c.type_ != "Ready");
    new_status.conditions.push(status::condition(
        "Ready",
        "False",
        invalid.reason,
        invalid.message.clone(),
        config.meta().generation,
        &(ctx.clock)(),
    ));
    status::keep_transition_times(&mut new_status, config.status.as_ref());
    let changed = config.status.as_ref() != Some(&new_status);
    write_status(config, ctx, new_status).await?;
    if changed {
        publish(
            ctx,
            config,
            EventType::Warning,
            invalid.reason,
            invalid.message,
        )
        .await;
    }
    info!(config = %key_of(config), reason = invalid.reason, "refused");
    Ok(Action::await_change())
}

/// Writes the status when it differs from what the FluxConfig has: an unchanged resync sends
/// nothing.
async fn write_status(
    config: &FluxConfig,
    ctx: &Context,
    new_status: FluxConfigStatus,
) -> Result<(), Error> {
    if config.status.as_ref() == Some(&new_status) {
        return Ok(());
    }
    let api: Api<FluxConfig> =
        Api::namespaced(ctx.client.clone(), &config.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": { "name": config.name_any() },
        "status": new_status,
    });
    api.patch_status(
        &config.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

fn dynamic_api(ctx: &Context, kind: OwnedKind, namespace: &str) -> Api<DynamicObject> {
    let resource = kind.api_resource();
    if kind.namespaced() {
        Api::namespaced_with(ctx.client.clone(), namespace, &resource)
    } else {
        Api::all_with(ctx.client.clone(), &resource)
    }
}

/// Server-side apply of one object; returns it as the API server stored it.
async fn apply(ctx: &Context, config: &FluxConfig, object: &DesiredObject) -> Result<Value, Error> {
    let api = dynamic_api(ctx, object.kind, &config.namespace().unwrap_or_default());
    let stored = api
        .patch(
            &object.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object.body),
        )
        .await?;
    Ok(serde_json::to_value(stored)?)
}

/// The generated SSH Secret, with the public key for the status: read when it exists (a key is
/// never replaced; rotation is deleting the Secret), generated when it does not.
async fn auth_secret(
    config: &FluxConfig,
    ctx: &Context,
    desired: &Desired,
) -> Result<(Option<DesiredObject>, Option<String>), Error> {
    let Auth::GeneratedSsh {
        secret_name,
        known_hosts,
    } = &desired.auth
    else {
        return Ok((None, None));
    };
    let namespace = config.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let pair = match api.get_opt(secret_name).await? {
        Some(existing) => existing_key(&existing, secret_name)?,
        None => {
            let pair = keys::generate(&format!("fluxfence:{}", key_of(config)))?;
            publish(
                ctx,
                config,
                EventType::Normal,
                "KeyGenerated",
                format!(
                    "generated an ed25519 deploy key in Secret {secret_name}: add status.repositoryPublicKey to the repository's deploy keys"
                ),
            )
            .await;
            pair
        }
    };
    let secret = desired::ssh_secret(
        config,
        secret_name,
        &pair.private_openssh,
        &pair.public_openssh,
        known_hosts,
    )
    .map_err(|invalid| Error::BrokenSecret(invalid.to_string()))?;
    Ok((Some(secret), Some(pair.public_openssh)))
}

fn existing_key(secret: &Secret, name: &str) -> Result<KeyPair, Error> {
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
            .filter(|s| !s.is_empty())
    };
    match (text("identity"), text("identity.pub")) {
        (Some(private_openssh), Some(public_openssh)) => Ok(KeyPair {
            private_openssh,
            public_openssh,
        }),
        _ => Err(Error::BrokenSecret(name.to_owned())),
    }
}

/// Deletes what carries this FluxConfig's label and is no longer desired. Only objects the
/// FluxConfig controls (its uid in their owner references) are touched, so a hand-labelled
/// object survives.
async fn prune(config: &FluxConfig, ctx: &Context, desired: &Desired) -> Result<(), Error> {
    let namespace = config.namespace().unwrap_or_default();
    let keep = desired.names();
    let uid = config.uid().unwrap_or_default();
    for kind in OwnedKind::ALL.into_iter().filter(|k| k.pruned()) {
        let selector = if kind.namespaced() {
            format!("{CONFIG_LABEL}={}", config.name_any())
        } else {
            format!(
                "{CONFIG_LABEL}={},{CONFIG_NAMESPACE_LABEL}={namespace}",
                config.name_any()
            )
        };
        let api = dynamic_api(ctx, kind, &namespace);
        let listed = match api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list.items,
            // A kind whose CRD is not installed holds nothing of ours.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => return Err(error.into()),
        };
        let empty = BTreeSet::new();
        let names = keep.get(&kind).unwrap_or(&empty);
        for object in listed {
            let name = object.name_any();
            let ours = !kind.namespaced()
                || object
                    .owner_references()
                    .iter()
                    .any(|owner| owner.uid == uid && owner.controller == Some(true));
            if names.contains(&name) || !ours {
                continue;
            }
            delete(&api, &name).await?;
            publish(
                ctx,
                config,
                EventType::Normal,
                "Deleted",
                format!(
                    "deleted {} {name}: the spec no longer names it",
                    kind.kind()
                ),
            )
            .await;
        }
    }
    Ok(())
}

async fn delete(api: &Api<DynamicObject>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn add_finalizer(config: &FluxConfig, ctx: &Context) -> Result<(), Error> {
    let api: Api<FluxConfig> =
        Api::namespaced(ctx.client.clone(), &config.namespace().unwrap_or_default());
    let mut finalizers = config.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    // The resourceVersion makes this a compare-and-swap: a concurrent change is retried.
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": config.resource_version(),
        }
    });
    api.patch(
        &config.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// A FluxConfig being deleted: the garbage collector removes what it owns; the ClusterRoleBinding
/// of a `scope: cluster` one cannot name it as owner, so it goes here, then the finalizer.
async fn finalize(config: &FluxConfig, ctx: &Context) -> Result<Action, Error> {
    ctx.metrics.compliance(&key_of(config), None);
    if !config.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let namespace = config.namespace().unwrap_or_default();
    let api = dynamic_api(ctx, OwnedKind::ClusterRoleBinding, &namespace);
    let selector = format!(
        "{CONFIG_LABEL}={},{CONFIG_NAMESPACE_LABEL}={namespace}",
        config.name_any()
    );
    let listed = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    for binding in listed.items {
        delete(&api, &binding.name_any()).await?;
    }
    let remaining: Vec<&String> = config
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = json!({
        "metadata": {
            "finalizers": remaining,
            "resourceVersion": config.resource_version(),
        }
    });
    let configs: Api<FluxConfig> = Api::namespaced(ctx.client.clone(), &namespace);
    configs
        .patch(
            &config.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Action::await_change())
}

/// Records an event on the FluxConfig; a failure to record is logged, never fatal.
async fn publish(ctx: &Context, config: &FluxConfig, type_: EventType, reason: &str, note: String) {
    let Some(recorder) = &ctx.recorder else {
        return;
    };
    let reference: ObjectReference = config.object_ref(&());
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &reference).await {
        warn!(config = %key_of(config), %error, "cannot record an event");
    }
}
