//! The GitHub REST API's organization memberships, with GitHub's own shapes:
//! `Authorization: Bearer {token}` (or the older `token {token}`); errors as
//! `{message, documentation_url, status}`; `x-ratelimit-limit/-remaining/-reset/-used/-resource`
//! on every answer. A primary rate limit is a 403 (or 429) with `x-ratelimit-remaining: 0` and
//! `x-ratelimit-reset` (epoch seconds); a secondary one a 403/429 with `retry-after` (seconds).
//!
//! Routes (the real paths): `GET /orgs/{org}`, `GET /orgs/{org}/memberships/{username}`
//! (`{url, state, role, organization_url, organization, user}`), `DELETE
//! /orgs/{org}/memberships/{username}` → 204 (also cancels a pending invitation); 404 when the
//! user is not a member.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The hourly request budget of a token, as GitHub grants a user or app token.
const LIMIT: u32 = 5000;

/// A member (or invitee) of the mock organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub login: String,
    pub id: u64,
    /// `admin` (an owner) or `member`.
    pub role: String,
    /// `active`, or `pending` for an invitation not yet accepted.
    pub state: String,
}

#[derive(Debug, Default)]
struct Data {
    token: String,
    login: String,
    id: u64,
    members: BTreeMap<String, Member>,
    /// Requests counted against the token's budget in the current window.
    used: u32,
    /// The end of the current window (epoch seconds).
    reset: i64,
}

/// The mock organization.
#[derive(Clone, Default)]
pub struct Org {
    data: Arc<Mutex<Data>>,
    /// Set when the router is built: the mock's OAuth state (whether the static token or minted
    /// ones apply).
    oauth: crate::oauth::OAuth,
}

impl Org {
    /// Organization `acme`: alice-gh (member), dana-gh (admin), erin-gh (invited, pending).
    pub fn sample(token: &str) -> Self {
        let member = |login: &str, id: u64, role: &str, state: &str| Member {
            login: login.into(),
            id,
            role: role.into(),
            state: state.into(),
        };
        let members = [
            member("alice-gh", 5_830_001, "member", "active"),
            member("dana-gh", 5_830_004, "admin", "active"),
            member("erin-gh", 5_830_005, "member", "pending"),
        ];
        let data = Data {
            token: token.to_string(),
            login: "acme".into(),
            id: 9_919_001,
            members: members.into_iter().map(|m| (m.login.to_lowercase(), m)).collect(),
            used: 0,
            reset: now() + 3600,
        };
        Org { data: Arc::new(Mutex::new(data)), oauth: Default::default() }
    }

    /// A member or invitee by login (case-insensitive).
    pub fn member(&self, login: &str) -> Option<Member> {
        self.data.lock().ok()?.members.get(&login.to_lowercase()).cloned()
    }

    /// Every member's login.
    pub fn logins(&self) -> Vec<String> {
        self.data.lock().map(|d| d.members.values().map(|m| m.login.clone()).collect()).unwrap_or_default()
    }

    pub fn add_member(&self, member: Member) {
        if let Ok(mut d) = self.data.lock() {
            d.members.insert(member.login.to_lowercase(), member);
        }
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn router(mut state: Org, oauth: crate::oauth::OAuth) -> Router {
    state.oauth = oauth;
    Router::new()
        .route("/orgs/{org}", get(get_org))
        .route("/orgs/{org}/memberships/{username}", get(get_membership).delete(remove_membership))
        .with_state(state)
}

/// The rate-limit headers GitHub puts on every answer.
fn rate_headers(h: &mut HeaderMap, remaining: u32, used: u32, reset: i64) {
    h.insert("x-ratelimit-limit", HeaderValue::from(LIMIT));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert("x-ratelimit-used", HeaderValue::from(used));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert("x-github-api-version-selected", HeaderValue::from_static("2022-11-28"));
    h.insert("x-github-media-type", HeaderValue::from_static("github.v3; format=json"));
    if let Ok(v) = HeaderValue::from_str(&format!("{:X}", uuid::Uuid::new_v4().as_u128() as u64)) {
        h.insert("x-github-request-id", v);
    }
}

fn github_json(status: StatusCode, body: &Value) -> Response {
    (status, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn error_body(status: StatusCode, message: &str, docs: &str) -> Value {
    json!({ "message": message, "documentation_url": docs, "status": status.as_u16().to_string() })
}

/// A GitHub error response with its usual body and headers. 403 is the primary rate limit
/// (`x-ratelimit-remaining: 0`, reset a second away); 429 the secondary one (`retry-after`).
pub(crate) fn error_response(status: StatusCode) -> Response {
    let reset = now() + 1;
    let (body, remaining, retry_after) = match status.as_u16() {
        401 => (error_body(status, "Bad credentials", "https://docs.github.com/rest"), LIMIT - 1, false),
        403 => (
            error_body(
                status,
                "API rate limit exceeded for user ID 5830099. If you reach out to GitHub Support for help, please include the request ID 0451:3B2A:1C2D3E:4F5A6B:67A1B2C3.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
            ),
            0,
            false,
        ),
        404 => (error_body(status, "Not Found", "https://docs.github.com/rest"), LIMIT - 1, false),
        429 => (
            error_body(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0451:3B2A:1C2D3E:4F5A6B:67A1B2C4.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            ),
            LIMIT - 1,
            true,
        ),
        _ => (json!({ "message": "Server Error" }), LIMIT - 1, false),
    };
    let mut resp = github_json(status, &body);
    rate_headers(resp.headers_mut(), remaining, LIMIT - remaining, reset);
    if retry_after {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

/// Counts the request against the budget and answers with the headers that say so.
fn answer(state: &Org, status: StatusCode, body: Option<Value>) -> Response {
    let (remaining, used, reset) = match state.data.lock() {
        Ok(mut d) => {
            if now() >= d.reset {
                d.used = 0;
                d.reset = now() + 3600;
            }
            d.used = (d.used + 1).min(LIMIT);
            (LIMIT - d.used, d.used, d.reset)
        }
        Err(_) => (LIMIT, 0, now() + 3600),
    };
    let mut resp = match body {
        Some(b) => github_json(status, &b),
        None => status.into_response(),
    };
    rate_headers(resp.headers_mut(), remaining, used, reset);
    resp
}

/// `None` when the token is right (with GitHub OAuth configured: a live installation token from
/// the mock's `/app/installations/{id}/access_tokens`); otherwise GitHub's 401.
fn unauthorized(state: &Org, headers: &HeaderMap) -> Option<Response> {
    let expected = state.data.lock().map(|d| d.token.clone()).unwrap_or_default();
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    let Some(given) = given else {
        let body = error_body(StatusCode::UNAUTHORIZED, "Requires authentication", "https://docs.github.com/rest");
        return Some(answer(state, StatusCode::UNAUTHORIZED, Some(body)));
    };
    let token = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("token ")).unwrap_or("");
    use crate::oauth::{Issuer, TokenCheck};
    let right = match state.oauth.check(Issuer::GitHub, token) {
        TokenCheck::NotConfigured => !expected.is_empty() && token == expected,
        TokenCheck::Live(_) => true,
        TokenCheck::Expired | TokenCheck::Unknown => false,
    };
    if !right {
        let body = error_body(StatusCode::UNAUTHORIZED, "Bad credentials", "https://docs.github.com/rest");
        return Some(answer(state, StatusCode::UNAUTHORIZED, Some(body)));
    }
    None
}

macro_rules! guard {
    ($state:expr, $headers:expr) => {
        if let Some(resp) = unauthorized(&$state, &$headers) {
            return resp;
        }
    };
}

/// The API base URLs in bodies point at whoever was asked (the mock, in tests).
fn base(headers: &HeaderMap) -> String {
    match headers.get("host").and_then(|v| v.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => "https://api.github.com".into(),
    }
}

fn org_json(d: &Data, base: &str) -> Value {
    json!({
        "login": d.login,
        "id": d.id,
        "node_id": "O_kgDOAJdY3Q",
        "url": format!("{base}/orgs/{}", d.login),
        "repos_url": format!("{base}/orgs/{}/repos", d.login),
        "events_url": format!("{base}/orgs/{}/events", d.login),
        "hooks_url": format!("{base}/orgs/{}/hooks", d.login),
        "issues_url": format!("{base}/orgs/{}/issues", d.login),
        "members_url": format!("{base}/orgs/{}/members{{/member}}", d.login),
        "public_members_url": format!("{base}/orgs/{}/public_members{{/member}}", d.login),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", d.id),
        "description": "Acme Corporation",
    })
}

fn user_json(m: &Member, base: &str) -> Value {
    json!({
        "login": m.login,
        "id": m.id,
        "node_id": format!("MDQ6VXNlcj{}", m.id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", m.id),
        "gravatar_id": "",
        "url": format!("{base}/users/{}", m.login),
        "html_url": format!("https://github.com/{}", m.login),
        "type": "User",
        "site_admin": false,
    })
}

fn org_not_found(state: &Org) -> Response {
    let body =
        error_body(StatusCode::NOT_FOUND, "Not Found", "https://docs.github.com/rest/orgs/orgs#get-an-organization");
    answer(state, StatusCode::NOT_FOUND, Some(body))
}

fn membership_not_found(state: &Org, docs: &str) -> Response {
    answer(state, StatusCode::NOT_FOUND, Some(error_body(StatusCode::NOT_FOUND, "Not Found", docs)))
}

async fn get_org(State(state): State<Org>, headers: HeaderMap, Path(org): Path<String>) -> Response {
    guard!(state, headers);
    // The lock is released before answering: `answer` takes it again to count the request.
    let body = match state.data.lock() {
        Ok(d) => d.login.eq_ignore_ascii_case(&org).then(|| org_json(&d, &base(&headers))),
        Err(_) => return error_response(StatusCode::INTERNAL_SERVER_ERROR),
    };
    match body {
        Some(body) => answer(&state, StatusCode::OK, Some(body)),
        None => org_not_found(&state),
    }
}

async fn get_membership(
    State(state): State<Org>,
    headers: HeaderMap,
    Path((org, username)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    const DOCS: &str = "https://docs.github.com/rest/orgs/members#get-organization-membership-for-a-user";
    let body = {
        let Ok(d) = state.data.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
        let member = d.members.get(&username.to_lowercase()).filter(|_| d.login.eq_ignore_ascii_case(&org));
        member.map(|m| {
            let base = base(&headers);
            json!({
                "url": format!("{base}/orgs/{}/memberships/{}", d.login, m.login),
                "state": m.state,
                "role": m.role,
                "organization_url": format!("{base}/orgs/{}", d.login),
                "organization": org_json(&d, &base),
                "user": user_json(m, &base),
            })
        })
    };
    match body {
        Some(body) => answer(&state, StatusCode::OK, Some(body)),
        None => membership_not_found(&state, DOCS),
    }
}

async fn remove_membership(
    State(state): State<Org>,
    headers: HeaderMap,
    Path((org, username)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    const DOCS: &str = "https://docs.github.com/rest/orgs/members#remove-organization-membership-for-a-user";
    let removed = {
        let Ok(mut d) = state.data.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
        d.login.eq_ignore_ascii_case(&org) && d.members.remove(&username.to_lowercase()).is_some()
    };
    if removed { answer(&state, StatusCode::NO_CONTENT, None) } else { membership_not_found(&state, DOCS) }
}
