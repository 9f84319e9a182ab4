//! Step transitions as a stream, for the CLI's live lines and (later) Slack's message.

use std::time::Duration;

use tokio::sync::broadcast;

use super::Decision;
use crate::store::{RunStatus, StepStatus};

/// Something worth showing a person watching a run.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    RunStatus { run_id: String, status: RunStatus },
    Step { run_id: String, step_id: String, status: StepStatus, attempt: u32, detail: Option<String> },
    Retrying { run_id: String, step_id: String, attempt: u32, error: String, wait: Duration },
    Decided { run_id: String, step_id: String, decision: Decision, actor: String },
}

/// A broadcast of [`ProgressEvent`]s. Slow listeners miss events rather than slow the engine;
/// the store stays the source of truth.
#[derive(Clone)]
pub struct Progress {
    tx: broadcast::Sender<ProgressEvent>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { tx: broadcast::channel(1024).0 }
    }
}

impl Progress {
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.tx.subscribe()
    }

    pub(crate) fn emit(&self, event: ProgressEvent) {
        tracing::info!(target: "offramp::engine", ?event, "transition");
        // No listener is fine.
        let _ = self.tx.send(event);
    }
}
