//! Microsoft Graph v1.0, as much of it as offboarding uses, with Graph's own shapes:
//! `Authorization: Bearer {token}`; errors as `{"error": {code, message, innerError: {date,
//! request-id, client-request-id}}}`; `request-id`/`client-request-id` on every answer;
//! 401 `InvalidAuthenticationToken`; 404 `Request_ResourceNotFound`; 429 `TooManyRequests`
//! with `Retry-After` (seconds).
//!
//! Routes (the real paths under `/v1.0`):
//! - `GET /v1.0/users/{id | userPrincipalName}` (`$select` honoured: `accountEnabled` only
//!   comes back when selected, as in Graph), `PATCH /v1.0/users/{id}` → 204;
//! - `POST /v1.0/users/{id}/revokeSignInSessions` → 200 `{"value": true}`;
//! - `GET /v1.0/users/{id}/memberOf` (paged: `$top`, `$skiptoken`, an absolute
//!   `@odata.nextLink`; groups and directory roles);
//! - `DELETE /v1.0/groups/{g}/members/{u}/$ref` → 204; dynamic-membership groups and
//!   mail-enabled security groups / distribution lists answer 400; not a member → 404.
//!   Without `/$ref` the request would delete the *user* in real Graph; the mock answers
//!   403 `Authorization_RequestDenied` (what Graph says to an app without user-delete rights)
//!   and changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value, json};

/// Graph's default page size for `memberOf`, and the largest `$top` it accepts.
const DEFAULT_PAGE: usize = 100;
const MAX_TOP: usize = 999;

/// A user in the mock tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// The object id (a GUID).
    pub id: String,
    pub user_principal_name: String,
    pub mail: String,
    pub display_name: String,
    pub given_name: String,
    pub surname: String,
    pub account_enabled: bool,
    /// Ids of the groups and directory roles the user is a direct member of, in listing order.
    pub member_of: Vec<String>,
    /// How many times `revokeSignInSessions` was called for the user.
    pub sessions_revoked: u32,
    /// `signInSessionsValidFromDateTime` (RFC 3339).
    pub sign_in_sessions_valid_from: String,
}

/// What kind of directory object a membership points at.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectKind {
    /// `#microsoft.graph.group`.
    Group {
        /// `groupTypes`: `Unified` (Microsoft 365), `DynamicMembership`.
        group_types: Vec<String>,
        mail_enabled: bool,
        security_enabled: bool,
        membership_rule: Option<String>,
    },
    /// `#microsoft.graph.directoryRole` (an activated Entra role).
    DirectoryRole { role_template_id: String },
}

/// A group or directory role.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryObject {
    pub id: String,
    pub display_name: String,
    pub kind: ObjectKind,
}

impl DirectoryObject {
    fn is_dynamic(&self) -> bool {
        matches!(&self.kind, ObjectKind::Group { group_types, .. } if group_types.iter().any(|t| t == "DynamicMembership"))
    }

    /// Mail-enabled security groups and distribution lists are managed in Exchange, not Graph.
    fn is_exchange_managed(&self) -> bool {
        matches!(&self.kind, ObjectKind::Group { group_types, mail_enabled: true, .. } if !group_types.iter().any(|t| t == "Unified"))
    }
}

#[derive(Debug, Default)]
struct Data {
    token: String,
    users: BTreeMap<String, User>,
    objects: BTreeMap<String, DirectoryObject>,
    /// The most entries the server puts on one page whatever `$top` says (Graph may return
    /// fewer than asked).
    max_page: usize,
    /// When set, `@odata.nextLink` points at this origin instead of the mock's own (to test
    /// that clients refuse to follow links off the API's origin).
    next_link_origin: Option<String>,
}

/// The mock's users, groups and directory roles.
#[derive(Clone, Default)]
pub struct Tenant {
    data: Arc<Mutex<Data>>,
    /// Set when the router is built: the mock's OAuth state (whether the static token or minted
    /// ones apply).
    oauth: crate::oauth::OAuth,
}

/// Alice's object id in the sample tenant.
pub const ALICE_ID: &str = "6e7b768e-07e2-4810-8459-485f84f8f204";
/// Bob's object id in the sample tenant.
pub const BOB_ID: &str = "a2c1f6c4-3b4e-4d8e-9a51-0b0f3a6e5d21";
/// Dana's object id in the sample tenant.
pub const DANA_ID: &str = "0f3b9d2e-5c71-4a6b-8e0d-2f4c6a8b1e93";

impl Tenant {
    /// Alice (enabled; in five ordinary groups, a dynamic group, a distribution list and the
    /// Global Reader directory role), Bob (already disabled), Dana (Alice's manager).
    pub fn sample(token: &str) -> Self {
        let group = |id: &str, name: &str, types: &[&str], mail: bool, security: bool, rule: Option<&str>| {
            let kind = ObjectKind::Group {
                group_types: types.iter().map(|t| t.to_string()).collect(),
                mail_enabled: mail,
                security_enabled: security,
                membership_rule: rule.map(str::to_string),
            };
            DirectoryObject { id: id.into(), display_name: name.into(), kind }
        };
        let objects = vec![
            group("02bd9fd6-8f93-4758-87c3-1fb73740a315", "Engineering", &[], false, true, None),
            group("1a7f3e0c-9b2d-4c6a-8f15-3e9d0b7a4c21", "VPN Users", &[], false, true, None),
            group("2c5e8a1f-7d3b-4e9c-a0f2-6b8d1e4c7a35", "All Company", &["Unified"], true, false, None),
            group(
                "3d9b2f6e-1a4c-4b8d-9e7f-0c2a5d8b3f46",
                "All Employees (dynamic)",
                &["DynamicMembership"],
                false,
                true,
                Some("(user.accountEnabled -eq true) and (user.userType -eq \"Member\")"),
            ),
            group("4e1c7a3b-8f5d-4a2e-b6c9-1d3f5a7b9c57", "Design Reviews", &["Unified"], true, false, None),
            group("5f2d8b4c-9a6e-4b3f-c7d0-2e4a6b8c0d68", "Project Falcon", &[], false, true, None),
            group("6a3e9c5d-0b7f-4c4a-d8e1-3f5b7c9d1e79", "sales-announce@example.com", &[], true, false, None),
            DirectoryObject {
                id: "7b4f0d6e-1c8a-4d5b-e9f2-4a6c8d0e2f80".into(),
                display_name: "Global Reader".into(),
                kind: ObjectKind::DirectoryRole { role_template_id: "f2ef992c-3afb-46b9-b7cf-a126ee74c451".into() },
            },
        ];
        let all: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
        let user = |id: &str, first: &str, last: &str, enabled: bool, member_of: Vec<String>| User {
            id: id.into(),
            user_principal_name: format!("{}@example.com", first.to_lowercase()),
            mail: format!("{}@example.com", first.to_lowercase()),
            display_name: format!("{first} {last}"),
            given_name: first.into(),
            surname: last.into(),
            account_enabled: enabled,
            member_of,
            sessions_revoked: 0,
            sign_in_sessions_valid_from: "2023-01-10T09:00:00Z".into(),
        };
        let users = [
            user(ALICE_ID, "Alice", "Anders", true, all.clone()),
            user(BOB_ID, "Bob", "Brown", false, vec![all[0].clone(), all[3].clone()]),
            user(DANA_ID, "Dana", "Diaz", true, vec![all[0].clone(), all[2].clone(), all[3].clone()]),
        ];
        let data = Data {
            token: token.to_string(),
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            objects: objects.into_iter().map(|o| (o.id.clone(), o)).collect(),
            max_page: MAX_TOP,
            next_link_origin: None,
        };
        Tenant { data: Arc::new(Mutex::new(data)), oauth: Default::default() }
    }

    /// A user by object id or userPrincipalName.
    pub fn user(&self, key: &str) -> Option<User> {
        let data = self.data.lock().ok()?;
        find(&data, key).cloned()
    }

    /// A group or directory role by id.
    pub fn object(&self, id: &str) -> Option<DirectoryObject> {
        self.data.lock().ok()?.objects.get(id).cloned()
    }

    /// The display names of what the user is a member of, in listing order.
    pub fn member_of_names(&self, key: &str) -> Vec<String> {
        let Ok(data) = self.data.lock() else { return Vec::new() };
        find(&data, key)
            .map(|u| u.member_of.iter().filter_map(|id| data.objects.get(id)).map(|o| o.display_name.clone()).collect())
            .unwrap_or_default()
    }

    /// Caps every `memberOf` page at `n` entries, whatever `$top` asks for.
    pub fn set_max_page(&self, n: usize) {
        if let Ok(mut d) = self.data.lock() {
            d.max_page = n.max(1);
        }
    }

    /// Makes `@odata.nextLink` point at `origin` (e.g. `https://evil.example`) instead of the mock.
    pub fn set_next_link_origin(&self, origin: Option<&str>) {
        if let Ok(mut d) = self.data.lock() {
            d.next_link_origin = origin.map(str::to_string);
        }
    }

    pub fn add_user(&self, user: User) {
        if let Ok(mut d) = self.data.lock() {
            d.users.insert(user.id.clone(), user);
        }
    }
}

fn find<'a>(data: &'a Data, key: &str) -> Option<&'a User> {
    data.users.get(key).or_else(|| data.users.values().find(|u| u.user_principal_name.eq_ignore_ascii_case(key)))
}

fn find_mut<'a>(data: &'a mut Data, key: &str) -> Option<&'a mut User> {
    let id = find(data, key)?.id.clone();
    data.users.get_mut(&id)
}

pub(crate) fn router(mut state: Tenant, oauth: crate::oauth::OAuth) -> Router {
    state.oauth = oauth;
    Router::new()
        .route("/v1.0/users/{id}", get(get_user).patch(patch_user))
        .route("/v1.0/users/{id}/revokeSignInSessions", post(revoke_sessions))
        .route("/v1.0/users/{id}/memberOf", get(member_of))
        .route("/v1.0/groups/{gid}/members/{uid}/$ref", delete(remove_member_ref))
        .route("/v1.0/groups/{gid}/members/{uid}", delete(remove_member_without_ref))
        .with_state(state)
}

const JSON_TYPE: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

fn now_graph_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The ids Graph puts on every answer: `request-id` and the client's `client-request-id`
/// (echoed when the client sent one).
fn ids(req: &HeaderMap) -> (String, String) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client = req
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    (request_id, client)
}

fn stamp(resp: &mut Response, request_id: &str, client_request_id: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(client_request_id) {
        h.insert("client-request-id", v);
    }
    h.insert(
        "x-ms-ags-diagnostic",
        HeaderValue::from_static(
            r#"{"ServerInfo":{"DataCenter":"West Europe","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"AM2PEPF0001C0DE"}}"#,
        ),
    );
}

fn graph_error_with(status: StatusCode, code: &str, message: &str, req: &HeaderMap) -> Response {
    let (request_id, client_request_id) = ids(req);
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": now_graph_date(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
        }
    });
    let mut resp = (status, [("content-type", "application/json")], body.to_string()).into_response();
    stamp(&mut resp, &request_id, &client_request_id);
    match status.as_u16() {
        401 => {
            resp.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static(
                    r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
                ),
            );
        }
        // Graph tells throttled (and briefly unavailable) clients how long to wait, in seconds.
        429 | 503 => {
            resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        _ => {}
    }
    resp
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    graph_error_with(status, code, message, &HeaderMap::new())
}

/// A Graph error response with its usual body and headers.
pub(crate) fn error_response(status: StatusCode) -> Response {
    let (code, message) = match status.as_u16() {
        400 => ("Request_BadRequest", "Invalid request.".to_string()),
        401 => ("InvalidAuthenticationToken", "Access token validation failure. Invalid audience.".to_string()),
        403 => ("Authorization_RequestDenied", "Insufficient privileges to complete the operation.".to_string()),
        404 => ("Request_ResourceNotFound", not_found_message("00000000-0000-0000-0000-000000000000")),
        429 => (
            "TooManyRequests",
            "Too many requests from Identifier:West Europe under category:throttle.aad.ags.directory. Please try again later."
                .to_string(),
        ),
        503 => (
            "serviceNotAvailable",
            "The service is temporarily unavailable for maintenance or is overloaded. You may repeat the request after a delay, the length of which may be specified in a Retry-After header."
                .to_string(),
        ),
        504 => ("gatewayTimeout", "The server, while acting as a proxy, did not receive a timely response from the upstream server it needed to access in attempting to complete the request.".to_string()),
        _ => ("generalException", "An unspecified error has occurred.".to_string()),
    };
    graph_error(status, code, &message)
}

fn not_found_message(what: &str) -> String {
    format!("Resource '{what}' does not exist or one of its queried reference-property objects are not present.")
}

fn not_found(what: &str, req: &HeaderMap) -> Response {
    graph_error_with(StatusCode::NOT_FOUND, "Request_ResourceNotFound", &not_found_message(what), req)
}

fn bad_request(message: &str, req: &HeaderMap) -> Response {
    graph_error_with(StatusCode::BAD_REQUEST, "Request_BadRequest", message, req)
}

fn ok_json(status: StatusCode, body: Value, req: &HeaderMap) -> Response {
    let (request_id, client_request_id) = ids(req);
    let mut resp = (status, [("content-type", JSON_TYPE)], body.to_string()).into_response();
    stamp(&mut resp, &request_id, &client_request_id);
    resp
}

fn no_content(req: &HeaderMap) -> Response {
    let (request_id, client_request_id) = ids(req);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    stamp(&mut resp, &request_id, &client_request_id);
    resp
}

/// The scopes that mint a token for Graph (by App ID URI or by app id).
const GRAPH_SCOPES: [&str; 2] =
    ["https://graph.microsoft.com/.default", "00000003-0000-0000-c000-000000000000/.default"];

/// `None` when the bearer token is right (with Microsoft OAuth configured: a live token from the
/// mock's token endpoint, minted for Graph); otherwise Graph's 401.
fn unauthorized(state: &Tenant, headers: &HeaderMap) -> Option<Response> {
    let expected = state.data.lock().map(|d| d.token.clone()).unwrap_or_default();
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("bearer ")).unwrap_or("");
    if token.is_empty() {
        return Some(graph_error_with(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
            headers,
        ));
    }
    let invalid = |message: &str| {
        Some(graph_error_with(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message, headers))
    };
    use crate::oauth::{Issuer, TokenCheck};
    match state.oauth.check(Issuer::Microsoft, token) {
        TokenCheck::NotConfigured => {}
        // A token for another resource than Graph.
        TokenCheck::Live(t) if !GRAPH_SCOPES.contains(&t.scope.as_str()) => {
            return invalid("Access token validation failure. Invalid audience.");
        }
        TokenCheck::Live(_) => return None,
        TokenCheck::Expired => return invalid("Lifetime validation failed, the token is expired."),
        TokenCheck::Unknown => return invalid("Access token validation failure."),
    }
    if expected.is_empty() || token != expected {
        return Some(graph_error_with(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
            headers,
        ));
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

/// The properties a user has, with their values.
fn user_properties(u: &User) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("businessPhones".into(), json!([]));
    m.insert("displayName".into(), json!(u.display_name));
    m.insert("givenName".into(), json!(u.given_name));
    m.insert("jobTitle".into(), Value::Null);
    m.insert("mail".into(), json!(u.mail));
    m.insert("mobilePhone".into(), Value::Null);
    m.insert("officeLocation".into(), Value::Null);
    m.insert("preferredLanguage".into(), json!("en-US"));
    m.insert("surname".into(), json!(u.surname));
    m.insert("userPrincipalName".into(), json!(u.user_principal_name));
    m.insert("id".into(), json!(u.id));
    m.insert("accountEnabled".into(), json!(u.account_enabled));
    m.insert("signInSessionsValidFromDateTime".into(), json!(u.sign_in_sessions_valid_from));
    m.insert("userType".into(), json!("Member"));
    m.insert("createdDateTime".into(), json!("2023-01-10T09:00:00Z"));
    m
}

/// What Graph returns without `$select`.
const DEFAULT_USER_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// The query parameters, keyed by name as sent (`$select`, `$top`, ...). Graph also accepts
/// them without the `$`; so does the mock.
fn odata_param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(&format!("${name}")).or_else(|| q.get(name)).map(String::as_str)
}

async fn get_user(
    State(state): State<Tenant>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    guard!(state, headers);
    let Some(u) = state.user(&id) else { return not_found(&id, &headers) };
    let props = user_properties(&u);
    let selected: Vec<String> = match odata_param(&q, "select") {
        Some(sel) => sel.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => DEFAULT_USER_PROPERTIES.iter().map(|s| s.to_string()).collect(),
    };
    let mut body = Map::new();
    let context = match odata_param(&q, "select") {
        Some(_) => format!("https://graph.microsoft.com/v1.0/$metadata#users({})/$entity", selected.join(",")),
        None => "https://graph.microsoft.com/v1.0/$metadata#users/$entity".to_string(),
    };
    body.insert("@odata.context".into(), json!(context));
    for name in &selected {
        match props.get(name) {
            Some(v) => {
                body.insert(name.clone(), v.clone());
            }
            None => {
                return bad_request(
                    &format!("Could not find a property named '{name}' on type 'microsoft.graph.user'."),
                    &headers,
                );
            }
        }
    }
    ok_json(StatusCode::OK, Value::Object(body), &headers)
}

async fn patch_user(State(state): State<Tenant>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    guard!(state, headers);
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Empty Payload. JSON content expected.", &headers);
    };
    let Ok(mut data) = state.data.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    let Some(user) = find_mut(&mut data, &id) else { return not_found(&id, &headers) };
    // Validate everything before changing anything: Graph applies a PATCH whole or not at all.
    for (k, v) in &changes {
        let valid = match k.as_str() {
            "accountEnabled" => v.is_boolean(),
            "displayName" | "jobTitle" | "officeLocation" => v.is_string() || v.is_null(),
            _ => return bad_request(&format!("Invalid property '{k}'."), &headers),
        };
        if !valid {
            return bad_request(&format!("Invalid value specified for property '{k}' of resource 'User'."), &headers);
        }
    }
    if let Some(enabled) = changes.get("accountEnabled").and_then(Value::as_bool) {
        user.account_enabled = enabled;
    }
    if let Some(name) = changes.get("displayName").and_then(Value::as_str) {
        user.display_name = name.to_string();
    }
    no_content(&headers)
}

async fn revoke_sessions(State(state): State<Tenant>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guard!(state, headers);
    let Ok(mut data) = state.data.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    let Some(user) = find_mut(&mut data, &id) else { return not_found(&id, &headers) };
    user.sessions_revoked += 1;
    user.sign_in_sessions_valid_from = now_graph_date() + "Z";
    ok_json(
        StatusCode::OK,
        json!({ "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true }),
        &headers,
    )
}

fn object_json(o: &DirectoryObject) -> Value {
    match &o.kind {
        ObjectKind::Group { group_types, mail_enabled, security_enabled, membership_rule } => {
            let nickname: String =
                o.display_name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
            json!({
                "@odata.type": "#microsoft.graph.group",
                "id": o.id,
                "deletedDateTime": null,
                "classification": null,
                "createdDateTime": "2023-02-01T10:00:00Z",
                "description": null,
                "displayName": o.display_name,
                "groupTypes": group_types,
                "mail": if *mail_enabled { json!(format!("{nickname}@example.com")) } else { Value::Null },
                "mailEnabled": mail_enabled,
                "mailNickname": nickname,
                "membershipRule": membership_rule,
                "membershipRuleProcessingState": if membership_rule.is_some() { json!("On") } else { Value::Null },
                "onPremisesSyncEnabled": null,
                "securityEnabled": security_enabled,
                "securityIdentifier": "S-1-12-1-1234567890-1234567890-1234567890-1234567890",
                "visibility": if group_types.iter().any(|t| t == "Unified") { json!("Private") } else { Value::Null },
            })
        }
        ObjectKind::DirectoryRole { role_template_id } => json!({
            "@odata.type": "#microsoft.graph.directoryRole",
            "id": o.id,
            "deletedDateTime": null,
            "description": "Can read everything that a Global Administrator can, but not update anything.",
            "displayName": o.display_name,
            "roleTemplateId": role_template_id,
        }),
    }
}

fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An opaque-looking skip token that carries the next offset.
fn skiptoken(offset: usize) -> String {
    format!("RFNwdAIAAQAAAC{offset:08x}")
}

fn parse_skiptoken(s: &str) -> Option<usize> {
    usize::from_str_radix(s.strip_prefix("RFNwdAIAAQAAAC")?, 16).ok()
}

async fn member_of(
    State(state): State<Tenant>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    guard!(state, headers);
    let top = match odata_param(&q, "top") {
        None => DEFAULT_PAGE,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                return bad_request(
                    &format!("Invalid page size specified: '{t}'. Must be between 1 and {MAX_TOP} inclusive."),
                    &headers,
                );
            }
        },
    };
    let offset = match odata_param(&q, "skiptoken") {
        None => 0,
        Some(tok) => match parse_skiptoken(tok) {
            Some(n) => n,
            None => {
                return graph_error_with(
                    StatusCode::BAD_REQUEST,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired and can no longer be included in your request.",
                    &headers,
                );
            }
        },
    };
    let Ok(data) = state.data.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    let Some(user) = find(&data, &id) else { return not_found(&id, &headers) };
    let page = top.min(data.max_page);
    let all: Vec<&DirectoryObject> = user.member_of.iter().filter_map(|g| data.objects.get(g)).collect();
    let values: Vec<Value> = all.iter().skip(offset).take(page).map(|o| object_json(o)).collect();
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
        "value": values,
    });
    if offset + page < all.len() {
        let origin = match &data.next_link_origin {
            Some(o) => o.clone(),
            None => {
                let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("graph.microsoft.com");
                format!("http://{host}")
            }
        };
        // Absolute, as Graph sends it; the caller follows it as-is.
        let link = format!(
            "{origin}/v1.0/users/{}/memberOf?$top={top}&$skiptoken={}",
            encode_query_value(&user.id),
            skiptoken(offset + page)
        );
        body["@odata.nextLink"] = json!(link);
    }
    ok_json(StatusCode::OK, body, &headers)
}

async fn remove_member_ref(
    State(state): State<Tenant>,
    headers: HeaderMap,
    Path((gid, uid)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    let Ok(mut data) = state.data.lock() else { return error_response(StatusCode::INTERNAL_SERVER_ERROR) };
    let group = match data.objects.get(&gid) {
        Some(o) if matches!(o.kind, ObjectKind::Group { .. }) => o.clone(),
        _ => return not_found(&gid, &headers),
    };
    let Some(user) = find_mut(&mut data, &uid) else { return not_found(&uid, &headers) };
    if !user.member_of.contains(&gid) {
        return not_found(&uid, &headers);
    }
    if group.is_dynamic() {
        return bad_request(
            "Cannot update the membership of a group with dynamic membership rules: members are added and removed by its membershipRule.",
            &headers,
        );
    }
    if group.is_exchange_managed() {
        return bad_request("Cannot Update a mail-enabled security groups and or distribution list.", &headers);
    }
    user.member_of.retain(|g| g != &gid);
    no_content(&headers)
}

/// Without `/$ref` this addresses the member object itself: real Graph would delete the user
/// (given the rights) or answer 403. The mock never deletes anyone.
async fn remove_member_without_ref(
    State(state): State<Tenant>,
    headers: HeaderMap,
    Path((_gid, _uid)): Path<(String, String)>,
) -> Response {
    guard!(state, headers);
    graph_error_with(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        &headers,
    )
}
