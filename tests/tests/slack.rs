//! The Slack front door end to end: requests signed by a test helper (its own HMAC, not
//! offramp's), the real router driven with `oneshot`, the real engine, plugins and SQLite, and
//! a mock Slack Web API that records every call.

mod common;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use offramp::engine::{Engine, EngineConfig};
use offramp::pipeline::LoadOptions;
use offramp::secrets::{Secret, SecretSource};
use offramp::slack::{self, AppState, ServeConfig, SlackApiConfig};
use offramp::store::{RunStatus, SqliteStore, Store};
use offramp_mock::Fault;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::{Harness, TOKEN, sandbox};

const SIGNING_SECRET: &str = "test-signing-secret-3b9f1c";
const CHANNEL: &str = "C0OFFRAMP";
const ADMIN: &str = "U0ADMIN";
const OTHER_ADMIN: &str = "U0OTHER";
const STRANGER: &str = "U0STRANGER";

/// `X-Slack-Signature` computed here, independently of offramp.
fn sign(secret: &str, ts: i64, body: impl AsRef<[u8]>) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body.as_ref());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Like Slack's, different for every click (so two clicks are two different signed bodies).
fn action_ts() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Slack {
    h: Harness,
    app: axum::Router,
    state: AppState,
    /// The database the server uses (the harness's own, unless one was given).
    store: Arc<dyn Store>,
    pipelines: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
    raw: String,
}

impl Slack {
    async fn new() -> Slack {
        Self::with(|_| {}, None).await
    }

    /// A server over a fresh database with ADMIN and OTHER_ADMIN approved. `tune` may change the
    /// config; `store` replaces the database (e.g. with a slow one).
    async fn with(tune: impl FnOnce(&mut ServeConfig), store: Option<Arc<dyn Store>>) -> Slack {
        let h = Harness::new().await;
        let store = match store {
            Some(s) => s,
            None => h.store().clone(),
        };
        store.add_approver(ADMIN, "test").await.unwrap();
        store.add_approver(OTHER_ADMIN, "test").await.unwrap();
        let engine = Engine::new(
            store.clone(),
            sandbox(),
            SecretSource::fixed([("OKTA_API_TOKEN".to_string(), TOKEN.to_string())]),
            EngineConfig { network: common::loopback(), ..EngineConfig::default() },
        )
        .unwrap();
        let pipelines = tempfile::tempdir().unwrap();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines/okta.yaml");
        std::fs::copy(repo, pipelines.path().join("offboarding.yaml")).unwrap();
        let mut config = ServeConfig {
            signing_secret: Secret::new(SIGNING_SECRET),
            bot_token: Secret::new("xoxb-mock-token"),
            api_token: Some(Secret::new("api-token-for-tests")),
            slack: SlackApiConfig {
                base_url: format!("{}/slack/api", h.mock.url()),
                channel_rate: NonZeroU32::new(50).unwrap(),
                ..SlackApiConfig::default()
            },
            channel: CHANNEL.into(),
            command: "/offboard".into(),
            pipelines_dir: pipelines.path().to_path_buf(),
            default_pipeline: "offboarding".into(),
            load: LoadOptions {
                plugins_dir: PathBuf::from(offramp::BUILTIN_PLUGINS_DIR),
                vars: [("okta_url".to_string(), h.mock.url())].into_iter().collect(),
                allow_cap: None,
                contracts: Default::default(),
            },
            ack_budget: Duration::from_millis(2500),
            pause_reminder: Duration::from_secs(4 * 3600),
        };
        tune(&mut config);
        let state = AppState::new(config, engine).await.unwrap();
        let app = slack::app(state.clone());
        Slack { h, app, state, store, pipelines }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn response_url(&self) -> String {
        format!("{}/slack/hooks/commands/T0MOCK/1/test", self.h.mock.url())
    }

    async fn send(&self, path: &str, body: String, ts: i64, signature: Option<String>) -> Reply {
        let headers = match signature {
            Some(sig) => vec![("x-slack-request-timestamp", ts.to_string()), ("x-slack-signature", sig)],
            None => vec![],
        };
        self.send_raw(path, body.into_bytes(), &headers).await
    }

    /// Any bytes, any headers (repeated names are sent repeated).
    async fn send_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Reply {
        let mut req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = self.app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        Reply { status, body: serde_json::from_str(&raw).unwrap_or(Value::Null), raw }
    }

    async fn signed(&self, path: &str, body: String) -> Reply {
        let ts = now();
        let sig = sign(SIGNING_SECRET, ts, &body);
        self.send(path, body, ts, Some(sig)).await
    }

    fn command_body(&self, user: &str, text: &str) -> String {
        serde_urlencoded::to_string([
            ("token", "unused"),
            ("team_id", "T0MOCK"),
            ("channel_id", CHANNEL),
            ("user_id", user),
            ("command", "/offboard"),
            ("text", text),
            ("response_url", &self.response_url()),
            ("trigger_id", &action_ts()),
        ])
        .unwrap()
    }

    async fn command(&self, user: &str, text: &str) -> Reply {
        self.signed("/slack/commands", self.command_body(user, text)).await
    }

    fn click_body(&self, user: &str, action: &str, value: &str) -> String {
        let payload = json!({
            "type": "block_actions",
            "user": { "id": user },
            "channel": { "id": CHANNEL },
            "response_url": self.response_url(),
            "actions": [{ "type": "button", "action_id": action, "value": value, "action_ts": action_ts() }],
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }

    async fn click(&self, user: &str, action: &str, value: &str) -> Reply {
        self.signed("/slack/interactions", self.click_body(user, action, value)).await
    }

    /// Asks for a run of the default pipeline and returns the request id from the Start button.
    async fn request(&self, user: &str) -> String {
        let reply = self.command(user, "alice@example.com").await;
        assert_eq!(reply.status, StatusCode::OK);
        button(&reply.body["blocks"], "start").unwrap_or_else(|| panic!("no Start button: {}", reply.body))
    }

    fn responses(&self) -> Vec<Value> {
        self.h.mock.state.slack.responses()
    }

    async fn wait_response(&self, count: usize) -> Value {
        let ws = self.h.mock.state.slack.clone();
        wait(&format!("{count} response_url answers"), || {
            let r = ws.responses();
            (r.len() >= count).then(|| r[count - 1].clone())
        })
        .await
    }

    async fn runs(&self) -> Vec<offramp::store::RunRecord> {
        self.store().runs(50).await.unwrap()
    }

    async fn wait_status(&self, run_id: &str, status: RunStatus) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.store().run(run_id).await.unwrap().status;
            if now == status {
                return;
            }
            assert!(Instant::now() < deadline, "run {run_id} is {now}, expected {status}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_run(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self.runs().await.first() {
                return r.id.clone();
            }
            assert!(Instant::now() < deadline, "no run started");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The run's channel message once it matches `pred`.
    async fn wait_message(
        &self,
        what: &str,
        pred: impl Fn(&offramp_mock::slack::Message) -> bool,
    ) -> offramp_mock::slack::Message {
        let ws = self.h.mock.state.slack.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(m) = ws.messages().into_iter().find(|m| m.thread_ts.is_none() && pred(m)) {
                return m;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; Slack saw {:#?}", ws.calls());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A run of the default pipeline started by ADMIN, paused at `deactivate` (a 403 once), and
    /// its channel message showing the Retry button.
    async fn paused_run(&self) -> (String, offramp_mock::slack::Message) {
        deactivate_fails_once(self);
        let request = self.request(ADMIN).await;
        self.click(ADMIN, "start", &request).await;
        let run_id = self.wait_run().await;
        self.wait_status(&run_id, RunStatus::Paused).await;
        let paused = self.wait_message("Retry", |m| button(&m.blocks, "retry").is_some()).await;
        (run_id, paused)
    }

    async fn refusals(&self) -> Vec<offramp::store::EventRecord> {
        self.store().recent_events(100).await.unwrap().into_iter().filter(|e| e.kind == "refused").collect()
    }
}

async fn wait<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn button(blocks: &Value, action: &str) -> Option<String> {
    blocks.as_array()?.iter().filter(|b| b["type"] == "actions").find_map(|b| {
        b["elements"].as_array()?.iter().find(|e| e["action_id"] == action)?["value"].as_str().map(str::to_string)
    })
}

fn deactivate_fails_once(s: &Slack) {
    s.h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/lifecycle/deactivate".into(),
        status: 403,
        times: 1,
        delay_ms: 0,
    });
}

#[tokio::test]
async fn command_start_pause_retry_success() {
    let s = Slack::new().await;
    deactivate_fails_once(&s);

    let reply = s.command(ADMIN, "alice@example.com").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["response_type"], "ephemeral", "the confirmation is for the requester only");
    let text = slack::blocks::render_text(&reply.body);
    assert!(text.contains("Offboard alice@example.com with `offboarding`?"), "{text}");
    for step in ["lookup", "suspend", "clear_sessions", "remove_groups", "deactivate"] {
        assert!(text.contains(&format!("`{step}`")), "{step} is listed: {text}");
    }
    let start = reply.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b["elements"].as_array()?.iter().find(|e| e["action_id"] == "start").cloned())
        .unwrap();
    assert_eq!(start["style"], "danger");
    assert!(start["confirm"]["title"]["text"].as_str().unwrap().contains("Start offboarding"));
    assert!(s.runs().await.is_empty(), "nothing runs before Start");

    let request = button(&reply.body["blocks"], "start").unwrap();
    let ack = s.click(ADMIN, "start", &request).await;
    assert_eq!(ack.status, StatusCode::OK);
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Paused).await;

    let paused = s.wait_message("the run message with Retry", |m| button(&m.blocks, "retry").is_some()).await;
    let shown = slack::blocks::render_text(&json!({ "blocks": paused.blocks }));
    assert!(shown.contains("Offboarding alice@example.com"), "{shown}");
    assert!(shown.contains("Requested by @U0ADMIN · approved by @U0ADMIN"), "{shown}");
    assert!(shown.contains("deactivate` paused") && shown.contains("E0000006"), "{shown}");
    let ws = s.h.mock.state.slack.clone();
    let thread = wait("the error in the thread", || {
        ws.messages().into_iter().find(|m| m.thread_ts.as_deref() == Some(&paused.ts))
    })
    .await;
    assert!(thread.text.contains("`deactivate` paused after 1 attempt"), "{}", thread.text);

    let value = button(&paused.blocks, "retry").unwrap();
    let target: Value = serde_json::from_str(&value).unwrap();
    assert_eq!(
        (target["r"].as_str(), target["s"].as_str(), target["a"].as_u64()),
        (Some(run_id.as_str()), Some("deactivate"), Some(1))
    );
    assert_eq!(s.click(ADMIN, "retry", &value).await.status, StatusCode::OK);
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let summary = wait("the summary", || {
        ws.messages().into_iter().find(|m| m.thread_ts.as_deref() == Some(&paused.ts) && m.reply_broadcast)
    })
    .await;
    assert!(summary.text.contains("succeeded: alice@example.com"), "{}", summary.text);

    let done = s.wait_message("the final message", |m| m.ts == paused.ts && m.text.contains("succeeded")).await;
    let shown = slack::blocks::render_text(&json!({ "blocks": done.blocks }));
    assert!(shown.contains("retried by @U0ADMIN"), "{shown}");
    assert!(button(&done.blocks, "retry").is_none(), "no buttons once finished");
    let top_level: Vec<_> = ws.messages().into_iter().filter(|m| m.thread_ts.is_none()).collect();
    assert_eq!(top_level.len(), 1, "one channel message per run, updated in place");
    assert_eq!(s.h.mock.state.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED");

    let run = s.store().run(&run_id).await.unwrap();
    assert_eq!(run.requested_by, "slack:U0ADMIN");
    let events = s.store().events(&run_id).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "run_approved" && e.actor == "slack:U0ADMIN"));
    assert!(
        events.iter().any(|e| e.kind == "decision" && e.actor == "slack:U0ADMIN" && e.detail["decision"] == "retry")
    );
    for call in ws.calls() {
        assert!(!call.body.to_string().contains(TOKEN), "the Okta token never reaches Slack");
    }
}

#[tokio::test]
async fn callers_not_on_the_approvers_list_are_refused_and_logged() {
    let s = Slack::new().await;
    let reply = s.command(STRANGER, "alice@example.com").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["response_type"], "ephemeral");
    assert!(reply.body["text"].as_str().unwrap().contains("not on offramp's approvers list"), "{}", reply.raw);
    assert!(reply.body.get("blocks").is_none(), "no Start button for a stranger");
    let refusals = s.refusals().await;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].actor, "slack:U0STRANGER");
    assert_eq!(refusals[0].detail["text"], "alice@example.com");
    // `help` is for everyone; `status` is not.
    assert!(s.command(STRANGER, "help").await.raw.contains("Usage"));
    assert!(s.command(STRANGER, "status 0190").await.raw.contains("not on offramp's approvers list"));
    assert_eq!(s.refusals().await.len(), 2);
}

#[tokio::test]
async fn clicks_from_non_approvers_do_nothing() {
    let s = Slack::new().await;
    let request = s.request(ADMIN).await;
    assert_eq!(s.click(STRANGER, "start", &request).await.status, StatusCode::OK);
    let answer = s.wait_response(1).await;
    assert!(answer["text"].as_str().unwrap().contains("not on offramp's approvers list"), "{answer}");
    assert_eq!(answer["replace_original"], false);
    assert!(s.runs().await.is_empty());
    assert_eq!(s.store().request(&request).await.unwrap().status, offramp::store::RequestStatus::Pending);
    let refusals = s.refusals().await;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].detail["button"], "start");

    // Another approver cannot press someone else's Start either (no two-person rule here).
    s.click(OTHER_ADMIN, "start", &request).await;
    let answer = s.wait_response(2).await;
    assert!(answer["text"].as_str().unwrap().contains("Only <@U0ADMIN> can start"), "{answer}");
    assert!(s.runs().await.is_empty());
}

#[tokio::test]
async fn unsigned_forged_stale_future_and_tampered_requests_get_401() {
    let s = Slack::new().await;
    let body = s.command_body(ADMIN, "alice@example.com");
    let ts = now();
    // Outside the window by a margin: the server reads its clock later than `ts`, so a
    // timestamp exactly 301 s ahead would be 300 s ahead once a second boundary passes.
    let out = 5 * 60 + 30;
    let cases: Vec<(&str, String, i64, Option<String>)> = vec![
        ("no headers", body.clone(), ts, None),
        ("other secret", body.clone(), ts, Some(sign("not-the-secret", ts, &body))),
        ("stale", body.clone(), ts - out, Some(sign(SIGNING_SECRET, ts - out, &body))),
        ("future", body.clone(), ts + out, Some(sign(SIGNING_SECRET, ts + out, &body))),
        ("tampered", body.replace("alice", "mallory"), ts, Some(sign(SIGNING_SECRET, ts, &body))),
        ("bad prefix", body.clone(), ts, Some(sign(SIGNING_SECRET, ts, &body).replacen("v0=", "v1=", 1))),
        ("bad hex", body.clone(), ts, Some(format!("v0={}", "zz".repeat(32)))),
        ("short", body.clone(), ts, Some("v0=abcd".into())),
    ];
    for (name, body, ts, sig) in cases {
        for path in ["/slack/commands", "/slack/interactions"] {
            let reply = s.send(path, body.clone(), ts, sig.clone()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name} on {path}");
            assert_eq!(reply.body, json!({ "error": "unauthorized" }), "{name}: no detail");
        }
    }
    // Within the window, either side, is fine.
    for skew in [-270, 270] {
        let body = s.command_body(ADMIN, "help");
        let reply =
            s.send("/slack/commands", body.clone(), ts + skew, Some(sign(SIGNING_SECRET, ts + skew, &body))).await;
        assert_eq!(reply.status, StatusCode::OK, "skew {skew}");
    }
    assert!(s.store().recent_events(100).await.unwrap().iter().all(|e| e.kind != "run_requested"));
}

#[tokio::test]
async fn a_replayed_request_starts_nothing_twice() {
    let s = Slack::new().await;
    let body = s.command_body(ADMIN, "alice@example.com");
    let ts = now();
    let sig = sign(SIGNING_SECRET, ts, &body);
    let first = s.send("/slack/commands", body.clone(), ts, Some(sig.clone())).await;
    let request = button(&first.body["blocks"], "start").unwrap();
    let again = s.send("/slack/commands", body, ts, Some(sig)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.raw.contains("already handled"), "{}", again.raw);
    // Sent to another replica on the same database: refused there too.
    let other = Slack::with(|_| {}, Some(s.store().clone())).await;
    let body = s.command_body(ADMIN, "alice@example.com");
    let ts = now();
    let sig = sign(SIGNING_SECRET, ts, &body);
    assert!(
        button(&s.send("/slack/commands", body.clone(), ts, Some(sig.clone())).await.body["blocks"], "start").is_some()
    );
    let elsewhere = other.send("/slack/commands", body, ts, Some(sig)).await;
    assert!(elsewhere.raw.contains("already handled"), "{}", elsewhere.raw);
    let requested =
        s.store().recent_events(100).await.unwrap().into_iter().filter(|e| e.kind == "run_requested").count();
    assert_eq!(requested, 2);
    // A read-only command is refused when replayed to the same process (no database write).
    let help = s.command_body(ADMIN, "help");
    let ts = now();
    let sig = sign(SIGNING_SECRET, ts, &help);
    assert!(s.send("/slack/commands", help.clone(), ts, Some(sig.clone())).await.raw.contains("Usage"));
    assert!(s.send("/slack/commands", help, ts, Some(sig)).await.raw.contains("already handled"));

    // The same signed Start click, twice.
    let click = s.click_body(ADMIN, "start", &request);
    let ts = now();
    let sig = sign(SIGNING_SECRET, ts, &click);
    s.send("/slack/interactions", click.clone(), ts, Some(sig.clone())).await;
    s.send("/slack/interactions", click, ts, Some(sig)).await;
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.runs().await.len(), 1, "one run");
}

#[tokio::test]
async fn a_second_start_click_is_a_no_op_that_says_who_started() {
    let s = Slack::new().await;
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    s.wait_response(1).await;
    // A second, separately signed click on the same button.
    s.click(ADMIN, "start", &request).await;
    let answer = s.wait_response(2).await;
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("already started by <@U0ADMIN>") && text.contains(&run_id), "{text}");
    assert_eq!(s.runs().await.len(), 1);
}

#[tokio::test]
async fn concurrent_decisions_have_exactly_one_effect() {
    let s = Slack::new().await;
    let (run_id, paused) = s.paused_run().await;
    let value = button(&paused.blocks, "retry").unwrap();
    let skip = button(&paused.blocks, "skip").unwrap();
    let before = s.responses().len();
    // Two approvers at once: one retries, the other skips.
    let (a, b) = tokio::join!(s.click(ADMIN, "retry", &value), s.click(OTHER_ADMIN, "skip", &skip));
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    let loser = s.wait_response(before + 1).await;
    let text = loser["text"].as_str().unwrap();
    assert!(text.contains("`deactivate` is already") && text.contains("handled by <@"), "{text}");
    // Retry or Skip, either way the run then succeeds (the 403 came once).
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let decisions: Vec<_> =
        s.store().events(&run_id).await.unwrap().into_iter().filter(|e| e.kind == "decision").collect();
    assert_eq!(decisions.len(), 1, "exactly one decision took effect: {decisions:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.responses().len(), before + 1, "only the loser hears back");
}

#[tokio::test]
async fn a_stale_click_tells_who_already_decided() {
    let s = Slack::new().await;
    let (run_id, paused) = s.paused_run().await;
    let abort = button(&paused.blocks, "abort").unwrap();
    let before = s.responses().len();
    s.click(OTHER_ADMIN, "skip", &button(&paused.blocks, "skip").unwrap()).await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    s.click(ADMIN, "abort", &abort).await;
    let answer = s.wait_response(before + 1).await;
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("already skipped") && text.contains("<@U0OTHER> (skip)"), "{text}");
    assert_eq!(s.store().run(&run_id).await.unwrap().status, RunStatus::Succeeded, "the stale abort did nothing");
}

#[tokio::test]
async fn slack_rate_limits_are_waited_out() {
    let s = Slack::new().await;
    s.h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "chat.postMessage".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let done = s.wait_message("the final message", |m| m.text.contains("succeeded")).await;
    let posts: Vec<_> =
        s.h.mock
            .state
            .slack
            .calls()
            .into_iter()
            .filter(|c| c.method == "chat.postMessage" && c.body.get("thread_ts").is_none())
            .collect();
    assert_eq!(posts.len(), 2, "the first post was rate limited and retried: {posts:?}");
    assert!(posts[1].at_ms - posts[0].at_ms >= 900, "waited Retry-After: 1 ({} ms)", posts[1].at_ms - posts[0].at_ms);
    assert_eq!(s.store().run_message(&run_id).await.unwrap().unwrap().ts, done.ts);
}

#[tokio::test]
async fn updates_to_the_channel_are_coalesced_to_one_a_second() {
    let s = Slack::with(|c| c.slack.channel_rate = NonZeroU32::new(1).unwrap(), None).await;
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let ws = s.h.mock.state.slack.clone();
    wait("the summary", || ws.messages().into_iter().find(|m| m.reply_broadcast)).await;
    let writes: Vec<u64> = ws.calls().iter().filter(|c| c.method.starts_with("chat.")).map(|c| c.at_ms).collect();
    // Five steps make at least 10 transitions; bursts become a few writes, a second apart.
    assert!(writes.len() <= 6, "{writes:?}");
    for pair in writes.windows(2) {
        assert!(pair[1] - pair[0] >= 950, "writes to the channel at most once a second: {writes:?}");
    }
    let last = ws.messages().into_iter().find(|m| m.thread_ts.is_none()).unwrap();
    assert!(last.text.contains("succeeded"), "the final state is shown: {}", last.text);
}

#[tokio::test]
async fn ssl_check_and_bad_text_never_fail() {
    let s = Slack::new().await;
    let reply = s.send("/slack/commands", "ssl_check=1&token=abc".into(), now(), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    for text in [
        // Several people are fine; one after the options is not.
        "alice@example.com nope=1 bob@example.com",
        "status",
        "alice@example.com pipeline=../../etc/passwd",
        "alice@example.com nope=1",
        "not-an-email",
    ] {
        let reply = s.command(ADMIN, text).await;
        assert_eq!(reply.status, StatusCode::OK, "{text}");
        assert_eq!(reply.body["response_type"], "ephemeral", "{text}");
        let t = reply.body["text"].as_str().unwrap();
        assert!(t.contains(":warning:") && t.contains("Usage"), "{text}: {t}");
    }
    assert!(
        s.command(ADMIN, "alice@example.com pipeline=nope")
            .await
            .raw
            .contains("there is no pipeline `nope` (known: offboarding)")
    );
    assert!(s.command(ADMIN, "alice@example.com nope=1").await.raw.contains("unknown input `nope`"));
    assert!(s.command(ADMIN, "not-an-email").await.raw.contains("email"));
    // An unreadable interaction is a 400, not a 500.
    let reply = s.signed("/slack/interactions", "payload=%7Bnot-json".into()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(s.store().recent_events(100).await.unwrap().iter().all(|e| e.kind != "run_requested"));
}

#[tokio::test]
async fn status_shows_a_run() {
    let s = Slack::new().await;
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let reply = s.command(ADMIN, &format!("status {run_id}")).await;
    let shown = slack::blocks::render_text(&reply.body);
    assert!(shown.contains("succeeded") && shown.contains("`deactivate` succeeded"), "{shown}");
    assert!(s.command(ADMIN, "status 0190-nope").await.raw.contains("There is no run `0190-nope`"));
}

#[tokio::test]
async fn the_two_person_rule_needs_another_approver() {
    let s = Slack::new().await;
    let text = std::fs::read_to_string(s.pipelines.path().join("offboarding.yaml")).unwrap();
    let text = text.replacen("inputs:", "approval: { approvers: 1, allow_self: false }\n\ninputs:", 1);
    std::fs::write(s.pipelines.path().join("guarded.yaml"), text).unwrap();

    let reply = s.command(ADMIN, "alice@example.com pipeline=guarded").await;
    assert!(reply.raw.contains("Asked for approval"), "{}", reply.raw);
    let ws = s.h.mock.state.slack.clone();
    let post = wait("the approval request in the channel", || {
        ws.messages().into_iter().find(|m| m.text.contains("asks to offboard"))
    })
    .await;
    let request = button(&post.blocks, "start").unwrap();
    let shown = slack::blocks::render_text(&json!({ "blocks": post.blocks }));
    assert!(shown.contains("[ Approve and start ]"), "{shown}");

    // The requester's own Start does not count.
    s.click(ADMIN, "start", &request).await;
    let answer = s.wait_response(1).await;
    assert!(answer["text"].as_str().unwrap().contains("your Start does not count"), "{answer}");
    assert!(s.runs().await.is_empty());
    // A stranger's does not either.
    s.click(STRANGER, "start", &request).await;
    s.wait_response(2).await;
    assert!(s.runs().await.is_empty());

    s.click(OTHER_ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let msg = s.wait_message("the run message", |m| m.text.contains("succeeded")).await;
    let shown = slack::blocks::render_text(&json!({ "blocks": msg.blocks }));
    assert!(shown.contains("Requested by @U0ADMIN · approved by @U0OTHER"), "{shown}");
    let closed = wait("the approval post closed", || {
        ws.messages().into_iter().find(|m| m.ts == post.ts && m.text.starts_with("Started run"))
    })
    .await;
    assert!(button(&closed.blocks, "start").is_none());
}

#[tokio::test]
async fn cancel_closes_the_request() {
    let s = Slack::new().await;
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "cancel", &request).await;
    let answer = s.wait_response(1).await;
    assert_eq!(answer["replace_original"], true);
    assert!(answer["text"].as_str().unwrap().contains("Cancelled by <@U0ADMIN>"));
    s.click(ADMIN, "start", &request).await;
    let answer = s.wait_response(2).await;
    assert!(answer["text"].as_str().unwrap().contains("was cancelled by <@U0ADMIN>"), "{answer}");
    assert!(s.runs().await.is_empty());
}

#[tokio::test]
async fn a_changed_pipeline_is_not_started_from_an_old_confirmation() {
    let s = Slack::new().await;
    let request = s.request(ADMIN).await;
    let path = s.pipelines.path().join("offboarding.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("deactivate them.", "deactivate them!")).unwrap();
    s.click(ADMIN, "start", &request).await;
    let answer = s.wait_response(1).await;
    assert!(answer["text"].as_str().unwrap().contains("changed since this request was made"), "{answer}");
    assert!(s.runs().await.is_empty());
}

#[tokio::test]
async fn a_pipeline_that_fails_the_type_check_is_refused_with_its_located_errors() {
    let s = Slack::new().await;
    // A typo in the last step: the plugin's contract has no key `acton`, so nothing may start
    // (before contracts, this run suspended the user and then stopped at the last step).
    let good = std::fs::read_to_string(s.pipelines.path().join("offboarding.yaml")).unwrap();
    let bad = good.replace("      action: deactivate", "      acton: deactivate");
    assert_ne!(good, bad);
    std::fs::write(s.pipelines.path().join("typo.yaml"), bad).unwrap();
    let reply = s.command(ADMIN, "alice@example.com pipeline=typo").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body["text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("pipeline `typo` does not validate, so nothing was started"), "{text}");
    assert!(text.contains("typo.yaml:"), "{text}");
    assert!(text.contains("okta needs `action:` in `with:`") && text.contains("did you mean `action`?"), "{text}");
    assert!(button(&reply.body["blocks"], "start").is_none(), "{}", reply.body);
    assert!(s.runs().await.is_empty());
    // The good one next to it still starts.
    s.request(ADMIN).await;
}

#[tokio::test]
async fn the_api_needs_the_bearer_token() {
    let s = Slack::new().await;
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    let get = |path: String, auth: Option<&'static str>| {
        let app = s.app.clone();
        async move {
            let mut req = Request::get(path);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
        }
    };
    assert_eq!(get("/api/runs".into(), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/api/runs".into(), Some("Bearer api-token-for-test")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/api/runs".into(), Some("api-token-for-tests")).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = get("/api/runs".into(), Some("Bearer api-token-for-tests")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["runs"][0]["id"], run_id.as_str());
    let (status, body) = get(format!("/api/runs/{run_id}"), Some("Bearer api-token-for-tests")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["steps"].as_array().unwrap().len(), 5);
    assert!(body["events"].as_array().unwrap().iter().any(|e| e["kind"] == "run_approved"));
    let (status, body) = get("/api/runs/nope".into(), Some("Bearer api-token-for-tests")).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({ "error": "not found" })));
    assert_eq!(get("/healthz".into(), None).await, (StatusCode::OK, json!({ "status": "ok" })));
}

#[tokio::test]
async fn no_api_token_configured_means_no_api() {
    let s = Slack::with(|c| c.api_token = None, None).await;
    let req = Request::get("/api/runs").header("authorization", "Bearer ").body(Body::empty()).unwrap();
    assert_eq!(s.app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_secrets_refuse_to_start() {
    let h = Harness::new().await;
    let engine = Engine::new(
        h.store().clone(),
        sandbox(),
        SecretSource::fixed([]),
        EngineConfig { network: common::loopback(), ..EngineConfig::default() },
    )
    .unwrap();
    let config = |signing: &str, bot: &str| ServeConfig {
        signing_secret: Secret::new(signing),
        bot_token: Secret::new(bot),
        api_token: None,
        slack: SlackApiConfig::default(),
        channel: CHANNEL.into(),
        command: "/offboard".into(),
        pipelines_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines"),
        default_pipeline: "offboarding".into(),
        load: LoadOptions {
            plugins_dir: PathBuf::from(offramp::BUILTIN_PLUGINS_DIR),
            vars: Default::default(),
            allow_cap: None,
            contracts: Default::default(),
        },
        ack_budget: Duration::from_millis(2500),
        pause_reminder: Duration::from_secs(4 * 3600),
    };
    let err = AppState::new(config("", "xoxb-1"), engine.clone()).await.err().unwrap();
    assert!(err.to_string().contains("SLACK_SIGNING_SECRET is not set"), "{err}");
    let err = AppState::new(config("secret", " "), engine.clone()).await.err().unwrap();
    assert!(err.to_string().contains("SLACK_BOT_TOKEN is not set"), "{err}");
    let mut c = config("secret", "xoxb-1");
    c.load.vars.insert("okta_ulr".into(), "https://acme.okta.com".into());
    assert!(AppState::new(c, engine.clone()).await.err().unwrap().to_string().contains("declares the var(s) okta_ulr"));
    let mut c = config("secret", "xoxb-1");
    c.default_pipeline = "nope".into();
    assert!(AppState::new(c, engine.clone()).await.err().unwrap().to_string().contains("default pipeline `nope`"));
    assert!(AppState::new(config("secret", "xoxb-1"), engine).await.is_ok());
}

/// A store whose every call first waits: a database that has become slow.
struct SlowStore {
    inner: Arc<dyn Store>,
    delay: Duration,
}

macro_rules! slow {
    ($self:ident . $name:ident ( $($arg:expr),* )) => {{
        tokio::time::sleep($self.delay).await;
        $self.inner.$name($($arg),*).await
    }};
}

#[async_trait::async_trait]
impl Store for SlowStore {
    async fn create_run(
        &self,
        run: &offramp::store::NewRun,
        event: offramp::store::Event,
    ) -> Result<(), offramp::store::StoreError> {
        slow!(self.create_run(run, event))
    }
    async fn run(&self, id: &str) -> Result<offramp::store::RunRecord, offramp::store::StoreError> {
        slow!(self.run(id))
    }
    async fn runs(&self, limit: u32) -> Result<Vec<offramp::store::RunRecord>, offramp::store::StoreError> {
        slow!(self.runs(limit))
    }
    async fn create_batch(&self, batch: &offramp::store::NewBatch) -> Result<(), offramp::store::StoreError> {
        slow!(self.create_batch(batch))
    }
    async fn batch(&self, id: &str) -> Result<offramp::store::BatchRecord, offramp::store::StoreError> {
        slow!(self.batch(id))
    }
    async fn batch_runs(&self, id: &str) -> Result<Vec<offramp::store::RunRecord>, offramp::store::StoreError> {
        slow!(self.batch_runs(id))
    }
    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<offramp::store::Claimed>, offramp::store::StoreError> {
        slow!(self.claim_orphans(owner, now_ms, until_ms, limit))
    }
    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.claim_run(run_id, owner, now_ms, until_ms))
    }
    async fn renew_leases(
        &self,
        owner: &str,
        run_ids: &[String],
        until_ms: i64,
    ) -> Result<u64, offramp::store::StoreError> {
        slow!(self.renew_leases(owner, run_ids, until_ms))
    }
    async fn busy_owners(&self, owner: &str, now_ms: i64) -> Result<u32, offramp::store::StoreError> {
        slow!(self.busy_owners(owner, now_ms))
    }
    async fn release_run(&self, run_id: &str, owner: &str) -> Result<(), offramp::store::StoreError> {
        slow!(self.release_run(run_id, owner))
    }
    async fn due_reminders(
        &self,
        cutoff: &str,
        now: &str,
        limit: u32,
    ) -> Result<Vec<offramp::store::RunRecord>, offramp::store::StoreError> {
        slow!(self.due_reminders(cutoff, now, limit))
    }
    async fn steps(&self, run_id: &str) -> Result<Vec<offramp::store::StepRecord>, offramp::store::StoreError> {
        slow!(self.steps(run_id))
    }
    async fn events(&self, run_id: &str) -> Result<Vec<offramp::store::EventRecord>, offramp::store::StoreError> {
        slow!(self.events(run_id))
    }
    async fn recent_events(&self, limit: u32) -> Result<Vec<offramp::store::EventRecord>, offramp::store::StoreError> {
        slow!(self.recent_events(limit))
    }
    async fn set_run_status(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        fence: Option<&str>,
        event: offramp::store::Event,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.set_run_status(id, from, to, fence, event))
    }
    async fn change_step(
        &self,
        run_id: &str,
        step_id: &str,
        from: &[offramp::store::StepStatus],
        guard: Option<offramp::store::Guard>,
        fence: Option<&str>,
        change: offramp::store::StepChange,
        event: offramp::store::Event,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.change_step(run_id, step_id, from, guard, fence, change, event))
    }
    async fn append_event(
        &self,
        run_id: Option<&str>,
        step_id: Option<&str>,
        event: offramp::store::Event,
    ) -> Result<(), offramp::store::StoreError> {
        slow!(self.append_event(run_id, step_id, event))
    }
    async fn add_approver(&self, user_id: &str, added_by: &str) -> Result<bool, offramp::store::StoreError> {
        self.inner.add_approver(user_id, added_by).await
    }
    async fn remove_approver(&self, user_id: &str, by: &str) -> Result<bool, offramp::store::StoreError> {
        slow!(self.remove_approver(user_id, by))
    }
    async fn approvers(&self) -> Result<Vec<offramp::store::Approver>, offramp::store::StoreError> {
        slow!(self.approvers())
    }
    async fn approver(&self, user_id: &str) -> Result<Option<offramp::store::Approver>, offramp::store::StoreError> {
        slow!(self.approver(user_id))
    }
    async fn create_request(
        &self,
        req: &offramp::store::RunRequest,
        event: offramp::store::Event,
    ) -> Result<(), offramp::store::StoreError> {
        slow!(self.create_request(req, event))
    }
    async fn request(&self, id: &str) -> Result<offramp::store::RunRequest, offramp::store::StoreError> {
        slow!(self.request(id))
    }
    async fn approve_request(&self, id: &str, user: &str) -> Result<Option<u32>, offramp::store::StoreError> {
        slow!(self.approve_request(id, user))
    }
    async fn approvals(&self, id: &str) -> Result<Vec<String>, offramp::store::StoreError> {
        slow!(self.approvals(id))
    }
    async fn create_run_for_request(
        &self,
        request_id: &str,
        by: &str,
        run: &offramp::store::NewRun,
        event: offramp::store::Event,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.create_run_for_request(request_id, by, run, event))
    }
    async fn create_batch_for_request(
        &self,
        request_id: &str,
        by: &str,
        batch: &offramp::store::NewBatch,
        runs: &[(offramp::store::NewRun, offramp::store::Event)],
        approved: &offramp::store::Event,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.create_batch_for_request(request_id, by, batch, runs, approved))
    }
    async fn set_batch_message(
        &self,
        batch_id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), offramp::store::StoreError> {
        slow!(self.set_batch_message(batch_id, channel, ts))
    }
    async fn cancel_request(
        &self,
        id: &str,
        by: &str,
        event: offramp::store::Event,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.cancel_request(id, by, event))
    }
    async fn set_request_message(&self, id: &str, channel: &str, ts: &str) -> Result<(), offramp::store::StoreError> {
        slow!(self.set_request_message(id, channel, ts))
    }
    async fn set_run_message(&self, msg: &offramp::store::RunMessage) -> Result<(), offramp::store::StoreError> {
        slow!(self.set_run_message(msg))
    }
    async fn run_message(
        &self,
        run_id: &str,
    ) -> Result<Option<offramp::store::RunMessage>, offramp::store::StoreError> {
        slow!(self.run_message(run_id))
    }
    async fn first_sighting(
        &self,
        signature: &str,
        now_secs: i64,
        keep_secs: i64,
    ) -> Result<bool, offramp::store::StoreError> {
        slow!(self.first_sighting(signature, now_secs, keep_secs))
    }
}

#[tokio::test]
async fn a_slow_database_does_not_delay_the_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("slow.db").display())).await.unwrap());
    let slow: Arc<dyn Store> = Arc::new(SlowStore { inner, delay: Duration::from_millis(1500) });
    // A budget of 300 ms against a database that takes 1.5 s a query (Slack's budget is 3 s).
    // Any query on the acknowledgement path would take the reply past 1.5 s.
    let s = Slack::with(|c| c.ack_budget = Duration::from_millis(300), Some(slow)).await;
    let started = Instant::now();
    let reply = s.command(ADMIN, "alice@example.com").await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.raw.contains("Working on it"), "{}", reply.raw);
    assert!(took < Duration::from_millis(1400), "acknowledged in {took:?}");
    // The confirmation follows through the response_url.
    let answer = s.wait_response(1).await;
    let request = button(&answer["blocks"], "start").unwrap_or_else(|| panic!("{answer}"));

    // Clicks are acknowledged at once, whatever the database does.
    let started = Instant::now();
    assert_eq!(s.click(ADMIN, "start", &request).await.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(1400), "click acknowledged in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_slack_outage_loses_no_run_state() {
    let s = Slack::new().await;
    // Every Web API call fails with a 500 for the rest of the test.
    s.h.mock.state.inject(Fault {
        method: None,
        path_contains: "/slack/api/".into(),
        status: 500,
        times: 10_000,
        delay_ms: 0,
    });
    let request = s.request(ADMIN).await;
    s.click(ADMIN, "start", &request).await;
    let run_id = s.wait_run().await;
    // The run does not wait for Slack.
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    let steps = s.h.steps(&run_id).await;
    assert_eq!(steps.len(), 5);
    assert!(steps.values().all(|st| st.status.is_finished()), "{steps:?}");
    assert_eq!(s.h.mock.state.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED");
    // The reporter kept trying (with backoff) and nothing was posted.
    let ws = s.h.mock.state.slack.clone();
    wait("retries of the run message", || {
        (ws.calls().iter().filter(|c| c.method == "chat.postMessage").count() >= 2).then_some(())
    })
    .await;
    assert!(ws.messages().is_empty());
}

#[tokio::test]
async fn a_click_answers_one_pause_even_when_the_step_pauses_again_at_the_same_attempt() {
    let s = Slack::new().await;
    // A credential that is not set: the step pauses before its plugin runs, at attempt 0, and
    // pauses again after every Retry until someone sets it.
    std::fs::write(
        s.pipelines.path().join("needs-secret.yaml"),
        r#"version: 1
name: needs-secret
inputs: { email: { type: email, required: true } }
vars: { api: "https://api.example.com" }
steps:
  - id: notify
    uses: http
    with: { method: POST, url: "{{ vars.api }}/leavers", json: { email: "{{ inputs.email }}" } }
    allow: ["{{ vars.api }}"]
    credentials:
      - { host: "{{ vars.api }}", secret: NOT_SET_ANYWHERE, header: Authorization, format: "Bearer {secret}" }
"#,
    )
    .unwrap();
    let reply = s.command(ADMIN, "alice@example.com pipeline=needs-secret").await;
    let start = button(&reply.body["blocks"], "start").unwrap_or_else(|| panic!("{}", reply.raw));
    s.click(ADMIN, "start", &start).await;
    let run_id = s.wait_run().await;
    s.wait_status(&run_id, RunStatus::Paused).await;
    let first = s.wait_message("Retry", |m| button(&m.blocks, "retry").is_some()).await;
    let (retry, skip) = (button(&first.blocks, "retry").unwrap(), button(&first.blocks, "skip").unwrap());
    assert!(retry.contains(r#""a":0,"p":1"#), "{retry}");

    let before = s.responses().len();
    s.click(ADMIN, "retry", &retry).await;
    // It pauses again, at the same attempt, at pause 2.
    let store = s.store().clone();
    let rid = run_id.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let step = store.steps(&rid).await.unwrap().remove(0);
        if step.pauses == 2 && step.status == offramp::store::StepStatus::Paused {
            assert_eq!(step.attempts, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{step:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The old buttons answer pause 1: a second Retry and a late Skip do nothing.
    s.click(ADMIN, "retry", &retry).await;
    s.click(OTHER_ADMIN, "skip", &skip).await;
    let a = s.wait_response(before + 1).await;
    let b = s.wait_response(before + 2).await;
    for answer in [a, b] {
        let text = answer["text"].as_str().unwrap();
        assert!(text.contains("handled by <@U0ADMIN> (retry)"), "{text}");
    }
    let step = s.store().steps(&run_id).await.unwrap().remove(0);
    assert_eq!(
        (step.status, step.pauses),
        (offramp::store::StepStatus::Paused, 2),
        "still waiting for an answer to pause 2"
    );
    let decisions = s.store().events(&run_id).await.unwrap().into_iter().filter(|e| e.kind == "decision").count();
    assert_eq!(decisions, 1);
    // Each pause got its own thread reply, and the message now carries pause 2's buttons.
    let ws = s.h.mock.state.slack.clone();
    wait("two error replies", || {
        (ws.messages().iter().filter(|m| m.thread_ts.as_deref() == Some(&first.ts)).count() == 2).then_some(())
    })
    .await;
    let now = s
        .wait_message("pause 2's buttons", |m| button(&m.blocks, "retry").is_some_and(|v| v.contains(r#""p":2"#)))
        .await;
    assert!(slack::blocks::render_text(&json!({ "blocks": now.blocks })).contains("NOT_SET_ANYWHERE"));
}

#[tokio::test]
async fn a_paused_run_gets_reminders_in_its_thread_until_someone_decides() {
    let s = Slack::with(|c| c.pause_reminder = Duration::from_millis(600), None).await;
    let (run_id, paused) = s.paused_run().await;
    let ws = s.h.mock.state.slack.clone();
    let reminders = || {
        ws.messages()
            .into_iter()
            .filter(|m| m.thread_ts.as_deref() == Some(paused.ts.as_str()) && m.text.contains("Still waiting"))
            .collect::<Vec<_>>()
    };
    // Not yet due: nothing.
    assert_eq!(s.state.send_reminders().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.state.send_reminders().await.unwrap(), 1);
    let first = reminders();
    assert_eq!(first.len(), 1);
    assert!(
        first[0].text.contains("for alice@example.com") && first[0].text.contains("`deactivate`"),
        "{}",
        first[0].text
    );
    // Asked again at once (another replica, the next tick): it was just sent, so nothing.
    assert_eq!(s.state.send_reminders().await.unwrap(), 0);
    // A pause_reminder later, the next one.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.state.send_reminders().await.unwrap(), 1);
    assert_eq!(reminders().len(), 2);
    let logged = s.store().events(&run_id).await.unwrap().into_iter().filter(|e| e.kind == "pause_reminder").count();
    assert_eq!(logged, 2, "each reminder is in the event log");
    // Once decided, no more reminders.
    let value = button(&paused.blocks, "retry").unwrap();
    s.click(ADMIN, "retry", &value).await;
    s.wait_status(&run_id, RunStatus::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.state.send_reminders().await.unwrap(), 0);
    assert_eq!(reminders().len(), 2);
}

#[tokio::test]
async fn a_double_click_landing_on_two_replicas_takes_effect_once() {
    // Two servers (two engines, two lease owners) on one database: PostgreSQL when
    // OFFRAMP_TEST_DATABASE_URL is set, else one SQLite file.
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var("OFFRAMP_TEST_DATABASE_URL").ok();
    let schema = format!("clicks_{}", std::process::id());
    let store: Arc<dyn Store> = match &pg {
        Some(url) => Arc::new(offramp::store::PgStore::open_in_schema(url, &schema).await.unwrap()),
        None => {
            Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("shared.db").display())).await.unwrap())
        }
    };
    let a = Slack::with(|_| {}, Some(store.clone())).await;
    let b = Slack::with(|_| {}, Some(store.clone())).await;
    let (run_id, paused) = a.paused_run().await;
    let retry = button(&paused.blocks, "retry").unwrap();
    // The same button pressed twice, one request reaching each replica.
    let (x, y) = tokio::join!(a.click(ADMIN, "retry", &retry), b.click(ADMIN, "retry", &retry));
    assert_eq!((x.status, y.status), (StatusCode::OK, StatusCode::OK));
    a.wait_status(&run_id, RunStatus::Succeeded).await;
    let events = store.events(&run_id).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "decision").count(), 1, "one decision: {events:?}");
    let steps = store.steps(&run_id).await.unwrap();
    let deactivate = steps.iter().find(|s| s.step_id == "deactivate").unwrap();
    assert_eq!(deactivate.attempts, 2, "the 403, then exactly one retry");
    let sent = a.h.mock.state.requests().iter().filter(|r| r.path.ends_with("/lifecycle/deactivate")).count();
    assert_eq!(sent, 2, "Okta got the deactivate twice: the 403 and the one retry");
    if let Some(url) = &pg {
        drop((a, b, store));
        offramp::store::PgStore::drop_schema(url, &schema).await.unwrap();
    }
}

/// What Slack's SDKs (slack_sdk's SignatureVerifier, Bolt) refuse, offramp refuses: a valid
/// signature in upper-case hex, a repeated signature or timestamp header; and a signed body
/// that is not a well-formed command — not UTF-8 (raw or percent-encoded), or missing a field
/// Slack always sends — is a 400 that records nothing, on both routes.
#[tokio::test]
async fn requests_are_read_as_strictly_as_slacks_sdks_read_them() {
    let s = Slack::new().await;
    let body = s.command_body(ADMIN, "alice@example.com");
    let ts = now();
    let sig = sign(SIGNING_SECRET, ts, &body);
    let upper = format!("v0={}", sig[3..].to_uppercase());
    let reply = s.send("/slack/commands", body.clone(), ts, Some(upper)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "upper-case hex");
    for (what, headers) in [
        (
            "two signatures",
            vec![
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-signature", sig.clone()),
                ("x-slack-signature", sig.clone()),
            ],
        ),
        (
            "two timestamps",
            vec![
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-request-timestamp", (ts - 1).to_string()),
                ("x-slack-signature", sig.clone()),
            ],
        ),
    ] {
        for path in ["/slack/commands", "/slack/interactions"] {
            let reply = s.send_raw(path, body.clone().into_bytes(), &headers).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what} on {path}");
        }
    }

    let signed_raw = |body: Vec<u8>| {
        let ts = now();
        let sig = sign(SIGNING_SECRET, ts, &body);
        (body, vec![("x-slack-request-timestamp", ts.to_string()), ("x-slack-signature", sig)])
    };
    let latin1 = {
        let (before, after) = body.split_once("alice%40").unwrap();
        [before.as_bytes(), b"jos\xe9%40", after.as_bytes()].concat()
    };
    let missing = |field: &str| {
        body.split('&').filter(|kv| !kv.starts_with(&format!("{field}="))).collect::<Vec<_>>().join("&").into_bytes()
    };
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("raw Latin-1 é".into(), latin1),
        ("percent-encoded Latin-1 é".into(), body.replace("alice%40", "jos%E9%40").into_bytes()),
        ("invalid UTF-8 in the user".into(), body.replace("user_id=U0ADMIN", "user_id=U0%FFADMIN").into_bytes()),
    ];
    for field in ["command", "text", "user_id", "team_id", "channel_id", "response_url", "trigger_id"] {
        cases.push((format!("no {field}"), missing(field)));
    }
    for (what, bytes) in cases {
        let (bytes, headers) = signed_raw(bytes);
        let reply = s.send_raw("/slack/commands", bytes, &headers).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.raw);
    }
    let click = s.click_body(ADMIN, "start", "whatever").replace("payload=%7B", "payload=%7B%22x%22%3A%22%E9%22%2C");
    let (bytes, headers) = signed_raw(click.into_bytes());
    assert_eq!(s.send_raw("/slack/interactions", bytes, &headers).await.status, StatusCode::BAD_REQUEST);
    let events = s.store().recent_events(100).await.unwrap();
    assert!(events.iter().all(|e| e.kind != "run_requested"), "nothing recorded: {events:?}");
    // The well-formed original still works.
    let reply = s.signed("/slack/commands", body).await;
    assert!(button(&reply.body["blocks"], "start").is_some(), "{}", reply.raw);
}

/// The usage text's examples come from the pipelines' real inputs: with the shipped default
/// pipeline (offboarding.yaml, which requires `manager`) and contractor.yaml beside it, every
/// example the help gives, sent as it is written, gets a confirmation with a Start button.
#[tokio::test]
async fn every_usage_example_works_as_written() {
    let s = Slack::new().await;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    for name in ["offboarding.yaml", "contractor.yaml"] {
        std::fs::copy(repo.join(name), s.pipelines.path().join(name)).unwrap();
    }
    let help = s.command(ADMIN, "help").await;
    let text = help.body["text"].as_str().unwrap_or_default().to_string();
    let examples: Vec<&str> =
        text.split('`').skip(1).step_by(2).filter(|e| e.starts_with("/offboard ") && e.contains('@')).collect();
    assert!(examples.len() >= 2, "examples for the default and another pipeline: {text}");
    assert!(examples[0].contains("manager="), "offboarding.yaml requires manager: {text}");
    for example in examples {
        let reply = s.command(ADMIN, example.trim_start_matches("/offboard ")).await;
        assert!(button(&reply.body["blocks"], "start").is_some(), "`{example}` → {}", reply.raw);
    }
    // A mistake gets the same usage.
    let wrong = s.command(ADMIN, "alice@example.com").await;
    assert!(
        wrong.raw.contains("manager") && wrong.raw.contains("alice@example.com manager=dana@example.com"),
        "{}",
        wrong.raw
    );
}

/// The channel messages that are not thread replies.
fn top_level(s: &Slack) -> Vec<offramp_mock::slack::Message> {
    s.h.mock.state.slack.messages().into_iter().filter(|m| m.thread_ts.is_none()).collect()
}

/// Several people in one command are one request: one confirmation listing them all, one
/// Start, a batch of runs reported in one channel message (none of their own), a summary in
/// its thread.
#[tokio::test]
async fn several_people_are_one_request_one_batch_and_one_message() {
    let s = Slack::new().await;
    let reply = s.command(ADMIN, "alice@example.com, bob@example.com\ncarol@example.com").await;
    let shown = slack::blocks::render_text(&reply.body);
    assert!(shown.contains("Offboard 3 people: alice@example.com, bob@example.com, carol@example.com"), "{shown}");
    for (i, who) in ["alice", "bob", "carol"].iter().enumerate() {
        assert!(shown.contains(&format!("{}. {who}@example.com", i + 1)), "{shown}");
    }
    let request = button(&reply.body["blocks"], "start").unwrap();
    s.click(ADMIN, "start", &request).await;
    let closed = s.wait_response(1).await;
    assert!(closed["text"].as_str().unwrap().starts_with("Started batch"), "{closed}");

    let msg = s.wait_message("the batch over", |m| m.text.contains("3 of 3 finished")).await;
    assert!(
        msg.text.contains("Offboarding 3 people with `okta-offboarding`") || msg.text.contains("Offboarding 3 people")
    );
    assert!(msg.text.contains("(3 succeeded)"), "{}", msg.text);
    let runs = s.runs().await;
    assert_eq!(runs.len(), 3);
    let batch_id = runs[0].batch_id.clone().expect("the runs name their batch");
    assert!(runs.iter().all(|r| r.batch_id.as_deref() == Some(batch_id.as_str()) && r.status == RunStatus::Succeeded));
    let mut subjects: Vec<&str> = runs.iter().map(|r| r.subject.as_str()).collect();
    subjects.sort();
    assert_eq!(subjects, ["alice@example.com", "bob@example.com", "carol@example.com"]);
    let batch = s.store().batch(&batch_id).await.unwrap();
    assert_eq!(batch.size, 3);
    assert_eq!(batch.approved_by.as_deref(), Some("slack:U0ADMIN"));
    assert_eq!(batch.request_id.as_deref(), Some(request.as_str()));
    assert_eq!(batch.message_ts.as_deref(), Some(msg.ts.as_str()));
    // One channel message for the three runs; the summary in its thread.
    let top = top_level(&s);
    assert_eq!(top.len(), 1, "one message for the batch, none per run: {top:#?}");
    let ws = s.h.mock.state.slack.clone();
    let summary = wait("the batch summary", || {
        ws.messages()
            .into_iter()
            .find(|m| m.thread_ts.as_deref() == Some(msg.ts.as_str()) && m.text.contains("is over"))
    })
    .await;
    assert!(summary.text.contains("3 succeeded") && summary.reply_broadcast, "{summary:?}");
}

/// A person the pipeline cannot take is refused with the others, naming them: nothing is
/// recorded, nothing runs.
#[tokio::test]
async fn a_request_for_several_with_one_bad_person_records_nothing() {
    let s = Slack::new().await;
    let reply = s.command(ADMIN, "alice@example.com not-an-email bob@example.com Bob@Example.com").await;
    let text = reply.body["text"].as_str().unwrap_or_default();
    assert!(text.contains("#2 (not-an-email)"), "{text}");
    assert!(text.contains("Bob@Example.com is named twice (#3 and #4)"), "{text}");
    assert!(button(&reply.body["blocks"], "start").is_none());
    assert!(s.runs().await.is_empty());
}

/// More people than the operator's `batches: { two_person_over }` (10 by default) need
/// another approver's Start, even on a pipeline that asks for none. The batch message shows the
/// paused runs with their buttons (ten, then a count), and a click there decides that run.
#[tokio::test]
async fn a_request_for_more_than_the_limit_needs_another_approver() {
    let s = Slack::new().await;
    // Unknown to the mock Okta: every run pauses at its first step.
    let people: Vec<String> = (1..=11).map(|i| format!("leaver{i}@example.com")).collect();
    let reply = s.command(ADMIN, &people.join(" ")).await;
    assert!(reply.raw.contains("Asked for approval"), "{}", reply.raw);
    let ws = s.h.mock.state.slack.clone();
    let post =
        wait("the approval request", || ws.messages().into_iter().find(|m| m.text.contains("asks to offboard"))).await;
    let shown = slack::blocks::render_text(&json!({ "blocks": post.blocks }));
    assert!(shown.contains("11 people") && shown.contains("11. leaver11@example.com"), "{shown}");
    let request = button(&post.blocks, "start").unwrap();
    s.click(ADMIN, "start", &request).await;
    let answer = s.wait_response(1).await;
    assert!(answer["text"].as_str().unwrap().contains("your Start does not count"), "{answer}");
    assert!(s.runs().await.is_empty());

    s.click(OTHER_ADMIN, "start", &request).await;
    let msg = s.wait_message("every run paused", |m| m.text.contains("(11 paused)")).await;
    let retries = msg.blocks.as_array().unwrap().iter().filter(|b| b["type"] == "actions").count();
    assert_eq!(retries, 10, "ten paused runs with buttons");
    let shown = slack::blocks::render_text(&json!({ "blocks": msg.blocks }));
    assert!(shown.contains("and 1 more paused"), "{shown}");
    assert_eq!(s.runs().await.len(), 11);
    // Each paused run is told in the thread, with its buttons.
    let told = wait("a thread reply per paused run", || {
        let n = ws.messages().iter().filter(|m| m.thread_ts.as_deref() == Some(msg.ts.as_str())).count();
        (n >= 11).then_some(n)
    })
    .await;
    assert_eq!(told, 11);

    let abort = button(&msg.blocks, "abort").unwrap();
    s.click(OTHER_ADMIN, "abort", &abort).await;
    s.wait_message("one aborted", |m| m.text.contains("1 aborted, 10 paused")).await;
    assert_eq!(top_level(&s).iter().filter(|m| m.text.contains("Offboarding")).count(), 1);
}

/// `POST /api/runs` for machines: one run or many under the same rules as `/offboard`.
#[tokio::test]
async fn the_api_starts_one_or_many_runs_under_the_same_rules() {
    let s = Slack::new().await;
    let call = |method: &'static str, path: String, body: Option<Value>, auth: bool| {
        let app = s.app.clone();
        async move {
            let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
            if auth {
                req = req.header("authorization", "Bearer api-token-for-tests");
            }
            let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
            let resp = app.oneshot(req.body(body).unwrap()).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let post = |body: Value| call("POST", "/api/runs".into(), Some(body), true);
    let two = json!({ "requested_by": "workday", "runs": [{ "email": "alice@example.com" }, { "email": "bob@example.com" }] });
    assert_eq!(call("POST", "/api/runs".into(), Some(two.clone()), false).await.0, StatusCode::UNAUTHORIZED);

    // Every problem at once, nothing recorded.
    let (status, body) =
        post(json!({ "runs": [{ "email": "alice@example.com" }, { "email": "nope" }, { "email": ["x"] }] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("runs[2]: `email` must be a string"), "{problems}");
    let (status, body) = post(json!({ "rows": [] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["problems"][0].as_str().unwrap().contains("unknown field `rows`"), "{body}");
    let (_, body) = post(json!({ "runs": [{ "email": "alice@example.com" }, { "email": "nope" }] })).await;
    assert!(body["problems"][0].as_str().unwrap().starts_with("#2 (nope):"), "{body}");
    // A name shown in Slack carries no markup; more rows than the operator allows are refused
    // before any is looked at.
    let (status, body) =
        post(json!({ "requested_by": "<!channel>", "inputs": { "email": "alice@example.com" } })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let many: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let (status, body) = post(json!({ "runs": many })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["problems"][0].as_str().unwrap().contains("at most 1000"), "{body}");
    assert!(s.runs().await.is_empty());

    // Two people: a batch, started at once (no approvers asked for).
    let (status, body) = post(two).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let batch = body["batch"].as_str().unwrap().to_string();
    assert_eq!(body["runs"].as_array().unwrap().len(), 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, b) = call("GET", format!("/api/batches/{batch}"), None, true).await;
        assert_eq!(status, StatusCode::OK);
        if b["runs"].as_array().unwrap().iter().all(|r| r["status"] == "succeeded") {
            assert_eq!(b["batch"]["requested_by"], "api:workday");
            break;
        }
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.runs().await.iter().all(|r| r.requested_by == "api:workday"));

    // One person: a plain run.
    let (status, body) = post(json!({ "inputs": { "email": "carol@example.com" } })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("batch").is_none() && body["runs"].as_array().unwrap().len() == 1, "{body}");

    // Eleven: the two-person rule; approvers start it in Slack.
    let eleven: Vec<Value> = (1..=11).map(|i| json!({ "email": format!("leaver{i}@example.com") })).collect();
    let (status, body) = post(json!({ "requested_by": "workday", "runs": eleven })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!((body["status"].as_str(), body["approvals_needed"].as_u64()), (Some("pending"), Some(1)));
    let ws = s.h.mock.state.slack.clone();
    let ask =
        wait("the approval request", || ws.messages().into_iter().find(|m| m.text.contains("asks to offboard 11")))
            .await;
    assert!(ask.text.starts_with("`api:workday` asks"), "{}", ask.text);
    s.click(ADMIN, "start", &button(&ask.blocks, "start").unwrap()).await;
    s.wait_message("the batch", |m| m.text.contains("Offboarding 11 people")).await;
    let runs = s.runs().await;
    assert_eq!(runs.len(), 2 + 1 + 11);
    assert!(runs.iter().all(|r| r.requested_by == "api:workday" || r.subject == "carol@example.com"), "{runs:#?}");
}
