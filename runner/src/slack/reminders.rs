//! Paused runs do not expire silently: a run that has waited for a decision longer than
//! `pause_reminder` gets a reply in its Slack thread, and another every `pause_reminder` after
//! that until someone decides. The store hands each due run to one replica only.

use std::time::Duration;

use serde_json::json;

use super::AppState;
use crate::store::{self, Event, EventKind, StepStatus};

/// How many reminders one pass sends at most (the rest go in the next pass).
const BATCH: u32 = 50;

/// Sends the reminders that are due. Returns how many went out.
pub(crate) async fn send_due(state: &AppState) -> anyhow::Result<usize> {
    let every = state.config().pause_reminder;
    let now = time::OffsetDateTime::now_utc();
    let cutoff = store::timestamp(now - every);
    let store = state.engine().store().clone();
    let due = store.due_reminders(&cutoff, &store::timestamp(now), BATCH).await?;
    let mut sent = 0;
    for run in due {
        let steps = store.steps(&run.id).await?;
        let paused: Vec<&str> =
            steps.iter().filter(|s| s.status == StepStatus::Paused).map(|s| s.step_id.as_str()).collect();
        let since = time::OffsetDateTime::parse(&run.updated_at, &time::format_description::well_known::Rfc3339)
            .map(|t| now - t)
            .unwrap_or(time::Duration::ZERO);
        let waited = Duration::from_secs(u64::try_from(since.whole_seconds()).unwrap_or(0));
        let text = format!(
            ":alarm_clock: Still waiting: this run for {} has been paused for {} on {}. \
             An approver decides with Retry / Skip / Abort on the message above; until then the \
             offboarding is incomplete.",
            run.subject,
            humantime::format_duration(waited),
            paused.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        );
        let Some(message) = store.run_message(&run.id).await? else {
            tracing::warn!(target: "offramp::serve", run = %run.id, "paused run has no Slack message to remind in");
            continue;
        };
        if message.ts.is_empty() {
            continue;
        }
        state.api().pace(&message.channel).await;
        match state.api().post_message(&message.channel, &text, None, Some(&message.ts)).await {
            Ok(_) => {
                sent += 1;
                let event = Event::new(
                    "offramp",
                    EventKind::PauseReminder,
                    json!({ "paused": paused, "waited_secs": waited.as_secs() }),
                );
                store.append_event(Some(&run.id), None, event).await?;
            }
            Err(e) => tracing::warn!(target: "offramp::serve", run = %run.id, error = %e, "cannot post a reminder"),
        }
    }
    Ok(sent)
}

impl AppState {
    /// Sends due reminders about paused runs (see [`send_due`]). Returns how many.
    pub async fn send_reminders(&self) -> anyhow::Result<usize> {
        send_due(self).await
    }

    /// Looks for due reminders every quarter of `pause_reminder` (at most every minute), for as
    /// long as the returned task lives.
    pub fn watch_pauses(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        let every = (state.config().pause_reminder / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = send_due(&state).await {
                    tracing::warn!(target: "offramp::serve", error = %e, "cannot send pause reminders");
                }
            }
        })
    }
}
