//! Atlassian's organization admin APIs on `api.atlassian.com`, as much as offboarding uses, with
//! Atlassian's shapes: `Authorization: Bearer {API key}` (an organization admin API key);
//! `X-RateLimit-Limit/-Remaining/-Reset` (reset as an ISO 8601 instant) on every answer and
//! `Retry-After` (seconds) on a 429. Refusals from the user management API carry its `key`
//! bodies (`{"key": "forbidden"}`, `{"key": "forbidden.targetUnverified"}` for an account outside
//! the organization's verified domains); the gateway's own errors are `{"code": N, "message": "..."}`
//! (401 Unauthorized, 404 Not Found, 429 Too Many Requests).
//!
//! User management REST API:
//! - `GET /users/{account_id}/manage/profile` → `{"account": {account_id, name, email,
//!   account_status: "active" | "inactive" | "closed", ...}}`
//! - `POST /users/{account_id}/manage/lifecycle/disable` (optional body `{"message": "..."}`) → 204
//! - `POST /users/{account_id}/manage/lifecycle/enable` → 204
//!
//! Organizations REST API:
//! - `GET /admin/v1/orgs/{orgId}/users[?cursor=...]` → the organization's managed accounts,
//!   `{data: [...], links: {self, next}, meta: {total}}`, two to a page here so clients have to
//!   follow the cursor.
//!
//! Disabling an account that is already inactive is not documented; the mock answers 204 and
//! changes nothing (plugins read the profile first, so they never rely on it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// The organization id of the sample data.
pub const SAMPLE_ORG_ID: &str = "0a9b8c7d-6e5f-4a3b-9c1d-0e9f8a7b6c5d";

/// Managed accounts on one page of `GET /admin/v1/orgs/{orgId}/users`.
const PAGE_SIZE: usize = 2;

/// An Atlassian account the mock knows.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub account_id: String,
    pub name: String,
    pub email: String,
    /// "active", "inactive" or "closed".
    pub account_status: String,
    /// Whether the organization manages this account (its email is on a verified domain).
    pub managed: bool,
    /// The message given with the last `lifecycle/disable`, if any.
    pub disable_message: Option<String>,
}

#[derive(Debug, Default)]
struct Data {
    token: String,
    org_id: String,
    users: BTreeMap<String, User>,
}

/// The mock organization's accounts.
#[derive(Clone, Default)]
pub struct Directory {
    data: Arc<Mutex<Data>>,
}

impl Directory {
    /// Organization [`SAMPLE_ORG_ID`] managing Alice (active), Bob (already inactive) and Dana
    /// (active); Carol (carol@partner.example) is a collaborator whose account the organization
    /// does not manage. Expects `Authorization: Bearer {token}`.
    pub fn sample(token: &str) -> Self {
        let user = |id: &str, name: &str, email: &str, status: &str, managed: bool| User {
            account_id: id.into(),
            name: name.into(),
            email: email.into(),
            account_status: status.into(),
            managed,
            disable_message: None,
        };
        let users = [
            user("5f8d2c1b9e3a4d0012a4b6c1", "Alice Anders", "alice@example.com", "active", true),
            user("5f8d2c1b9e3a4d0012a4b6c2", "Bob Brown", "bob@example.com", "inactive", true),
            user("5f8d2c1b9e3a4d0012a4b6c3", "Dana Diaz", "dana@example.com", "active", true),
            user("5f8d2c1b9e3a4d0012a4b6c4", "Carol Chen", "carol@partner.example", "active", false),
        ];
        let data = Data {
            token: token.to_string(),
            org_id: SAMPLE_ORG_ID.to_string(),
            users: users.into_iter().map(|u| (u.account_id.clone(), u)).collect(),
        };
        Directory { data: Arc::new(Mutex::new(data)) }
    }

    /// An account by account id or email.
    pub fn user(&self, key: &str) -> Option<User> {
        let data = self.data.lock().ok()?;
        data.users.get(key).or_else(|| data.users.values().find(|u| u.email.eq_ignore_ascii_case(key))).cloned()
    }

    pub fn add_user(&self, user: User) {
        if let Ok(mut d) = self.data.lock() {
            d.users.insert(user.account_id.clone(), user);
        }
    }
}

pub(crate) fn router(state: Directory) -> Router {
    Router::new()
        .route("/users/{account_id}/manage/profile", get(profile))
        .route("/users/{account_id}/manage/lifecycle/disable", post(disable))
        .route("/users/{account_id}/manage/lifecycle/enable", post(enable))
        .route("/admin/v1/orgs/{org_id}/users", get(org_users))
        .with_state(state)
}

/// An Atlassian error response with its usual body and headers (what fault injection answers).
pub(crate) fn error_response(status: StatusCode) -> Response {
    match status.as_u16() {
        403 => atlassian_error(status, json!({ "key": "forbidden" })),
        code => {
            let message = status.canonical_reason().unwrap_or("Error");
            atlassian_error(status, json!({ "code": code, "message": message }))
        }
    }
}

fn atlassian_error(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let limited = status == StatusCode::TOO_MANY_REQUESTS;
    rate_headers(resp.headers_mut(), if limited { 0 } else { 999 });
    if limited {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn rate_headers(h: &mut HeaderMap, remaining: u32) {
    let reset = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let reset = reset.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"));
    h.insert("x-ratelimit-limit", HeaderValue::from_static("1000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    if let Some(v) = reset.ok().and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert("x-ratelimit-reset", v);
    }
}

fn ok(status: StatusCode, body: Option<Value>) -> Response {
    let mut resp = match body {
        Some(b) => (status, axum::Json(b)).into_response(),
        None => status.into_response(),
    };
    rate_headers(resp.headers_mut(), 999);
    resp
}

fn authorized(state: &Directory, headers: &HeaderMap) -> bool {
    let expected = state.data.lock().map(|d| format!("Bearer {}", d.token)).unwrap_or_default();
    headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.len() > 7 && v == expected)
}

macro_rules! guard {
    ($state:expr, $headers:expr) => {
        if !authorized(&$state, &$headers) {
            return error_response(StatusCode::UNAUTHORIZED);
        }
    };
}

fn picture(u: &User) -> String {
    format!("https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/{}/128", u.account_id)
}

/// Runs `f` on a managed account; unknown ids are 404, unmanaged ones 403 `forbidden.targetUnverified`.
fn with_managed(state: &Directory, account_id: &str, f: impl FnOnce(&mut User) -> Response) -> Response {
    let Ok(mut data) = state.data.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    match data.users.get_mut(account_id) {
        None => error_response(StatusCode::NOT_FOUND),
        Some(u) if !u.managed => atlassian_error(StatusCode::FORBIDDEN, json!({ "key": "forbidden.targetUnverified" })),
        Some(u) => f(u),
    }
}

async fn profile(State(state): State<Directory>, headers: HeaderMap, Path(account_id): Path<String>) -> Response {
    guard!(state, headers);
    with_managed(&state, &account_id, |u| {
        let nickname = u.name.split_whitespace().next().unwrap_or_default().to_string();
        let account = json!({
            "account_id": u.account_id,
            "account_type": "atlassian",
            "account_status": u.account_status,
            "name": u.name,
            "nickname": nickname,
            "picture": picture(u),
            "email": u.email,
            "email_verified": true,
            "zoneinfo": "Europe/Berlin",
            "locale": "en-US",
            "extended_profile": { "job_title": "Engineer", "organization": "Example Inc.", "department": "Engineering" },
            "characteristics": { "not_mentionable": false },
        });
        ok(StatusCode::OK, Some(json!({ "account": account })))
    })
}

async fn disable(
    State(state): State<Directory>,
    headers: HeaderMap,
    Path(account_id): Path<String>,
    body: Bytes,
) -> Response {
    guard!(state, headers);
    // The body is optional; when present it is `{"message": "..."}`.
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => match m.get("message") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return bad_request("message must be a string"),
            },
            _ => return bad_request("The request body could not be parsed"),
        }
    };
    with_managed(&state, &account_id, |u| {
        if u.account_status == "active" {
            u.account_status = "inactive".into();
            u.disable_message = message;
        }
        ok(StatusCode::NO_CONTENT, None)
    })
}

/// A 400 in the lifecycle API's error list shape.
fn bad_request(message: &str) -> Response {
    atlassian_error(StatusCode::BAD_REQUEST, json!([{ "code": "BAD_REQUEST", "message": message }]))
}

async fn enable(State(state): State<Directory>, headers: HeaderMap, Path(account_id): Path<String>) -> Response {
    guard!(state, headers);
    with_managed(&state, &account_id, |u| {
        if u.account_status == "inactive" {
            u.account_status = "active".into();
            u.disable_message = None;
        }
        ok(StatusCode::NO_CONTENT, None)
    })
}

#[derive(Deserialize)]
struct Cursor {
    #[serde(default)]
    cursor: Option<String>,
}

async fn org_users(
    State(state): State<Directory>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Query(q): Query<Cursor>,
) -> Response {
    guard!(state, headers);
    let Ok(data) = state.data.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if org_id != data.org_id {
        return error_response(StatusCode::NOT_FOUND);
    }
    // The cursor is opaque to clients; here it is the offset of the page.
    let start = match q.cursor.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("Invalid cursor"),
    };
    let managed: Vec<&User> = data.users.values().filter(|u| u.managed).collect();
    let page: Vec<Value> = managed
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|u| {
            json!({
                "account_id": u.account_id,
                "account_type": "atlassian",
                "account_status": u.account_status,
                "name": u.name,
                "picture": picture(u),
                "email": u.email,
                "access_billable": u.account_status == "active",
                "last_active": "2026-11-27T08:14:00.000Z",
                "product_access": [{ "key": "jira-software", "name": "Jira", "url": "example.atlassian.net" }],
                "links": { "self": format!("https://api.atlassian.com/users/{}/manage/profile", u.account_id) },
            })
        })
        .collect();
    let base = format!("https://api.atlassian.com/admin/v1/orgs/{org_id}/users");
    let this = match &q.cursor {
        Some(c) => format!("{base}?cursor={c}"),
        None => base.clone(),
    };
    let next = (start + PAGE_SIZE < managed.len()).then(|| format!("{base}?cursor={}", start + PAGE_SIZE));
    ok(
        StatusCode::OK,
        Some(json!({
            "data": page,
            "links": { "self": this, "next": next },
            "meta": { "total": managed.len() },
        })),
    )
}
