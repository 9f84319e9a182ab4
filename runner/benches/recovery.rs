//! Recovery time after a kill with 1,000 runs in flight.
//!
//! `cargo bench -p offramp --bench recovery`
//! (PostgreSQL too with `OFFRAMP_TEST_DATABASE_URL=postgres://…`, in a schema of its own.)
//!
//! 1,000 runs of a three-step pipeline are left as a SIGKILLed process leaves them: step one
//! finished, step two `running` (attempt 1), step three pending, the run `running`, leased to
//! the dead process with the lease run out. Then a fresh engine does what `offramp serve` does
//! at start: claims them in batches of 100 and drives each. Reported: the time until every run
//! is claimed, and until every run has finished.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use offramp::engine::{Engine, EngineConfig, StartRequest};
use offramp::pipeline::LoadOptions;
use offramp::sandbox::Sandbox;
use offramp::secrets::SecretSource;
use offramp::store::{Event, Guard, PgStore, RunStatus, SqliteStore, StepChange, StepStatus, Store};
use serde_json::json;

const RUNS: usize = 1_000;

const PIPELINE: &str = r#"version: 1
name: recovery
steps:
  - id: one
    uses: testkit
    with: { mode: echo, value: 1 }
  - id: two
    needs: [one]
    uses: testkit
    with: { mode: echo, value: 2 }
  - id: three
    needs: [two]
    uses: testkit
    with: { mode: noop }
"#;

async fn bench(name: &str, store: Arc<dyn Store>, sandbox: Arc<Sandbox>, dir: &std::path::Path) -> anyhow::Result<()> {
    let path = dir.join("recovery.yaml");
    std::fs::write(&path, PIPELINE)?;
    let opts = LoadOptions {
        plugins_dir: PathBuf::from(offramp::TEST_PLUGINS_DIR),
        vars: Default::default(),
        allow_cap: None,
        contracts: Default::default(),
    };
    let plan = offramp::pipeline::load(&path, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;

    // The process that dies: a lease of 1 ms, so it has run out by the time anyone looks.
    let dead = EngineConfig {
        owner: "dead:1:x".into(),
        lease: Duration::from_millis(1),
        network: offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).unwrap(),
        ..Default::default()
    };
    let dying = Engine::new(store.clone(), sandbox.clone(), SecretSource::fixed([]), dead)?;
    let ev = |k: &str| Event::new("engine", k, json!({}));
    let mut ids = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let req = StartRequest { inputs: Default::default(), requested_by: "bench".into(), dry_run: false };
        let id = dying.start(&plan, req).await?;
        store.set_run_status(&id, &[], RunStatus::Running, None, ev("run_started")).await?;
        let done = StepChange {
            status: Some(StepStatus::Succeeded),
            attempts: Some(1),
            output: Some(json!({ "value": 1 })),
            finished: true,
            ..Default::default()
        };
        store.change_step(&id, "one", &[], None, None, done, ev("step_finished")).await?;
        let running =
            StepChange { status: Some(StepStatus::Running), attempts: Some(1), started: true, ..Default::default() };
        store.change_step(&id, "two", &[], Some(Guard::Attempt(0)), None, running, ev("step_started")).await?;
        ids.push(id);
    }
    drop(dying);
    tokio::time::sleep(Duration::from_millis(5)).await;

    // The restarted process.
    let engine = Engine::new(
        store.clone(),
        sandbox,
        SecretSource::fixed([]),
        EngineConfig {
            network: offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).unwrap(),
            ..EngineConfig::default()
        },
    )?;
    let started = Instant::now();
    let mut drives = tokio::task::JoinSet::new();
    let mut claimed = 0;
    loop {
        let batch = engine.claim_orphans(100).await?;
        claimed += batch.len();
        for c in &batch {
            let (engine, id) = (engine.clone(), c.run_id.clone());
            drives.spawn(async move { engine.drive(&id).await });
        }
        if batch.len() < 100 {
            break;
        }
    }
    let all_claimed = started.elapsed();
    let mut succeeded = 0;
    while let Some(done) = drives.join_next().await {
        if done?? == RunStatus::Succeeded {
            succeeded += 1;
        }
    }
    let all_done = started.elapsed();
    anyhow::ensure!(claimed == RUNS && succeeded == RUNS, "{name}: claimed {claimed}, succeeded {succeeded}");
    for id in ids.iter().take(20) {
        let steps = store.steps(id).await?;
        anyhow::ensure!(steps[0].attempts == 1 && steps[1].attempts == 2, "{name}: finished step re-run?");
    }
    println!(
        "{name:<9} {RUNS:>6} {:>12.0} {:>12.0} {:>14.0}",
        all_claimed.as_secs_f64() * 1000.0,
        all_done.as_secs_f64() * 1000.0,
        RUNS as f64 / all_done.as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sandbox = Arc::new(Sandbox::new(Sandbox::default_cache_dir())?);
    println!("{:<9} {:>6} {:>12} {:>12} {:>14}", "store", "runs", "claimed ms", "finished ms", "runs/s");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await?);
    bench("sqlite", sqlite, sandbox.clone(), dir.path()).await?;
    match std::env::var("OFFRAMP_TEST_DATABASE_URL") {
        Ok(url) => {
            let schema = format!("recovery_{}", std::process::id());
            let pg: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&url, &schema).await?);
            let result = bench("postgres", pg.clone(), sandbox, dir.path()).await;
            drop(pg);
            PgStore::drop_schema(&url, &schema).await?;
            result?;
        }
        Err(_) => println!("postgres  skipped (set OFFRAMP_TEST_DATABASE_URL=postgres://…)"),
    }
    Ok(())
}
