//! The Okta Management API, as much of it as offboarding uses, with Okta's own shapes:
//! `Authorization: SSWS {token}`; errors as `{errorCode, errorSummary, errorLink, errorId,
//! errorCauses}`; `X-Rate-Limit-Limit/-Remaining/-Reset` on every answer; 404 `E0000007`;
//! suspend of a non-ACTIVE user 400 `E0000001`; 429 `E0000047`.
//!
//! Users, lifecycle (suspend; deactivate, synchronous or with `Prefer: respond-async`, when the
//! user shows `transitioningToStatus: DEPROVISIONED` for a few reads before the status changes),
//! sessions, groups, OAuth grants (`/users/{id}/grants`), refresh tokens per client
//! (`/users/{id}/clients`, `/users/{id}/clients/{clientId}/tokens`), and app assignments
//! (`/users/{id}/appLinks`, `DELETE /apps/{appId}/users/{id}`; an app assigned through a group
//! can't be unassigned directly: 400 `E0000001` naming the group assignment).
//!
//! With Okta configured in [`OAuthConfig`](crate::oauth::OAuthConfig), SSWS tokens are refused
//! and only access tokens from the mock's `/oauth2/v1/token` work, DPoP-bound ones with a DPoP
//! proof per request (see [`crate::oauth::okta`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

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
    /// OAuth grants: `(grant id, client id)`.
    pub grants: Vec<(String, String)>,
    /// Refresh tokens: `(token id, client id)`.
    pub refresh_tokens: Vec<(String, String)>,
    /// App assignments: `(app instance id, label, scope)`, scope `USER` or `GROUP`.
    pub apps: Vec<(String, String, String)>,
    /// During an asynchronous deactivation: `Some("DEPROVISIONED")`.
    pub transitioning_to: Option<String>,
    /// Reads left before an asynchronous deactivation completes.
    pub transition_reads: u32,
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
    /// An enforced rate limit: requests per window, the window, and what has been counted.
    rate: Option<RateWindow>,
    token: String,
    /// Reads an asynchronous deactivation takes before it completes.
    deprovision_reads: u32,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Group>,
}

/// Okta's per-minute limit, enforced: fixed windows aligned to the epoch (so `X-Rate-Limit-Reset`
/// is a whole second, as Okta's is), `limit` requests each, 429 `E0000047` past it.
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    limit: u32,
    window_secs: u64,
    /// The window being counted (its start, epoch seconds) and the count in it.
    current: (u64, u32),
    /// Requests answered 429 / let through, in all.
    refused: u32,
    served: u32,
}

/// The mock's users and groups.
#[derive(Clone, Default)]
pub struct Directory {
    data: Arc<Mutex<Data>>,
    /// Set when the router is built: the mock's OAuth state (whether SSWS or OAuth applies).
    oauth: crate::oauth::OAuth,
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
            grants: vec![],
            refresh_tokens: vec![],
            apps: vec![],
            transitioning_to: None,
            transition_reads: 0,
        };
        let mut alice =
            user("00u1alice", "Alice", "Anders", "ACTIVE", &["00g1everyone", "00g2eng", "00g3vpn", "00g4sfdc"]);
        alice.grants = vec![
            ("oag1slackapp".into(), "0oa1slack".into()),
            ("oag2zoomapp".into(), "0oa2zoom".into()),
            ("oag3zoomcal".into(), "0oa2zoom".into()),
        ];
        alice.refresh_tokens = vec![("oar1slack".into(), "0oa1slack".into()), ("oar2zoom".into(), "0oa2zoom".into())];
        alice.apps = vec![
            ("0oa1slack".into(), "Slack".into(), "USER".into()),
            ("0oa2zoom".into(), "Zoom".into(), "USER".into()),
            ("0oa3sfdc".into(), "Salesforce".into(), "GROUP".into()),
        ];
        let users = [
            alice,
            user("00u2bob", "Bob", "Brown", "SUSPENDED", &["00g1everyone", "00g2eng"]),
            user("00u3carol", "Carol", "Chen", "DEPROVISIONED", &["00g1everyone"]),
        ];
        let data = Data {
            rate: None,
            token: token.to_string(),
            deprovision_reads: 2,
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            groups: groups
                .into_iter()
                .map(|(id, name, kind)| (id.to_string(), Group { id: id.into(), name: name.into(), kind: kind.into() }))
                .collect(),
        };
        Directory { data: Arc::new(Mutex::new(data)), oauth: Default::default() }
    }

    /// A user by id or login.
    pub fn user(&self, key: &str) -> Option<User> {
        let data = self.data.lock().ok()?;
        find(&data, key).cloned()
    }

    /// Enforces Okta's rate limit: at most `limit` requests per `window_secs`-second window
    /// (Okta's real window is 60 s; tests use a few seconds), with Okta's headers on every
    /// answer and its 429 `E0000047` past the limit.
    pub fn set_rate_limit(&self, limit: u32, window_secs: u64) {
        if let Ok(mut d) = self.data.lock() {
            d.rate =
                Some(RateWindow { limit, window_secs: window_secs.max(1), current: (0, 0), refused: 0, served: 0 });
        }
    }

    /// Under [`Directory::set_rate_limit`]: requests answered 429, and requests let through.
    pub fn rate_limit_counts(&self) -> (u32, u32) {
        self.data.lock().ok().and_then(|d| d.rate.map(|r| (r.refused, r.served))).unwrap_or_default()
    }

    /// How many reads of the user an asynchronous deactivation takes to complete (default 2).
    pub fn set_deprovision_reads(&self, reads: u32) {
        if let Ok(mut d) = self.data.lock() {
            d.deprovision_reads = reads;
        }
    }

    /// Changes a user in place (tests arrange odd states with it).
    pub fn update(&self, key: &str, f: impl FnOnce(&mut User)) {
        if let Ok(mut d) = self.data.lock()
            && let Some(id) = find(&d, key).map(|u| u.id.clone())
            && let Some(u) = d.users.get_mut(&id)
        {
            f(u);
        }
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

pub(crate) fn router(mut state: Directory, oauth: crate::oauth::OAuth) -> Router {
    state.oauth = oauth;
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/lifecycle/suspend", post(suspend))
        .route("/users/{id}/lifecycle/deactivate", post(deactivate))
        .route("/users/{id}/sessions", delete(clear_sessions))
        .route("/users/{id}/groups", get(user_groups))
        .route("/groups/{gid}/users/{uid}", delete(remove_from_group))
        .route("/users/{id}/grants", get(list_grants).delete(revoke_grants))
        .route("/users/{id}/clients", get(list_clients))
        .route("/users/{id}/clients/{client}/tokens", delete(revoke_client_tokens))
        .route("/users/{id}/appLinks", get(app_links))
        .route("/apps/{app}/users/{id}", delete(unassign_app))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// Every route's credential check: the static SSWS token, or (with Okta OAuth configured) an
/// access token from the mock's token endpoint, with a DPoP proof for this request if bound.
async fn auth(State(state): State<Directory>, req: Request, next: Next) -> Response {
    // Okta counts every request against the limit, before anything else.
    let window = state.data.lock().ok().and_then(|mut d| {
        let r = d.rate.as_mut()?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let start = now - now % r.window_secs;
        if r.current.0 != start {
            r.current = (start, 0);
        }
        let allowed = r.current.1 < r.limit;
        if allowed {
            r.current.1 += 1;
            r.served += 1;
        } else {
            r.refused += 1;
        }
        Some((allowed, r.limit, r.limit - r.current.1, start + r.window_secs))
    });
    if let Some((false, limit, _, reset)) = window {
        let mut resp = error_response(StatusCode::TOO_MANY_REQUESTS);
        set_rate(resp.headers_mut(), limit, 0, reset);
        return resp;
    }
    let mut resp = authorized_call(state, req, next).await;
    if let Some((_, limit, remaining, reset)) = window {
        set_rate(resp.headers_mut(), limit, remaining, reset);
    }
    resp
}

fn set_rate(h: &mut HeaderMap, limit: u32, remaining: u32, reset: u64) {
    h.insert("x-rate-limit-limit", HeaderValue::from(limit));
    h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    h.insert("x-rate-limit-reset", HeaderValue::from(reset));
}

async fn authorized_call(state: Directory, req: Request, next: Next) -> Response {
    // The router is nested under /api/v1: the DPoP `htu` names the full path.
    let path = match req.extensions().get::<OriginalUri>() {
        Some(uri) => uri.path().to_string(),
        None => req.uri().path().to_string(),
    };
    match crate::oauth::okta::check_api(&state.oauth, req.method().as_str(), &path, req.headers()) {
        None if !authorized(&state, req.headers()) => {
            return okta_error(StatusCode::UNAUTHORIZED, "E0000011", "Invalid token provided", &[]);
        }
        None | Some(Ok(())) => {}
        Some(Err(denied)) => {
            let mut resp = okta_error(StatusCode::UNAUTHORIZED, "E0000011", "Invalid token provided", &[]);
            let challenge = format!(
                "{} error=\"{}\", error_description=\"{}\"",
                denied.scheme,
                denied.error,
                denied.description.replace('"', "'")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert("www-authenticate", v);
            }
            if let Some(v) = denied.nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                resp.headers_mut().insert("dpop-nonce", v);
            }
            return resp;
        }
    }
    next.run(req).await
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

fn authorized(state: &Directory, headers: &HeaderMap) -> bool {
    let expected = state.data.lock().map(|d| format!("SSWS {}", d.token)).unwrap_or_default();
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
        "transitioningToStatus": u.transitioning_to,
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

async fn get_user(State(state): State<Directory>, Path(id): Path<String>) -> Response {
    with_user(&state, &id, |u, _| {
        // An asynchronous deactivation completes after a few reads.
        if u.transitioning_to.is_some() {
            if u.transition_reads == 0 {
                u.status = u.transitioning_to.take().unwrap_or_default();
            } else {
                u.transition_reads -= 1;
            }
        }
        ok(StatusCode::OK, Some(user_json(u)))
    })
}

#[derive(Deserialize)]
struct SendEmail {
    #[serde(rename = "sendEmail", default)]
    _send_email: Option<bool>,
}

fn with_user(state: &Directory, id: &str, f: impl FnOnce(&mut User, &BTreeMap<String, Group>) -> Response) -> Response {
    let Ok(mut data) = state.data.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Some(key) = find(&data, id).map(|u| u.id.clone()) else { return not_found(id) };
    let groups = data.groups.clone();
    match data.users.get_mut(&key) {
        Some(u) => f(u, &groups),
        None => not_found(id),
    }
}

async fn suspend(State(state): State<Directory>, Path(id): Path<String>) -> Response {
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
    State(state): State<Directory>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(_q): Query<SendEmail>,
) -> Response {
    let respond_async =
        headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("respond-async"));
    let reads = state.data.lock().map(|d| d.deprovision_reads).unwrap_or(2);
    with_user(&state, &id, |u, _| {
        if u.transitioning_to.is_some() {
            return okta_error(
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: deactivateUser",
                &["The user is already being deactivated"],
            );
        }
        if respond_async && u.status != "DEPROVISIONED" {
            u.transitioning_to = Some("DEPROVISIONED".into());
            u.transition_reads = reads;
            u.sessions = 0;
            return ok(StatusCode::ACCEPTED, None);
        }
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

async fn clear_sessions(State(state): State<Directory>, Path(id): Path<String>) -> Response {
    with_user(&state, &id, |u, _| {
        u.sessions = 0;
        ok(StatusCode::NO_CONTENT, None)
    })
}

async fn user_groups(State(state): State<Directory>, Path(id): Path<String>) -> Response {
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

async fn remove_from_group(State(state): State<Directory>, Path((gid, uid)): Path<(String, String)>) -> Response {
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

async fn list_grants(State(state): State<Directory>, Path(id): Path<String>) -> Response {
    with_user(&state, &id, |u, _| {
        let list: Vec<Value> = u
            .grants
            .iter()
            .map(|(gid, client)| {
                json!({
                    "id": gid, "status": "ACTIVE", "clientId": client, "userId": u.id,
                    "issuer": "https://example.okta.com/oauth2/default", "scopeId": "okta.users.read.self",
                    "source": "END_USER", "created": "2026-01-05T10:00:00.000Z",
                    "_links": { "app": { "href": format!("https://example.okta.com/api/v1/apps/{client}") } },
                })
            })
            .collect();
        ok(StatusCode::OK, Some(Value::Array(list)))
    })
}

async fn revoke_grants(State(state): State<Directory>, Path(id): Path<String>) -> Response {
    with_user(&state, &id, |u, _| {
        u.grants.clear();
        ok(StatusCode::NO_CONTENT, None)
    })
}

async fn list_clients(State(state): State<Directory>, Path(id): Path<String>) -> Response {
    with_user(&state, &id, |u, _| {
        let mut clients: Vec<&str> = u.refresh_tokens.iter().map(|(_, c)| c.as_str()).collect();
        clients.dedup();
        let list: Vec<Value> = clients
            .iter()
            .map(|c| json!({ "client_id": c, "client_name": format!("App {c}"), "client_uri": null, "logo_uri": null }))
            .collect();
        ok(StatusCode::OK, Some(Value::Array(list)))
    })
}

async fn revoke_client_tokens(State(state): State<Directory>, Path((id, client)): Path<(String, String)>) -> Response {
    with_user(&state, &id, |u, _| {
        u.refresh_tokens.retain(|(_, c)| c != &client);
        ok(StatusCode::NO_CONTENT, None)
    })
}

async fn app_links(State(state): State<Directory>, Path(id): Path<String>) -> Response {
    with_user(&state, &id, |u, _| {
        let list: Vec<Value> = u
            .apps
            .iter()
            .map(|(app, label, _)| {
                json!({
                    "id": format!("00a{app}"), "label": label, "appInstanceId": app,
                    "appName": label.to_lowercase(), "appAssignmentId": format!("0ua{app}"),
                    "linkUrl": format!("https://example.okta.com/home/{}/{app}/1", label.to_lowercase()),
                    "logoUrl": "https://example.okta.com/assets/img/logos/default.png",
                    "credentialsSetup": false, "hidden": false, "sortOrder": 0,
                })
            })
            .collect();
        ok(StatusCode::OK, Some(Value::Array(list)))
    })
}

async fn unassign_app(
    State(state): State<Directory>,
    Path((app, id)): Path<(String, String)>,
    Query(_q): Query<SendEmail>,
) -> Response {
    with_user(&state, &id, |u, _| match u.apps.iter().position(|(a, _, _)| a == &app) {
        None => okta_error(
            StatusCode::NOT_FOUND,
            "E0000007",
            &format!("Not found: Resource not found: {id} (AppUser)"),
            &[],
        ),
        Some(i) if u.apps[i].2 == "GROUP" => okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: the user is assigned to this app through a group",
            &["Remove the user from the group that assigns the app"],
        ),
        Some(i) => {
            u.apps.remove(i);
            ok(StatusCode::NO_CONTENT, None)
        }
    })
}
