//! Block Kit messages: the confirmation, the approval request, the run message with its
//! Retry / Skip / Abort buttons, and a plain-text rendering of any of them (for the demo and
//! for logs).

use serde_json::{Value, json};

use crate::pipeline::Plan;
use crate::store::{EventKind, EventRecord, RunRecord, RunRequest, RunStatus, StepRecord, StepStatus};

/// Action ids of the buttons.
pub const START: &str = "start";
pub(crate) const CANCEL: &str = "cancel";
pub(crate) const RETRY: &str = "retry";
pub(crate) const SKIP: &str = "skip";
pub(crate) const ABORT: &str = "abort";

/// A Slack user id as a mention; other actors (`cli:alice`, `engine`) in code font.
pub(crate) fn mention(actor: &str) -> String {
    match actor.strip_prefix("slack:") {
        Some(id) => format!("<@{id}>"),
        None if actor.starts_with('U') || actor.starts_with('W') => format!("<@{actor}>"),
        None => format!("`{actor}`"),
    }
}

fn mrkdwn(text: impl Into<String>) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(&text.into(), 2900) } })
}

fn context(text: impl Into<String>) -> Value {
    json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": truncate(&text.into(), 2900) }] })
}

fn button(action: &str, label: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": action,
        "text": { "type": "plain_text", "text": label },
        "value": value,
    });
    if let Some(s) = style {
        b["style"] = json!(s);
    }
    b
}

fn confirm(title: &str, text: &str, yes: &str) -> Value {
    json!({
        "title": { "type": "plain_text", "text": title },
        "text": { "type": "mrkdwn", "text": truncate(text, 290) },
        "confirm": { "type": "plain_text", "text": yes },
        "deny": { "type": "plain_text", "text": "Not yet" },
        "style": "danger",
    })
}

pub(crate) use crate::text::truncate;

fn steps_lines(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let plugin = s.plugin.file_stem().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let cond = s.condition.as_ref().map(|c| format!(" _(if {c})_")).unwrap_or_default();
            format!("{}. `{}` — {plugin}{cond}", i + 1, s.id)
        })
        .collect()
}

/// The ephemeral "are you sure?" with Start and Cancel, or the channel post asking for approval.
pub(crate) fn request_message(
    req: &RunRequest,
    plan: &Plan,
    approvals: &[String],
    in_channel: bool,
) -> (String, Value) {
    let mut blocks = Vec::new();
    let inputs: Vec<String> = shared_inputs(req)
        .iter()
        .map(|(k, v)| format!("`{k}={}`", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    let text = if in_channel {
        format!("{} asks to offboard {} with `{}`", mention(&req.requested_by), req.subject, req.pipeline)
    } else {
        format!("Offboard {} with `{}`?", req.subject, req.pipeline)
    };
    blocks.push(mrkdwn(format!("*{text}*\n{}", plan.description)));
    if !req.batch.is_empty() {
        blocks.push(mrkdwn(people_lines(req)));
    }
    blocks.push(mrkdwn(format!("*Steps*\n{}", steps_lines(plan).join("\n"))));
    let mut ctx = format!("Inputs: {}", if inputs.is_empty() { "none".into() } else { inputs.join(" ") });
    if req.approvals_needed > 0 {
        let who = if req.allow_self { "approvers" } else { "approvers other than the requester" };
        ctx.push_str(&format!(
            " · Needs {} of {who} to press Start ({} so far{})",
            req.approvals_needed,
            approvals.len(),
            if approvals.is_empty() {
                String::new()
            } else {
                format!(": {}", approvals.iter().map(|a| mention(a)).collect::<Vec<_>>().join(", "))
            }
        ));
    }
    blocks.push(context(ctx));
    let start = {
        let mut b = button(START, if in_channel { "Approve and start" } else { "Start" }, &req.id, Some("danger"));
        b["confirm"] = confirm(
            "Start offboarding?",
            &match req.batch.len() {
                0 => format!(
                    "This runs {} steps of `{}` for {} against your live systems.",
                    plan.steps.len(),
                    req.pipeline,
                    req.subject
                ),
                n => format!(
                    "This runs {} steps of `{}` for each of {n} people against your live systems.",
                    plan.steps.len(),
                    req.pipeline
                ),
            },
            "Start",
        );
        b
    };
    blocks.push(json!({ "type": "actions", "block_id": format!("request:{}", req.id), "elements": [start, button(CANCEL, "Cancel", &req.id, None)] }));
    (text, Value::Array(blocks))
}

/// The inputs every run of a request gets: a request for one, its inputs; for several, those
/// with the same value for everyone (the rest differ by person and show in the list).
fn shared_inputs(req: &RunRequest) -> serde_json::Map<String, Value> {
    let Some((first, rest)) = req.batch.split_first() else { return req.inputs.clone() };
    first
        .inputs
        .iter()
        .filter(|(k, v)| {
            first.subject != v.as_str().unwrap_or_default() && rest.iter().all(|i| i.inputs.get(*k) == Some(v))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The people of a request for several, one a line (as many as a section holds), with the
/// inputs that are theirs alone.
fn people_lines(req: &RunRequest) -> String {
    let shared = shared_inputs(req);
    let mut text = format!("*{} people*", req.batch.len());
    for (i, item) in req.batch.iter().enumerate() {
        let own: Vec<String> = item
            .inputs
            .iter()
            .filter(|(k, v)| !shared.contains_key(*k) && v.as_str() != Some(item.subject.as_str()))
            .map(|(k, v)| format!("`{k}={}`", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        let line = format!(
            "\n{}. {}{}",
            i + 1,
            item.subject,
            if own.is_empty() { String::new() } else { format!(" {}", own.join(" ")) }
        );
        if text.len() + line.len() > 2700 {
            text.push_str(&format!("\n… and {} more", req.batch.len() - i));
            break;
        }
        text.push_str(&line);
    }
    text
}

/// What a finished request's message becomes (buttons gone).
pub(crate) fn request_closed(text: &str) -> Value {
    json!([mrkdwn(text)])
}

fn status_emoji(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => ":white_circle:",
        StepStatus::Running => ":hourglass_flowing_sand:",
        StepStatus::Succeeded => ":white_check_mark:",
        StepStatus::Unchanged => ":ballot_box_with_check:",
        StepStatus::Failed => ":x:",
        StepStatus::Skipped => ":fast_forward:",
        StepStatus::Paused => ":double_vertical_bar:",
    }
}

fn run_emoji(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Pending => ":white_circle:",
        RunStatus::Running => ":large_blue_circle:",
        RunStatus::Paused => ":double_vertical_bar:",
        RunStatus::Succeeded => ":white_check_mark:",
        RunStatus::Failed => ":x:",
        RunStatus::Aborted => ":no_entry:",
    }
}

/// Everything the run message shows.
pub(crate) struct RunView<'a> {
    pub run: &'a RunRecord,
    pub steps: &'a [StepRecord],
    pub events: &'a [EventRecord],
    pub request: Option<&'a RunRequest>,
    pub approvals: &'a [String],
}

/// The value a Retry / Skip / Abort button carries: the run, the step, its attempt and the
/// pause it answers (a click on an earlier pause of the same step does nothing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DecisionRef {
    #[serde(rename = "r")]
    pub run_id: String,
    #[serde(rename = "s")]
    pub step_id: String,
    #[serde(rename = "a")]
    pub attempt: u32,
    #[serde(rename = "p")]
    pub pause: u32,
}

/// The channel message of a run.
pub(crate) fn run_message(v: &RunView<'_>) -> (String, Value) {
    let run = v.run;
    let text = format!("Offboarding {}: {}", run.subject, run.status);
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": truncate(&format!("Offboarding {}", run.subject), 150) } }),
    ];
    let asked = v.request.map_or_else(|| mention(&run.requested_by), |r| mention(&r.requested_by));
    let mut approved: Vec<String> = v.approvals.iter().map(|a| mention(a)).collect();
    if let Some(by) = v.request.and_then(|r| r.decided_by.as_deref()) {
        let m = mention(by);
        if !approved.contains(&m) {
            approved.push(m);
        }
    }
    let approved = if approved.is_empty() { String::new() } else { format!(" · approved by {}", approved.join(", ")) };
    blocks.push(mrkdwn(format!(
        "{} *{}* · pipeline `{}`{}\nRequested by {asked}{approved} · run `{}`",
        run_emoji(run.status),
        run.status,
        run.pipeline_name,
        if run.dry_run { " · dry run" } else { "" },
        run.id
    )));
    blocks.push(json!({ "type": "divider" }));
    let mut lines = Vec::new();
    for s in v.steps {
        let mut line = format!("{} `{}` {}", status_emoji(s.status), s.step_id, s.status);
        if s.attempts > 1 {
            line.push_str(&format!(" · {} attempts", s.attempts));
        }
        if let Some(d) =
            v.events.iter().rev().find(|e| e.kind == EventKind::Decision && e.step_id.as_deref() == Some(&s.step_id))
        {
            let what = d.detail.get("decision").and_then(Value::as_str).unwrap_or("decided");
            let verb = match what {
                "retry" => "retried",
                "skip" => "skipped",
                "abort" => "aborted",
                other => other,
            };
            line.push_str(&format!(" · {verb} by {}", mention(&d.actor)));
        }
        if matches!(s.status, StepStatus::Paused | StepStatus::Failed | StepStatus::Skipped)
            && let Some(e) = &s.error
        {
            line.push_str(&format!("\n      _{}_", truncate(&e.replace('\n', " "), 200)));
        }
        // "changed by attempt 1, which did not finish…": the audit, not the plugin's word.
        if let Some(note) = &s.note {
            line.push_str(&format!("\n      _{}_", truncate(&note.replace('\n', " "), 200)));
        }
        lines.push(line);
    }
    // Sections hold 3000 characters; split long pipelines.
    let mut chunk = String::new();
    for line in lines {
        if chunk.len() + line.len() > 2800 && !chunk.is_empty() {
            blocks.push(mrkdwn(std::mem::take(&mut chunk)));
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&line);
    }
    if !chunk.is_empty() {
        blocks.push(mrkdwn(chunk));
    }
    for s in v.steps.iter().filter(|s| s.status == StepStatus::Paused) {
        let value = serde_json::to_string(&DecisionRef {
            run_id: run.id.clone(),
            step_id: s.step_id.clone(),
            attempt: s.attempts,
            pause: s.pauses,
        })
        .unwrap_or_default();
        blocks.push(context(format!("`{}` is paused. Retry it, skip it and go on, or abort the run:", s.step_id)));
        blocks.push(decision_buttons(&s.step_id, &value));
    }
    (text, Value::Array(blocks.into_iter().take(50).collect()))
}

/// Retry / Skip / Abort for a paused step; `value` is its [`DecisionRef`] as JSON.
pub(crate) fn decision_buttons(step_id: &str, value: &str) -> Value {
    let mut abort = button(ABORT, "Abort run", value, Some("danger"));
    abort["confirm"] = confirm("Abort the run?", &format!("Steps after `{step_id}` will not run."), "Abort");
    json!({
        "type": "actions",
        "block_id": truncate(&format!("paused:{}:{}", step_id, crate::digest::sha256_hex(value.as_bytes()).get(..12).unwrap_or_default()), 255),
        "elements": [button(RETRY, "Retry", value, Some("primary")), button(SKIP, "Skip", value, None), abort],
    })
}

/// The thread reply when a step fails or pauses.
pub(crate) fn step_error(s: &StepRecord) -> String {
    format!(
        "{} `{}` {} after {} attempt{}:\n```{}```",
        status_emoji(s.status),
        s.step_id,
        s.status,
        s.attempts,
        if s.attempts == 1 { "" } else { "s" },
        truncate(s.error.as_deref().unwrap_or("no error message"), 2500)
    )
}

/// The thread reply when the run ends.
pub(crate) fn summary(run: &RunRecord, steps: &[StepRecord]) -> String {
    let mut counts: Vec<(StepStatus, usize)> = Vec::new();
    for s in steps {
        match counts.iter_mut().find(|(st, _)| *st == s.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((s.status, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let credited: Vec<String> = steps.iter().filter(|s| s.note.is_some()).map(|s| format!("`{}`", s.step_id)).collect();
    let credited = if credited.is_empty() {
        String::new()
    } else {
        format!(" Changed by an attempt that did not finish (the re-run found it done): {}.", credited.join(", "))
    };
    format!(
        "{} Run `{}` {}: {} ({}).{credited} Details: `offramp runs show {}`",
        run_emoji(run.status),
        run.id,
        run.status,
        run.subject,
        parts.join(", "),
        run.id
    )
}

/// A plain-text rendering of a message (its blocks if any, else its text), roughly as Slack shows it.
pub fn render_text(message: &Value) -> String {
    let mut out = Vec::new();
    let blocks = message.get("blocks").and_then(Value::as_array);
    match blocks {
        Some(blocks) if !blocks.is_empty() => {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("header") => out.push(format!("▌ {}", text_of(&b["text"]))),
                    Some("section") => {
                        out.extend(text_of(&b["text"]).lines().map(str::to_string));
                    }
                    Some("context") => {
                        let parts: Vec<String> = b["elements"].as_array().into_iter().flatten().map(text_of).collect();
                        out.push(format!("  {}", parts.join(" ")));
                    }
                    Some("divider") => out.push("────────────────────────────────────────".into()),
                    Some("actions") => {
                        let buttons: Vec<String> = b["elements"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| format!("[ {} ]", text_of(&e["text"])))
                            .collect();
                        out.push(buttons.join(" "));
                    }
                    _ => {}
                }
            }
        }
        _ => out.extend(text_of(&message["text"]).lines().map(str::to_string)),
    }
    out.join("\n")
}

fn text_of(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    };
    plain(&raw)
}

/// Slack mrkdwn to terminal text: emoji names to symbols, mentions to @names.
fn plain(s: &str) -> String {
    const EMOJI: &[(&str, &str)] = &[
        (":white_circle:", "○"),
        (":hourglass_flowing_sand:", "⏳"),
        (":white_check_mark:", "✔"),
        (":ballot_box_with_check:", "☑"),
        (":x:", "✘"),
        (":fast_forward:", "⏭"),
        (":double_vertical_bar:", "⏸"),
        (":large_blue_circle:", "●"),
        (":no_entry:", "⛔"),
        (":warning:", "⚠"),
    ];
    let mut s = s.to_string();
    for (name, sym) in EMOJI {
        s = s.replace(name, sym);
    }
    // <@U123> → @U123, <#C123> → #C123, <url|label> → label
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + end];
        let shown = match inner.split_once('|') {
            Some((_, label)) => label.to_string(),
            None if inner.starts_with('@') || inner.starts_with('#') => inner.to_string(),
            None => inner.to_string(),
        };
        out.push_str(&shown);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    // Bold markers and whole-line italics read as noise in a terminal.
    out.replace("```", "")
        .replace('*', "")
        .lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix('_').and_then(|t| t.strip_suffix('_')) {
                Some(inner) => format!("{}{inner}", &l[..l.len() - t.len()]),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunStatus, StepStatus};

    fn step(id: &str, status: StepStatus, note: Option<&str>) -> StepRecord {
        StepRecord {
            run_id: "r1".into(),
            step_id: id.into(),
            position: 0,
            status,
            attempts: 2,
            pauses: 0,
            idempotency_key: "k".into(),
            output: None,
            error: None,
            resolution: None,
            note: note.map(str::to_string),
            log: vec![],
            requests: serde_json::json!([]),
            started_at: None,
            finished_at: None,
            updated_at: String::new(),
        }
    }

    /// A step credited to an interrupted attempt says so in the channel message and the
    /// summary, not only in `runs show`.
    #[test]
    fn the_audit_note_shows_in_the_message_and_the_summary() {
        let run = RunRecord {
            id: "r1".into(),
            pipeline_name: "okta".into(),
            pipeline_hash: String::new(),
            plan: serde_json::Value::Null,
            subject: "bob@example.com".into(),
            inputs: serde_json::json!({}),
            requested_by: "U1".into(),
            dry_run: false,
            status: RunStatus::Succeeded,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            lease: None,
            batch_id: None,
        };
        let note = "changed by attempt 1, which did not finish";
        let steps = [step("lookup", StepStatus::Unchanged, None), step("suspend", StepStatus::Succeeded, Some(note))];
        let view = RunView { run: &run, steps: &steps, events: &[], request: None, approvals: &[] };
        let (_, blocks) = run_message(&view);
        assert!(blocks.to_string().contains(note), "{blocks}");
        let summary = summary(&run, &steps);
        assert!(summary.contains("did not finish") && summary.contains("`suspend`"), "{summary}");
        assert!(!summary.contains("`lookup`"), "{summary}");
    }
}
