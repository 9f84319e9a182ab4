//! Human-readable output: the results table, run lists, and live progress lines.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::engine::ProgressEvent;
use crate::store::{RunRecord, StepRecord, StepStatus};
use crate::text::truncate;

/// `s` on one line, [`truncate`]d.
fn squeeze(s: &str, max: usize) -> String {
    truncate(&s.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// A step's result in a few words: the error, the skip reason or the output.
pub fn step_summary(s: &StepRecord) -> String {
    match s.status {
        StepStatus::Failed | StepStatus::Paused | StepStatus::Skipped => s.error.clone().unwrap_or_default(),
        StepStatus::Running if s.error.is_some() => format!("retrying after: {}", s.error.clone().unwrap_or_default()),
        _ => {
            let output = s.output.as_ref().map(|o| o.to_string()).filter(|o| o != "null").unwrap_or_default();
            match &s.note {
                Some(note) => format!("{note} — output: {output}"),
                None => output,
            }
        }
    }
}

/// The results table of one run.
pub fn steps_table(steps: &[StepRecord]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["step", "status", "attempts", "result"]);
    for s in steps {
        table.add_row([
            s.step_id.clone(),
            status_word(s.status).to_string(),
            s.attempts.to_string(),
            squeeze(&step_summary(s), 90),
        ]);
    }
    table.to_string()
}

/// After a dry run: the mutating requests each step would have sent.
pub fn dry_run_plan(steps: &[StepRecord]) -> String {
    let mut out = String::from("Dry run: these requests were recorded and not sent:\n");
    let mut any = false;
    for s in steps {
        for r in s.requests.as_array().into_iter().flatten().filter(|r| r["dry_run"] == true) {
            any = true;
            out.push_str(&format!(
                "  {:<20} {:<6} {}{}\n",
                s.step_id,
                r["method"].as_str().unwrap_or("?"),
                r["url"].as_str().unwrap_or("?"),
                r["credential"].as_str().map(|c| format!("  (with {c})")).unwrap_or_default()
            ));
        }
    }
    if !any {
        out.push_str("  (none: no step tried to change anything)\n");
    }
    out
}

/// What each step was allowed on the network (from the run's plan) and what it did with it
/// (from its recorded requests): `runs show`'s capability section.
pub fn capabilities(run: &RunRecord, steps: &[StepRecord]) -> String {
    let plan: Option<crate::pipeline::Plan> = serde_json::from_value(run.plan.clone()).ok();
    let mut out = String::from("Capabilities (allowed → used):\n");
    for s in steps {
        let planned = plan.as_ref().and_then(|p| p.steps.iter().find(|p| p.id == s.step_id));
        out.push_str(&format!("  {}\n", s.step_id));
        match planned {
            Some(p) => {
                let allow = if p.allow.is_empty() {
                    "nothing (no network)".to_string()
                } else {
                    p.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                };
                out.push_str(&format!("    allowed  {allow}\n"));
                for c in &p.credentials {
                    out.push_str(&format!("    secret   {} → {} header of {}\n", c.secret, c.header, c.origin));
                }
                out.push_str(&format!(
                    "    limits   timeout {}, memory {} MiB\n",
                    humantime::format_duration(p.timeout),
                    p.memory_bytes / (1024 * 1024)
                ));
            }
            None => out.push_str("    allowed  (not in the run's plan)\n"),
        }
        let requests = s.requests.as_array().map(Vec::as_slice).unwrap_or_default();
        if requests.is_empty() {
            out.push_str("    used     no requests\n");
        }
        for r in requests {
            out.push_str(&format!(
                "    used     {} {} → {}{}\n",
                r["method"].as_str().unwrap_or("?"),
                r["url"].as_str().unwrap_or("?"),
                squeeze(r["outcome"].as_str().unwrap_or("?"), 120),
                r["credential"].as_str().map(|c| format!(" (with {c})")).unwrap_or_default()
            ));
        }
    }
    out
}

/// `offramp runs list`.
pub fn runs_table(runs: &[RunRecord]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["run", "pipeline", "subject", "status", "requested by", "created"]);
    for r in runs {
        table.add_row([
            r.id.clone(),
            r.pipeline_name.clone(),
            r.subject.clone(),
            format!("{}{}", r.status, if r.dry_run { " (dry run)" } else { "" }),
            r.requested_by.clone(),
            r.created_at.clone(),
        ]);
    }
    table.to_string()
}

/// A run's header lines for `runs show`.
pub fn run_header(r: &RunRecord) -> String {
    format!(
        "run {}\npipeline {} ({})\nsubject {}\nrequested by {}\nstatus {}{}\ncreated {}  updated {}{}\n",
        r.id,
        r.pipeline_name,
        &r.pipeline_hash[..r.pipeline_hash.len().min(12)],
        r.subject,
        r.requested_by,
        r.status,
        if r.dry_run { " (dry run)" } else { "" },
        r.created_at,
        r.updated_at,
        r.finished_at.as_ref().map(|f| format!("  finished {f}")).unwrap_or_default(),
    )
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "✔ succeeded",
        StepStatus::Unchanged => "✔ unchanged",
        StepStatus::Failed => "✘ failed",
        StepStatus::Skipped => "– skipped",
        StepStatus::Paused => "⏸ paused",
    }
}

/// One line per transition, for the live view.
pub fn progress_line(e: &ProgressEvent) -> Option<String> {
    match e {
        ProgressEvent::RunStatus { .. } => None,
        ProgressEvent::Step { step_id, status, attempt, detail, .. } => Some(match status {
            StepStatus::Running if *attempt > 1 => format!("{step_id:<20} running (attempt {attempt})"),
            StepStatus::Running => format!("{step_id:<20} running"),
            other => match detail {
                Some(d) => format!("{step_id:<20} {} — {}", status_word(*other), squeeze(d, 100)),
                None => format!("{step_id:<20} {}", status_word(*other)),
            },
        }),
        ProgressEvent::Retrying { step_id, attempt, error, wait, .. } => Some(format!(
            "{step_id:<20} attempt {attempt} failed: {} — retrying in {}",
            squeeze(error, 80),
            humantime::format_duration(std::time::Duration::from_millis(wait.as_millis() as u64))
        )),
        ProgressEvent::Decided { step_id, decision, actor, .. } => {
            Some(format!("{step_id:<20} {decision} (decided by {actor})"))
        }
    }
}
