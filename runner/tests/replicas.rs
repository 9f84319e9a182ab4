//! Two `offramp serve` replicas on one PostgreSQL database: they split the runs nobody drives
//! (`FOR UPDATE SKIP LOCKED`), one is SIGKILLed mid-run, and the other takes its runs over
//! once the lease runs out and finishes them. Checked against the mock's request log: no step
//! finished before the kill ran again.
//!
//! Also: two replicas driving batches against one vendor share its rate limit (each takes half).
//!
//! Needs `OFFRAMP_TEST_DATABASE_URL` (CI sets it); without it the tests say they were skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offramp::engine::{Engine, EngineConfig, StartRequest};
use offramp::pipeline::LoadOptions;
use offramp::store::{PgStore, RunStatus, StepStatus, Store};
use offramp_mock::MockServer;

const RUNS: usize = 6;
const STEPS: [&str; 4] = ["find", "suspend", "groups", "deactivate"];
const LEASE: &str = "1s";

fn pipeline(dir: &Path) {
    let mut yaml = String::from(
        "version: 1\nname: replicas\nvars: { base: \"http://127.0.0.1:9\" }\ninputs: { email: { type: email, required: true } }\nsteps:\n",
    );
    let mut needs = String::new();
    for id in STEPS {
        yaml += &format!(
            "  - id: {id}\n    uses: http\n{needs}    with:\n      method: POST\n      url: \"{{{{ vars.base }}}}/__echo/{{{{ run.id }}}}/{id}?delay_ms=300\"\n    allow: [\"{{{{ vars.base }}}}\"]\n"
        );
        needs = format!("    needs: [{id}]\n");
    }
    std::fs::write(dir.join("replicas.yaml"), yaml).unwrap();
}

/// A child process killed when the test ends, however it ends (a failed assertion included).
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A schema dropped when the test ends, however it ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            let _ = rt.block_on(PgStore::drop_schema(&self.url, &self.name));
        }
    }
}

/// A runtime, a fresh schema of the test database (dropped with the returned guard), the store
/// on it and the URL replicas open it by; `None` (the test says it was skipped) without
/// `OFFRAMP_TEST_DATABASE_URL`.
fn database(prefix: &str) -> Option<(tokio::runtime::Runtime, Arc<dyn Store>, String, Schema)> {
    let Ok(url) = std::env::var("OFFRAMP_TEST_DATABASE_URL") else {
        eprintln!("skipped: needs OFFRAMP_TEST_DATABASE_URL=postgres://USER@HOST/DB");
        return None;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let schema = format!("{prefix}_{}", std::process::id());
    let store: Arc<dyn Store> = Arc::new(rt.block_on(PgStore::open_in_schema(&url, &schema)).unwrap());
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = format!("{url}{sep}options[search_path]={schema}");
    Some((rt, store, db, Schema { url, name: schema }))
}

fn replica(db: &str, dir: &Path, mock: &str, name: &str) -> (Replica, String) {
    let (replica, owner, _) = replica_with(db, dir, mock, name, &[]);
    (replica, owner)
}

/// A replica with more arguments; also returns the address it listens on.
fn replica_with(db: &str, dir: &Path, mock: &str, name: &str, extra: &[&str]) -> (Replica, String, String) {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_offramp"))
        .args(extra)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--channel", "C0OFFRAMP"])
        .args(["--pipelines-dir", &dir.display().to_string(), "--default-pipeline", "replicas"])
        .args(["--var", &format!("base={mock}"), "--slack-api-url", &format!("{mock}/slack/api")])
        .env("DATABASE_URL", db)
        .env("OFFRAMP_ALLOW_PRIVATE", "127.0.0.1")
        .env("OFFRAMP_LEASE", LEASE)
        .env("SLACK_SIGNING_SECRET", "test-signing-secret")
        .env("SLACK_BOT_TOKEN", "xoxb-mock-token")
        .env("OFFRAMP_API_TOKEN", API_TOKEN)
        .env("OFFRAMP_CACHE_DIR", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache"))
        .env_remove("OFFRAMP_PLUGINS_DIR")
        .env_remove("OFFRAMP_SECRETS_FILE")
        .current_dir(dir)
        .env("OFFRAMP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    (Replica(child), format!(":{pid}:"), format!("127.0.0.1:{port}"))
}

const API_TOKEN: &str = "replica-api-token";

/// One HTTP/1.1 request over a plain connection; the status code and body, or `None` if the
/// server is not answering (yet).
fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

/// Two replicas each drive a batch against one vendor whose operator limit is 300 requests a
/// minute: together they keep to it (about 5 a second), where each alone would take it all
/// (10 a second between them). Every step still runs exactly once.
#[test]
fn two_replicas_share_a_vendors_rate_limit() {
    let Some((rt, store, db, _cleanup)) = database("share") else { return };
    const PER_MINUTE: u32 = 300;
    const RUNS_EACH: usize = 12;
    let mock = rt.block_on(MockServer::start("unused")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path());
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("offramp.yaml");
    std::fs::write(
        &config,
        format!(
            "network: {{ rate_limits: {{ \"{}\": {{ per_minute: {PER_MINUTE} }} }} }}\nbatches: {{ two_person_over: 100 }}\n",
            mock.url()
        ),
    )
    .unwrap();
    let extra = ["--config", config.to_str().unwrap()];
    let (_a, _, a_addr) = replica_with(&db, dir.path(), &mock.url(), "a", &extra);
    let (_b, _, b_addr) = replica_with(&db, dir.path(), &mock.url(), "b", &extra);
    let logs = || {
        let read = |n: &str| std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default();
        format!("--- replica A ---\n{}\n--- replica B ---\n{}", read("a"), read("b"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in [&a_addr, &b_addr] {
        while http(addr, "GET", "/healthz", "").is_none_or(|(s, _)| s != 200) {
            assert!(Instant::now() < deadline, "{addr} did not come up\n{}", logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut batches = Vec::new();
    for (addr, who) in [(&a_addr, "a"), (&b_addr, "b")] {
        let runs: Vec<String> = (0..RUNS_EACH).map(|i| format!("{{\"email\":\"{who}{i}@example.com\"}}")).collect();
        let body = format!("{{\"requested_by\":\"hr\",\"runs\":[{}]}}", runs.join(","));
        let (status, reply) = http(addr, "POST", "/api/runs", &body).expect("the replica answers");
        assert_eq!(status, 201, "{reply}\n{}", logs());
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        batches.push(v["batch"].as_str().unwrap().to_string());
    }
    let echoes = || mock.state.requests().iter().filter(|r| r.path.starts_with("/__echo/")).count();
    // Past the start (each replica counts the other at its next heartbeat), over six seconds.
    std::thread::sleep(Duration::from_secs(3));
    let (n0, t0) = (echoes(), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (n1, t1) = (echoes(), Instant::now());
    let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    let limit = f64::from(PER_MINUTE) / 60.0;
    eprintln!("two replicas together: {rate:.1} requests/s, the operator's limit {limit:.1}/s");
    assert!(
        rate <= limit * 1.3 && rate >= limit * 0.6,
        "{rate:.1} requests/s against a shared limit of {limit:.1}/s (unshared, two replicas would make {:.1}/s)\n{}",
        limit * 2.0,
        logs()
    );
    // Both were driving their own batch all along.
    let counted = |n: &str| {
        std::fs::read_to_string(dir.path().join(format!("{n}.log")))
            .unwrap_or_default()
            .contains("vendor rate limits shared with the processes driving runs")
    };
    assert!(counted("a") && counted("b"), "each replica counted the other\n{}", logs());

    let deadline = Instant::now() + Duration::from_secs(90);
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for b in &batches {
            ids.extend(store.batch_runs(b).await.unwrap().into_iter().map(|r| r.id));
        }
        ids
    });
    assert_eq!(ids.len(), 2 * RUNS_EACH);
    let done = loop {
        let all = rt.block_on(futures_runs(&store, &ids));
        if all.iter().all(|(_, r, _)| r.status.is_finished()) {
            break all;
        }
        assert!(Instant::now() < deadline, "not every run finished\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = mock.state.requests();
    for (id, run, steps) in &done {
        assert_eq!(run.status, RunStatus::Succeeded, "{id}");
        for s in steps {
            let sent = log.iter().filter(|r| r.path == format!("/__echo/{id}/{}", s.step_id)).count();
            assert_eq!(sent, 1, "{id}/{}: each step's request sent once", s.step_id);
        }
    }
    drop(store);
}

#[test]
fn a_replica_that_dies_has_its_runs_finished_by_the_other() {
    let Some((rt, store, db, _cleanup)) = database("replicas") else { return };
    let mock = rt.block_on(MockServer::start("unused")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path());

    // Runs queued by a process that then went away: their lease has already run out.
    let opts = LoadOptions {
        plugins_dir: PathBuf::from(offramp::BUILTIN_PLUGINS_DIR),
        vars: [("base".to_string(), mock.url())].into_iter().collect(),
        allow_cap: None,
        contracts: Default::default(),
    };
    let plan = offramp::pipeline::load(&dir.path().join("replicas.yaml"), &opts).unwrap();
    let ids: Vec<String> = rt.block_on(async {
        let sandbox = Arc::new(offramp::sandbox::Sandbox::new(None).unwrap());
        let config = EngineConfig {
            owner: "gone:1:x".into(),
            lease: Duration::from_millis(1),
            network: offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).unwrap(),
            ..Default::default()
        };
        let engine = Engine::new(store.clone(), sandbox, offramp::secrets::SecretSource::fixed([]), config).unwrap();
        let mut ids = Vec::new();
        for i in 0..RUNS {
            let inputs = [("email".to_string(), format!("user{i}@example.com"))].into_iter().collect();
            ids.push(
                engine
                    .start(&plan, StartRequest { inputs, requested_by: "test".into(), dry_run: false })
                    .await
                    .unwrap(),
            );
        }
        ids
    });

    let (mut a, a_owner) = replica(&db, dir.path(), &mock.url(), "a");
    let (mut b, b_owner) = replica(&db, dir.path(), &mock.url(), "b");
    let logs = || {
        let read = |n: &str| std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default();
        format!("--- replica A ---\n{}\n--- replica B ---\n{}", read("a"), read("b"))
    };
    let runs = || rt.block_on(async { futures_runs(&store, &ids).await });

    // Kill whichever replica is in the middle of a run (a step of it finished, another running).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (victim_owner, victim_runs) = loop {
        assert!(Instant::now() < deadline, "no replica got going\n{}", logs());
        let all = runs();
        let held = |owner: &str| -> Vec<String> {
            all.iter()
                .filter(|(_, run, steps)| {
                    run.lease.as_ref().is_some_and(|l| l.owner.contains(owner))
                        && steps.iter().any(|s| s.status == StepStatus::Succeeded)
                        && steps.iter().any(|s| s.status == StepStatus::Running)
                })
                .map(|(id, _, _)| id.clone())
                .collect()
        };
        let (on_a, on_b) = (held(&a_owner), held(&b_owner));
        if !on_a.is_empty() {
            break (a_owner.clone(), on_a);
        }
        if !on_b.is_empty() {
            break (b_owner.clone(), on_b);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (victim, survivor, survivor_owner) =
        if victim_owner == a_owner { (&mut a, &mut b, b_owner.clone()) } else { (&mut b, &mut a, a_owner.clone()) };
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    let log_at_kill = mock.state.requests().len();
    let finished_at_kill: BTreeSet<(String, String)> = runs()
        .into_iter()
        .flat_map(|(id, _, steps)| {
            steps.into_iter().filter(|s| s.status.is_finished()).map(move |s| (id.clone(), s.step_id))
        })
        .collect();

    // The survivor finishes everything, the victim's runs included.
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let all = runs();
        if all.iter().all(|(_, r, _)| r.status.is_finished()) {
            break all;
        }
        let statuses: Vec<RunStatus> = all.iter().map(|(_, r, _)| r.status).collect();
        assert!(Instant::now() < deadline, "not every run finished after the kill: {statuses:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = survivor.0.kill();
    let _ = survivor.0.wait();

    let log = mock.state.requests();
    let path = |run: &str, step: &str| format!("/__echo/{run}/{step}");
    for (id, run, steps) in &done {
        assert_eq!(run.status, RunStatus::Succeeded, "{id}");
        assert_eq!(steps.len(), STEPS.len(), "{id}: a result row per step");
        for s in steps {
            assert_eq!(s.status, StepStatus::Succeeded, "{id} {}", s.step_id);
            assert_eq!(s.output.as_ref().unwrap()["body"]["path"], path(id, &s.step_id).as_str());
        }
    }
    for (run, step) in &finished_at_kill {
        let again = log[log_at_kill..].iter().filter(|r| r.path == path(run, step)).count();
        assert_eq!(again, 0, "{run}/{step} had finished before the kill but ran again");
    }
    // Every run was claimed once from the departed creator; the victim's then by the survivor.
    let claims: BTreeMap<String, Vec<(String, Option<String>)>> = rt.block_on(async {
        let mut m = BTreeMap::new();
        for id in &ids {
            let events = store.events(id).await.unwrap();
            let c = events
                .into_iter()
                .filter(|e| e.kind == "run_claimed")
                .map(|e| (e.actor, e.detail["previous_owner"].as_str().map(str::to_string)))
                .collect();
            m.insert(id.clone(), c);
        }
        m
    });
    for id in &ids {
        let c = &claims[id];
        assert_eq!(c[0].1.as_deref(), Some("gone:1:x"), "{id}: {c:?}");
        if victim_runs.contains(id) {
            let takeover = c.iter().find(|(_, prev)| prev.as_deref().is_some_and(|p| p.contains(&victim_owner)));
            assert!(takeover.is_some_and(|(by, _)| by.contains(&survivor_owner)), "{id}: taken over: {c:?}");
        }
    }
    drop(store);
}

type RunState = (String, offramp::store::RunRecord, Vec<offramp::store::StepRecord>);

async fn futures_runs(store: &Arc<dyn Store>, ids: &[String]) -> Vec<RunState> {
    let mut out = Vec::new();
    for id in ids {
        out.push((id.clone(), store.run(id).await.unwrap(), store.steps(id).await.unwrap()));
    }
    out
}
