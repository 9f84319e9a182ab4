//! Acknowledgement latency and throughput of `POST /slack/commands` under concurrent load.
//!
//! `cargo bench -p offramp --bench slack_ack`
//!
//! The real server (`offramp serve`'s router) listens on loopback over a file-backed SQLite
//! database (WAL), with a mock Slack. A load generator signs requests like Slack does and
//! sends them from N concurrent connections:
//!
//! - `offboard`: `/offboard alice@example.com manager=dana@example.com` from an approver — verify the signature, record
//!   it (replay guard), check the approvers table, load and validate the pipeline, record the
//!   request, answer with the Block Kit confirmation. The full work of a real command.
//! - `help`: `/offboard help` — verify, replay guard, answer.
//!
//! Prints p50 / p90 / p99 / max latency and requests per second per concurrency level.
//! `OFFRAMP_BENCH_REQUESTS` sets the requests per level (default 2000).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use offramp::engine::{Engine, EngineConfig};
use offramp::pipeline::LoadOptions;
use offramp::sandbox::Sandbox;
use offramp::secrets::{Secret, SecretSource};
use offramp::slack::{self, AppState, ServeConfig, SlackApiConfig};
use offramp::store::{SqliteStore, Store};
use offramp_mock::MockServer;

const SECRET: &str = "bench-signing-secret";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let per_level: u64 = std::env::var("OFFRAMP_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mock = MockServer::start("bench-okta-token").await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).await?);
    store.add_approver("U0ADMIN", "bench").await?;
    let engine = Engine::new(
        store,
        Arc::new(Sandbox::new(Some(dir.path().join("cache")))?),
        SecretSource::fixed([]),
        EngineConfig {
            network: offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).unwrap(),
            ..EngineConfig::default()
        },
    )?;
    let config = ServeConfig {
        signing_secret: Secret::new(SECRET),
        bot_token: Secret::new("xoxb-mock-token"),
        api_token: None,
        slack: SlackApiConfig {
            base_url: format!("{}/slack/api", mock.url()),
            channel_rate: NonZeroU32::MIN,
            ..SlackApiConfig::default()
        },
        channel: "C0OFFRAMP".into(),
        command: "/offboard".into(),
        pipelines_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines"),
        default_pipeline: "offboarding".into(),
        load: LoadOptions {
            plugins_dir: PathBuf::from(offramp::BUILTIN_PLUGINS_DIR),
            vars: [("okta_url".to_string(), mock.url())].into_iter().collect(),
            allow_cap: None,
            contracts: Default::default(),
        },
        ack_budget: Duration::from_millis(2500),
        pause_reminder: Duration::from_secs(4 * 3600),
    };
    let state = AppState::new(config, engine).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // As `serve` does once listening: every pipeline type-checked against its plugins, which
    // loads (and compiles, on a cold cache) each plugin before the first request is timed.
    if let Some((name, why)) = state.invalid_pipelines().await.into_iter().next() {
        anyhow::bail!("pipeline `{name}` does not validate: {why}");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/slack/commands", listener.local_addr()?);
    tokio::spawn(axum::serve(listener, slack::app(state)).into_future());

    println!("POST /slack/commands on loopback, SQLite (WAL) in a temp dir, {per_level} requests per row");
    println!(
        "{:<9} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "command", "conc", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s"
    );
    let counter = Arc::new(AtomicU64::new(0));
    let row = |name: &str, concurrency: u64, all: &[Duration], elapsed: Duration| {
        println!(
            "{:<9} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10.0}",
            name,
            concurrency,
            ms(percentile(all, 0.50)),
            ms(percentile(all, 0.90)),
            ms(percentile(all, 0.99)),
            ms(all[all.len() - 1]),
            all.len() as f64 / elapsed.as_secs_f64()
        );
        all.len() as f64 / elapsed.as_secs_f64()
    };
    for text in ["offboard", "help"] {
        for concurrency in [1u64, 8, 32, 64] {
            let (all, elapsed) = load(&url, text, concurrency, per_level, &counter).await?;
            row(text, concurrency, &all, elapsed);
        }
    }
    // The limit: a bare axum server that verifies the same signature and answers the same
    // size of JSON, nothing else — side by side with `help`, alternating.
    let bare = bare_server().await?;
    println!("\nside by side at 64 connections, alternating, {per_level} requests each:");
    let (mut ours, mut theirs) = (0.0, 0.0);
    for _ in 0..2 {
        let (all, elapsed) = load(&url, "help", 64, per_level, &counter).await?;
        ours += row("help", 64, &all, elapsed);
        let (all, elapsed) = load(&bare, "help", 64, per_level, &counter).await?;
        theirs += row("bare-axum", 64, &all, elapsed);
    }
    println!(
        "help: offramp {:.0} req/s, bare axum + HMAC {:.0} req/s: {:.2} of the bare server's rate",
        ours / 2.0,
        theirs / 2.0,
        ours / theirs
    );
    Ok(())
}

/// `per_level` signed commands from `concurrency` connections; every latency and the wall time.
async fn load(
    url: &str,
    text: &'static str,
    concurrency: u64,
    per_level: u64,
    counter: &Arc<AtomicU64>,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (url, counter) = (url.to_string(), counter.clone());
        let n = per_level / concurrency;
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut lat = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let body = serde_urlencoded::to_string([
                    ("command", "/offboard"),
                    ("text", if text == "help" { "help" } else { "alice@example.com manager=dana@example.com" }),
                    ("user_id", "U0ADMIN"),
                    ("team_id", "T0BENCH"),
                    ("channel_id", "C0OFFRAMP"),
                    ("response_url", "https://hooks.slack.com/commands/T0BENCH/1/bench"),
                    ("trigger_id", &format!("bench.{i}")),
                ])?;
                let ts = slack::unix_now();
                let sig = slack::signature(SECRET, ts, body.as_bytes());
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-slack-request-timestamp", ts.to_string())
                    .header("x-slack-signature", sig)
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                let reply = resp.text().await?;
                lat.push(t.elapsed());
                anyhow::ensure!(status.is_success(), "HTTP {status}: {reply}");
                anyhow::ensure!(
                    text == "help" || reply.contains("\"action_id\":\"start\""),
                    "no confirmation: {reply}"
                );
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((all, elapsed))
}

/// A bare axum server: checks `v0=HMAC-SHA256(v0:ts:body)` in constant time and the
/// timestamp's age, answers a fixed ephemeral message. Returns its URL.
async fn bare_server() -> anyhow::Result<String> {
    use axum::http::{HeaderMap, StatusCode};
    use hmac::{Hmac, Mac};
    use subtle::ConstantTimeEq;
    async fn handle(headers: HeaderMap, body: axum::body::Bytes) -> Result<axum::Json<serde_json::Value>, StatusCode> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (h("x-slack-request-timestamp"), h("x-slack-signature")) else {
            return Err(StatusCode::UNAUTHORIZED);
        };
        let age = ts.parse::<i64>().map(|t| (slack::unix_now() - t).abs()).unwrap_or(i64::MAX);
        let given = sig.strip_prefix("v0=").and_then(|x| hex::decode(x).ok()).ok_or(StatusCode::UNAUTHORIZED)?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).map_err(|_| StatusCode::UNAUTHORIZED)?;
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(&body);
        if age > 300 || !bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&given)) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        Ok(axum::Json(
            serde_json::json!({ "response_type": "ephemeral", "text": "*Usage*\n`/offboard alice@example.com` — offboard someone" }),
        ))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/slack/commands", listener.local_addr()?);
    tokio::spawn(
        axum::serve(listener, axum::Router::new().route("/slack/commands", axum::routing::post(handle))).into_future(),
    );
    Ok(url)
}
