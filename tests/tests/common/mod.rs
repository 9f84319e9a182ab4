//! Shared harness: a mock SaaS, an engine on a temp SQLite database, pipelines from strings.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use offramp::engine::{Engine, EngineConfig, StartRequest};
use offramp::pipeline::{self, LoadOptions, Plan};
use offramp::sandbox::Sandbox;
use offramp::secrets::SecretSource;
use offramp::store::{RunStatus, SqliteStore, StepRecord, Store};
use offramp_mock::MockServer;

pub const TOKEN: &str = "okta-test-token-5f2c9a";

/// Every mock vendor's credential (Okta's is [`TOKEN`]).
pub fn tokens() -> offramp_mock::MockTokens {
    offramp_mock::MockTokens::from_seed(TOKEN)
}

/// Pipeline vars that point a vendor's plugin at the mock (each vendor keeps its real paths).
pub const VENDOR_VARS: &[&str] =
    &["okta_url", "google_url", "graph_url", "slack_url", "slack_scim_url", "github_url", "zoom_url", "atlassian_url"];

/// One sandbox per test binary: compiled plugins are shared between tests.
pub fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache");
            Arc::new(Sandbox::new(Some(cache)).expect("the sandbox starts"))
        })
        .clone()
}

/// The operator policy the tests run under: the mock SaaS is on loopback, which plugins may
/// only reach with the operator's word.
pub fn loopback() -> offramp::http::NetworkPolicy {
    offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).expect("a valid host")
}

pub struct Harness {
    pub engine: Engine,
    pub mock: MockServer,
    pub dir: tempfile::TempDir,
    pub db_url: String,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_config(EngineConfig { network: loopback(), ..EngineConfig::default() }).await
    }

    pub async fn with_config(config: EngineConfig) -> Harness {
        let mock = MockServer::start(TOKEN).await.expect("mock starts");
        Self::assemble(mock, SecretSource::fixed(tokens().secrets()), config).await
    }

    /// An engine on a fresh database, with this mock, these secrets and this config.
    pub async fn assemble(mock: MockServer, secrets: SecretSource, config: EngineConfig) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = format!("sqlite://{}", dir.path().join("offramp.db").display());
        let store = Arc::new(SqliteStore::open(&db_url).await.expect("sqlite opens"));
        let engine = Engine::new(store, sandbox(), secrets, config).expect("engine");
        Harness { engine, mock, dir, db_url }
    }

    /// Writes the pipeline into the temp dir and loads it with each vendor var it mentions
    /// (`okta_url`, `google_url`, ...) pointing at the mock.
    pub fn plan(&self, yaml: &str) -> Plan {
        self.plan_with(yaml, BTreeMap::new())
    }

    /// As [`Harness::plan`], with some vars overridden (e.g. a vendor on a server of its own).
    pub fn plan_with(&self, yaml: &str, overrides: BTreeMap<String, String>) -> Plan {
        let path = self.dir.path().join("pipeline.yaml");
        std::fs::write(&path, yaml).expect("write pipeline");
        let mut vars = BTreeMap::new();
        for var in VENDOR_VARS {
            if yaml.contains(var) {
                vars.insert(var.to_string(), self.mock.url());
            }
        }
        if yaml.contains("github_org") {
            vars.insert("github_org".to_string(), "acme".to_string());
        }
        if yaml.contains("atlassian_org") {
            vars.insert("atlassian_org".to_string(), offramp_mock::atlassian::SAMPLE_ORG_ID.to_string());
        }
        vars.extend(overrides);
        let opts = LoadOptions { plugins_dir: PathBuf::from(offramp::TEST_PLUGINS_DIR), vars, ..Default::default() };
        match pipeline::load(&path, &opts) {
            Ok(plan) => plan,
            Err(e) => panic!("pipeline should be valid:\n{e}"),
        }
    }

    pub async fn start(&self, yaml: &str, inputs: &[(&str, &str)]) -> String {
        let plan = self.plan(yaml);
        let inputs = inputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.engine
            .start(&plan, StartRequest { inputs, requested_by: "test".into(), dry_run: false })
            .await
            .expect("run starts")
    }

    /// Starts and drives a run of an already loaded plan.
    pub async fn run_plan(&self, plan: &Plan, inputs: &[(&str, &str)]) -> (String, RunStatus) {
        let inputs = inputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let id = self
            .engine
            .start(plan, StartRequest { inputs, requested_by: "test".into(), dry_run: false })
            .await
            .expect("run starts");
        let status = self.engine.drive(&id).await.expect("drive");
        (id, status)
    }

    /// Starts and drives a run; returns its id and final status.
    pub async fn run(&self, yaml: &str, inputs: &[(&str, &str)]) -> (String, RunStatus) {
        let id = self.start(yaml, inputs).await;
        let status = self.engine.drive(&id).await.expect("drive");
        (id, status)
    }

    pub async fn steps(&self, run_id: &str) -> HashMap<String, StepRecord> {
        self.store().steps(run_id).await.expect("steps").into_iter().map(|s| (s.step_id.clone(), s)).collect()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }
}

/// How many of a step's recorded requests the host sent again after waiting out the vendor's
/// rate limit (a 429 is a wait in the host, not a failed attempt).
pub fn rate_limit_waits(step: &StepRecord) -> usize {
    step.requests
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| {
                    r["outcome"].as_str().is_some_and(|o| o.ends_with("(after waiting out the vendor's rate limit)"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The `allow:` line for the mock.
pub fn allow_mock() -> &'static str {
    "allow: [\"{{ vars.okta_url }}\"]"
}
