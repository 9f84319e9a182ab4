//! The Zoom API (`/v2`) users endpoints offboarding uses, with Zoom's own shapes:
//! `Authorization: Bearer {token}` (a Server-to-Server OAuth access token); errors as
//! `{"code": N, "message": "..."}` — 401 code 124 "Invalid access token.", 404 code 1001
//! "User does not exist: {userId}.", 400 code 200 for owners and admins (whose status the API
//! cannot change), 400 code 300 for a bad body; every answer carries `X-RateLimit-Category`, and a
//! 429 adds `X-RateLimit-Type` and `Retry-After` (an ISO 8601 instant, as Zoom's rate-limit docs
//! show it).
//!
//! - `GET /v2/users/{userId}` — `userId` is a user id or an email address.
//! - `PUT /v2/users/{userId}/status` with `{"action": "deactivate" | "activate"}` → 204.
//!
//! Deactivating a user who is already inactive is not documented by Zoom; the mock answers 204
//! and changes nothing (plugins check the status first, so they never rely on it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

/// A user in the mock Zoom account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// "Owner", "Admin" or "Member".
    pub role_name: String,
    /// "active", "inactive" or "pending".
    pub status: String,
}

#[derive(Debug, Default)]
struct Data {
    token: String,
    users: BTreeMap<String, User>,
}

/// The mock Zoom account's users.
#[derive(Clone, Default)]
pub struct Account {
    data: Arc<Mutex<Data>>,
    /// Set when the router is built: the mock's OAuth state (whether the static token or minted
    /// ones apply).
    oauth: crate::oauth::OAuth,
}

impl Account {
    /// Alice (active member), Bob (already inactive), Dana (active, the account owner: Zoom
    /// refuses to change an owner's status). Expects `Authorization: Bearer {token}`.
    pub fn sample(token: &str) -> Self {
        let user = |id: &str, first: &str, last: &str, role: &str, status: &str| User {
            id: id.into(),
            email: format!("{}@example.com", first.to_lowercase()),
            first_name: first.into(),
            last_name: last.into(),
            role_name: role.into(),
            status: status.into(),
        };
        let users = [
            user("KDcuGIm1QgePTO8WbOqwIQ", "Alice", "Anders", "Member", "active"),
            user("z8yBXksmRkuXpcdnYxBU2A", "Bob", "Brown", "Member", "inactive"),
            user("3kq9WcBhS4ipvmOTn0dY2w", "Dana", "Diaz", "Owner", "active"),
        ];
        let data = Data { token: token.to_string(), users: users.into_iter().map(|u| (u.id.clone(), u)).collect() };
        Account { data: Arc::new(Mutex::new(data)), oauth: Default::default() }
    }

    /// A user by id or email.
    pub fn user(&self, key: &str) -> Option<User> {
        let data = self.data.lock().ok()?;
        find(&data, key).cloned()
    }

    pub fn add_user(&self, user: User) {
        if let Ok(mut d) = self.data.lock() {
            d.users.insert(user.id.clone(), user);
        }
    }
}

fn find<'a>(data: &'a Data, key: &str) -> Option<&'a User> {
    data.users.get(key).or_else(|| data.users.values().find(|u| u.email.eq_ignore_ascii_case(key)))
}

pub(crate) fn router(mut state: Account, oauth: crate::oauth::OAuth) -> Router {
    state.oauth = oauth;
    Router::new()
        .route("/v2/users/{user_id}", get(get_user))
        .route("/v2/users/{user_id}/status", put(update_status))
        .with_state(state)
}

/// A Zoom error response with its usual body and headers (what fault injection answers).
pub(crate) fn error_response(status: StatusCode) -> Response {
    let (code, message) = match status.as_u16() {
        400 => (300, "Request Body should be a valid JSON object."),
        401 => (124, "Invalid access token."),
        403 => (4711, "Invalid access token, does not contain scopes."),
        404 => (1001, "User does not exist."),
        429 => (429, "You have reached the maximum per-second rate limit for this API. Try again later."),
        _ => (status.as_u16() as i64, "Internal Error."),
    };
    zoom_error(status, code, message)
}

fn zoom_error(status: StatusCode, code: i64, message: &str) -> Response {
    let mut resp = (status, axum::Json(json!({ "code": code, "message": message }))).into_response();
    rate_headers(resp.headers_mut());
    if status == StatusCode::TOO_MANY_REQUESTS {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-type", HeaderValue::from_static("QPS"));
        h.insert("x-ratelimit-limit", HeaderValue::from_static("80"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
        let at = at.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"));
        if let Some(v) = at.ok().and_then(|s| HeaderValue::from_str(&s).ok()) {
            h.insert("retry-after", v);
        }
    }
    resp
}

fn rate_headers(h: &mut HeaderMap) {
    h.insert("x-ratelimit-category", HeaderValue::from_static("Light"));
}

fn ok(status: StatusCode, body: Option<Value>) -> Response {
    let mut resp = match body {
        Some(b) => (status, axum::Json(b)).into_response(),
        None => status.into_response(),
    };
    rate_headers(resp.headers_mut());
    resp
}

/// Whether the request carries the account's token (with Zoom OAuth configured: a live token
/// from the mock's `/oauth/token`).
fn authorized(state: &Account, headers: &HeaderMap) -> bool {
    use crate::oauth::{Issuer, TokenCheck};
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("bearer ")).unwrap_or("");
    match state.oauth.check(Issuer::Zoom, token) {
        TokenCheck::NotConfigured => {}
        TokenCheck::Live(_) => return true,
        TokenCheck::Expired | TokenCheck::Unknown => return false,
    }
    let expected = state.data.lock().map(|d| format!("Bearer {}", d.token)).unwrap_or_default();
    headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.len() > 7 && v == expected)
}

macro_rules! guard {
    ($state:expr, $headers:expr) => {
        if !authorized(&$state, &$headers) {
            return zoom_error(StatusCode::UNAUTHORIZED, 124, "Invalid access token.");
        }
    };
}

fn not_found(id: &str) -> Response {
    zoom_error(StatusCode::NOT_FOUND, 1001, &format!("User does not exist: {id}."))
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "display_name": format!("{} {}", u.first_name, u.last_name),
        "email": u.email,
        "type": 2,
        "role_name": u.role_name,
        "pmi": 3_542_471_135_u64,
        "use_pmi": false,
        "personal_meeting_url": "https://example.zoom.us/j/3542471135",
        "timezone": "Europe/Berlin",
        "verified": 1,
        "dept": "",
        "created_at": "2023-01-10T09:00:00Z",
        "user_created_at": "2023-01-10T09:00:00Z",
        "last_login_time": "2026-11-27T08:14:00Z",
        "last_client_version": "6.2.5.41699(mac)",
        "pic_url": "https://example.zoom.us/p/v2/abc",
        "language": "en-US",
        "phone_number": "",
        "status": u.status,
        "role_id": if u.role_name == "Owner" { "0" } else { "2" },
        "account_id": "q6gBJVO5TzexKYTb_I2rpg",
        "account_number": 10_009_000,
        "cluster": "us06",
        "login_types": [100],
    })
}

async fn get_user(State(state): State<Account>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    guard!(state, headers);
    match state.user(&user_id) {
        Some(u) => ok(StatusCode::OK, Some(user_json(&u))),
        None => not_found(&user_id),
    }
}

async fn update_status(
    State(state): State<Account>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Response {
    guard!(state, headers);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return zoom_error(StatusCode::BAD_REQUEST, 300, "Request Body should be a valid JSON object.");
    };
    let new_status = match body.get("action").and_then(Value::as_str) {
        Some("deactivate") => "inactive",
        Some("activate") => "active",
        _ => return zoom_error(StatusCode::BAD_REQUEST, 300, "Validation Failed."),
    };
    let Ok(mut data) = state.data.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Some(key) = find(&data, &user_id).map(|u| u.id.clone()) else { return not_found(&user_id) };
    let Some(user) = data.users.get_mut(&key) else { return not_found(&user_id) };
    if user.role_name != "Member" {
        return zoom_error(
            StatusCode::BAD_REQUEST,
            200,
            "Zoom Room and Admin users' status can not be activated or deactivated.",
        );
    }
    // A pending user has not accepted the invitation yet; deactivating one is allowed.
    user.status = new_status.to_string();
    ok(StatusCode::NO_CONTENT, None)
}
