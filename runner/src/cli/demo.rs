//! `offramp demo`: the whole Slack conversation against the real server routes, on loopback.
//!
//! A mock Okta and a mock Slack Web API run in-process; `offramp serve`'s router listens on a
//! loopback port; the demo plays Slack's part, sending signed requests like Slack does:
//! `/offboard alice@example.com` → confirmation → Start → the run (one injected 503, absorbed
//! by a retry; one injected 403 on deactivate, which pauses) → Retry → success. It prints each
//! Slack message as a person would see it, then the results table and what Okta saw. An
//! in-memory database and made-up credentials: it runs anywhere.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::engine::{Engine, EngineConfig};
use crate::mock::{Fault, MockServer};
use crate::pipeline::LoadOptions;
use crate::sandbox::Sandbox;
use crate::secrets::{Secret, SecretSource};
use crate::slack::{self, AppState, ServeConfig, SlackApiConfig};
use crate::store::{RunStatus, SqliteStore, Store};

const DEMO_TOKEN: &str = "demo-okta-token-not-a-real-secret";
const SIGNING_SECRET: &str = "demo-signing-secret-not-a-real-secret";
const BOT_TOKEN: &str = "xoxb-mock-token";
const CHANNEL: &str = "C0OFFRAMP";
const ADMIN: &str = "U0ADMIN";

/// The repository's pipelines folder (the demo runs from a checkout).
fn default_pipelines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("pipelines")
}

/// Plays Slack: signs and sends requests to the server.
struct FakeSlack {
    client: reqwest::Client,
    server: String,
    response_url: String,
}

impl FakeSlack {
    async fn post(&self, path: &str, body: String) -> Result<(u16, Value, Duration)> {
        let ts = slack::unix_now();
        let sig = slack::signature(SIGNING_SECRET, ts, body.as_bytes());
        let started = Instant::now();
        let resp = self
            .client
            .post(format!("{}{path}", self.server))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await?;
        let took = started.elapsed();
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null), took))
    }

    async fn command(&self, user: &str, text: &str) -> Result<(u16, Value, Duration)> {
        let body = serde_urlencoded::to_string([
            ("token", "deprecated-verification-token"),
            ("team_id", "T0MOCK"),
            ("channel_id", CHANNEL),
            ("user_id", user),
            ("command", "/offboard"),
            ("text", text),
            ("response_url", &self.response_url),
            ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
        ])?;
        self.post("/slack/commands", body).await
    }

    async fn click(&self, user: &str, action_id: &str, value: &str) -> Result<(u16, Value, Duration)> {
        let payload = json!({
            "type": "block_actions",
            "user": { "id": user },
            "team": { "id": "T0MOCK" },
            "channel": { "id": CHANNEL },
            "response_url": self.response_url,
            "actions": [{ "type": "button", "action_id": action_id, "value": value }],
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())])?;
        self.post("/slack/interactions", body).await
    }
}

/// The value of the first button with `action_id` in a message's blocks.
fn button_value(blocks: &Value, action_id: &str) -> Option<String> {
    blocks.as_array()?.iter().filter(|b| b["type"] == "actions").find_map(|b| {
        b["elements"].as_array()?.iter().find(|e| e["action_id"] == action_id)?["value"].as_str().map(str::to_string)
    })
}

fn show(title: &str, message: &Value) {
    println!("┌─ {title}");
    for line in slack::blocks::render_text(message).lines() {
        println!("│ {line}");
    }
    println!("└─");
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("the demo gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn run(pipelines_dir: Option<PathBuf>, cache_dir: Option<PathBuf>) -> Result<ExitCode> {
    let mock = MockServer::start(DEMO_TOKEN).await.context("starting the mock Okta and Slack")?;
    // The first suspend answers 503 (the step's retry absorbs it); the first deactivate answers
    // 403 (the token lacks a permission): that step has `on_failure: pause`, so a person decides.
    mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/lifecycle/suspend".into(),
        status: 503,
        times: 1,
        delay_ms: 0,
    });
    mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/lifecycle/deactivate".into(),
        status: 403,
        times: 1,
        delay_ms: 0,
    });

    let dir = pipelines_dir.unwrap_or_else(default_pipelines_dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await?);
    store.add_approver(ADMIN, "demo").await?;
    let sandbox = Arc::new(Sandbox::new(cache_dir)?);
    let secrets = SecretSource::fixed([("OKTA_API_TOKEN".to_string(), DEMO_TOKEN.to_string())]);
    // The mock SaaS listens on loopback, which plugins may only reach with the operator's word.
    let network =
        crate::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let engine = Engine::new(store.clone(), sandbox, secrets, EngineConfig { network, ..EngineConfig::default() })?;
    let config = ServeConfig {
        signing_secret: Secret::new(SIGNING_SECRET),
        bot_token: Secret::new(BOT_TOKEN),
        api_token: None,
        slack: SlackApiConfig { base_url: format!("{}/slack/api", mock.url()), ..SlackApiConfig::default() },
        channel: CHANNEL.into(),
        command: "/offboard".into(),
        pipelines_dir: dir.clone(),
        default_pipeline: "offboarding".into(),
        load: LoadOptions {
            plugins_dir: PathBuf::from(crate::BUILTIN_PLUGINS_DIR),
            vars: [("okta_url".to_string(), mock.url())].into_iter().collect(),
            allow_cap: None,
        },
        ack_budget: Duration::from_millis(2500),
        pause_reminder: Duration::from_secs(4 * 3600),
    };
    let state = AppState::new(config, engine.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = format!("http://{}", listener.local_addr()?);
    tokio::spawn(axum::serve(listener, slack::app(state)).into_future());

    println!("offramp demo: the Slack conversation, against `offramp serve`'s routes on loopback\n");
    println!("  offramp serve  {server}  (signing secret and bot token are demo values)");
    println!("  mock Slack     {}/slack/api  (channel #it-offboarding = {CHANNEL})", mock.url());
    println!("  mock Okta      {}  (alice@example.com is ACTIVE)", mock.url());
    println!(
        "  network        allow_private: [127.0.0.1]  (the mocks are on loopback; plugins get no other private address)"
    );
    println!("  pipelines      {}", dir.display());
    println!("  approvers      @{ADMIN}  (offramp approvers add {ADMIN})");
    println!("  injected       first suspend → 503 (retried); first deactivate → 403 (pauses for a person)\n");

    let slack_side = FakeSlack {
        client: reqwest::Client::new(),
        server,
        response_url: format!("{}/slack/hooks/commands/T0MOCK/1/demo", mock.url()),
    };
    let ws = mock.state.slack.clone();

    println!("@{ADMIN} types in #it-offboarding:  /offboard alice@example.com");
    let (status, reply, took) = slack_side.command(ADMIN, "alice@example.com").await?;
    println!("  → HTTP {status}, acknowledged in {} ms; only @{ADMIN} sees:", took.as_millis());
    show("offramp (only visible to you)", &reply);
    let request_id =
        button_value(&reply["blocks"], slack::blocks::START).context("the confirmation has no Start button")?;

    println!("\n@{ADMIN} clicks [ Start ] and confirms \"Start offboarding?\"");
    let (status, _, took) = slack_side.click(ADMIN, slack::blocks::START, &request_id).await?;
    println!("  → HTTP {status}, acknowledged in {} ms", took.as_millis());
    let replaced = wait_for("the confirmation to be replaced", async || ws.responses().into_iter().last()).await?;
    show("offramp (only visible to you; replaces the confirmation)", &replaced);

    let run_id =
        wait_for("the run to start", async || store.runs(1).await.ok()?.into_iter().next().map(|r| r.id)).await?;
    wait_for("the run to pause", async || (store.run(&run_id).await.ok()?.status == RunStatus::Paused).then_some(()))
        .await?;
    let paused = wait_for("the channel message to offer Retry", async || {
        ws.messages().into_iter().find(|m| m.thread_ts.is_none() && button_value(&m.blocks, "retry").is_some())
    })
    .await?;
    let error_reply = wait_for("the step error in the thread", async || {
        ws.messages().into_iter().find(|m| m.thread_ts.as_deref() == Some(&paused.ts))
    })
    .await?;
    println!();
    show("#it-offboarding · offramp (one message, updated in place)", &json!({ "blocks": paused.blocks }));
    show("#it-offboarding · thread reply", &json!({ "text": error_reply.text }));

    let value = button_value(&paused.blocks, "retry").context("no Retry button")?;
    println!("\n(the operator grants the token the permission) @{ADMIN} clicks [ Retry ]");
    let (status, _, took) = slack_side.click(ADMIN, "retry", &value).await?;
    println!("  → HTTP {status}, acknowledged in {} ms", took.as_millis());
    let summary = wait_for("the run's summary", async || {
        ws.messages().into_iter().find(|m| m.thread_ts.as_deref() == Some(&paused.ts) && m.reply_broadcast)
    })
    .await?;
    let last = ws.messages().into_iter().find(|m| m.ts == paused.ts).context("the run message vanished")?;
    println!();
    show(&format!("#it-offboarding · offramp (edited {} times)", last.edits), &json!({ "blocks": last.blocks }));
    show("#it-offboarding · thread reply, also sent to the channel", &json!({ "text": summary.text }));

    let channel_writes = ws.calls().iter().filter(|c| c.method.starts_with("chat.")).count();
    println!(
        "\nSlack API calls: {channel_writes} (chat.postMessage / chat.update), at most one a second to the channel."
    );
    super::print_run(store.as_ref(), &run_id, false, false).await?;

    println!("\nWhat the mock Okta saw (the API token was injected by the host; the plugins never had it):");
    for r in mock.state.requests().iter().filter(|r| r.path.starts_with("/api/v1")) {
        let auth = match r.authorization.as_deref() {
            Some(a) if a == format!("SSWS {DEMO_TOKEN}") => "SSWS [token]",
            Some(_) => "other credential",
            None => "no credential",
        };
        println!(
            "  {:<6} {:<52} → {}  ({auth})",
            r.method,
            format!("{}{}", r.path, r.query.clone().map(|q| format!("?{q}")).unwrap_or_default()),
            r.status
        );
    }
    if let Some(alice) = mock.state.okta.user("alice@example.com") {
        println!("\nalice@example.com in Okta is now {}, in {} group(s).", alice.status, alice.groups.len());
    }
    let status = store.run(&run_id).await?.status;
    Ok(if status == RunStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_FAILED) })
}
