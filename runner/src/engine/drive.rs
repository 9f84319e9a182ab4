//! Driving a run: the loop over the step DAG — which steps are ready, how many run at once,
//! settling the run when nothing is left to start — and what happens to a step that never
//! runs (skipped by its `if:`, or failed before its plugin started).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;

use super::inputs::context;
use super::{Engine, EngineError, Failure, ProgressEvent};
use crate::pipeline::{OnFailure, Plan, StepPlan, template};
use crate::sandbox::FailureKind;
use crate::store::{
    Event, EventKind, Guard, Resolution, RunRecord, RunStatus, StepChange, StepRecord, StepStatus, now_ms,
};
use tokio::task::JoinSet;

impl Engine {
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
                Event::new("engine", EventKind::RunStarted, json!({ "from": run.status.as_str() })),
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
                    && (s.resolution == Some(Resolution::Abort)
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
                        self.skip(run_id, &step.id, &reason, Resolution::Dependency, true).await?;
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
                            self.skip(run_id, &step.id, &reason, Resolution::Condition, true).await?;
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
                        Event::new("engine", EventKind::StepStarted, json!({ "attempt": rec.attempts + 1 })),
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
                Event::new("engine", EventKind::StepOutcomeUnknown, json!({ "attempt": attempts })),
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
                self.skip(run_id, &s.step_id, "the run was aborted", Resolution::Abort, true).await?;
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
            RunStatus::Paused => EventKind::RunPaused,
            RunStatus::Succeeded => EventKind::RunSucceeded,
            _ => EventKind::RunFailed,
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
                StepStatus::Skipped if rec.resolution == Some(Resolution::Decision) => {}
                StepStatus::Skipped => return Ready::Skip(format!("needs `{need}`, which was skipped")),
                StepStatus::Failed => return Ready::Skip(format!("needs `{need}`, which failed")),
                StepStatus::Pending | StepStatus::Running | StepStatus::Paused => return Ready::Wait,
            }
        }
        Ready::Go
    }

    /// Skips a pending step. `leased`: the engine drives the run (the write is fenced by its
    /// lease); otherwise a person's abort of a paused run (nobody holds it).
    pub(super) async fn skip(
        &self,
        run_id: &str,
        step_id: &str,
        reason: &str,
        resolution: Resolution,
        leased: bool,
    ) -> Result<(), EngineError> {
        let fence = leased.then_some(self.config.owner.as_str());
        let event = Event::new("engine", EventKind::StepSkipped, json!({ "reason": reason }));
        let change = StepChange {
            status: Some(StepStatus::Skipped),
            error: Some(Some(reason.to_string())),
            resolution: Some(Some(resolution)),
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
                resolution: Some((!pause).then_some(Resolution::Failure)),
                log: Some(log),
                requests: Some(requests),
                finished: !pause,
                paused: pause,
                ..Default::default()
            },
            Event::new(
                "engine",
                if pause { EventKind::StepPaused } else { EventKind::StepFailed },
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
}

enum Ready {
    Go,
    Wait,
    Skip(String),
}
