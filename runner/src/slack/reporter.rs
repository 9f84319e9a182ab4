//! A run's one channel message: posted when the run starts, updated in place (`chat.update`)
//! as steps change, with step errors as thread replies and a summary when the run ends.
//!
//! The store is the source of truth: each update renders the run afresh from it, so missed
//! progress events or a Slack outage cost at most a stale message, never run state. Bursts are
//! coalesced: the reporter waits for the channel's pacer (about one write a second), drains
//! whatever happened meanwhile, then renders once.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::AppState;
use super::blocks::{self, RunView};
use crate::engine::ProgressEvent;
use crate::store::{EventRecord, RunMessage, RunRecord, RunRequest, StepRecord, StepStatus, StoreError};

pub(super) fn run_of(e: &ProgressEvent) -> &str {
    match e {
        ProgressEvent::RunStatus { run_id, .. }
        | ProgressEvent::Step { run_id, .. }
        | ProgressEvent::Retrying { run_id, .. }
        | ProgressEvent::Decided { run_id, .. } => run_id,
    }
}

/// Starts a reporter for `run_id` unless this process already has one. Returns once the
/// reporter knows what the run's thread already holds, so the caller drives the run only then:
/// a step failing meanwhile is not mistaken for one an earlier reporter told.
pub(super) async fn ensure(state: &AppState, run_id: &str, request_id: Option<String>) {
    {
        let Ok(mut live) = state.inner.reporters.lock() else { return };
        if !live.insert(run_id.to_string()) {
            return;
        }
    }
    // Leaves the set however the reporter ends (a panic included), so a later click can start
    // a new one.
    let release = super::OnDrop::new({
        let (state, run_id) = (state.clone(), run_id.to_string());
        move || {
            if let Ok(mut live) = state.inner.reporters.lock() {
                live.remove(&run_id);
            }
        }
    });
    // Subscribe before the run is driven, so no transition is missed.
    let rx = state.engine().progress().subscribe();
    // A batch's run is reported in the batch's message, not one of its own.
    if let Ok(run) = state.store().run(run_id).await
        && let Some(batch) = &run.batch_id
    {
        return super::batches::ensure(state, batch);
    }
    // A request just started has told nothing yet; otherwise the errors already in the run
    // were told by an earlier reporter (this process before a restart, or another replica).
    let reported: HashSet<ErrorKey> = match (&request_id, state.store().steps(run_id).await) {
        (None, Ok(steps)) => steps.iter().filter_map(error_key).collect(),
        _ => HashSet::new(),
    };
    let (state, channel) = (state.clone(), state.config().channel.clone());
    let follower = RunFollower { run_id: run_id.to_string(), channel, request_id, reported };
    tokio::spawn(async move {
        let _release = release;
        follow(&state, follower, rx).await;
    });
}

/// What the run message shows, read from the store in one go.
struct Snapshot {
    run: RunRecord,
    steps: Vec<StepRecord>,
    events: Vec<EventRecord>,
    request: Option<RunRequest>,
    approvals: Vec<String>,
}

impl Snapshot {
    async fn load(state: &AppState, run_id: &str) -> Result<Self, StoreError> {
        let store = state.store();
        let run = store.run(run_id).await?;
        let steps = store.steps(run_id).await?;
        let events = store.events(run_id).await?;
        let request = match store.run_message(run_id).await?.and_then(|m| m.request_id) {
            Some(id) => store.request(&id).await.ok(),
            None => None,
        };
        let approvals = match &request {
            Some(r) => store.approvals(&r.id).await?,
            None => vec![],
        };
        Ok(Snapshot { run, steps, events, request, approvals })
    }

    fn render(&self) -> (String, Value) {
        blocks::run_message(&RunView {
            run: &self.run,
            steps: &self.steps,
            events: &self.events,
            request: self.request.as_ref(),
            approvals: &self.approvals,
        })
    }
}

/// The run's message as it should look now.
pub(super) async fn view(state: &AppState, run_id: &str) -> Result<(String, Value), StoreError> {
    Ok(Snapshot::load(state, run_id).await?.render())
}

/// A channel message that follows some runs: [`follow`] calls `publish` whenever one of them
/// moves (coalesced behind the channel's pacer), and again on a timer after a failure.
pub(super) trait Follower {
    /// Whether a progress event of `run_id` concerns this message.
    fn follows(&self, run_id: &str) -> bool;
    /// Posts or updates the message; whether what it follows is over and reported.
    async fn publish(&mut self, state: &AppState) -> Result<bool, Box<dyn std::error::Error + Send + Sync>>;
    /// What the log calls it when an update fails.
    fn name(&self) -> String;
}

/// Keeps `follower`'s message current until what it follows is over (or the engine goes).
pub(super) async fn follow(
    state: &AppState,
    mut follower: impl Follower,
    mut rx: tokio::sync::broadcast::Receiver<ProgressEvent>,
) {
    let channel = state.config().channel.clone();
    let mut backoff = RETRY_FIRST;
    loop {
        state.api().pace(&channel).await;
        // Coalesce: everything that happened while waiting is in the one render below.
        while matches!(rx.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
        let failed = match follower.publish(state).await {
            Ok(true) => return,
            Ok(false) => {
                backoff = RETRY_FIRST;
                false
            }
            Err(e) => {
                tracing::warn!(target: "offramp::slack", message = %follower.name(), error = %e, retry_in_s = backoff.as_secs(), "cannot update the channel message");
                true
            }
        };
        // Wait for something it follows; after a failure, also try again on a timer (the
        // update that failed may have been the last one: the pause, or the end of the run).
        let next_event = async {
            loop {
                match rx.recv().await {
                    Ok(e) if follower.follows(run_of(&e)) => return true,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                }
            }
        };
        if failed {
            tokio::select! {
                alive = next_event => if !alive { return },
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        } else if !next_event.await {
            return;
        }
    }
}

/// One run's message.
struct RunFollower {
    run_id: String,
    channel: String,
    request_id: Option<String>,
    reported: HashSet<ErrorKey>,
}

impl Follower for RunFollower {
    fn follows(&self, run_id: &str) -> bool {
        run_id == self.run_id
    }

    async fn publish(&mut self, state: &AppState) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        publish(state, &self.run_id, &self.channel, self.request_id.as_deref(), &mut self.reported).await
    }

    fn name(&self) -> String {
        format!("run {}", self.run_id)
    }
}

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A step error worth a thread reply: the step, which pause (a step may pause again), status.
type ErrorKey = (String, u32, &'static str);

fn error_key(s: &StepRecord) -> Option<ErrorKey> {
    (matches!(s.status, StepStatus::Failed | StepStatus::Paused)
        && s.resolution != Some(crate::store::Resolution::Abort))
    .then(|| (s.step_id.clone(), s.pauses, s.status.as_str()))
}

/// Posts or updates the message, posts new step errors, and the summary once the run is over.
/// Returns whether the run is over and reported.
async fn publish(
    state: &AppState,
    run_id: &str,
    channel: &str,
    request_id: Option<&str>,
    reported: &mut HashSet<ErrorKey>,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let store = state.store();
    let api = state.api();
    let message = match store.run_message(run_id).await? {
        Some(m) if !m.ts.is_empty() => m,
        earlier => {
            // Record which request this run came from before the first render (it names the approvers).
            let request_id = earlier.and_then(|m| m.request_id).or_else(|| request_id.map(str::to_string));
            let placeholder =
                RunMessage { run_id: run_id.to_string(), channel: channel.to_string(), ts: String::new(), request_id };
            store.set_run_message(&placeholder).await?;
            placeholder
        }
    };
    // One read for the whole pass. A run over in it is rendered over; one that ends while this
    // message is being sent gets another pass (its transitions are queued for the reporter).
    let snap = Snapshot::load(state, run_id).await?;
    let over = snap.run.status.is_finished();
    let (text, blocks) = snap.render();
    let message = if message.ts.is_empty() {
        let ts = api.post_message(channel, &text, Some(&blocks), None).await?;
        let m = RunMessage { ts, ..message };
        store.set_run_message(&m).await?;
        m
    } else {
        api.update(&message.channel, &message.ts, &text, &blocks).await?;
        message
    };
    let (run, steps) = (&snap.run, &snap.steps);
    for s in steps {
        if let Some(key) = error_key(s)
            && reported.insert(key)
        {
            api.pace(channel).await;
            api.post_message(&message.channel, &blocks::step_error(s), None, Some(&message.ts)).await?;
        }
    }
    if over {
        api.pace(channel).await;
        api.call(
            "chat.postMessage",
            &json!({
                "channel": message.channel,
                "thread_ts": message.ts,
                "reply_broadcast": true,
                "text": blocks::summary(run, steps),
            }),
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}
