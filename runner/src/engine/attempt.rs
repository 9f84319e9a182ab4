//! One step, attempt by attempt: claiming it, rendering its inputs, running its plugin in the
//! sandbox through the HTTP gate, retrying transient failures, and recording the outcome.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Engine, EngineError, ProgressEvent, audit, idempotency_key};
use crate::credentials::CredentialError;
use crate::http::{Gate, Injection};
use crate::pipeline::{StepPlan, template};
use crate::sandbox::{AttemptReport, AttemptResult, AttemptSpec, FailureKind};
use crate::store::{Event, EventKind, RunRecord, StepChange, StepStatus};

impl Engine {
    /// Runs a step's attempts (retrying transient failures) and records the outcome.
    pub(super) async fn run_step(
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
        // Loading may compile the component (seconds), off the async workers.
        let plugin = match self.sandbox.plugin_async(&step.plugin).await {
            Ok(p) => p,
            Err(e) => {
                return self
                    .finish_failed(&run.id, step, attempts, Failure::early(FailureKind::Permanent, &e.to_string()))
                    .await;
            }
        };
        let key = idempotency_key(&run.id, &step.id);
        let first_of_this_drive = attempts + 1;
        loop {
            // Credentials first: a secret that is not set, or a key the vendor refuses, stops
            // the step before an attempt starts (a person must act); a token endpoint that is
            // down fails this attempt as transient, retried below.
            let injections = match self.injections(step).await {
                Err(e) if !e.is_transient() => {
                    let failure = Failure::early(FailureKind::NeedsHuman, &e.to_string());
                    return self.finish_failed(&run.id, step, attempts, failure).await;
                }
                other => other,
            };
            attempts += 1;
            // Write-ahead: the attempt number is recorded before the plugin runs.
            self.step_change(
                &run.id,
                &step.id,
                &[StepStatus::Running],
                None,
                StepChange { attempts: Some(attempts), ..Default::default() },
                Event::new("engine", EventKind::AttemptStarted, json!({ "attempt": attempts })),
            )
            .await?;
            let report = match injections {
                Ok(injections) => {
                    let mut gate = Gate::new(
                        &self.client,
                        step.allow.clone(),
                        injections,
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
                    let gate = Arc::new(gate);
                    let mut report: AttemptReport = self
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
                                gate: gate.clone(),
                            },
                        )
                        .await;
                    // A token that could not be refreshed mid-attempt: the token endpoint's own
                    // error, not whatever the plugin made of the refused request — even when it
                    // carried on as if nothing happened (its requests are still on record).
                    if let Some(e) = gate.credential_failure() {
                        report.result = credential_failure(&e);
                    }
                    report
                }
                Err(e) => AttemptReport { result: credential_failure(&e), log: vec![], requests: vec![] },
            };
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
                                EventKind::StepFinished,
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
                                Event::new("engine", EventKind::AttemptFailed, json!({ "attempt": attempts, "error": message, "retry_in_ms": wait.as_millis() as u64 })),
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

impl Engine {
    /// What the step's `credentials:` inject this attempt: secrets, and tokens (cached, or
    /// minted now).
    async fn injections(&self, step: &StepPlan) -> Result<Vec<Injection>, CredentialError> {
        let mut out = Vec::with_capacity(step.credentials.len());
        for rule in &step.credentials {
            out.push(self.credentials.injection(rule).await?);
        }
        Ok(out)
    }
}

/// A credential that could not be had: retried when the token endpoint was unavailable; else
/// a person must fix the configuration (a missing secret, a revoked key, a missing scope).
fn credential_failure(e: &CredentialError) -> AttemptResult {
    let kind = if e.is_transient() { FailureKind::Transient } else { FailureKind::NeedsHuman };
    AttemptResult::Failed { kind, message: e.to_string(), retry_after: e.retry_after() }
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
    pub(super) fn early(kind: FailureKind, message: &str) -> Self {
        Failure { kind, message: message.to_string(), log: vec![], requests: json!([]) }
    }
}
