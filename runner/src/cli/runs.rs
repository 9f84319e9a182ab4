//! `offramp run | runs | resume | recover`: starting a run, watching it, showing runs, and
//! picking up paused or interrupted ones.
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::out::{err, errln, outln};
use super::{
    EXIT_FAILED, EXIT_INVALID, EXIT_PAUSED, Global, ResumeArgs, RunArgs, RunsCommand, engine, engine_with,
    load_options, report, sandbox, whoami,
};
use crate::engine::{Decision, DecisionOutcome, Engine, StartRequest};
use crate::pipeline;
use crate::store::{self, RunStatus, StepStatus};

pub(super) async fn run(g: &Global, args: RunArgs) -> Result<ExitCode> {
    let opts = load_options(g, args.vars)?;
    let sandbox = sandbox(g)?;
    let plan = match pipeline::load_checked(&args.pipeline, &opts, &sandbox).await {
        Ok(plan) => plan,
        Err(e) => {
            err!("{e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let engine = engine_with(g, sandbox).await?;
    let inputs: BTreeMap<String, String> = args.inputs.into_iter().collect();
    if let Some(file) = &args.inputs_file {
        let batch = super::batch::BatchArgs {
            file,
            defaults: inputs,
            requested_by: args.requested_by.unwrap_or_else(whoami),
            dry_run: args.dry_run,
            concurrency: usize::from(args.concurrency),
            json: args.json,
        };
        return super::batch::run(&engine, &plan, batch).await;
    }
    let req = StartRequest { inputs, requested_by: args.requested_by.unwrap_or_else(whoami), dry_run: args.dry_run };
    let run_id = match engine.start(&plan, req).await {
        Ok(id) => id,
        Err(crate::engine::EngineError::Inputs(errors)) => {
            for e in errors {
                errln!("error: {e}");
            }
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(e) => return Err(e.into()),
    };
    if !args.json {
        outln!(
            "run {run_id}: {} for {}{}",
            plan.name,
            engine.store().run(&run_id).await?.subject,
            if args.dry_run { " (dry run)" } else { "" }
        );
    }
    drive_and_report(&engine, &run_id, plan.steps.len(), args.json).await
}

/// Drives a run with live progress, prints the results, and maps its status to an exit code.
pub(crate) async fn drive_and_report(engine: &Engine, run_id: &str, steps: usize, json: bool) -> Result<ExitCode> {
    let watcher = (!json).then(|| watch(engine, steps));
    let status = engine.drive(run_id).await?;
    if let Some(w) = watcher {
        w.abort();
        let _ = w.await;
    }
    print_run(engine.store().as_ref(), run_id, json, false).await?;
    Ok(exit_for(engine, run_id, status).await)
}

/// Prints progress lines (and a bar on a terminal) until aborted.
fn watch(engine: &Engine, steps: usize) -> tokio::task::JoinHandle<()> {
    let mut rx = engine.progress().subscribe();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(steps as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {bar:30} {pos}/{len} steps") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    tokio::spawn(async move {
        let mut done = 0u64;
        let finish = |bar: &Option<indicatif::ProgressBar>| {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        };
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if let crate::engine::ProgressEvent::Step { status, .. } = &event
                        && status.is_finished()
                    {
                        done += 1;
                        if let Some(b) = &bar {
                            b.set_position(done);
                        }
                    }
                    if let Some(line) = report::progress_line(&event) {
                        match &bar {
                            Some(b) => b.println(format!("  {line}")),
                            None => outln!("  {line}"),
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        finish(&bar);
    })
}

async fn exit_for(engine: &Engine, run_id: &str, status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Paused => {
            let paused: Vec<String> = engine
                .store()
                .steps(run_id)
                .await
                .map(|s| s.into_iter().filter(|s| s.status == StepStatus::Paused).map(|s| s.step_id).collect())
                .unwrap_or_default();
            errln!("\nThe run is paused at {}. Decide with one of:", paused.join(", "));
            let step = if paused.len() > 1 { format!(" --step {}", paused[0]) } else { String::new() };
            for d in ["--retry", "--skip", "--abort"] {
                errln!("  offramp resume {run_id} {d}{step}");
            }
            ExitCode::from(EXIT_PAUSED)
        }
        _ => ExitCode::from(EXIT_FAILED),
    }
}

pub(super) async fn print_run(store: &dyn store::Store, run_id: &str, json: bool, events: bool) -> Result<()> {
    let run = store.run(run_id).await?;
    let steps = store.steps(run_id).await?;
    if json {
        let mut v = serde_json::json!({ "run": run, "steps": steps });
        if events {
            v["events"] = serde_json::to_value(store.events(run_id).await?)?;
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("\n{}", report::run_header(&run));
    if let Some(lease) = &run.lease {
        let left = lease.until_ms - store::now_ms();
        if left >= 0 {
            outln!("driven by {} (lease renewed for another {:.1}s)", lease.owner, left as f64 / 1000.0);
        } else {
            outln!(
                "was driven by {}, whose lease ran out {:.1}s ago: `offramp recover` (or a server) takes it over",
                lease.owner,
                -left as f64 / 1000.0
            );
        }
    }
    outln!("{}", report::steps_table(&steps));
    outln!("\n{}", report::capabilities(&run, &steps));
    if run.dry_run {
        outln!("\n{}", report::dry_run_plan(&steps));
    }
    if events {
        outln!("\nevents:");
        for e in store.events(run_id).await? {
            outln!("  {}  {:<14} {:<16} {:<16} {}", e.at, e.actor, e.kind, e.step_id.unwrap_or_default(), e.detail);
        }
    }
    Ok(())
}

pub(super) async fn runs(g: &Global, cmd: RunsCommand) -> Result<ExitCode> {
    let store = store::open(&g.database_url).await.context("opening the results database")?;
    match cmd {
        RunsCommand::List { limit, batch, json } => {
            let runs = match &batch {
                Some(id) => {
                    let b = match store.batch(id).await {
                        Ok(b) => b,
                        Err(store::StoreError::NotFound(_)) => {
                            bail!("no batch {id} in {}", redact_url(&g.database_url))
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if !json {
                        outln!(
                            "batch {}: {} runs of {}, requested by {}{}, created {}",
                            b.id,
                            b.size,
                            b.pipeline_name,
                            b.requested_by,
                            b.approved_by.map(|a| format!(", approved by {a}")).unwrap_or_default(),
                            b.created_at
                        );
                    }
                    store.batch_runs(id).await?
                }
                None => store.runs(limit).await?,
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                outln!("no runs yet");
            } else {
                outln!("{}", report::runs_table(&runs));
            }
        }
        RunsCommand::Show { run_id, json, events } => match print_run(store.as_ref(), &run_id, json, events).await {
            Err(e) if matches!(e.downcast_ref::<store::StoreError>(), Some(store::StoreError::NotFound(_))) => {
                bail!("no run {run_id} in {}", redact_url(&g.database_url))
            }
            other => other?,
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub(super) async fn resume(g: &Global, args: ResumeArgs) -> Result<ExitCode> {
    let engine = engine(g).await?;
    let run = match engine.store().run(&args.run_id).await {
        Ok(r) => r,
        Err(store::StoreError::NotFound(_)) => bail!("no run {} in {}", args.run_id, redact_url(&g.database_url)),
        Err(e) => return Err(e.into()),
    };
    let decision = if args.retry {
        Decision::Retry
    } else if args.skip {
        Decision::Skip
    } else {
        Decision::Abort
    };
    let steps = engine.store().steps(&run.id).await?;
    let paused: Vec<&str> =
        steps.iter().filter(|s| s.status == StepStatus::Paused).map(|s| s.step_id.as_str()).collect();
    let step = match (&args.step, paused.as_slice()) {
        (Some(s), _) => s.clone(),
        (None, [one]) => (*one).to_string(),
        (None, []) => {
            if run.status.is_finished() {
                bail!("run {} is already {}: nothing to resume", run.id, run.status);
            }
            // Interrupted while running (the process died): pick it up where it was.
            errln!("run {} has no paused step; continuing it", run.id);
            return drive_and_report(&engine, &run.id, steps.len(), args.json).await;
        }
        (None, many) => bail!("several steps are paused ({}): say which with --step", many.join(", ")),
    };
    let actor = args.actor.unwrap_or_else(whoami);
    match engine.decide(&run.id, &step, None, decision, &actor).await? {
        DecisionOutcome::Applied => {
            if !args.json {
                outln!("{step}: {decision} (decided by {actor})");
            }
        }
        DecisionOutcome::AlreadyHandled { by, status } => {
            errln!(
                "{step} is no longer paused (it is {status}){}: nothing to do",
                by.map(|b| format!("; last decided by {b}")).unwrap_or_default()
            );
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    }
    drive_and_report(&engine, &run.id, steps.len(), args.json).await
}

pub(super) async fn recover(g: &Global, json: bool) -> Result<ExitCode> {
    let engine = engine(g).await?;
    let claimed = engine.claim_orphans(u32::MAX).await?;
    if claimed.is_empty() {
        if !json {
            outln!("no run was left in flight (runs another live process drives are left to it)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut worst = ExitCode::SUCCESS;
    for claim in claimed {
        let run = engine.store().run(&claim.run_id).await?;
        if !json {
            let from = claim.previous_owner.map(|o| format!(", left by {o}")).unwrap_or_default();
            outln!("run {}: {} for {} ({} when it stopped{from})", run.id, run.pipeline_name, run.subject, run.status);
        }
        let steps = engine.store().steps(&run.id).await?.len();
        let code = drive_and_report(&engine, &run.id, steps, json).await?;
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    Ok(worst)
}
