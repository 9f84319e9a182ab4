//! The engine: a run's state machine over the step DAG.
//!
//! Every transition is written to the [`Store`] before it is acted on: a step is `running`
//! (with its attempt number) before its plugin starts, and `paused` before anyone is asked.
//! [`Engine::decide`] is the one entry point for a person's Retry / Skip / Abort, whether it
//! comes from `offramp resume` or a Slack button.

mod progress;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

pub use decide::{Decision, DecisionOutcome};
pub use inputs::preview;
use inputs::{check_inputs, context, pick_subject};
pub use progress::{Progress, ProgressEvent};

use crate::http::{Gate, GateClient, Injection, NetworkPolicy};
use crate::pipeline::{OnFailure, Plan, StepPlan, template};
use crate::sandbox::{AttemptReport, AttemptResult, AttemptSpec, FailureKind, Sandbox};
use crate::secrets::SecretSource;
use crate::store::{
    Claimed, Event, Guard, Lease, NewRun, RunRecord, RunStatus, StepChange, StepRecord, StepStatus, Store, StoreError,
    now_ms,
};

mod audit;
mod decide;
mod inputs;
mod lease;
use lease::{Driving, Heartbeat};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_parallel_steps: 4,
            network: NetworkPolicy::default(),
            owner: lease::default_owner(),
            lease: Duration::from_secs(30),
            store_patience: Duration::from_secs(15 * 60),
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
    secrets: SecretSource,
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
        let driving = Driving::default();
        let heartbeat =
            Heartbeat::start(store.clone(), config.owner.clone(), config.lease, driving.clone()).map(Arc::new);
        Ok(Engine {
            store,
            sandbox,
            secrets,
            client,
            config,
            progress: Progress::default(),
            driving,
            _heartbeat: heartbeat,
        })
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
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Checks inputs and records a new `pending` run. Nothing runs until [`Engine::drive`].
    pub async fn start(&self, plan: &Plan, req: StartRequest) -> Result<String, EngineError> {
        let (run, event) = self.new_run(plan, &req, new_run_id())?;
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
            "run_created",
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
        };
        Ok((run, event))
    }

    /// Runs a run until it finishes or pauses; returns its status then. The run is leased to
    /// this engine meanwhile: [`EngineError::Leased`] if another process is driving it, and a
    /// [lost lease](EngineError::is_lease_lost) stops the drive (the new owner carries on).
    pub async fn drive(&self, run_id: &str) -> Result<RunStatus, EngineError> {
        let run = self.persist(|| self.store.run(run_id)).await?;
        if run.status.is_finished() {
            return Ok(run.status);
        }
        if run.status == RunStatus::Paused
            && self.persist(|| self.store.steps(run_id)).await?.iter().any(|s| s.status == StepStatus::Paused)
        {
            return Ok(run.status);
        }
        let owner = self.config.owner.as_str();
        let (now, until) = (now_ms(), self.lease_until());
        if !self.persist(|| self.store.claim_run(run_id, owner, now, until)).await? {
            let run = self.store.run(run_id).await?;
            if let Some(lease) = run.lease.filter(|l| l.owner != owner) {
                return Err(EngineError::Leased { run: run_id.to_string(), owner: lease.owner });
            }
            // It paused or finished between the two reads.
            return Ok(run.status);
        }
        let Some(_renewed) = self.driving.enter(run_id) else {
            return Err(EngineError::Leased { run: run_id.to_string(), owner: format!("{owner} (this process)") });
        };
        let result = self.drive_leased(run).await;
        if !result.as_ref().is_err_and(EngineError::is_lease_lost) {
            // Paused and finished runs lost the lease already; this covers a drive that failed.
            if let Err(e) = self.store.release_run(run_id, owner).await {
                tracing::warn!(target: "offramp::engine", run = %run_id, error = %e, "cannot release the run's lease");
            }
        }
        result
    }

    async fn drive_leased(&self, run: RunRecord) -> Result<RunStatus, EngineError> {
        let run_id = run.id.as_str();
        let plan: Plan = serde_json::from_value(run.plan.clone()).map_err(|e| EngineError::Plan(e.to_string()))?;
        if run.status != RunStatus::Running {
            // Pending (new), or Paused with nothing paused any more (decided while running).
            self.run_status(
                run_id,
                &[RunStatus::Pending, RunStatus::Paused],
                RunStatus::Running,
                Event::new("engine", "run_started", json!({ "from": run.status.as_str() })),
            )
            .await?;
            self.progress.emit(ProgressEvent::RunStatus { run_id: run_id.to_string(), status: RunStatus::Running });
        }
        let on_failure: HashMap<&str, OnFailure> = plan.steps.iter().map(|s| (s.id.as_str(), s.on_failure)).collect();
        let mut tasks: JoinSet<Result<String, EngineError>> = JoinSet::new();
        let mut active: HashSet<String> = HashSet::new();
        let mut aborting;
        loop {
            let steps = self.persist(|| self.store.steps(run_id)).await?;
            let status: HashMap<&str, &StepRecord> = steps.iter().map(|s| (s.step_id.as_str(), s)).collect();
            // Read from the store each pass, so a decision taken meanwhile is seen: a paused step
            // holds back new steps; a failure with `on_failure: abort` (or an abort) ends the run.
            let pausing = steps.iter().any(|s| s.status == StepStatus::Paused);
            aborting = steps.iter().any(|s| {
                s.status == StepStatus::Failed
                    && (s.resolution.as_deref() == Some("abort")
                        || on_failure.get(s.step_id.as_str()) == Some(&OnFailure::Abort))
            });
            // Skips and failures found in this pass can unblock (or skip) later steps: look again.
            let mut settled_some = false;
            for step in &plan.steps {
                if pausing || aborting || tasks.len() >= self.config.max_parallel_steps.max(1) {
                    break;
                }
                let Some(rec) = status.get(step.id.as_str()) else { continue };
                // A step `running` with no task here was interrupted (the process died): run it
                // again with the same idempotency key and the next attempt number.
                let orphaned = rec.status == StepStatus::Running && !active.contains(&step.id);
                if rec.status != StepStatus::Pending && !orphaned {
                    continue;
                }
                if orphaned && !step.idempotent {
                    self.outcome_unknown(run_id, &step.id, rec.attempts).await?;
                    settled_some = true;
                    continue;
                }
                match self.readiness(step, &status) {
                    Ready::Wait => continue,
                    Ready::Skip(reason) => {
                        self.skip(run_id, &step.id, &reason, "dependency", true).await?;
                        settled_some = true;
                        continue;
                    }
                    Ready::Go => {}
                }
                let ctx = context(&run, &steps);
                if let Some(cond) = &step.condition {
                    match template::eval_condition(cond, &ctx) {
                        Ok(true) => {}
                        Ok(false) => {
                            let reason = format!("condition `{cond}` was false");
                            self.skip(run_id, &step.id, &reason, "condition", true).await?;
                            settled_some = true;
                            continue;
                        }
                        Err(e) => {
                            self.fail_without_running(run_id, step, rec.attempts, &e.0).await?;
                            settled_some = true;
                            break;
                        }
                    }
                }
                // Claim the step before starting it: a concurrent driver's claim fails.
                let claimed = self
                    .step_change(
                        run_id,
                        &step.id,
                        &[StepStatus::Pending, StepStatus::Running],
                        Some(Guard::Attempt(rec.attempts)),
                        StepChange { status: Some(StepStatus::Running), started: true, ..Default::default() },
                        Event::new("engine", "step_started", json!({ "attempt": rec.attempts + 1 })),
                    )
                    .await?;
                if !claimed {
                    continue;
                }
                self.progress.emit(ProgressEvent::Step {
                    run_id: run_id.to_string(),
                    step_id: step.id.clone(),
                    status: StepStatus::Running,
                    attempt: rec.attempts + 1,
                    detail: None,
                });
                active.insert(step.id.clone());
                let (engine, step, run, start_attempt) = (self.clone(), step.clone(), run.clone(), rec.attempts);
                tasks.spawn(async move { engine.run_step(&run, &step, start_attempt, ctx).await });
            }
            if settled_some {
                continue;
            }
            let Some(joined) = tasks.join_next().await else { break };
            let done = joined.map_err(|e| EngineError::Decision(format!("step task failed: {e}")))??;
            active.remove(&done);
        }
        self.settle(run_id, aborting).await
    }

    /// A step of `idempotent: false` found running after a crash: nobody knows whether it took
    /// effect, so a person decides rather than offramp running it again.
    async fn outcome_unknown(&self, run_id: &str, step_id: &str, attempts: u32) -> Result<(), EngineError> {
        let message = format!(
            "outcome unknown: offramp stopped while attempt {attempts} was running, and the step is \
             `idempotent: false`, so it is not run again on its own. Check the target system, then \
             Retry (run it again) or Skip (it took effect)."
        );
        let changed = self
            .step_change(
                run_id,
                step_id,
                &[StepStatus::Running],
                Some(Guard::Attempt(attempts)),
                StepChange {
                    status: Some(StepStatus::Paused),
                    error: Some(Some(message.clone())),
                    paused: true,
                    ..Default::default()
                },
                Event::new("engine", "step_outcome_unknown", json!({ "attempt": attempts })),
            )
            .await?;
        if changed {
            self.progress.emit(ProgressEvent::Step {
                run_id: run_id.to_string(),
                step_id: step_id.to_string(),
                status: StepStatus::Paused,
                attempt: attempts,
                detail: Some(message),
            });
        }
        Ok(())
    }

    /// Decides the run's status once nothing is running.
    async fn settle(&self, run_id: &str, aborting: bool) -> Result<RunStatus, EngineError> {
        let steps = self.persist(|| self.store.steps(run_id)).await?;
        let to = if steps.iter().any(|s| s.status == StepStatus::Paused) {
            RunStatus::Paused
        } else if aborting {
            for s in steps.iter().filter(|s| s.status == StepStatus::Pending) {
                self.skip(run_id, &s.step_id, "the run was aborted", "abort", true).await?;
            }
            RunStatus::Failed
        } else if steps.iter().any(|s| !s.status.is_finished()) {
            // Not reachable with a valid plan; keep the run resumable rather than lie.
            RunStatus::Paused
        } else if steps.iter().any(|s| s.status == StepStatus::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let summary = json!({
            "steps": steps.iter().map(|s| (s.step_id.clone(), s.status.as_str())).collect::<BTreeMap<_, _>>(),
        });
        let kind = match to {
            RunStatus::Paused => "run_paused",
            RunStatus::Succeeded => "run_succeeded",
            _ => "run_failed",
        };
        self.run_status(run_id, &[RunStatus::Running], to, Event::new("engine", kind, summary)).await?;
        self.progress.emit(ProgressEvent::RunStatus { run_id: run_id.to_string(), status: to });
        Ok(to)
    }

    fn readiness(&self, step: &StepPlan, status: &HashMap<&str, &StepRecord>) -> Ready {
        for need in &step.needs {
            let Some(rec) = status.get(need.as_str()) else {
                return Ready::Skip(format!("needs unknown step `{need}`"));
            };
            match rec.status {
                StepStatus::Succeeded | StepStatus::Unchanged => {}
                // A person chose to skip it: carry on as if it were done.
                StepStatus::Skipped if rec.resolution.as_deref() == Some("decision") => {}
                StepStatus::Skipped => return Ready::Skip(format!("needs `{need}`, which was skipped")),
                StepStatus::Failed => return Ready::Skip(format!("needs `{need}`, which failed")),
                StepStatus::Pending | StepStatus::Running | StepStatus::Paused => return Ready::Wait,
            }
        }
        Ready::Go
    }

    /// Skips a pending step. `leased`: the engine drives the run (the write is fenced by its
    /// lease); otherwise a person's abort of a paused run (nobody holds it).
    async fn skip(
        &self,
        run_id: &str,
        step_id: &str,
        reason: &str,
        resolution: &str,
        leased: bool,
    ) -> Result<(), EngineError> {
        let fence = leased.then_some(self.config.owner.as_str());
        let event = Event::new("engine", "step_skipped", json!({ "reason": reason }));
        let change = StepChange {
            status: Some(StepStatus::Skipped),
            error: Some(Some(reason.to_string())),
            resolution: Some(Some(resolution.to_string())),
            finished: true,
            ..Default::default()
        };
        let from = [StepStatus::Pending];
        let changed = self
            .persist(|| self.store.change_step(run_id, step_id, &from, None, fence, change.clone(), event.clone()))
            .await?;
        if changed {
            self.progress.emit(ProgressEvent::Step {
                run_id: run_id.to_string(),
                step_id: step_id.to_string(),
                status: StepStatus::Skipped,
                attempt: 0,
                detail: Some(reason.to_string()),
            });
        }
        Ok(())
    }

    /// A step that cannot even start (its input or condition fails to render): a permanent failure.
    async fn fail_without_running(
        &self,
        run_id: &str,
        step: &StepPlan,
        attempts: u32,
        message: &str,
    ) -> Result<String, EngineError> {
        self.finish_failed(run_id, step, attempts, Failure::early(FailureKind::Permanent, message)).await
    }

    pub(super) async fn finish_failed(
        &self,
        run_id: &str,
        step: &StepPlan,
        attempts: u32,
        failure: Failure,
    ) -> Result<String, EngineError> {
        let Failure { kind, message, log, requests } = failure;
        let message = message.as_str();
        let pause = kind == FailureKind::NeedsHuman || step.on_failure == OnFailure::Pause;
        let to = if pause { StepStatus::Paused } else { StepStatus::Failed };
        self.step_change(
            run_id,
            &step.id,
            &[StepStatus::Pending, StepStatus::Running],
            None,
            StepChange {
                status: Some(to),
                attempts: Some(attempts),
                error: Some(Some(message.to_string())),
                resolution: Some((!pause).then(|| "failure".to_string())),
                log: Some(log),
                requests: Some(requests),
                finished: !pause,
                paused: pause,
                ..Default::default()
            },
            Event::new(
                "engine",
                if pause { "step_paused" } else { "step_failed" },
                json!({ "error": message, "kind": kind, "attempts": attempts }),
            ),
        )
        .await?;
        self.progress.emit(ProgressEvent::Step {
            run_id: run_id.to_string(),
            step_id: step.id.clone(),
            status: to,
            attempt: attempts,
            detail: Some(message.to_string()),
        });
        Ok(step.id.clone())
    }

    /// Runs a step's attempts (retrying transient failures) and records the outcome.
    async fn run_step(
        &self,
        run: &RunRecord,
        step: &StepPlan,
        mut attempts: u32,
        ctx: minijinja::Value,
    ) -> Result<String, EngineError> {
        let input = match template::render_json(&step.with, &ctx) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .finish_failed(
                        &run.id,
                        step,
                        attempts,
                        Failure::early(FailureKind::Permanent, &format!("cannot render `with`: {e}")),
                    )
                    .await;
            }
        };
        // Loading may compile the component (seconds): off the async workers.
        let (sandbox, path) = (self.sandbox.clone(), step.plugin.clone());
        let loaded = tokio::task::spawn_blocking(move || sandbox.plugin(&path))
            .await
            .map_err(|e| EngineError::Setup(format!("loading the plugin failed: {e}")))?;
        let plugin = match loaded {
            Ok(p) => p,
            Err(e) => {
                return self
                    .finish_failed(&run.id, step, attempts, Failure::early(FailureKind::Permanent, &e.to_string()))
                    .await;
            }
        };
        let mut injections = Vec::new();
        for rule in &step.credentials {
            match self.secrets.get(&rule.secret) {
                Ok(value) => injections.push(Injection { rule: rule.clone(), value }),
                // A missing secret will not appear by retrying: a person must set it.
                Err(e) => {
                    return self
                        .finish_failed(&run.id, step, attempts, Failure::early(FailureKind::NeedsHuman, &e.to_string()))
                        .await;
                }
            }
        }
        let key = idempotency_key(&run.id, &step.id);
        let first_of_this_drive = attempts + 1;
        loop {
            attempts += 1;
            // Write-ahead: the attempt number is recorded before the plugin runs.
            self.step_change(
                &run.id,
                &step.id,
                &[StepStatus::Running],
                None,
                StepChange { attempts: Some(attempts), ..Default::default() },
                Event::new("engine", "attempt_started", json!({ "attempt": attempts })),
            )
            .await?;
            let mut gate = Gate::new(
                &self.client,
                step.allow.clone(),
                injections.clone(),
                run.dry_run,
                tokio::time::Instant::now() + step.timeout,
            );
            if !run.dry_run {
                let recorder = audit::StepRecorder::new(
                    self.store.clone(),
                    self.config.store_patience,
                    &run.id,
                    &step.id,
                    attempts,
                );
                gate = gate.with_recorder(Arc::new(recorder));
            }
            let report: AttemptReport = self
                .sandbox
                .run_attempt(
                    &plugin,
                    AttemptSpec {
                        input: input.clone(),
                        run_id: run.id.clone(),
                        step_id: step.id.clone(),
                        attempt: attempts,
                        idempotency_key: key.clone(),
                        dry_run: run.dry_run,
                        timeout: step.timeout,
                        memory_bytes: step.memory_bytes,
                        gate: Arc::new(gate),
                    },
                )
                .await;
            // The record keeps what earlier attempts sent that may have changed something
            // (written ahead to the event log), then this attempt's requests.
            let earlier = audit::earlier_attempts(self.store.as_ref(), &run.id, &step.id, attempts).await;
            let mut records = earlier.clone();
            records.extend(
                report.requests.into_iter().map(|r| crate::http::RequestRecord { attempt: Some(attempts), ..r }),
            );
            let requests = audit::bound_requests(records);
            let log = audit::bound_log(report.log, self.sandbox.limits());
            match report.result {
                AttemptResult::Done { output, changed } => {
                    // A re-run that finds the work done, after an earlier attempt sent the
                    // change: changed (by that attempt), not unchanged.
                    let note = if changed { None } else { audit::changed_by_note(&earlier, attempts) };
                    let to = if changed || note.is_some() { StepStatus::Succeeded } else { StepStatus::Unchanged };
                    let stored = self
                        .step_change(
                            &run.id,
                            &step.id,
                            &[StepStatus::Running],
                            None,
                            StepChange {
                                status: Some(to),
                                attempts: Some(attempts),
                                output: Some(output),
                                error: Some(None),
                                note: Some(note.clone()),
                                log: Some(log),
                                requests: Some(requests),
                                finished: true,
                                ..Default::default()
                            },
                            Event::new(
                                "engine",
                                "step_finished",
                                json!({ "status": to.as_str(), "attempts": attempts, "note": note }),
                            ),
                        )
                        .await;
                    if let Err(e) = stored {
                        return self.unstorable(&run.id, step, attempts, e).await;
                    }
                    self.progress.emit(ProgressEvent::Step {
                        run_id: run.id.clone(),
                        step_id: step.id.clone(),
                        status: to,
                        attempt: attempts,
                        detail: note,
                    });
                    return Ok(step.id.clone());
                }
                AttemptResult::Failed { kind, message, retry_after } => {
                    let budget_left = attempts < first_of_this_drive - 1 + step.retry.attempts;
                    if kind == FailureKind::Transient && budget_left {
                        let wait = step
                            .retry
                            .delay_before(attempts + 1)
                            .max(retry_after.unwrap_or_default())
                            .min(Duration::from_secs(15 * 60));
                        let stored = self
                            .step_change(
                                &run.id,
                                &step.id,
                                &[StepStatus::Running],
                                None,
                                StepChange { error: Some(Some(message.clone())), log: Some(log), requests: Some(requests), ..Default::default() },
                                Event::new("engine", "attempt_failed", json!({ "attempt": attempts, "error": message, "retry_in_ms": wait.as_millis() as u64 })),
                            )
                            .await;
                        if let Err(e) = stored {
                            return self.unstorable(&run.id, step, attempts, e).await;
                        }
                        self.progress.emit(ProgressEvent::Retrying {
                            run_id: run.id.clone(),
                            step_id: step.id.clone(),
                            attempt: attempts,
                            error: message,
                            wait,
                        });
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let failure = Failure { kind, message, log, requests };
                    return match self.finish_failed(&run.id, step, attempts, failure).await {
                        Err(e) => self.unstorable(&run.id, step, attempts, e).await,
                        ok => ok,
                    };
                }
            }
        }
    }
}

/// Why a step failed for good, with what its last attempt left behind.
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) message: String,
    pub(super) log: Vec<String>,
    pub(super) requests: Value,
}

impl Failure {
    /// A failure before the plugin ran (bad template, missing plugin or secret).
    fn early(kind: FailureKind, message: &str) -> Self {
        Failure { kind, message: message.to_string(), log: vec![], requests: json!([]) }
    }
}

enum Ready {
    Go,
    Wait,
    Skip(String),
}

/// A fresh run id (UUID v7: sorts by time).
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `sha256(run:step)`, 32 hex chars: the same for every attempt and restart of the step.
pub fn idempotency_key(run_id: &str, step_id: &str) -> String {
    let full = crate::pipeline::validate::sha256_hex(format!("offramp:{run_id}:{step_id}").as_bytes());
    full[..32].to_string()
}
