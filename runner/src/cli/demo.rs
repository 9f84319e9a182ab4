//! `offramp demo`: the offboarding pipeline against a mock Okta on loopback, with an
//! in-memory database and a made-up API token, so it runs anywhere with no credentials.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::engine::{Engine, EngineConfig, StartRequest};
use crate::mock::{Fault, MockServer};
use crate::pipeline::{self, LoadOptions};
use crate::sandbox::Sandbox;
use crate::secrets::SecretSource;
use crate::store::SqliteStore;

const DEMO_TOKEN: &str = "demo-okta-token-not-a-real-secret";

/// The repository's pipelines folder (the demo runs from a checkout).
fn default_pipeline() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("pipelines").join("offboarding.yaml")
}

pub(crate) async fn run(pipeline: Option<PathBuf>, cache_dir: Option<PathBuf>) -> Result<ExitCode> {
    let mock = MockServer::start(DEMO_TOKEN).await.context("starting the mock Okta")?;
    println!("offramp demo");
    println!("  mock Okta      {} (users: alice@example.com active, bob suspended, carol deprovisioned)", mock.url());
    // One injected transient failure: the first suspend answers 503; the step's retry absorbs it.
    mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/lifecycle/suspend".into(),
        status: 503,
        times: 1,
        delay_ms: 0,
    });
    println!("  injected fault the first POST …/lifecycle/suspend answers 503 (retried)");
    println!("  database       sqlite in memory");

    let path = pipeline.unwrap_or_else(default_pipeline);
    let path = path.canonicalize().unwrap_or(path);
    let opts = LoadOptions {
        plugins_dir: PathBuf::from(crate::BUILTIN_PLUGINS_DIR),
        vars: [("okta_url".to_string(), mock.url())].into_iter().collect(),
    };
    let plan = pipeline::load(&path, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("  pipeline       {} ({} steps) from {}\n", plan.name, plan.steps.len(), path.display());

    let store = Arc::new(SqliteStore::open("sqlite::memory:").await?);
    let sandbox = Arc::new(Sandbox::new(cache_dir)?);
    let secrets = SecretSource::fixed([("OKTA_API_TOKEN".to_string(), DEMO_TOKEN.to_string())]);
    let engine = Engine::new(store, sandbox, secrets, EngineConfig::default())?;
    let inputs = [("email".to_string(), "alice@example.com".to_string())].into_iter().collect();
    let run_id = engine.start(&plan, StartRequest { inputs, requested_by: "demo".into(), dry_run: false }).await?;
    println!("run {run_id}: offboarding alice@example.com\n");
    let code = super::drive_and_report(&engine, &run_id, plan.steps.len(), false).await?;

    println!("\nWhat the mock Okta saw (the API token was injected by the host; the plugins never had it):");
    for r in mock.state.requests() {
        let auth = match r.authorization.as_deref() {
            Some(a) if a == format!("SSWS {DEMO_TOKEN}") => "SSWS [token]",
            Some(_) => "other credential",
            None => "no credential",
        };
        println!(
            "  {:<6} {:<52} → {}  ({auth})",
            r.method,
            format!("{}{}", r.path, r.query.map(|q| format!("?{q}")).unwrap_or_default()),
            r.status
        );
    }
    if let Some(alice) = mock.state.okta.user("alice@example.com") {
        println!("\nalice@example.com in Okta is now {}, in {} group(s).", alice.status, alice.groups.len());
    }
    Ok(code)
}
