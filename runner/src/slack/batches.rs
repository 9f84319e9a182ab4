//! A batch's one channel message (a request for several people): posted when the batch starts,
//! kept current — how many runs are done, failed, paused or still going, the paused ones with
//! their Retry / Skip / Abort buttons — with each run that fails or pauses told in its thread
//! and a summary there once the last run ends. A batch's runs get no channel message of their
//! own: a hundred leavers are one message, not a hundred.
//!
//! As for a run's message ([`super::reporter`]), the store is the source of truth: each update
//! renders the batch afresh from it, and bursts are coalesced behind the channel's pacer.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::AppState;
use super::blocks::{self, DecisionRef, mention};
use super::reporter::{Follower, follow};
use crate::engine::ProgressEvent;
use crate::store::{BatchRecord, RunRecord, RunStatus, StepRecord, StepStatus};

/// Starts the batch's reporter unless this process already has one.
pub(super) fn ensure(state: &AppState, batch_id: &str) {
    let key = format!("batch:{batch_id}");
    {
        let Ok(mut live) = state.inner.reporters.lock() else { return };
        if !live.insert(key.clone()) {
            return;
        }
    }
    let rx = state.engine().progress().subscribe();
    // Before anything of the batch moves on: what stops after this is this reporter's to tell.
    let started = crate::store::now();
    let (state, batch_id) = (state.clone(), batch_id.to_string());
    tokio::spawn(async move {
        let _release = super::OnDrop::new({
            let state = state.clone();
            move || {
                if let Ok(mut live) = state.inner.reporters.lock() {
                    live.remove(&key);
                }
            }
        });
        report(&state, &batch_id, started, rx).await;
    });
}

/// A step that stopped a run of the batch: the run, and the step (failed or paused).
pub(crate) struct Stopped<'a> {
    pub run: &'a RunRecord,
    pub step: &'a StepRecord,
}

/// The batch's message.
struct BatchFollower {
    batch_id: String,
    channel: String,
    members: HashSet<String>,
    told: HashSet<ErrorKey>,
    /// Until the first update: when this reporter started (what stopped before it was told
    /// by an earlier one, if the message exists already).
    started: Option<String>,
}

impl Follower for BatchFollower {
    fn follows(&self, run_id: &str) -> bool {
        // Unknown members (the batch could not be read at start): anything may concern it.
        self.members.is_empty() || self.members.contains(run_id)
    }

    async fn publish(&mut self, state: &AppState) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let over = publish(state, &self.batch_id, &self.channel, &mut self.told, self.started.as_deref()).await?;
        self.started = None;
        Ok(over)
    }

    fn name(&self) -> String {
        format!("batch {}", self.batch_id)
    }
}

async fn report(
    state: &AppState,
    batch_id: &str,
    started: String,
    rx: tokio::sync::broadcast::Receiver<ProgressEvent>,
) {
    let members: HashSet<String> = match state.store().batch_runs(batch_id).await {
        Ok(runs) => runs.into_iter().map(|r| r.id).collect(),
        Err(e) => {
            tracing::warn!(target: "offramp::slack", batch = %batch_id, error = %e, "cannot read the batch");
            HashSet::new()
        }
    };
    let follower = BatchFollower {
        batch_id: batch_id.to_string(),
        channel: state.config().channel.clone(),
        members,
        // Problems already told by an earlier reporter (before a restart) are in the thread.
        told: HashSet::new(),
        started: Some(started),
    };
    follow(state, follower, rx).await;
}

/// A problem worth a thread reply: the run, the step, which pause, the status.
type ErrorKey = (String, String, u32, &'static str);

/// Posts or updates the batch message, tells new problems in its thread, and the summary once
/// every run is over. Returns whether the batch is over and reported.
async fn publish(
    state: &AppState,
    batch_id: &str,
    channel: &str,
    told: &mut HashSet<ErrorKey>,
    started: Option<&str>,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let store = state.store();
    let api = state.api();
    let batch = store.batch(batch_id).await?;
    let runs = store.batch_runs(batch_id).await?;
    let mut steps = Vec::new();
    for run in runs.iter().filter(|r| matches!(r.status, RunStatus::Paused | RunStatus::Failed)) {
        steps.push((run, store.steps(&run.id).await?));
    }
    let stopped: Vec<Stopped<'_>> = steps
        .iter()
        .flat_map(|(run, steps)| {
            steps
                .iter()
                .filter(|s| matches!(s.status, StepStatus::Paused | StepStatus::Failed))
                .map(move |step| Stopped { run, step })
        })
        .collect();
    let (text, blocks) = batch_message(&batch, &runs, &stopped);
    let ts = match (&batch.message_channel, &batch.message_ts) {
        (Some(c), Some(ts)) => {
            api.update(c, ts, &text, &blocks).await?;
            if let Some(started) = started {
                // A reporter after a restart: what stopped before it was told by the one before.
                told.extend(stopped.iter().filter(|s| s.step.updated_at.as_str() < started).map(key));
            }
            ts.clone()
        }
        _ => {
            let ts = api.post_message(channel, &text, Some(&blocks), None).await?;
            store.set_batch_message(batch_id, channel, &ts).await?;
            ts
        }
    };
    let channel = batch.message_channel.as_deref().unwrap_or(channel);
    for s in &stopped {
        if !told.contains(&key(s)) {
            api.pace(channel).await;
            let reply = format!("*{}* (run `{}`): {}", s.run.subject, s.run.id, blocks::step_error(s.step));
            let buttons = (s.step.status == StepStatus::Paused).then(|| {
                json!([
                    { "type": "section", "text": { "type": "mrkdwn", "text": blocks::truncate(&reply, 2900) } },
                    blocks::decision_buttons(&s.step.step_id, &decision_ref(s)),
                ])
            });
            api.post_message(channel, &reply, buttons.as_ref(), Some(&ts)).await?;
            // Told only once it is in the thread: a failed post is tried again next pass.
            told.insert(key(s));
        }
    }
    if runs.iter().all(|r| r.status.is_finished()) {
        api.pace(channel).await;
        api.call(
            "chat.postMessage",
            &json!({ "channel": channel, "thread_ts": ts, "reply_broadcast": true, "text": summary(&batch, &runs) }),
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}

/// What the buttons of a paused step carry.
fn decision_ref(s: &Stopped<'_>) -> String {
    serde_json::to_string(&DecisionRef {
        run_id: s.run.id.clone(),
        step_id: s.step.step_id.clone(),
        attempt: s.step.attempts,
        pause: s.step.pauses,
    })
    .unwrap_or_default()
}

fn key(s: &Stopped<'_>) -> ErrorKey {
    (s.run.id.clone(), s.step.step_id.clone(), s.step.pauses, s.step.status.as_str())
}

/// How many runs are in each status, in a fixed order, as "3 succeeded, 1 paused".
pub(crate) fn tally(runs: &[RunRecord]) -> String {
    let order = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Aborted,
        RunStatus::Paused,
        RunStatus::Running,
        RunStatus::Pending,
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|st| {
            let n = runs.iter().filter(|r| r.status == *st).count();
            (n > 0).then(|| format!("{n} {}", if *st == RunStatus::Pending { "waiting" } else { st.as_str() }))
        })
        .collect();
    parts.join(", ")
}

/// How many paused steps the message shows with buttons (the rest are in the thread).
const BUTTONS_SHOWN: usize = 10;

/// The batch message as it should look now.
pub(crate) fn batch_message(batch: &BatchRecord, runs: &[RunRecord], stopped: &[Stopped<'_>]) -> (String, Value) {
    let done = runs.iter().filter(|r| r.status.is_finished()).count();
    let text = format!(
        "Offboarding {} people with `{}`: {done} of {} finished ({})",
        batch.size,
        batch.pipeline_name,
        runs.len(),
        tally(runs)
    );
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": blocks::truncate(&format!("*{text}*"), 2900) }
    })];
    let approved = batch.approved_by.as_deref().map(|a| format!(", approved by {}", mention(a))).unwrap_or_default();
    blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!(
        "Batch `{}` · asked by {}{approved} · details of each stopped run in the thread · `offramp runs list --batch {}`",
        batch.id, mention(&batch.requested_by), batch.id
    ) }] }));
    let paused: Vec<&Stopped<'_>> = stopped.iter().filter(|s| s.step.status == StepStatus::Paused).collect();
    for s in paused.iter().take(BUTTONS_SHOWN) {
        let value = decision_ref(s);
        let error = blocks::truncate(&s.step.error.as_deref().unwrap_or("no error message").replace('\n', " "), 200);
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": blocks::truncate(
            &format!(":double_vertical_bar: *{}* — `{}` is paused: {error}", s.run.subject, s.step.step_id), 2900) } }));
        blocks.push(blocks::decision_buttons(&s.step.step_id, &value));
    }
    if paused.len() > BUTTONS_SHOWN {
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!(
            "… and {} more paused: each has its buttons in the thread, or use `offramp resume`.",
            paused.len() - BUTTONS_SHOWN
        ) }] }));
    }
    (text, Value::Array(blocks))
}

/// The thread reply once every run of the batch is over.
fn summary(batch: &BatchRecord, runs: &[RunRecord]) -> String {
    let mut text = format!("Batch `{}` is over: {}.", batch.id, tally(runs));
    let not_ok: Vec<&RunRecord> = runs.iter().filter(|r| r.status != RunStatus::Succeeded).collect();
    if !not_ok.is_empty() {
        text.push_str("\nNot offboarded everywhere:");
        for r in not_ok.iter().take(40) {
            text.push_str(&format!("\n• {} — {} (run `{}`)", r.subject, r.status, r.id));
        }
        if not_ok.len() > 40 {
            text.push_str(&format!("\n… and {} more: `offramp runs list --batch {}`", not_ok.len() - 40, batch.id));
        }
    }
    text
}
