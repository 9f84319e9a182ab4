//! Store write throughput: step transitions per second on SQLite and PostgreSQL.
//!
//! `cargo bench -p offramp --bench store_writes`
//! (PostgreSQL too with `OFFRAMP_TEST_DATABASE_URL=postgres://…`; it works in a schema of its own,
//! dropped after.)
//!
//! Each run has 10 steps; each step makes the three transitions the engine writes for a
//! successful attempt (claim → attempt recorded → finished, each a conditional UPDATE plus an
//! event in one transaction, fenced by the run's lease as the engine's writes are). N concurrent
//! writers each drive their own runs.

use std::sync::Arc;
use std::time::Instant;

use offramp::store::{Event, Guard, Lease, NewRun, PgStore, SqliteStore, StepChange, StepStatus, Store};
use serde_json::json;

const RUNS_PER_WRITER: usize = 20;
const STEPS: usize = 10;

async fn bench(name: &'static str, store: Arc<dyn Store>, writers: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let ev = |k: &str| Event::new("bench", k, json!({}));
            for r in 0..RUNS_PER_WRITER {
                let id = format!("{name}-{writers}-{w}-{r}");
                let steps: Vec<(String, String)> = (0..STEPS).map(|s| (format!("s{s}"), format!("k{s}"))).collect();
                let run = NewRun {
                    id: id.clone(),
                    pipeline_name: "bench".into(),
                    pipeline_hash: "h".into(),
                    plan: json!({}),
                    subject: "alice@example.com".into(),
                    inputs: json!({}),
                    requested_by: "bench".into(),
                    dry_run: false,
                    steps,
                    lease: Lease { owner: "bench".into(), until_ms: i64::MAX },
                    batch_id: None,
                };
                store.create_run(&run, ev("run_created")).await?;
                for s in 0..STEPS {
                    let step = format!("s{s}");
                    let claim = StepChange { status: Some(StepStatus::Running), started: true, ..Default::default() };
                    store
                        .change_step(
                            &id,
                            &step,
                            &[StepStatus::Pending],
                            Some(Guard::Attempt(0)),
                            Some("bench"),
                            claim,
                            ev("step_started"),
                        )
                        .await?;
                    let attempt = StepChange { attempts: Some(1), ..Default::default() };
                    store
                        .change_step(
                            &id,
                            &step,
                            &[StepStatus::Running],
                            None,
                            Some("bench"),
                            attempt,
                            ev("attempt_started"),
                        )
                        .await?;
                    let done = StepChange {
                        status: Some(StepStatus::Succeeded),
                        output: Some(json!({ "id": "00u1", "status": "SUSPENDED" })),
                        log: Some(vec!["ok".into()]),
                        requests: Some(json!([{ "method": "POST", "status": 200 }])),
                        finished: true,
                        ..Default::default()
                    };
                    store
                        .change_step(&id, &step, &[StepStatus::Running], None, Some("bench"), done, ev("step_finished"))
                        .await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let transitions = writers * RUNS_PER_WRITER * STEPS * 3;
    println!("{name:<9} {writers:>7} {transitions:>11} {secs:>8.2} {:>12.0}", transitions as f64 / secs);
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    println!("{:<9} {:>7} {:>11} {:>8} {:>12}", "store", "writers", "transitions", "seconds", "per second");
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await?);
    for writers in [1, 4, 16] {
        bench("sqlite", sqlite.clone(), writers).await?;
    }
    match std::env::var("OFFRAMP_TEST_DATABASE_URL") {
        Ok(url) => {
            let schema = format!("bench_{}", std::process::id());
            let pg: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&url, &schema).await?);
            let result = async {
                for writers in [1, 4, 16] {
                    bench("postgres", pg.clone(), writers).await?;
                }
                Ok::<_, anyhow::Error>(())
            }
            .await;
            drop(pg);
            PgStore::drop_schema(&url, &schema).await?;
            result?;
        }
        Err(_) => println!("postgres  skipped (set OFFRAMP_TEST_DATABASE_URL=postgres://…)"),
    }
    Ok(())
}
