//! The audit trail of what a step's attempts sent: every mutating request is written to the
//! event log before it leaves (`request_sent`) and its answer after (`request_answered`), so
//! an attempt cut short — the process killed mid-step — still shows what it may have changed.
//! When a later attempt then finds nothing left to do, the step is recorded as changed by the
//! earlier one, not as `unchanged`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;

use super::{Engine, EngineError, Failure};
use crate::http::{Recorder, RequestRecord};
use crate::pipeline::StepPlan;
use crate::sandbox::FailureKind;
use crate::store::{Event, EventKind, EventRecord, Store};

/// Writes one attempt's mutating requests to the event log. Like every engine write, it waits
/// out a database that cannot be reached (within the attempt's own time): a request is held
/// back until its record is in, never sent unrecorded.
pub(super) struct StepRecorder {
    store: Arc<dyn Store>,
    patience: Duration,
    run_id: String,
    step_id: String,
    attempt: u32,
    /// Numbers this attempt's requests: `request_answered` names the `request_sent` it answers.
    seq: AtomicU32,
}

impl StepRecorder {
    pub(super) fn new(store: Arc<dyn Store>, patience: Duration, run_id: &str, step_id: &str, attempt: u32) -> Self {
        StepRecorder {
            store,
            patience,
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            attempt,
            seq: AtomicU32::new(0),
        }
    }
}

impl StepRecorder {
    async fn append(&self, event: Event) -> Result<(), crate::store::StoreError> {
        let (run, step) = (Some(self.run_id.as_str()), Some(self.step_id.as_str()));
        super::lease::persist(self.patience, || self.store.append_event(run, step, event.clone())).await
    }
}

#[async_trait::async_trait]
impl Recorder for StepRecorder {
    async fn sending(&self, rec: &RequestRecord) -> Result<u32, String> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let detail = json!({
            "attempt": self.attempt, "seq": seq, "method": rec.method, "url": rec.url, "credential": rec.credential,
        });
        let event = Event::new("engine", EventKind::RequestSent, detail);
        self.append(event).await.map_err(|e| e.to_string())?;
        Ok(seq)
    }

    async fn answered(&self, seq: u32, rec: &RequestRecord) {
        let detail = json!({ "attempt": self.attempt, "seq": seq, "outcome": rec.outcome });
        let event = Event::new("engine", EventKind::RequestAnswered, detail);
        if let Err(e) = self.append(event).await {
            // The request went out; only its answer is missing from the record ("no answer").
            tracing::warn!(target: "offramp::engine", run = %self.run_id, step = %self.step_id, error = %e, "cannot record a request's answer");
        }
    }
}

/// The mutating requests a step's attempts before `attempt` sent, read from the event log
/// (not read at all for a first attempt). A log that cannot be read gives none, with a warning:
/// the record is then what the last attempt saw, as before.
pub(super) async fn earlier_attempts(
    store: &dyn Store,
    run_id: &str,
    step_id: &str,
    attempt: u32,
) -> Vec<RequestRecord> {
    if attempt <= 1 {
        return Vec::new();
    }
    match store.events(run_id).await {
        Ok(events) => earlier_mutations(&events, step_id, attempt),
        Err(e) => {
            tracing::warn!(target: "offramp::engine", run = %run_id, step = %step_id, error = %e, "cannot read earlier attempts' requests");
            Vec::new()
        }
    }
}

/// The mutating requests earlier attempts (before `attempt`) of a step sent, from the event
/// log, each with its answer or, if none was recorded, "no answer recorded".
fn earlier_mutations(events: &[EventRecord], step_id: &str, attempt: u32) -> Vec<RequestRecord> {
    let of_step = |e: &&EventRecord| e.step_id.as_deref() == Some(step_id);
    let num = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let mut out = Vec::new();
    for sent in events.iter().filter(of_step).filter(|e| e.kind == EventKind::RequestSent) {
        let Some(a) = num(&sent.detail["attempt"]) else { continue };
        if a >= attempt {
            continue;
        }
        let seq = num(&sent.detail["seq"]);
        let answer = events.iter().filter(of_step).find(|e| {
            e.kind == EventKind::RequestAnswered && num(&e.detail["attempt"]) == Some(a) && num(&e.detail["seq"]) == seq
        });
        out.push(RequestRecord {
            method: sent.detail["method"].as_str().unwrap_or("?").to_string(),
            url: sent.detail["url"].as_str().unwrap_or("").to_string(),
            outcome: answer
                .and_then(|e| e.detail["outcome"].as_str().map(str::to_string))
                .unwrap_or_else(|| "sent; no answer recorded (the attempt was cut short)".into()),
            credential: sent.detail["credential"].as_str().map(str::to_string),
            dry_run: false,
            attempt: Some(a),
            omitted: None,
        });
    }
    out
}

/// Whether an earlier request may have made a change: answered 2xx, or never answered.
pub(super) fn may_have_changed(r: &RequestRecord) -> bool {
    r.succeeded() || r.outcome.starts_with("sent; no answer")
}

/// "changed by attempt 1, which was cut short: POST …/suspend → 200"
pub(super) fn changed_by_note(earlier: &[RequestRecord], attempt: u32) -> Option<String> {
    let changes: Vec<&RequestRecord> = earlier.iter().filter(|r| may_have_changed(r)).collect();
    if changes.is_empty() {
        return None;
    }
    let mut attempts: Vec<u32> = changes.iter().filter_map(|r| r.attempt).collect();
    attempts.sort_unstable();
    attempts.dedup();
    let which = attempts.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let what = changes
        .iter()
        .take(10)
        .map(|r| format!("{} {} → {}", r.method, r.url, r.outcome))
        .collect::<Vec<_>>()
        .join("; ");
    let more = changes.len().saturating_sub(10);
    let more = if more > 0 { format!("; and {more} more") } else { String::new() };
    Some(format!(
        "changed by attempt {which}, which did not finish (cut short or failed after sending); attempt {attempt} found nothing left to do. Sent: {what}{more}"
    ))
}

/// The most request records a step row keeps (earlier attempts' mutations, then the last
/// attempt's journal); past that, a count.
const MAX_STORED_REQUESTS: usize = 300;
/// Room a step row's log keeps beyond the sandbox's log and stdio caps (host lines, prefixes).
const LOG_SLACK_BYTES: u64 = 64 * 1024;

/// The request records a step row stores: at most [`MAX_STORED_REQUESTS`], then a count.
pub(super) fn bound_requests(mut records: Vec<RequestRecord>) -> serde_json::Value {
    if records.len() > MAX_STORED_REQUESTS {
        let omitted: u64 = records[MAX_STORED_REQUESTS..].iter().map(|r| r.omitted.unwrap_or(1)).sum();
        records.truncate(MAX_STORED_REQUESTS);
        records.push(RequestRecord {
            method: "…".into(),
            url: String::new(),
            outcome: format!("{omitted} more requests, not recorded one by one"),
            credential: None,
            dry_run: false,
            attempt: None,
            omitted: Some(omitted),
        });
    }
    serde_json::to_value(&records).unwrap_or_default()
}

/// The log lines a step row stores: as many as fit in the sandbox's log and stdio caps (as
/// stored, JSON-escaped), then a line saying how many were left out.
pub(super) fn bound_log(log: Vec<String>, limits: &crate::sandbox::SandboxLimits) -> Vec<String> {
    let cap = limits.max_log_bytes + 2 * limits.max_stdio_bytes + LOG_SLACK_BYTES;
    let mut used = 0u64;
    let total = log.len();
    let mut out = Vec::new();
    for line in log {
        let size = serde_json::to_string(&line).map_or(line.len(), |s| s.len()) as u64 + 1;
        if used + size > cap {
            break;
        }
        used += size;
        out.push(line);
    }
    if out.len() < total {
        out.push(format!(
            "[host] {} more log lines not stored (a step's stored log is capped at {cap} bytes)",
            total - out.len()
        ));
    }
    out
}

impl Engine {
    /// The step's result could not be written (the database refused it, not an outage, which
    /// `persist` already waited out): the step fails with that reason and without the result,
    /// so the run never stays `running` with a step nobody can finish.
    pub(super) async fn unstorable(
        &self,
        run_id: &str,
        step: &StepPlan,
        attempts: u32,
        e: EngineError,
    ) -> Result<String, EngineError> {
        if e.is_lease_lost() || matches!(&e, EngineError::Store(s) if s.is_unavailable()) {
            return Err(e);
        }
        tracing::error!(target: "offramp::engine", run = %run_id, step = %step.id, error = %e, "cannot store the step's result");
        let message = format!(
            "the step's result could not be stored, so it is not known here: {}",
            crate::text::truncate(&e.to_string(), 500)
        );
        let failure = Failure { kind: FailureKind::Permanent, message, log: vec![], requests: json!([]) };
        self.finish_failed(run_id, step, attempts, failure).await
    }
}
