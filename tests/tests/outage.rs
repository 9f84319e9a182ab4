//! The database goes away mid-run: offramp talks to PostgreSQL through a TCP proxy the test
//! cuts (connections dropped, then connection refused) while a step is running. Meanwhile
//! `/healthz` says 503 and the engine waits with backoff; when the proxy is back the run
//! finishes, each step executed exactly once and each recorded once.
//!
//! Needs `OFFRAMP_TEST_DATABASE_URL` (CI sets it); without it the test says it was skipped.

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::sandbox;
use offramp::engine::{Engine, EngineConfig, StartRequest};
use offramp::pipeline::LoadOptions;
use offramp::secrets::{Secret, SecretSource};
use offramp::slack::{self, AppState, ServeConfig, SlackApiConfig};
use offramp::store::{PgStore, RunStatus, StepStatus, Store};
use offramp_mock::MockServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// A TCP proxy to the database that can be cut and restored on the same port.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy { port, upstream, tasks: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                if let Ok(mut t) = tasks.lock() {
                    t.push(conn);
                }
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection and stops listening: the database is gone.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port: the database is back.
    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

/// A schema dropped when the test ends, however it ends (on a thread of its own: the test's
/// runtime may be unwinding).
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(PgStore::drop_schema(&url, &name));
            }
        })
        .join();
    }
}

const STEPS: [&str; 3] = ["suspend", "groups", "deactivate"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_run_loses_and_repeats_nothing() {
    let Ok(url) = std::env::var("OFFRAMP_TEST_DATABASE_URL") else {
        eprintln!("skipped: needs OFFRAMP_TEST_DATABASE_URL=postgres://USER@HOST/DB");
        return;
    };
    // postgres://user@host:port/db → host:port, and the same URL through the proxy.
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let hostport = rest.split('/').next().unwrap().rsplit('@').next().unwrap();
    let upstream = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5432") };
    let proxy = Proxy::start(upstream.clone()).await;
    let proxied = url.replacen(hostport, &format!("127.0.0.1:{}", proxy.port), 1);
    let schema = format!("outage_{}", std::process::id());
    let store: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&proxied, &schema).await.unwrap());
    let _cleanup = Schema { url: url.clone(), name: schema.clone() };
    // The test's own view of the database, not through the proxy.
    let direct = PgStore::open_in_schema(&url, &schema).await.unwrap();

    let mock = MockServer::start(common::TOKEN).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("version: 1\nname: outage\nvars: { okta_url: \"http://127.0.0.1:9\" }\nsteps:\n");
    let mut needs = String::new();
    for id in STEPS {
        yaml += &format!(
            "  - id: {id}\n    uses: http\n{needs}    with:\n      method: POST\n      url: \"{{{{ vars.okta_url }}}}/__echo/{id}?delay_ms=800\"\n    allow: [\"{{{{ vars.okta_url }}}}\"]\n"
        );
        needs = format!("    needs: [{id}]\n");
    }
    std::fs::write(dir.path().join("outage.yaml"), &yaml).unwrap();
    let load = LoadOptions {
        plugins_dir: PathBuf::from(offramp::BUILTIN_PLUGINS_DIR),
        vars: [("okta_url".to_string(), mock.url())].into_iter().collect(),
        allow_cap: None,
        contracts: Default::default(),
    };
    let plan = offramp::pipeline::load(&dir.path().join("outage.yaml"), &load).unwrap();
    let engine = Engine::new(
        store.clone(),
        sandbox(),
        SecretSource::fixed([]),
        EngineConfig { network: common::loopback(), ..EngineConfig::default() },
    )
    .unwrap();
    let config = ServeConfig {
        signing_secret: Secret::new("signing"),
        bot_token: Secret::new("xoxb-mock-token"),
        api_token: None,
        slack: SlackApiConfig {
            base_url: format!("{}/slack/api", mock.url()),
            channel_rate: NonZeroU32::new(50).unwrap(),
            ..SlackApiConfig::default()
        },
        channel: "C0OFFRAMP".into(),
        command: "/offboard".into(),
        pipelines_dir: dir.path().to_path_buf(),
        default_pipeline: "outage".into(),
        load,
        ack_budget: Duration::from_millis(2500),
        pause_reminder: Duration::from_secs(4 * 3600),
    };
    let app = slack::app(AppState::new(config, engine.clone()).await.unwrap());
    let health = || async {
        let req = Request::get("/healthz").body(Body::empty()).unwrap();
        app.clone().oneshot(req).await.unwrap().status()
    };
    assert_eq!(health().await, StatusCode::OK);

    let req = StartRequest { inputs: Default::default(), requested_by: "test".into(), dry_run: false };
    let id = engine.start(&plan, req).await.unwrap();
    let driver = {
        let (engine, id) = (engine.clone(), id.clone());
        tokio::spawn(async move { engine.drive(&id).await })
    };
    // Cut the database while `groups` is running (its request is being held by the mock).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let steps = direct.steps(&id).await.unwrap();
        if steps[1].status == StepStatus::Running {
            break;
        }
        assert!(Instant::now() < deadline, "groups never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.cut();
    assert_eq!(health().await, StatusCode::SERVICE_UNAVAILABLE, "unhealthy while the database is away");
    // Well past the step's own time (it ran, but its outcome cannot be written yet), and past
    // the pool's own wait for a connection (3 s): the engine's backoff carries it from there.
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    let steps = direct.steps(&id).await.unwrap();
    assert_eq!(steps[1].status, StepStatus::Running, "nothing recorded during the outage");
    assert_eq!(steps[2].status, StepStatus::Pending, "and nothing new started");
    assert!(!driver.is_finished(), "the engine is waiting, not failing");
    assert_eq!(health().await, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore().await;
    let status = tokio::time::timeout(Duration::from_secs(60), driver).await.unwrap().unwrap().unwrap();
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(health().await, StatusCode::OK, "healthy again");

    let log = mock.state.requests();
    let events = direct.events(&id).await.unwrap();
    let mut finished: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "step_finished") {
        *finished.entry(e.step_id.clone().unwrap_or_default()).or_default() += 1;
    }
    for (s, step) in STEPS.iter().zip(direct.steps(&id).await.unwrap()) {
        let hits = log.iter().filter(|r| r.path == format!("/__echo/{s}")).count();
        assert_eq!(hits, 1, "`{s}` executed exactly once");
        assert_eq!((step.status, step.attempts), (StepStatus::Succeeded, 1), "{s}");
        assert_eq!(finished.get(*s), Some(&1), "`{s}` recorded exactly once");
    }
    drop(direct);
}
