//! Slack offboarding steps: find the member with the SCIM API, wipe their sessions with the Web
//! API's `admin.users.session.reset`, deactivate them with SCIM `DELETE /Users/{id}`.
//!
//! ```yaml
//! - id: slack_sessions
//!   uses: slack
//!   with:
//!     action: reset_sessions          # lookup | reset_sessions | deactivate
//!     user: "{{ inputs.email }}"      # an email or a Slack user id (U…/W…)
//!     # scim_url: https://api.slack.com   (the defaults; tests point both at a mock)
//!     # api_url: https://slack.com
//!   retry: { attempts: 4, backoff: { initial: 1s, max: 30s } }
//!   allow: [https://api.slack.com, https://slack.com]
//!   credentials:
//!     - host: api.slack.com
//!       secret: SLACK_ADMIN_TOKEN
//!       header: Authorization
//!       format: "Bearer {secret}"
//!     - host: slack.com
//!       secret: SLACK_ADMIN_TOKEN
//!       header: Authorization
//!       format: "Bearer {secret}"
//! ```
//!
//! `SLACK_ADMIN_TOKEN` is an org admin's user token (`xoxp-…`, scopes `admin` for SCIM and
//! `admin.users:write`), injected by the host: this plugin never sees it. SCIM needs a Business+
//! or Enterprise Grid plan; `admin.users.session.reset` needs Enterprise Grid.
//!
//! Every action starts from the member's SCIM record, which makes each idempotent: a member
//! who is already deactivated has no sessions to reset and nothing to deactivate (`unchanged`).
//! Errors become readable messages from either of Slack's shapes: SCIM's
//! `{"Errors": {"description", "code"}}` and the Web API's HTTP 200 `{"ok": false, "error"}`.
//! HTTP 429 (or `ratelimited`) is a transient error that waits `Retry-After` seconds.

use offramp_plugin_sdk::{
    ActionSpec, Guest, Invocation, Outcome, PluginInfo, Request, Response, Sent, TaskError, action, changed,
    encode_path_segment, export_plugin, http_error, info, input, needs_human, permanent, rate_limited, transient,
    unchanged,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = user_or_email)]
struct Input {
    /// What to do.
    action: Action,
    /// The member's email or Slack user id (`U…`/`W…`). `email:` is accepted for it.
    #[serde(alias = "email")]
    user: String,
    /// The SCIM API's base, without `/scim/v2`.
    #[serde(default = "default_scim_url")]
    scim_url: String,
    /// The Web API's base, without `/api`.
    #[serde(default = "default_api_url")]
    api_url: String,
}

fn default_scim_url() -> String {
    "https://api.slack.com".into()
}

fn default_api_url() -> String {
    "https://slack.com".into()
}

/// The input schema says what the `email` alias means (schemars does not read serde's `alias`):
/// `email` is declared as `user` is, and exactly one of the two is required. Giving both is
/// refused, as serde refuses it (a duplicate `user`).
fn user_or_email(schema: &mut schemars::Schema) {
    let Some(obj) = schema.as_object_mut() else { return };
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut)
        && let Some(mut email) = props.get("user").cloned()
    {
        if let Some(e) = email.as_object_mut() {
            e.insert("description".into(), json!("Another name for `user` (give one of the two)."));
        }
        props.insert("email".into(), email);
    }
    if let Some(required) = obj.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r != "user");
    }
    // if/then/else rather than oneOf: a `with:` that gives neither is told it is missing `user`.
    obj.insert("if".into(), json!({ "required": ["email"] }));
    obj.insert("then".into(), json!({ "not": { "required": ["user"] } }));
    obj.insert("else".into(), json!({ "required": ["user"] }));
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Lookup,
    ResetSessions,
    Deactivate,
}

/// A SCIM v2 User resource (the parts used here).
#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(rename = "userName", default)]
    user_name: String,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    emails: Vec<Email>,
}

#[derive(Deserialize)]
struct Email {
    value: String,
    #[serde(default)]
    primary: bool,
}

impl User {
    fn email(&self) -> Option<&str> {
        self.emails.iter().find(|e| e.primary).or(self.emails.first()).map(|e| e.value.as_str())
    }
}

/// A SCIM ListResponse.
#[derive(Deserialize)]
struct ListResponse {
    #[serde(rename = "totalResults", default)]
    total: usize,
    #[serde(rename = "Resources", default)]
    resources: Vec<User>,
}

/// Slack's SCIM error body: `{"Errors": {"description": "...", "code": 404}}`. RFC 7644's
/// `{"detail": "...", "status": "404"}` is read too, in case Slack ever answers with it.
#[derive(Deserialize, Default)]
struct ScimError {
    #[serde(rename = "Errors", default)]
    errors: Option<ScimErrors>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct ScimErrors {
    #[serde(default)]
    description: String,
}

/// A Web API answer: `{"ok": true}` or `{"ok": false, "error": "..."}`.
#[derive(Deserialize)]
struct WebApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

struct Api {
    scim: String,
    web: String,
}

impl Api {
    fn scim_get(&self, path_and_query: &str) -> Result<Response, TaskError> {
        let url = format!("{}/scim/v2{path_and_query}", self.scim);
        let resp = Request::get(url).header("accept", "application/json").send().map_err(http_error)?;
        check_scim(resp)
    }

    fn send(req: Request) -> Result<Sent, TaskError> {
        req.mutate()
    }

    /// The member named by an email (SCIM filter) or a user id (SCIM read).
    fn user(&self, user: &str) -> Result<User, TaskError> {
        if user.contains('@') {
            let filter = format!("email eq \"{}\"", user.replace('"', ""));
            let list: ListResponse =
                self.scim_get(&format!("/Users?filter={}", encode_path_segment(&filter)))?.json()?;
            let mut found: Vec<User> = list
                .resources
                .into_iter()
                .filter(|u| u.emails.iter().any(|e| e.value.eq_ignore_ascii_case(user)))
                .collect();
            return match found.len() {
                0 => Err(permanent(format!("no Slack member with the email {user:?}"))),
                1 => Ok(found.remove(0)),
                n => Err(needs_human(format!(
                    "{n} Slack members have the email {user:?} ({} in total matched): pass the user id instead",
                    list.total
                ))),
            };
        }
        let url = format!("{}/scim/v2/Users/{}", self.scim, encode_path_segment(user));
        let resp = Request::get(url).header("accept", "application/json").send().map_err(http_error)?;
        if resp.status() == 404 {
            return Err(permanent(format!("no Slack member with the id {user:?}")));
        }
        check_scim(resp)?.json()
    }

    fn delete_user(&self, id: &str) -> Result<Sent, TaskError> {
        let url = format!("{}/scim/v2/Users/{}", self.scim, encode_path_segment(id));
        Self::send(Request::delete(url).header("accept", "application/json"))
    }

    fn web_api(&self, method: &str, body: &Value) -> Result<Sent, TaskError> {
        let url = format!("{}/api/{method}", self.web);
        Self::send(Request::post(url).json(body))
    }
}

/// Turns a non-2xx SCIM answer into a task error with Slack's description in it.
fn check_scim(resp: Response) -> Result<Response, TaskError> {
    if resp.is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let err: ScimError = serde_json::from_slice(&resp.raw.body).unwrap_or_default();
    let description = err.errors.map(|e| e.description).filter(|d| !d.is_empty()).or(err.detail);
    let what = match description {
        Some(d) => format!("Slack SCIM ({status}): {d}"),
        None => format!("Slack SCIM answered HTTP {status}"),
    };
    Err(match status {
        429 => rate_limited(what, retry_after_ms(&resp)),
        401 | 403 => {
            permanent(format!("{what}: check that SLACK_ADMIN_TOKEN is an org admin's token with the admin scope"))
        }
        500..=599 | 408 => transient(what),
        _ => permanent(what),
    })
}

/// Turns a Web API answer into `Ok(())` or a task error naming Slack's `error` code.
fn check_web_api(method: &str, user_id: &str, resp: Response) -> Result<(), TaskError> {
    let status = resp.status();
    if status == 429 {
        return Err(rate_limited(format!("Slack {method}: ratelimited (HTTP 429)"), retry_after_ms(&resp)));
    }
    if status >= 500 || status == 408 {
        return Err(transient(format!("Slack {method} answered HTTP {status}")));
    }
    let answer: WebApiAnswer = match serde_json::from_slice(&resp.raw.body) {
        Ok(a) => a,
        Err(_) if status >= 400 => return Err(permanent(format!("Slack {method} answered HTTP {status}"))),
        Err(e) => return Err(transient(format!("Slack {method}: the answer is not the JSON expected: {e}"))),
    };
    if answer.ok {
        return Ok(());
    }
    let code = answer.error.unwrap_or_else(|| "unknown_error".into());
    let what = format!("Slack {method}: {code}");
    Err(match code.as_str() {
        "ratelimited" => rate_limited(what, retry_after_ms(&resp)),
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => transient(what),
        "user_not_found" => permanent(format!("{what} (no member {user_id} in this org)")),
        "not_authed" | "invalid_auth" | "token_revoked" | "token_expired" | "account_inactive" => {
            permanent(format!("{what}: SLACK_ADMIN_TOKEN is missing or not valid"))
        }
        "not_allowed_token_type" | "missing_scope" | "not_an_admin" | "no_permission" | "access_denied" => {
            permanent(format!("{what}: SLACK_ADMIN_TOKEN must be an org admin's user token with admin.users:write"))
        }
        "feature_not_enabled" | "not_an_enterprise" => {
            permanent(format!("{what}: session reset needs an Enterprise Grid org"))
        }
        "cannot_reset_primary_owner" | "cannot_reset_bot" => needs_human(format!("{what}: reset this member by hand")),
        _ => permanent(what),
    })
}

/// Milliseconds to wait from `Retry-After` (seconds, as Slack sends it); unknown → 1 s.
fn retry_after_ms(resp: &Response) -> u64 {
    resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map_or(1000, |s| s.max(1) * 1000)
}

// Output fields are declared in alphabetical order: the JSON keeps the key order it had when it
// was built with `json!` (a sorted map).

/// The member, as `lookup` reports them.
#[derive(Serialize, JsonSchema)]
struct MemberOut {
    /// Whether the member is active (not deactivated).
    active: bool,
    /// The display name, if the member has one.
    display_name: Option<String>,
    /// The primary email (or the first), if the member has one.
    email: Option<String>,
    /// The Slack user id (`U…`/`W…`).
    id: String,
    /// The SCIM `userName`.
    user_name: String,
}

/// `reset_sessions`' output.
#[derive(Serialize, JsonSchema, Default)]
struct SessionsOut {
    /// `false` when the member is already deactivated (nothing left to reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<bool>,
    /// The Slack user id.
    id: String,
    /// Whether the sessions were reset (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions_reset: Option<bool>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `deactivate`'s output: the member (as `lookup` has them) when they were already deactivated;
/// `active: false` and `previous` when this step deactivated them; `would` in a dry run.
#[derive(Serialize, JsonSchema, Default)]
struct DeactivateOut {
    /// `false` once deactivated.
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<bool>,
    /// Already deactivated: the display name (null if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<Option<String>>,
    /// Already deactivated: the email (null if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Option<String>>,
    /// The Slack user id.
    id: String,
    /// The state before this step changed it (`active`).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    /// Already deactivated: the SCIM `userName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<String>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

fn summary(user: &User) -> MemberOut {
    MemberOut {
        active: user.active,
        display_name: user.display_name.clone(),
        email: user.email().map(str::to_string),
        id: user.id.clone(),
        user_name: user.user_name.clone(),
    }
}

impl From<MemberOut> for DeactivateOut {
    fn from(m: MemberOut) -> Self {
        DeactivateOut {
            active: Some(m.active),
            display_name: Some(m.display_name),
            email: Some(m.email),
            id: m.id,
            previous: None,
            user_name: Some(m.user_name),
            would: None,
        }
    }
}

fn base_url(name: &str, url: &str) -> Result<String, TaskError> {
    let base = url.trim_end_matches('/').to_string();
    if !base.starts_with("https://") && !base.starts_with("http://") {
        return Err(permanent(format!("{name} must start with https://, got {url:?}")));
    }
    Ok(base)
}

struct Slack;

impl Guest for Slack {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let api = Api { scim: base_url("scim_url", &input.scim_url)?, web: base_url("api_url", &input.api_url)? };
        let user = api.user(input.user.trim())?;
        match input.action {
            Action::Lookup => unchanged(&summary(&user)),
            Action::ResetSessions => {
                if !user.active {
                    // Deactivation ends every session; nothing is left to wipe.
                    return unchanged(&SessionsOut {
                        active: Some(false),
                        id: user.id.clone(),
                        sessions_reset: Some(false),
                        would: None,
                    });
                }
                let method = "admin.users.session.reset";
                match api.web_api(method, &json!({ "user_id": user.id }))? {
                    Sent::DryRun => changed(&SessionsOut {
                        id: user.id.clone(),
                        would: Some("reset all web and mobile sessions".into()),
                        ..SessionsOut::default()
                    }),
                    Sent::Done(resp) => {
                        check_web_api(method, &user.id, resp)?;
                        changed(&SessionsOut {
                            id: user.id.clone(),
                            sessions_reset: Some(true),
                            ..SessionsOut::default()
                        })
                    }
                }
            }
            Action::Deactivate => {
                if !user.active {
                    return unchanged(&DeactivateOut::from(summary(&user)));
                }
                match api.delete_user(&user.id)? {
                    Sent::DryRun => changed(&DeactivateOut {
                        id: user.id.clone(),
                        would: Some("deactivate".into()),
                        ..DeactivateOut::default()
                    }),
                    Sent::Done(resp) if resp.is_success() => changed(&DeactivateOut {
                        active: Some(false),
                        id: user.id.clone(),
                        previous: Some("active".into()),
                        ..DeactivateOut::default()
                    }),
                    Sent::Done(resp) => {
                        let failure = check_scim(resp).err().unwrap_or_else(|| transient("Slack SCIM DELETE failed"));
                        if failure.retry_after_ms.is_some() {
                            return Err(failure);
                        }
                        // A concurrent deactivation (or a retry of ours whose answer was lost)
                        // makes this a no-op: re-read before reporting a failure.
                        match api.user(&user.id) {
                            Ok(now) if !now.active => unchanged(&DeactivateOut::from(summary(&now))),
                            _ => Err(failure),
                        }
                    }
                }
            }
        }
    }

    fn contract() -> Vec<ActionSpec> {
        vec![
            action::<Input, MemberOut>("lookup", "Finds the member (by email or user id) with SCIM; changes nothing"),
            action::<Input, SessionsOut>(
                "reset_sessions",
                "Signs the member out of every web and mobile session (admin.users.session.reset)",
            ),
            action::<Input, DeactivateOut>("deactivate", "Deactivates the member (SCIM DELETE)"),
        ]
    }

    fn describe() -> PluginInfo {
        info(
            "slack",
            env!("CARGO_PKG_VERSION"),
            "Slack member offboarding: lookup (SCIM), reset sessions (admin.users.session.reset), deactivate (SCIM)",
            &[
                ("action", "string", true, "lookup | reset_sessions | deactivate"),
                ("user", "string", true, "the member's email or Slack user id (alias: email)"),
                ("scim_url", "string", false, "the SCIM API's base (default https://api.slack.com)"),
                ("api_url", "string", false, "the Web API's base (default https://slack.com)"),
            ],
        )
    }
}

export_plugin!(Slack);
