//! A mock Slack Web API that records every call: `chat.postMessage`, `chat.update`,
//! `chat.postEphemeral`, `auth.test`, and `response_url` posts. It answers like Slack:
//! HTTP 200 with `{"ok": false, "error": "..."}` for API errors (`not_authed`,
//! `invalid_auth`, `channel_not_found`, `message_not_found`, `no_text`, `invalid_blocks`),
//! HTTP 429 with `Retry-After` when rate limited.
//!
//! Routes (under the mock server): `POST /slack/api/{method}`, `POST /slack/hooks/{*path}`
//! (use `{mock}/slack/hooks/...` as a response_url).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};

use super::MockState;

/// One call the mock received.
#[derive(Debug, Clone, Serialize)]
pub struct SlackCall {
    /// `chat.postMessage`, …, or `response_url`.
    pub method: String,
    pub body: Value,
    /// Milliseconds since the workspace was created.
    pub at_ms: u64,
    /// For `response_url`: the path it was posted to.
    pub path: Option<String>,
}

/// A message in a channel as it stands now.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    /// How many times `chat.update` changed it.
    pub edits: u32,
    pub reply_broadcast: bool,
}

#[derive(Debug)]
struct Inner {
    token: String,
    channels: BTreeSet<String>,
    calls: Vec<SlackCall>,
    messages: Vec<Message>,
    next_ts: u64,
    started: Instant,
}

/// A mock workspace: its bot token, its channels, and what was posted.
#[derive(Clone, Debug)]
pub struct Workspace {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new("xoxb-mock-token", ["C0OFFRAMP"])
    }
}

impl Workspace {
    pub fn new<'a>(bot_token: &str, channels: impl IntoIterator<Item = &'a str>) -> Self {
        Workspace {
            inner: Arc::new(Mutex::new(Inner {
                token: bot_token.to_string(),
                channels: channels.into_iter().map(str::to_string).collect(),
                calls: vec![],
                messages: vec![],
                next_ts: 1_700_000_000_000_100,
                started: Instant::now(),
            })),
        }
    }

    pub fn calls(&self) -> Vec<SlackCall> {
        self.inner.lock().map(|i| i.calls.clone()).unwrap_or_default()
    }

    /// Messages in channels, in the order they were posted.
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().map(|i| i.messages.clone()).unwrap_or_default()
    }

    /// What was posted to `response_url`s, in order.
    pub fn responses(&self) -> Vec<Value> {
        self.calls().into_iter().filter(|c| c.method == "response_url").map(|c| c.body).collect()
    }

    pub(crate) fn record(&self, method: &str, body: &Value, path: Option<String>) {
        if let Ok(mut i) = self.inner.lock() {
            let at_ms = u64::try_from(i.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            i.calls.push(SlackCall { method: method.to_string(), body: body.clone(), at_ms, path });
        }
    }
}

/// The mock's Slack routes.
pub fn router() -> Router<MockState> {
    Router::new().route("/api/{method}", post(web_api)).route("/hooks/{*path}", post(response_url))
}

/// What an injected failure looks like on Slack's API.
pub fn error_response(status: StatusCode) -> Response {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [("retry-after", "1")], axum::Json(json!({ "ok": false, "error": "ratelimited" })))
            .into_response();
    }
    (status, axum::Json(json!({ "ok": false, "error": "internal_error" }))).into_response()
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let json_ct =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if json_ct {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        let v = if k == "blocks" { serde_json::from_str(&v).unwrap_or(Value::String(v)) } else { Value::String(v) };
        map.insert(k, v);
    }
    Value::Object(map)
}

fn err(error: &str) -> Response {
    axum::Json(json!({ "ok": false, "error": error })).into_response()
}

async fn web_api(
    State(state): State<MockState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ws = &state.slack;
    let body = parse_body(&headers, &body);
    ws.record(&method, &body, None);
    let Ok(mut inner) = ws.inner.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    match headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) {
        None => return err("not_authed"),
        Some(t) if t != inner.token => return err("invalid_auth"),
        Some(_) => {}
    }
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let channel = s("channel").unwrap_or_default();
    let blocks = body.get("blocks").cloned().unwrap_or(Value::Null);
    let check_blocks = |blocks: &Value| match blocks {
        Value::Null => true,
        Value::Array(b) => b.len() <= 50 && b.iter().all(|b| b.get("type").is_some()),
        _ => false,
    };
    match method.as_str() {
        "auth.test" => axum::Json(json!({
            "ok": true, "url": "https://mock.slack.com/", "team": "Mock", "user": "offramp",
            "team_id": "T0MOCK", "user_id": "U0BOT", "bot_id": "B0MOCK",
        }))
        .into_response(),
        "chat.postMessage" => {
            if !inner.channels.contains(&channel) {
                return err("channel_not_found");
            }
            let text = s("text").unwrap_or_default();
            if text.is_empty() && blocks.is_null() {
                return err("no_text");
            }
            if !check_blocks(&blocks) {
                return err("invalid_blocks");
            }
            let thread_ts = s("thread_ts");
            if let Some(t) = &thread_ts
                && !inner.messages.iter().any(|m| &m.ts == t && m.channel == channel)
            {
                return err("thread_not_found");
            }
            inner.next_ts += 100;
            let ts = format!("{}.{:06}", inner.next_ts / 1_000_000, inner.next_ts % 1_000_000);
            let reply_broadcast = body.get("reply_broadcast").and_then(Value::as_bool).unwrap_or(false);
            inner.messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                text: text.clone(),
                blocks: blocks.clone(),
                edits: 0,
                reply_broadcast,
            });
            axum::Json(json!({
                "ok": true, "channel": channel, "ts": ts,
                "message": { "type": "message", "bot_id": "B0MOCK", "text": text, "blocks": blocks, "ts": ts },
            }))
            .into_response()
        }
        "chat.update" => {
            if !inner.channels.contains(&channel) {
                return err("channel_not_found");
            }
            if !check_blocks(&blocks) {
                return err("invalid_blocks");
            }
            let ts = s("ts").unwrap_or_default();
            let Some(m) = inner.messages.iter_mut().find(|m| m.ts == ts && m.channel == channel) else {
                return err("message_not_found");
            };
            if let Some(t) = s("text") {
                m.text = t;
            }
            if !blocks.is_null() {
                m.blocks = blocks;
            }
            m.edits += 1;
            axum::Json(json!({ "ok": true, "channel": channel, "ts": ts, "text": m.text })).into_response()
        }
        "chat.postEphemeral" => {
            if !inner.channels.contains(&channel) {
                return err("channel_not_found");
            }
            if s("user").is_none() {
                return err("user_not_in_channel");
            }
            inner.next_ts += 100;
            let ts = format!("{}.{:06}", inner.next_ts / 1_000_000, inner.next_ts % 1_000_000);
            axum::Json(json!({ "ok": true, "message_ts": ts })).into_response()
        }
        _ => err("unknown_method"),
    }
}

async fn response_url(
    State(state): State<MockState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    state.slack.record("response_url", &body, Some(path));
    axum::Json(json!({ "ok": true })).into_response()
}
