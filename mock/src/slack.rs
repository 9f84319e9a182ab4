//! A mock Slack Web API that records every call: `chat.postMessage`, `chat.update`,
//! `chat.postEphemeral`, `auth.test`, and `response_url` posts. It answers like Slack:
//! HTTP 200 with `{"ok": false, "error": "..."}` for API errors (`not_authed`,
//! `invalid_auth`, `channel_not_found`, `message_not_found`, `no_text`, `invalid_blocks`),
//! HTTP 429 with `Retry-After` when rate limited.
//!
//! Routes (under the mock server): `POST /slack/api/{method}`, `POST /slack/hooks/{*path}`
//! (use `{mock}/slack/hooks/...` as a response_url).
//!
//! The org admin side, at Slack's real paths so a plugin's base URL is the mock's root:
//! the SCIM v2 API (`GET /scim/v2/Users?filter=...`, `GET` and `DELETE /scim/v2/Users/{id}`;
//! real base `https://api.slack.com`) and the Web API's `admin.users.session.reset`
//! (`POST /api/{method}`; real base `https://slack.com`). Both take the org admin's user token
//! (`Authorization: Bearer xoxp-...`, see [`Workspace::with_admin_token`]), not the bot's.
//! SCIM errors use Slack's shape `{"Errors": {"description": "...", "code": 404}}`; Web API
//! errors are HTTP 200 `{"ok": false, "error": "..."}`; both rate limits are HTTP 429 with
//! `Retry-After` (seconds).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// The org admin side: SCIM users, the admin token, `admin.*` bookkeeping.
    admin: Admin,
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
                admin: Admin::sample(),
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
pub fn router(state: Workspace) -> Router {
    Router::new().route("/api/{method}", post(web_api)).route("/hooks/{*path}", post(response_url)).with_state(state)
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

async fn web_api(State(ws): State<Workspace>, Path(method): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
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
    State(state): State<Workspace>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    state.record("response_url", &body, Some(path));
    axum::Json(json!({ "ok": true })).into_response()
}

// ---- SCIM and admin.* ----

/// A member as Slack's SCIM API sees them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScimUser {
    /// The Slack user id, e.g. `U01ALICE`.
    pub id: String,
    /// The Slack handle, e.g. `alice`.
    pub user_name: String,
    /// The primary email.
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    /// `false` once deactivated.
    pub active: bool,
    /// Signed-in sessions (web and mobile); deactivation and a session reset end them.
    pub sessions: u32,
}

/// The org admin side of the workspace.
#[derive(Debug)]
struct Admin {
    /// The org admin's user token (`xoxp-...`); empty refuses every SCIM and `admin.*` call.
    token: String,
    users: BTreeMap<String, ScimUser>,
    /// User ids whose sessions `admin.users.session.reset` wiped, in order.
    session_resets: Vec<String>,
    /// The next this-many `admin.*` calls answer HTTP 429 `ratelimited`.
    throttled: u32,
}

impl Admin {
    /// Alice (active, signed in on two devices), Bob (already deactivated) and Dana (Alice's
    /// manager, active).
    fn sample() -> Admin {
        let user = |id: &str, first: &str, last: &str, active: bool, sessions: u32| ScimUser {
            id: id.into(),
            user_name: first.to_lowercase(),
            email: format!("{}@example.com", first.to_lowercase()),
            given_name: first.into(),
            family_name: last.into(),
            active,
            sessions,
        };
        let users = [
            user("U01ALICE", "Alice", "Anders", true, 2),
            user("U02BOB", "Bob", "Brown", false, 0),
            user("U03DANA", "Dana", "Diaz", true, 1),
        ];
        Admin {
            token: String::new(),
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            session_resets: vec![],
            throttled: 0,
        }
    }
}

impl Workspace {
    /// Sets the org admin's user token that SCIM and `admin.*` methods expect.
    pub fn with_admin_token(self, token: &str) -> Self {
        if let Ok(mut i) = self.inner.lock() {
            i.admin.token = token.to_string();
        }
        self
    }

    /// A SCIM user by id.
    pub fn scim_user(&self, id: &str) -> Option<ScimUser> {
        self.inner.lock().ok()?.admin.users.get(id).cloned()
    }

    /// A SCIM user by email (case-insensitive).
    pub fn scim_user_by_email(&self, email: &str) -> Option<ScimUser> {
        let inner = self.inner.lock().ok()?;
        inner.admin.users.values().find(|u| u.email.eq_ignore_ascii_case(email)).cloned()
    }

    /// Adds (or replaces) a SCIM user.
    pub fn add_scim_user(&self, user: ScimUser) {
        if let Ok(mut i) = self.inner.lock() {
            i.admin.users.insert(user.id.clone(), user);
        }
    }

    /// User ids whose sessions `admin.users.session.reset` wiped, in order.
    pub fn session_resets(&self) -> Vec<String> {
        self.inner.lock().map(|i| i.admin.session_resets.clone()).unwrap_or_default()
    }

    /// Makes the next `times` `admin.*` Web API calls answer like Slack's rate limiter: HTTP 429,
    /// `Retry-After: 1`, `{"ok": false, "error": "ratelimited"}`.
    pub fn throttle_admin(&self, times: u32) {
        if let Ok(mut i) = self.inner.lock() {
            i.admin.throttled = times;
        }
    }
}

const SCIM_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SCIM_ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SCIM_LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// `/scim/v2/...` (SCIM, real base `https://api.slack.com`) and `/api/{method}` (the Web API's
/// `admin.*` methods, real base `https://slack.com`).
pub(crate) fn scim_router(state: Workspace) -> Router {
    Router::new()
        .route("/scim/v2/Users", get(scim_list_users))
        .route("/scim/v2/Users/{id}", get(scim_get_user).delete(scim_delete_user))
        .route("/api/{method}", post(admin_api))
        .with_state(state)
}

/// An injected SCIM failure in Slack's SCIM error shape.
pub(crate) fn scim_error_response(status: StatusCode) -> Response {
    let description = match status.as_u16() {
        400 => "invalid_request",
        401 => "invalid_authentication",
        403 => "permission_denied",
        404 => "not_found",
        429 => "rate_limited",
        503 => "service_unavailable",
        _ => "internal_error",
    };
    scim_error(status, description)
}

/// `{"Errors": {"description": ..., "code": ...}}`, with `Retry-After` on a 429.
fn scim_error(status: StatusCode, description: &str) -> Response {
    let body = json!({ "Errors": { "description": description, "code": status.as_u16() } });
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [("retry-after", "1")], axum::Json(body)).into_response();
    }
    (status, axum::Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// The SCIM auth check: `None` for the org admin token, else the 401 to answer.
fn scim_refusal(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    match bearer(headers) {
        Some(t) if !inner.admin.token.is_empty() && t == inner.admin.token => None,
        Some(_) => Some(scim_error(StatusCode::UNAUTHORIZED, "invalid_authentication")),
        None => Some(scim_error(StatusCode::UNAUTHORIZED, "no_authorization")),
    }
}

fn scim_user_json(u: &ScimUser) -> Value {
    json!({
        "schemas": [SCIM_USER, SCIM_ENTERPRISE],
        "id": u.id,
        "externalId": "",
        "meta": {
            "created": "2023-01-10T09:00:00-08:00",
            "location": format!("https://api.slack.com/scim/v2/Users/{}", u.id),
        },
        "userName": u.user_name,
        "nickName": u.user_name,
        "name": { "givenName": u.given_name, "familyName": u.family_name },
        "displayName": format!("{} {}", u.given_name, u.family_name),
        "profileUrl": format!("https://example.slack.com/team/{}", u.user_name),
        "title": "",
        "timezone": "America/Los_Angeles",
        "active": u.active,
        "emails": [{ "value": u.email, "primary": true }],
        "photos": [{ "value": "https://secure.gravatar.com/avatar/0.jpg", "type": "photo" }],
        "groups": [],
    })
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    filter: Option<String>,
    #[serde(rename = "startIndex", default)]
    start_index: Option<usize>,
    #[serde(default)]
    count: Option<usize>,
}

/// `attr eq "value"` (the operator is case-insensitive, as SCIM says) → `(attr, value)`.
fn parse_filter(filter: &str) -> Option<(String, String)> {
    let mut parts = filter.trim().splitn(3, ' ');
    let attr = parts.next()?.to_string();
    let op = parts.next()?;
    let value = parts.next()?.trim();
    if !op.eq_ignore_ascii_case("eq") || value.len() < 2 || !value.starts_with('"') || !value.ends_with('"') {
        return None;
    }
    Some((attr, value[1..value.len() - 1].to_string()))
}

async fn scim_list_users(State(state): State<Workspace>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let Ok(inner) = state.inner.lock() else { return scim_error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    if let Some(resp) = scim_refusal(&inner, &headers) {
        return resp;
    }
    let matched: Vec<&ScimUser> = match q.filter.as_deref() {
        None => inner.admin.users.values().collect(),
        Some(f) => {
            let Some((attr, value)) = parse_filter(f) else {
                return scim_error(StatusCode::BAD_REQUEST, &format!("invalid_filter: {f}"));
            };
            let test: fn(&ScimUser, &str) -> bool = match attr.to_ascii_lowercase().as_str() {
                "username" => |u, v| u.user_name.eq_ignore_ascii_case(v),
                "email" | "emails" | "emails.value" => |u, v| u.email.eq_ignore_ascii_case(v),
                "id" => |u, v| u.id == v,
                _ => {
                    return scim_error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid_filter: unsupported attribute {attr}"),
                    );
                }
            };
            inner.admin.users.values().filter(|u| test(u, &value)).collect()
        }
    };
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(100).min(1000);
    let page: Vec<Value> = matched.iter().skip(start - 1).take(count).map(|u| scim_user_json(u)).collect();
    axum::Json(json!({
        "schemas": [SCIM_LIST],
        "totalResults": matched.len(),
        "itemsPerPage": page.len(),
        "startIndex": start,
        "Resources": page,
    }))
    .into_response()
}

async fn scim_get_user(State(state): State<Workspace>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Ok(inner) = state.inner.lock() else { return scim_error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    if let Some(resp) = scim_refusal(&inner, &headers) {
        return resp;
    }
    match inner.admin.users.get(&id) {
        Some(u) => axum::Json(scim_user_json(u)).into_response(),
        None => scim_error(StatusCode::NOT_FOUND, "not_found"),
    }
}

/// Slack's DELETE deactivates (the user stays, with `active: false`) and signs the user out.
/// Deleting an already deactivated user answers 204 again here: Slack documents DELETE only as
/// "sets a Slack user to deactivated", so the mock treats it as idempotent.
async fn scim_delete_user(State(state): State<Workspace>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Ok(mut inner) = state.inner.lock() else {
        return scim_error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if let Some(resp) = scim_refusal(&inner, &headers) {
        return resp;
    }
    match inner.admin.users.get_mut(&id) {
        Some(u) => {
            u.active = false;
            u.sessions = 0;
            StatusCode::NO_CONTENT.into_response()
        }
        None => scim_error(StatusCode::NOT_FOUND, "not_found"),
    }
}

/// `POST /api/{method}`: the Web API's `admin.*` methods, which take the org admin's user
/// token (header or `token` parameter) and answer HTTP 200 `{"ok": ...}`.
async fn admin_api(
    State(state): State<Workspace>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    let Ok(mut inner) = state.inner.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    let token =
        bearer(&headers).map(str::to_string).or_else(|| body.get("token").and_then(Value::as_str).map(str::to_string));
    match token {
        None => return err("not_authed"),
        Some(t) if t == inner.token => return err("not_allowed_token_type"),
        Some(t) if inner.admin.token.is_empty() || t != inner.admin.token => return err("invalid_auth"),
        Some(_) => {}
    }
    if inner.admin.throttled > 0 {
        inner.admin.throttled -= 1;
        return error_response(StatusCode::TOO_MANY_REQUESTS);
    }
    match method.as_str() {
        "admin.users.session.reset" => {
            let Some(user_id) = body.get("user_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
                return err("invalid_arguments");
            };
            let user_id = user_id.to_string();
            let Some(u) = inner.admin.users.get_mut(&user_id) else { return err("user_not_found") };
            u.sessions = 0;
            inner.admin.session_resets.push(user_id);
            axum::Json(json!({ "ok": true })).into_response()
        }
        _ => err("unknown_method"),
    }
}
