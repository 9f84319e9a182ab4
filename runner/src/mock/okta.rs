//! The Okta Management API, as much of it as offboarding uses, with Okta's own shapes:
//! `Authorization: SSWS {token}`; errors as `{errorCode, errorSummary, errorLink, errorId,
//! errorCauses}`; `X-Rate-Limit-Limit/-Remaining/-Reset` on every answer; 404 `E0000007`;
//! suspend of a non-ACTIVE user 400 `E0000001`; 429 `E0000047`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::MockState;

/// A user in the mock directory.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub login: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// ACTIVE, SUSPENDED, DEPROVISIONED, ...
    pub status: String,
    pub groups: Vec<String>,
    pub sessions: u32,
}

/// A group in the mock directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// OKTA_GROUP, APP_GROUP or BUILT_IN.
    pub kind: String,
}

#[derive(Debug, Default)]
struct Data {
    token: String,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Group>,
}

/// The mock's users and groups.
#[derive(Clone, Default)]
pub struct Directory {
    data: Arc<Mutex<Data>>,
}

impl Directory {
    /// Alice (active, in Engineering, VPN users, an app group and Everyone), Bob (already
    /// suspended), Carol (deprovisioned).
    pub fn sample(token: &str) -> Self {
        let groups = [
            ("00g1everyone", "Everyone", "BUILT_IN"),
            ("00g2eng", "Engineering", "OKTA_GROUP"),
            ("00g3vpn", "VPN users", "OKTA_GROUP"),
            ("00g4sfdc", "Salesforce users", "APP_GROUP"),
        ];
        let user = |id: &str, first: &str, last: &str, status: &str, groups: &[&str]| User {
            id: id.into(),
            login: format!("{}@example.com", first.to_lowercase()),
            email: format!("{}@example.com", first.to_lowercase()),
            first_name: first.into(),
            last_name: last.into(),
            status: status.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            sessions: 2,
        };
        let users = [
            user("00u1alice", "Alice", "Anders", "ACTIVE", &["00g1everyone", "00g2eng", "00g3vpn", "00g4sfdc"]),
            user("00u2bob", "Bob", "Brown", "SUSPENDED", &["00g1everyone", "00g2eng"]),
            user("00u3carol", "Carol", "Chen", "DEPROVISIONED", &["00g1everyone"]),
        ];
        let data = Data {
            token: token.to_string(),
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            groups: groups
                .into_iter()
                .map(|(id, name, kind)| (id.to_string(), Group { id: id.into(), name: name.into(), kind: kind.into() }))
                .collect(),
        };
        Directory { data: Arc::new(Mutex::new(data)) }
    }

    /// A user by id or login.
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
    data.users.get(key).or_else(|| {
        data.users.values().find(|u| u.login.eq_ignore_ascii_case(key) || u.email.eq_ignore_ascii_case(key))
    })
}

pub(crate) fn router() -> Router<MockState> {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/lifecycle/suspend", post(suspend))
        .route("/users/{id}/lifecycle/deactivate", post(deactivate))
        .route("/users/{id}/sessions", delete(clear_sessions))
        .route("/users/{id}/groups", get(user_groups))
        .route("/groups/{gid}/users/{uid}", delete(remove_from_group))
}

fn error_id() -> String {
    format!("oae{}", uuid::Uuid::new_v4().simple())
}

/// An Okta error response with its usual body and headers.
pub(crate) fn error_response(status: StatusCode) -> Response {
    let (code, summary) = match status.as_u16() {
        400 => ("E0000001", "Api validation failed"),
        401 => ("E0000011", "Invalid token provided"),
        403 => ("E0000006", "You do not have permission to perform the requested action"),
        404 => ("E0000007", "Not found: Resource not found"),
        429 => ("E0000047", "API call exceeded rate limit due to too many requests."),
        _ => ("E0000009", "Internal Server Error"),
    };
    okta_error(status, code, summary, &[])
}

fn okta_error(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let body = json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": error_id(),
        "errorCauses": causes.iter().map(|c| json!({ "errorSummary": c })).collect::<Vec<_>>(),
    });
    let remaining = if status == StatusCode::TOO_MANY_REQUESTS { 0 } else { 599 };
    let mut resp = (status, axum::Json(body)).into_response();
    rate_headers(resp.headers_mut(), remaining);
    resp
}

fn rate_headers(h: &mut HeaderMap, remaining: u32) {
    let reset = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
    h.insert("x-rate-limit-limit", HeaderValue::from_static("600"));
    h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    h.insert("x-rate-limit-reset", HeaderValue::from(reset));
}

fn ok(status: StatusCode, body: Option<Value>) -> Response {
    let mut resp = match body {
        Some(b) => (status, axum::Json(b)).into_response(),
        None => status.into_response(),
    };
    rate_headers(resp.headers_mut(), 599);
    resp
}

fn authorized(state: &MockState, headers: &HeaderMap) -> bool {
    let expected = state.okta.data.lock().map(|d| format!("SSWS {}", d.token)).unwrap_or_default();
    headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| !expected.is_empty() && v == expected)
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "status": u.status,
        "created": "2023-01-10T09:00:00.000Z",
        "activated": "2023-01-10T09:00:00.000Z",
        "statusChanged": "2024-03-01T12:00:00.000Z",
        "lastLogin": "2026-11-27T08:14:00.000Z",
        "lastUpdated": "2026-11-27T08:14:00.000Z",
        "passwordChanged": "2026-06-01T10:00:00.000Z",
        "type": { "id": "oty1defaultusertype" },
        "profile": {
            "firstName": u.first_name, "lastName": u.last_name,
            "mobilePhone": null, "secondEmail": null,
            "login": u.login, "email": u.email,
        },
        "credentials": { "provider": { "type": "OKTA", "name": "OKTA" } },
        "_links": { "self": { "href": format!("https://example.okta.com/api/v1/users/{}", u.id) } },
    })
}

fn not_found(what: &str) -> Response {
    okta_error(StatusCode::NOT_FOUND, "E0000007", &format!("Not found: Resource not found: {what} (User)"), &[])
}

macro_rules! guard {
    ($state:expr, $headers:expr) => {
        if !authorized(&$state, &$headers) {
            return okta_error(StatusCode::UNAUTHORIZED, "E0000011", "Invalid token provided", &[]);
        }
    };
}

async fn get_user(State(state): State<MockState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guard!(state, headers);
    match state.okta.user(&id) {
        Some(u) => ok(StatusCode::OK, Some(user_json(&u))),
        None => not_found(&id),
    }
}

#[derive(Deserialize)]
struct SendEmail {
    #[serde(rename = "sendEmail", default)]
    _send_email: Option<bool>,
}

fn with_user(state: &MockState, id: &str, f: impl FnOnce(&mut User, &BTreeMap<String, Group>) -> Response) -> Response {
    let Ok(mut data) = state.okta.data.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Some(key) = find(&data, id).map(|u| u.id.clone()) else { return not_found(id) };
    let groups = data.groups.clone();
    match data.users.get_mut(&key) {
        Some(u) => f(u, &groups),
        None => not_found(id),
    }
}

async fn suspend(State(state): State<MockState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guard!(state, headers);
    with_user(&state, &id, |u, _| {
        if u.status != "ACTIVE" {
            return okta_error(
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: suspendUser",
                &["Cannot suspend a user that is not active"],
            );
        }
        u.status = "SUSPENDED".into();
        ok(StatusCode::OK, Some(json!({})))
    })
}

async fn deactivate(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(_q): Query<SendEmail>,
) -> Response {
    guard!(state, headers);
    with_user(&state, &id, |u, _| {
        if u.status == "DEPROVISIONED" {
            return okta_error(
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: deactivateUser",
                &["The user is already deactivated"],
            );
        }
        u.status = "DEPROVISIONED".into();
        u.sessions = 0;
        ok(StatusCode::OK, Some(json!({})))
    })
}

async fn clear_sessions(State(state): State<MockState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guard!(state, headers);
    with_user(&state, &id, |u, _| {
        u.sessions = 0;
        ok(StatusCode::NO_CONTENT, None)
    })
}

async fn user_groups(State(state): State<MockState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guard!(state, headers);
    with_user(&state, &id, |u, groups| {
        let list: Vec<Value> = u
            .groups
            .iter()
            .filter_map(|g| groups.get(g))
            .map(|g| {
                json!({
                    "id": g.id,
                    "created": "2023-01-01T00:00:00.000Z",
                    "lastUpdated": "2023-01-01T00:00:00.000Z",
                    "lastMembershipUpdated": "2026-11-01T00:00:00.000Z",
                    "objectClass": ["okta:user_group"],
                    "type": g.kind,
                    "profile": { "name": g.name, "description": null },
                })
            })
            .collect();
        ok(StatusCode::OK, Some(Value::Array(list)))
    })
}

async fn remove_from_group(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path((gid, uid)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    with_user(&state, &uid, |u, groups| match groups.get(&gid) {
        None => okta_error(
            StatusCode::NOT_FOUND,
            "E0000007",
            &format!("Not found: Resource not found: {gid} (UserGroup)"),
            &[],
        ),
        Some(g) if g.kind != "OKTA_GROUP" => okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: Cannot modify the membership of this group",
            &[],
        ),
        Some(_) => {
            u.groups.retain(|x| x != &gid);
            ok(StatusCode::NO_CONTENT, None)
        }
    })
}
