//! `offramp run PIPELINE --inputs-file leavers.csv`: one run per row, recorded as one batch.
//!
//! The file is a CSV with a header row naming inputs, or JSON lines (one object per line).
//! `--input` values apply to every row a row does not override. Every row is checked before
//! anything starts; a bad row stops the whole batch with its line. The batch and all its runs
//! are recorded first (so `offramp recover` finishes them after a crash), then driven at most
//! `--concurrency` at a time.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;

use super::out::{errln, outln};
use super::{EXIT_FAILED, EXIT_INVALID, EXIT_PAUSED};
use crate::engine::{Engine, StartRequest, preview};
use crate::pipeline::Plan;
use crate::store::{NewBatch, RunStatus};

/// A row of an inputs file: the line it starts on, and its inputs.
type Row = (u64, BTreeMap<String, String>);

/// The rows of an inputs file, or every problem in it.
pub(super) fn read_rows(path: &Path) -> Result<Vec<Row>, Vec<String>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let json_lines =
        path.extension().is_some_and(|e| e == "jsonl" || e == "ndjson") || text.trim_start().starts_with('{');
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if json_lines {
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) {
                Ok(obj) => {
                    let mut row = BTreeMap::new();
                    for (k, v) in obj {
                        match v {
                            serde_json::Value::String(s) => row.insert(k, s),
                            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => row.insert(k, v.to_string()),
                            serde_json::Value::Null => continue,
                            _ => {
                                errors.push(format!("{shown}:{n}: `{k}` must be a string, number or boolean"));
                                continue;
                            }
                        };
                    }
                    rows.push((n, row));
                }
                Err(e) => errors.push(format!("{shown}:{n}: not a JSON object ({e})")),
            }
        }
    } else {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let headers = match reader.headers() {
            Ok(h) => h.clone(),
            Err(e) => return Err(vec![format!("{shown}: {e}")]),
        };
        if let Some(empty) = headers.iter().position(str::is_empty) {
            errors.push(format!("{shown}:1: column {} has no name: the first row names each input", empty + 1));
        }
        for record in reader.records() {
            match record {
                Ok(r) => {
                    let n = r.position().map_or(0, |p| p.line());
                    let row = headers
                        .iter()
                        .zip(r.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    rows.push((n, row));
                }
                Err(e) => {
                    let n = e.position().map_or(0, |p| p.line());
                    errors.push(format!("{shown}:{n}: {e}"));
                }
            }
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(format!("{shown}: no rows: nothing to run"));
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}

pub(super) struct BatchArgs<'a> {
    pub file: &'a Path,
    pub defaults: BTreeMap<String, String>,
    pub requested_by: String,
    pub dry_run: bool,
    pub concurrency: usize,
    pub json: bool,
}

pub(super) async fn run(engine: &Engine, plan: &Plan, args: BatchArgs<'_>) -> Result<ExitCode> {
    let shown = args.file.display().to_string();
    let rows = match read_rows(args.file) {
        Ok(rows) => rows,
        Err(errors) => {
            for e in errors {
                errln!("error: {e}");
            }
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    // Every row checked before anything starts: a batch is all or nothing at the door.
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    for (line, row) in &rows {
        let mut inputs = args.defaults.clone();
        inputs.extend(row.clone());
        match preview(plan, &inputs) {
            Ok(subject) => requests.push((*line, subject, inputs)),
            Err(crate::engine::EngineError::Inputs(why)) => {
                errors.extend(why.into_iter().map(|w| format!("{shown}:{line}: {w}")))
            }
            Err(e) => errors.push(format!("{shown}:{line}: {e}")),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            errln!("error: {e}");
        }
        errln!("nothing was started: fix the rows above and run again");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let batch = NewBatch {
        id: crate::engine::new_run_id(),
        pipeline_name: plan.name.clone(),
        requested_by: args.requested_by.clone(),
        approved_by: None,
        size: u32::try_from(requests.len()).unwrap_or(u32::MAX),
        request_id: None,
    };
    engine.store().create_batch(&batch).await.context("recording the batch")?;
    // All runs recorded before any is driven: a crash leaves them for `offramp recover`.
    let mut started = Vec::new();
    for (line, subject, inputs) in requests {
        let req = StartRequest { inputs, requested_by: args.requested_by.clone(), dry_run: args.dry_run };
        let id = engine.start_in_batch(plan, req, Some(&batch.id)).await?;
        started.push((line, subject, id));
    }
    if !args.json {
        outln!(
            "batch {}: {} runs of {}{}, {} at a time",
            batch.id,
            started.len(),
            plan.name,
            if args.dry_run { " (dry run)" } else { "" },
            args.concurrency
        );
    }
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(started.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {bar:30} {pos}/{len} runs ({msg})")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (line, subject, id)) in started.iter().cloned().enumerate() {
        let (engine, gate) = (engine.clone(), gate.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await;
            let status = engine.drive(&id).await;
            (i, line, subject, id, status)
        });
    }
    let total = started.len();
    let mut outcomes = vec![None; total];
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (i, line, subject, id, status) = done.context("a run's task")?;
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("error: {e}"),
        };
        *tally.entry(status.clone()).or_default() += 1;
        let finished: usize = tally.values().sum();
        let summary = tally.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
        match &bar {
            Some(b) => {
                b.set_position(finished as u64);
                b.set_message(summary);
            }
            None if !args.json => outln!("  [{finished}/{total}] {subject}: {status}"),
            None => {}
        }
        outcomes[i] = Some((line, subject, id, status));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let runs = engine.store().batch_runs(&batch.id).await?;
    let errors: BTreeMap<String, String> = {
        let mut m = BTreeMap::new();
        for r in runs.iter().filter(|r| matches!(r.status, RunStatus::Paused | RunStatus::Failed)) {
            let steps = engine.store().steps(&r.id).await?;
            if let Some(s) = steps.iter().find(|s| s.error.is_some()) {
                m.insert(r.id.clone(), format!("{}: {}", s.step_id, s.error.clone().unwrap_or_default()));
            }
        }
        m
    };
    let outcomes: Vec<_> = outcomes.into_iter().flatten().collect();
    if args.json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|(line, subject, id, status)| {
                serde_json::json!({ "line": line, "subject": subject, "run": id, "status": status, "error": errors.get(id) })
            })
            .collect();
        let batch = engine.store().batch(&batch.id).await?;
        outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "batch": batch, "runs": rows }))?);
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["line", "subject", "status", "run", "error"]);
        for (line, subject, id, status) in &outcomes {
            let error = errors.get(id).map(|e| crate::text::truncate(e, 100)).unwrap_or_default();
            table.add_row([line.to_string(), subject.clone(), status.clone(), id.clone(), error]);
        }
        outln!("{table}");
        let summary = tally.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
        outln!("batch {}: {summary}   (offramp runs list --batch {})", batch.id, batch.id);
    }
    let count = |s: &str| tally.get(s).copied().unwrap_or(0);
    Ok(if count("succeeded") == total {
        ExitCode::SUCCESS
    } else if count("succeeded") + count("paused") == total {
        ExitCode::from(EXIT_PAUSED)
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
