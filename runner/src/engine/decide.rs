//! A person's Retry / Skip / Abort on a paused step: the one entry point for `offramp resume`
//! and a Slack button. Exactly one of several concurrent decisions on one pause applies (a
//! conditional update in the store); a person's decision needs no lease (a paused run has none).

use serde_json::{Value, json};

use super::{Engine, EngineError, ProgressEvent};
use crate::store::{Event, EventKind, Guard, Resolution, RunStatus, StepChange, StepStatus};

/// What a person decided about a paused step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Retry,
    Skip,
    Abort,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Retry => "retry",
            Decision::Skip => "skip",
            Decision::Abort => "abort",
        })
    }
}

/// The result of [`Engine::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// The decision took effect.
    Applied,
    /// The step had already moved on (someone else decided, or the click was stale).
    AlreadyHandled { by: Option<String>, status: StepStatus },
}

impl Engine {
    /// Applies a person's decision to a paused step. `pause` names the pause it answers (the
    /// step's `pauses` count when it was shown; `None`: the current one). Exactly one of
    /// several concurrent decisions on the same pause wins (enforced by the store). Returns
    /// `AlreadyHandled` for a stale or repeated decision. Call [`Engine::drive`] afterwards.
    pub async fn decide(
        &self,
        run_id: &str,
        step_id: &str,
        pause: Option<u32>,
        decision: Decision,
        actor: &str,
    ) -> Result<DecisionOutcome, EngineError> {
        let run = self.store.run(run_id).await?;
        let steps = self.store.steps(run_id).await?;
        let Some(step) = steps.iter().find(|s| s.step_id == step_id) else {
            return Err(EngineError::Decision(format!("run {run_id} has no step `{step_id}`")));
        };
        let pause = pause.unwrap_or(step.pauses);
        let event = Event::new(
            actor,
            EventKind::Decision,
            json!({ "decision": decision, "attempt": step.attempts, "pause": pause }),
        );
        let change = match decision {
            Decision::Retry => StepChange {
                status: Some(StepStatus::Pending),
                error: Some(None),
                resolution: Some(None),
                ..Default::default()
            },
            Decision::Skip => StepChange {
                status: Some(StepStatus::Skipped),
                resolution: Some(Some(Resolution::Decision)),
                error: Some(Some(format!("skipped by {actor} after: {}", step.error.clone().unwrap_or_default()))),
                finished: true,
                ..Default::default()
            },
            Decision::Abort => StepChange {
                status: Some(StepStatus::Failed),
                resolution: Some(Some(Resolution::Abort)),
                error: Some(Some(format!("aborted by {actor} after: {}", step.error.clone().unwrap_or_default()))),
                finished: true,
                ..Default::default()
            },
        };
        let applied = self
            .store
            .change_step(run_id, step_id, &[StepStatus::Paused], Some(Guard::Pause(pause)), None, change, event)
            .await?;
        if !applied {
            let events = self.store.events(run_id).await?;
            // Who answered this pause (or, for a click on a pause long gone, the latest one).
            let decisions: Vec<_> = events
                .iter()
                .filter(|e| e.kind == EventKind::Decision && e.step_id.as_deref() == Some(step_id))
                .collect();
            let by = decisions
                .iter()
                .rev()
                .find(|e| e.detail.get("pause").and_then(Value::as_u64) == Some(u64::from(pause)))
                .or(decisions.last())
                .map(|e| format!("{} ({})", e.actor, e.detail.get("decision").and_then(Value::as_str).unwrap_or("?")));
            let now = self
                .store
                .steps(run_id)
                .await?
                .into_iter()
                .find(|s| s.step_id == step_id)
                .map_or(step.status, |s| s.status);
            return Ok(DecisionOutcome::AlreadyHandled { by, status: now });
        }
        self.progress.emit(ProgressEvent::Decided {
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            decision,
            actor: actor.to_string(),
        });
        if decision == Decision::Abort {
            for s in steps.iter().filter(|s| s.status == StepStatus::Pending) {
                self.skip(run_id, &s.step_id, "the run was aborted", Resolution::Abort, false).await?;
            }
        }
        // The run goes back to running unless other steps are still paused (then it waits for them).
        let still_paused = self.store.steps(run_id).await?.iter().any(|s| s.status == StepStatus::Paused);
        if run.status == RunStatus::Paused && !still_paused {
            let to = if decision == Decision::Abort { RunStatus::Aborted } else { RunStatus::Running };
            self.store
                .set_run_status(
                    run_id,
                    &[RunStatus::Paused],
                    to,
                    None,
                    Event::new(
                        actor,
                        if to == RunStatus::Aborted { EventKind::RunAborted } else { EventKind::RunResumed },
                        json!({}),
                    ),
                )
                .await?;
            self.progress.emit(ProgressEvent::RunStatus { run_id: run_id.to_string(), status: to });
        }
        Ok(DecisionOutcome::Applied)
    }
}
