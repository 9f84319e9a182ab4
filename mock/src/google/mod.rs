//! Google Workspace's Admin SDK, as much of it as offboarding uses: the Directory API
//! (`/admin/directory/v1`: users, sign-out, OAuth tokens, group memberships) and the Data
//! Transfer API (`/admin/datatransfer/v1`: applications and transfers), with Google's own shapes:
//!
//! - `Authorization: Bearer {token}`; a missing or wrong token is 401 `UNAUTHENTICATED` with a
//!   `WWW-Authenticate: Bearer ... error="invalid_token"` header.
//! - Errors as `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}`,
//!   e.g. 404 `notFound` "Resource Not Found: userKey".
//! - Rate limits as Google sends them: 403 `userRateLimitExceeded` (domain `usageLimits`, no
//!   `Retry-After`), or 429 `rateLimitExceeded`.
//! - Empty lists leave their field out (`tokens.list` of a user with no tokens has no `items`),
//!   and the last page of a list has no `nextPageToken`.
//! - `groups.list` answers at most [`DEFAULT_GROUP_PAGE`] groups a page whatever `maxResults`
//!   asks (Google, too, may answer fewer than asked), so a client's paging is exercised.
//! - A data transfer starts `inProgress`; `transfers.get` answers `inProgress` twice (see
//!   [`Workspace::set_polls_to_settle`]), then the transfer settles: `completed`, or `failed` if
//!   the new owner was suspended when it started or [`Workspace::fail_next_transfer`] was armed.
//!   `transfers.list` shows the current status without moving it along.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

/// How many groups `groups.list` answers at most per page, unless [`Workspace::set_group_page_size`].
pub const DEFAULT_GROUP_PAGE: usize = 3;

/// The Data Transfer API's id for "Drive and Docs".
pub const DRIVE_APP_ID: &str = "55656082996";
/// The Data Transfer API's id for "Calendar".
pub const CALENDAR_APP_ID: &str = "435070579839";
/// The Data Transfer API's id for "Looker Studio" (no transfer parameters).
pub const LOOKER_APP_ID: &str = "810260081642";

/// A user in the mock directory.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Google's numeric unique id (as a string, the way the API sends it).
    pub id: String,
    pub primary_email: String,
    pub given_name: String,
    pub family_name: String,
    pub suspended: bool,
    pub is_admin: bool,
    /// The manager's email (a `relations` entry of type `manager`).
    pub manager: Option<String>,
    /// Ids of the groups the user is a direct member of.
    pub groups: Vec<String>,
    /// OAuth tokens the user granted to third-party apps.
    pub tokens: Vec<Token>,
    /// How many times `users.signOut` was called for the user.
    pub sign_outs: u32,
}

/// An OAuth token a user issued to an app.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub client_id: String,
    pub display_text: String,
    pub scopes: Vec<String>,
    pub native_app: bool,
}

/// A group in the mock directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub email: String,
    pub name: String,
}

/// One application's part of a transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct AppTransfer {
    pub application_id: String,
    /// `(key, values)`, e.g. `("PRIVACY_LEVEL", ["PRIVATE", "SHARED"])`.
    pub params: Vec<(String, Vec<String>)>,
}

/// A data transfer, as the mock keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub id: String,
    pub old_owner_user_id: String,
    pub new_owner_user_id: String,
    pub applications: Vec<AppTransfer>,
    /// `inProgress`, `completed` or `failed`.
    pub status: String,
    /// How many times `transfers.get` fetched it.
    pub polls: u32,
    /// What it settles to once polled enough: `completed` or `failed`.
    settles_to: String,
    request_time: String,
}

#[derive(Debug)]
struct Data {
    token: String,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Group>,
    transfers: Vec<Transfer>,
    group_page: usize,
    polls_to_settle: u32,
    fail_next_transfer: bool,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            token: String::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            transfers: Vec::new(),
            group_page: DEFAULT_GROUP_PAGE,
            polls_to_settle: 2,
            fail_next_transfer: false,
        }
    }
}

/// The mock's users, groups and transfers.
#[derive(Clone, Default)]
pub struct Workspace {
    data: Arc<Mutex<Data>>,
    /// Set when the router is built: the mock's OAuth state (whether the static token or minted
    /// ones apply).
    oauth: crate::oauth::OAuth,
}

impl Workspace {
    /// Alice (active, in five groups — two pages of `groups.list` — with two OAuth tokens, managed
    /// by Dana), Bob (already suspended, one group, no tokens) and Dana (active, Alice's manager).
    pub fn sample(token: &str) -> Self {
        let groups = [
            ("03cqmetx1all0001", "all@example.com", "Everyone at Example"),
            ("03cqmetx2eng0002", "engineering@example.com", "Engineering"),
            ("03cqmetx3vpn0003", "vpn-users@example.com", "VPN users"),
            ("03cqmetx4onc0004", "oncall@example.com", "On-call"),
            ("03cqmetx5fal0005", "project-falcon@example.com", "Project Falcon"),
            ("03cqmetx6mgr0006", "managers@example.com", "Managers"),
        ];
        let token_of = |client_id: &str, name: &str, scopes: &[&str]| Token {
            client_id: client_id.into(),
            display_text: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            native_app: false,
        };
        let user = |id: &str, first: &str, last: &str, suspended: bool, manager: Option<&str>, groups: &[&str]| User {
            id: id.into(),
            primary_email: format!("{}@example.com", first.to_lowercase()),
            given_name: first.into(),
            family_name: last.into(),
            suspended,
            is_admin: false,
            manager: manager.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            tokens: Vec::new(),
            sign_outs: 0,
        };
        let mut alice = user(
            "107730219654321098765",
            "Alice",
            "Anders",
            false,
            Some("dana@example.com"),
            &["03cqmetx1all0001", "03cqmetx2eng0002", "03cqmetx3vpn0003", "03cqmetx4onc0004", "03cqmetx5fal0005"],
        );
        alice.tokens = vec![
            token_of(
                "1234567890-slackapp.apps.googleusercontent.com",
                "Slack",
                &["openid", "https://www.googleapis.com/auth/userinfo.email"],
            ),
            token_of(
                "9876543210-zoomcal.apps.googleusercontent.com",
                "Zoom for Google Calendar",
                &["https://www.googleapis.com/auth/calendar", "https://www.googleapis.com/auth/userinfo.email"],
            ),
        ];
        let bob = user("108812345678901234567", "Bob", "Brown", true, None, &["03cqmetx1all0001"]);
        let mut dana =
            user("109923456789012345678", "Dana", "Diaz", false, None, &["03cqmetx1all0001", "03cqmetx6mgr0006"]);
        dana.is_admin = true;
        let data = Data {
            token: token.to_string(),
            users: [alice, bob, dana].into_iter().map(|u| (u.id.clone(), u)).collect(),
            groups: groups
                .into_iter()
                .map(|(id, email, name)| {
                    (id.to_string(), Group { id: id.into(), email: email.into(), name: name.into() })
                })
                .collect(),
            ..Data::default()
        };
        Workspace { data: Arc::new(Mutex::new(data)), oauth: Default::default() }
    }

    /// A user by primary email (case-insensitive) or numeric id.
    pub fn user(&self, key: &str) -> Option<User> {
        let data = self.data.lock().ok()?;
        find_user(&data, key).cloned()
    }

    /// A group by email or id.
    pub fn group(&self, key: &str) -> Option<Group> {
        let data = self.data.lock().ok()?;
        find_group(&data, key).cloned()
    }

    /// The emails of the groups `key` is a direct member of.
    pub fn groups_of(&self, key: &str) -> Vec<String> {
        let Ok(data) = self.data.lock() else { return Vec::new() };
        let Some(user) = find_user(&data, key) else { return Vec::new() };
        user.groups.iter().filter_map(|g| data.groups.get(g)).map(|g| g.email.clone()).collect()
    }

    /// Every transfer ever started, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.data.lock().map(|d| d.transfers.clone()).unwrap_or_default()
    }

    /// Suspends or reactivates a user; false if there is no such user.
    pub fn set_suspended(&self, key: &str, suspended: bool) -> bool {
        let Ok(mut data) = self.data.lock() else { return false };
        match find_user_id(&data, key).and_then(|id| data.users.get_mut(&id)) {
            Some(u) => {
                u.suspended = suspended;
                true
            }
            None => false,
        }
    }

    /// Adds (or replaces) a user.
    pub fn add_user(&self, user: User) {
        if let Ok(mut d) = self.data.lock() {
            d.users.insert(user.id.clone(), user);
        }
    }

    /// Arms a failure: the next transfer started ends `failed` instead of `completed`.
    pub fn fail_next_transfer(&self) {
        if let Ok(mut d) = self.data.lock() {
            d.fail_next_transfer = true;
        }
    }

    /// How many `transfers.get` calls answer `inProgress` before a transfer settles (default 2:
    /// the third fetch sees it `completed` or `failed`).
    pub fn set_polls_to_settle(&self, polls: u32) {
        if let Ok(mut d) = self.data.lock() {
            d.polls_to_settle = polls;
        }
    }

    /// The most groups one `groups.list` page holds (default [`DEFAULT_GROUP_PAGE`]).
    pub fn set_group_page_size(&self, size: usize) {
        if let Ok(mut d) = self.data.lock() {
            d.group_page = size.max(1);
        }
    }
}

fn find_user<'a>(data: &'a Data, key: &str) -> Option<&'a User> {
    data.users.get(key).or_else(|| data.users.values().find(|u| u.primary_email.eq_ignore_ascii_case(key)))
}

fn find_user_id(data: &Data, key: &str) -> Option<String> {
    find_user(data, key).map(|u| u.id.clone())
}

fn find_group<'a>(data: &'a Data, key: &str) -> Option<&'a Group> {
    data.groups.get(key).or_else(|| data.groups.values().find(|g| g.email.eq_ignore_ascii_case(key)))
}

pub(crate) fn router(mut state: Workspace, oauth: crate::oauth::OAuth) -> Router {
    state.oauth = oauth;
    Router::new()
        .route("/admin/directory/v1/users/{user_key}", get(get_user).put(update_user).patch(update_user))
        .route("/admin/directory/v1/users/{user_key}/signOut", post(sign_out))
        .route("/admin/directory/v1/users/{user_key}/tokens", get(list_tokens))
        .route("/admin/directory/v1/users/{user_key}/tokens/{client_id}", get(get_token).delete(delete_token))
        .route("/admin/directory/v1/groups", get(list_groups))
        .route("/admin/directory/v1/groups/{group_key}/members/{member_key}", delete(remove_member))
        .route("/admin/datatransfer/v1/applications", get(list_applications))
        .route("/admin/datatransfer/v1/applications/{application_id}", get(get_application))
        .route("/admin/datatransfer/v1/transfers", get(list_transfers).post(insert_transfer))
        .route("/admin/datatransfer/v1/transfers/{transfer_id}", get(get_transfer))
        .with_state(state)
}

/// An injected failure in Google's error shape: 403 is the rate limit Google sends most
/// (`userRateLimitExceeded`), 429 the other one (`rateLimitExceeded`).
pub(crate) fn error_response(status: StatusCode) -> Response {
    let (domain, reason, message) = match status.as_u16() {
        400 => ("global", "badRequest", "Bad Request"),
        401 => return unauthenticated(true),
        403 => ("usageLimits", "userRateLimitExceeded", "User Rate Limit Exceeded"),
        404 => ("global", "notFound", "Resource Not Found: userKey"),
        409 => ("global", "duplicate", "Entity already exists."),
        412 => ("global", "conditionNotMet", "Precondition Failed"),
        429 => ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
        503 => ("global", "backendError", "The service is currently unavailable."),
        _ => ("global", "backendError", "Internal error encountered."),
    };
    google_error(status, domain, reason, message)
}

/// Google's canonical status name for an HTTP status.
fn canonical(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn google_error(status: StatusCode, domain: &str, reason: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{ "message": message, "domain": domain, "reason": reason }],
            "status": canonical(status),
        }
    });
    json_response(status, body)
}

fn unauthenticated(had_credential: bool) -> Response {
    let (message, reason, inner) = if had_credential {
        (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
             valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "authError",
            "Invalid Credentials",
        )
    } else {
        (
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or \
             other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "required",
            "Login Required.",
        )
    };
    let body = json!({
        "error": {
            "code": 401,
            "message": message,
            "errors": [{
                "message": inner, "domain": "global", "reason": reason,
                "location": "Authorization", "locationType": "header",
            }],
            "status": "UNAUTHENTICATED",
        }
    });
    let mut resp = json_response(StatusCode::UNAUTHORIZED, body);
    let challenge = if had_credential {
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"https://accounts.google.com/\""
    };
    resp.headers_mut().insert("www-authenticate", HeaderValue::from_static(challenge));
    resp
}

fn not_found(what: &str) -> Response {
    google_error(StatusCode::NOT_FOUND, "global", "notFound", &format!("Resource Not Found: {what}"))
}

fn invalid(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, "global", "invalid", message)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=UTF-8"));
    resp.headers_mut().insert("vary", HeaderValue::from_static("Origin, X-Origin, Referer"));
    resp
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// `None` when the request carries the workspace's token (with Google OAuth configured: a live
/// token from the mock's `/token`, minted for an admin); otherwise the 401 (or 403) to answer.
fn check_auth(state: &Workspace, headers: &HeaderMap) -> Option<Response> {
    use crate::oauth::{Issuer, TokenCheck};
    let Some(given) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Some(unauthenticated(false));
    };
    let token = given.strip_prefix("Bearer ").unwrap_or("");
    match state.oauth.check(Issuer::Google, token) {
        TokenCheck::NotConfigured => {}
        TokenCheck::Live(t) if t.subject.is_some() => return None,
        // A service account acting as itself, without domain-wide delegation.
        TokenCheck::Live(_) => {
            return Some(google_error(
                StatusCode::FORBIDDEN,
                "global",
                "forbidden",
                "Not Authorized to access this resource/api",
            ));
        }
        TokenCheck::Expired | TokenCheck::Unknown => return Some(unauthenticated(true)),
    }
    let expected = state.data.lock().map(|d| d.token.clone()).unwrap_or_default();
    if !expected.is_empty() && token == expected { None } else { Some(unauthenticated(true)) }
}

macro_rules! guard {
    ($state:expr, $headers:expr) => {
        if let Some(resp) = check_auth(&$state, &$headers) {
            return resp;
        }
    };
}

/// Runs `f` on the locked data, or answers 500 if the lock is poisoned.
fn with_data(state: &Workspace, f: impl FnOnce(&mut Data) -> Response) -> Response {
    match state.data.lock() {
        Ok(mut data) => f(&mut data),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// A weak ETag in Google's style, derived from the content.
fn etag(v: &Value) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()));
    format!("\"{}\"", &digest[..27])
}

fn with_etag(mut v: Value) -> Value {
    let tag = etag(&v);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("etag".into(), json!(tag));
    }
    v
}

fn user_json(u: &User) -> Value {
    let mut v = json!({
        "kind": "admin#directory#user",
        "id": u.id,
        "primaryEmail": u.primary_email,
        "name": {
            "givenName": u.given_name,
            "familyName": u.family_name,
            "fullName": format!("{} {}", u.given_name, u.family_name),
        },
        "isAdmin": u.is_admin,
        "isDelegatedAdmin": false,
        "lastLoginTime": "2026-11-27T08:14:00.000Z",
        "creationTime": "2023-01-10T09:00:00.000Z",
        "agreedToTerms": true,
        "suspended": u.suspended,
        "archived": false,
        "changePasswordAtNextLogin": false,
        "ipWhitelisted": false,
        "emails": [{ "address": u.primary_email, "primary": true }],
        "customerId": "C03az79cb",
        "orgUnitPath": "/",
        "isMailboxSetup": true,
        "isEnrolledIn2Sv": true,
        "isEnforcedIn2Sv": false,
        "includeInGlobalAddressList": true,
    });
    if let Some(obj) = v.as_object_mut() {
        if u.suspended {
            obj.insert("suspensionReason".into(), json!("ADMIN"));
        }
        if let Some(m) = &u.manager {
            obj.insert("relations".into(), json!([{ "value": m, "type": "manager" }]));
        }
    }
    with_etag(v)
}

fn token_json(user_id: &str, t: &Token) -> Value {
    with_etag(json!({
        "kind": "admin#directory#token",
        "clientId": t.client_id,
        "displayText": t.display_text,
        "anonymous": false,
        "nativeApp": t.native_app,
        "userKey": user_id,
        "scopes": t.scopes,
    }))
}

fn group_json(g: &Group) -> Value {
    with_etag(json!({
        "kind": "admin#directory#group",
        "id": g.id,
        "email": g.email,
        "name": g.name,
        "directMembersCount": "12",
        "description": "",
        "adminCreated": true,
    }))
}

async fn get_user(State(state): State<Workspace>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    guard!(state, headers);
    with_data(&state, |data| match find_user(data, &key) {
        Some(u) => ok(user_json(u)),
        None => not_found("userKey"),
    })
}

/// `users.update` (PUT) and `users.patch` (PATCH); both apply only the fields sent. The mock
/// understands `suspended`.
async fn update_user(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    guard!(state, headers);
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("Invalid JSON payload received."),
    };
    let suspended = match patch.get("suspended") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => return invalid(&format!("Invalid value at 'resource.suspended' (TYPE_BOOL), {other}")),
    };
    with_data(&state, |data| {
        let Some(id) = find_user_id(data, &key) else { return not_found("userKey") };
        let Some(u) = data.users.get_mut(&id) else { return not_found("userKey") };
        if let Some(s) = suspended {
            u.suspended = s;
        }
        ok(user_json(u))
    })
}

async fn sign_out(State(state): State<Workspace>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    guard!(state, headers);
    with_data(&state, |data| {
        let Some(id) = find_user_id(data, &key) else { return not_found("userKey") };
        if let Some(u) = data.users.get_mut(&id) {
            u.sign_outs += 1;
        }
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn list_tokens(State(state): State<Workspace>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    guard!(state, headers);
    with_data(&state, |data| {
        let Some(u) = find_user(data, &key) else { return not_found("userKey") };
        let mut body = json!({ "kind": "admin#directory#tokenList" });
        if !u.tokens.is_empty() {
            body["items"] = u.tokens.iter().map(|t| token_json(&u.id, t)).collect();
        }
        ok(with_etag(body))
    })
}

async fn get_token(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Path((key, client_id)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    with_data(&state, |data| {
        let Some(u) = find_user(data, &key) else { return not_found("userKey") };
        match u.tokens.iter().find(|t| t.client_id == client_id) {
            Some(t) => ok(token_json(&u.id, t)),
            None => not_found("clientId"),
        }
    })
}

async fn delete_token(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Path((key, client_id)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    with_data(&state, |data| {
        let Some(id) = find_user_id(data, &key) else { return not_found("userKey") };
        let Some(u) = data.users.get_mut(&id) else { return not_found("userKey") };
        let before = u.tokens.len();
        u.tokens.retain(|t| t.client_id != client_id);
        if u.tokens.len() == before {
            return not_found("clientId");
        }
        StatusCode::NO_CONTENT.into_response()
    })
}

/// `maxResults` within `[1, max]`, or the 400 Google answers.
fn max_results(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, String> {
    match q.get("maxResults") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("Invalid value '{v}'. Values must be within the range: [1, {max}]")),
        },
    }
}

/// Page tokens are opaque to clients; the mock's is the hex of the offset it resumes at.
fn page_token(offset: usize) -> String {
    hex::encode(format!("offset:{offset}"))
}

fn page_offset(q: &HashMap<String, String>) -> Result<usize, String> {
    let Some(token) = q.get("pageToken").filter(|t| !t.is_empty()) else { return Ok(0) };
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| "Invalid page token".to_string())
}

/// `(maxResults, offset from pageToken)` of a list request.
fn paging(q: &HashMap<String, String>, default: usize, max: usize) -> Result<(usize, usize), String> {
    Ok((max_results(q, default, max)?, page_offset(q)?))
}

/// `groups.list?userKey=...`: the groups a user is a direct member of, sorted by email.
async fn list_groups(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    guard!(state, headers);
    let (size, offset) = match paging(&q, 200, 200) {
        Ok(p) => p,
        Err(message) => return invalid(&message),
    };
    with_data(&state, |data| {
        let mut groups: Vec<&Group> = match q.get("userKey") {
            Some(key) => match find_user(data, key) {
                Some(u) => u.groups.iter().filter_map(|g| data.groups.get(g)).collect(),
                None => return not_found("userKey"),
            },
            None if q.contains_key("customer") || q.contains_key("domain") => data.groups.values().collect(),
            None => return google_error(StatusCode::BAD_REQUEST, "global", "badRequest", "Bad Request"),
        };
        groups.sort_by(|a, b| a.email.cmp(&b.email));
        let size = size.min(data.group_page);
        let page: Vec<Value> = groups.iter().skip(offset).take(size).map(|g| group_json(g)).collect();
        let mut body = json!({ "kind": "admin#directory#groups" });
        if !page.is_empty() {
            body["groups"] = Value::Array(page);
        }
        if offset + size < groups.len() {
            body["nextPageToken"] = json!(page_token(offset + size));
        }
        ok(with_etag(body))
    })
}

async fn remove_member(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Path((group_key, member_key)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    with_data(&state, |data| {
        let Some(gid) = find_group(data, &group_key).map(|g| g.id.clone()) else { return not_found("groupKey") };
        let Some(uid) = find_user_id(data, &member_key) else { return not_found("memberKey") };
        let Some(u) = data.users.get_mut(&uid) else { return not_found("memberKey") };
        if !u.groups.contains(&gid) {
            return not_found("memberKey");
        }
        u.groups.retain(|g| g != &gid);
        StatusCode::NO_CONTENT.into_response()
    })
}

// After `guard!`, which it uses.
mod transfer;
use transfer::{get_application, get_transfer, insert_transfer, list_applications, list_transfers};
