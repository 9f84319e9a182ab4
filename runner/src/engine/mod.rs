//! The engine: a run's state machine over the step DAG.
//!
//! Every transition is written to the [`Store`] before it is acted on: a step is `running`
//! (with its attempt number) before its plugin starts, and `paused` before anyone is asked.
//! [`Engine::decide`] is the one entry point for a person's Retry / Skip / Abort, whether it
//! comes from `offramp resume` or a Slack button.

mod progress;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use decide::{Decision, DecisionOutcome};
pub use inputs::preview;
use inputs::{check_inputs, pick_subject};
pub use progress::{Progress, ProgressEvent};

use crate::credentials::{Credentials, CredentialsConfig};
use crate::http::{GateClient, NetworkPolicy};
use crate::pipeline::Plan;
use crate::sandbox::Sandbox;
use crate::secrets::SecretSource;
use crate::store::{
    Claimed, Event, EventKind, Guard, Lease, NewRun, RunStatus, StepChange, StepStatus, Store, StoreError, now_ms,
};

mod attempt;
mod audit;
mod decide;
mod drive;
mod inputs;
mod lease;
mod requests;
use attempt::Failure;
use lease::{Driving, Heartbeat};
pub use requests::{Approval, BatchPolicy, NewBatchRequest, NewRequest, Person, RequestRefused, Started};

/// Engine failures callers act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("invalid inputs: {}", .0.join("; "))]
    Inputs(Vec<String>),
    #[error("run {run} is {status}; only a paused run can be resumed")]
    NotPaused { run: String, status: RunStatus },
    #[error("{0}")]
    Decision(String),
    #[error("the run's stored plan is unreadable: {0}")]
    Plan(String),
    #[error("{0}")]
    Setup(String),
    /// Another process holds the run's lease and is driving it.
    #[error(
        "run {run} is being driven by {owner}; if that process is gone, its lease runs out within --lease (default 30s) and `offramp recover` or a server picks the run up"
    )]
    Leased { run: String, owner: String },
}

impl EngineError {
    /// Another process took the run over while this one drove it: stop, it carries on.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, EngineError::Store(StoreError::LeaseLost(_)))
    }
}

/// Settings of an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Steps of one run that may run at once.
    pub max_parallel_steps: usize,
    /// The operator's network policy: the cap over `allow:`, hosts allowed private
    /// addresses, and the HTTP limits of every step attempt.
    pub network: NetworkPolicy,
    /// Who this process is in the runs' leases (`host:pid:random` by default).
    pub owner: String,
    /// How long a lease lasts without a heartbeat: after a crash, the time before another
    /// process takes the runs over. Renewed every third of it.
    pub lease: Duration,
    /// How long to keep retrying a database that cannot be reached before giving a run up
    /// (it stays in flight, and is picked up again once its lease runs out).
    pub store_patience: Duration,
    /// The operator's `credentials:`: which credential names are minted, and how. Every other
    /// name is a static secret.
    pub credentials: CredentialsConfig,
    /// The operator's rules for requests naming several people.
    pub batches: BatchPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_parallel_steps: 4,
            network: NetworkPolicy::default(),
            owner: lease::default_owner(),
            lease: Duration::from_secs(30),
            store_patience: Duration::from_secs(15 * 60),
            credentials: CredentialsConfig::default(),
            batches: BatchPolicy::default(),
        }
    }
}

/// What starting a run needs.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Raw `key=value` inputs; checked and converted against the pipeline's `inputs:`.
    pub inputs: BTreeMap<String, String>,
    pub requested_by: String,
    pub dry_run: bool,
}

/// Runs pipelines.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    sandbox: Arc<Sandbox>,
    /// Every credential steps may have injected; minted tokens are shared by all runs.
    credentials: Arc<Credentials>,
    client: GateClient,
    config: EngineConfig,
    progress: Progress,
    driving: Driving,
    _heartbeat: Option<Arc<Heartbeat>>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Arc<Sandbox>,
        secrets: SecretSource,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let client = GateClient::new(config.network.clone())
            .map_err(|e| EngineError::Setup(format!("cannot set up the HTTP client: {e}")))?;
        let credentials = Credentials::new(secrets, &config.credentials, &client)
            .map_err(|errors| EngineError::Setup(errors.join("; ")))?;
        let driving = Driving::default();
        let share = client.replica_share().clone();
        let heartbeat =
            Heartbeat::start(store.clone(), config.owner.clone(), config.lease, driving.clone(), share).map(Arc::new);
        Ok(Engine {
            store,
            sandbox,
            credentials: Arc::new(credentials),
            client,
            config,
            progress: Progress::default(),
            driving,
            _heartbeat: heartbeat,
        })
    }

    /// The credentials this engine injects (minted tokens are cached here).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The HTTP client plugin traffic (and `credentials check`) goes through.
    pub fn http_client(&self) -> &GateClient {
        &self.client
    }

    /// Who this engine is in the runs' leases.
    pub fn owner(&self) -> &str {
        &self.config.owner
    }

    fn lease_until(&self) -> i64 {
        now_ms().saturating_add(i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX))
    }

    /// Runs a store call, retrying with backoff while the database cannot be reached (for up to
    /// `store_patience`). Other errors, a lost lease included, come back at once.
    async fn persist<T, F, Fut>(&self, f: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        lease::persist(self.config.store_patience, f).await.map_err(EngineError::from)
    }

    /// A step change fenced by this engine's lease on the run, retried through an outage.
    async fn step_change(
        &self,
        run_id: &str,
        step_id: &str,
        from: &[StepStatus],
        guard: Option<Guard>,
        change: StepChange,
        event: Event,
    ) -> Result<bool, EngineError> {
        let owner = Some(self.config.owner.as_str());
        self.persist(|| self.store.change_step(run_id, step_id, from, guard, owner, change.clone(), event.clone()))
            .await
    }

    /// A run status change fenced by this engine's lease, retried through an outage.
    async fn run_status(
        &self,
        run_id: &str,
        from: &[RunStatus],
        to: RunStatus,
        event: Event,
    ) -> Result<bool, EngineError> {
        let owner = Some(self.config.owner.as_str());
        self.persist(|| self.store.set_run_status(run_id, from, to, owner, event.clone())).await
    }

    /// Claims up to `limit` runs nobody drives (their process died and the lease ran out, or
    /// they never had one): what `offramp serve` does at start and then periodically, and what
    /// `offramp recover` does. Drive each claimed run with [`Engine::drive`].
    pub async fn claim_orphans(&self, limit: u32) -> Result<Vec<Claimed>, EngineError> {
        let now = now_ms();
        let until = self.lease_until();
        Ok(self.store.claim_orphans(&self.config.owner, now, until, limit).await?)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sandbox steps run in (it also answers plugins' contracts for validation).
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Subscribe to step transitions (for the CLI's live output and Slack's message).
    /// The operator's rules for requests naming several people.
    pub fn batch_policy(&self) -> &BatchPolicy {
        &self.config.batches
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Checks inputs and records a new `pending` run. Nothing runs until [`Engine::drive`].
    pub async fn start(&self, plan: &Plan, req: StartRequest) -> Result<String, EngineError> {
        self.start_in_batch(plan, req, None).await
    }

    /// As [`Engine::start`], the run one of a batch's (recorded first with
    /// [`crate::store::Store::create_batch`]).
    pub async fn start_in_batch(
        &self,
        plan: &Plan,
        req: StartRequest,
        batch_id: Option<&str>,
    ) -> Result<String, EngineError> {
        let (mut run, mut event) = self.new_run(plan, &req, new_run_id())?;
        if let Some(b) = batch_id {
            run.batch_id = Some(b.to_string());
            event.detail["batch"] = json!(b);
        }
        self.store.create_run(&run, event).await?;
        Ok(run.id)
    }

    /// Starts the run of a request approved in Slack: the request is marked started and the run
    /// created in one transaction. Returns `None` if the request was no longer pending (someone
    /// else started or cancelled it).
    pub async fn start_for_request(
        &self,
        plan: &Plan,
        req: StartRequest,
        request_id: &str,
        approved_by: &str,
    ) -> Result<Option<String>, EngineError> {
        let (run, mut event) = self.new_run(plan, &req, new_run_id())?;
        event.detail["request"] = json!(request_id);
        event.detail["approved_by"] = json!(approved_by);
        let started = self.store.create_run_for_request(request_id, approved_by, &run, event).await?;
        Ok(started.then_some(run.id))
    }

    fn new_run(&self, plan: &Plan, req: &StartRequest, id: String) -> Result<(NewRun, Event), EngineError> {
        let inputs = check_inputs(plan, &req.inputs)?;
        let subject = pick_subject(plan, &inputs);
        let steps = plan.steps.iter().map(|s| (s.id.clone(), idempotency_key(&id, &s.id))).collect();
        let plan_json = serde_json::to_value(plan).map_err(|e| EngineError::Plan(e.to_string()))?;
        let event = Event::new(
            &req.requested_by,
            EventKind::RunCreated,
            json!({ "pipeline": plan.name, "subject": subject, "dry_run": req.dry_run }),
        );
        let run = NewRun {
            id,
            pipeline_name: plan.name.clone(),
            pipeline_hash: plan.content_hash.clone(),
            plan: plan_json,
            subject,
            inputs: Value::Object(inputs.into_iter().collect()),
            requested_by: req.requested_by.clone(),
            dry_run: req.dry_run,
            steps,
            lease: Lease { owner: self.config.owner.clone(), until_ms: self.lease_until() },
            batch_id: None,
        };
        Ok((run, event))
    }
}

/// A fresh run id (UUID v7: sorts by time).
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `sha256(run:step)`, 32 hex chars: the same for every attempt and restart of the step.
pub fn idempotency_key(run_id: &str, step_id: &str) -> String {
    let full = crate::digest::sha256_hex(format!("offramp:{run_id}:{step_id}").as_bytes());
    full[..32].to_string()
}
