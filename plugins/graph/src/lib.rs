//! Microsoft Entra ID (Azure AD) user offboarding through Microsoft Graph v1.0.
//!
//! ```yaml
//! - id: disable
//!   uses: graph
//!   with:
//!     action: disable            # lookup | disable | revoke_sessions | remove_groups
//!     user: "{{ inputs.email }}" # an object id or a userPrincipalName
//!     # api_url: https://graph.microsoft.com   (the default; national clouds differ)
//!     # page_size: 100                          (remove_groups: $top of each memberOf page)
//!   allow: [https://graph.microsoft.com]
//!   credentials:
//!     - host: graph.microsoft.com
//!       secret: GRAPH_ACCESS_TOKEN
//!       header: Authorization
//!       format: "Bearer {secret}"
//! ```
//!
//! The access token is injected by the host; this plugin never sees it. The app behind it needs
//! `User.Read.All` (lookup), `User.EnableDisableAccount.All` (disable),
//! `User.RevokeSessions.All` (revoke_sessions) and `GroupMember.ReadWrite.All` (remove_groups).
//!
//! - `lookup` reads the user (`accountEnabled` only comes back with `$select`, so it is asked for).
//! - `disable` PATCHes `accountEnabled: false`; an already disabled user is `unchanged`.
//! - `revoke_sessions` calls `revokeSignInSessions` (refresh tokens and session cookies); Graph
//!   cannot tell whether there was anything to revoke, so this is always `changed`.
//! - `remove_groups` reads every page of `memberOf` (following `@odata.nextLink`, only on the
//!   origin of `api_url`), then removes the user from each ordinary group with
//!   `DELETE /groups/{g}/members/{u}/$ref` (never without `$ref`: that would delete the user).
//!   Directory roles, dynamic-membership groups (their rule decides) and mail-enabled security
//!   groups / distribution lists (Exchange owns those) are left alone and listed under `kept`.
//!   A group the user already left (404) counts as done.
//!
//! Errors follow Graph's shape, `{"error": {code, message}}`; 404 `Request_ResourceNotFound` on
//! the user is a permanent "no such user"; 429 (and 503/504) carry `Retry-After` (seconds),
//! turned into a transient error with that wait.

use offramp_plugin_sdk::{
    ActionSpec, Guest, Invocation, Outcome, PluginInfo, Request, Response, Sent, TaskError, action, changed,
    encode_path_segment, export_plugin, http_error, info, input, parse_http_date, permanent, rate_limited, transient,
    unchanged,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// At most this many `memberOf` pages: a loop guard, not a limit anyone should reach.
const MAX_PAGES: usize = 1000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// What to do.
    action: Action,
    /// Graph's base URL: `https://graph.microsoft.com` unless a national cloud (or a test) says
    /// otherwise (a trailing `/v1.0` is accepted).
    #[serde(default = "default_api_url")]
    api_url: String,
    /// An object id or a userPrincipalName.
    user: String,
    /// `remove_groups` only: `$top` for each `memberOf` page (1..=999).
    #[serde(default = "default_page_size")]
    page_size: u32,
}

fn default_api_url() -> String {
    "https://graph.microsoft.com".into()
}

fn default_page_size() -> u32 {
    100
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Lookup,
    Disable,
    RevokeSessions,
    RemoveGroups,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    mail: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    /// Absent when not `$select`ed; we always select it.
    #[serde(default)]
    account_enabled: Option<bool>,
}

/// One entry of `memberOf`: a group, a directory role or an administrative unit.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectoryObject {
    #[serde(rename = "@odata.type", default)]
    odata_type: String,
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    group_types: Vec<String>,
    #[serde(default)]
    mail_enabled: Option<bool>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<DirectoryObject>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct Revoked {
    #[serde(default)]
    value: bool,
}

#[derive(Deserialize, Default)]
struct GraphErrorBody {
    #[serde(default)]
    error: GraphError,
}

#[derive(Deserialize, Default)]
struct GraphError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

struct Api {
    base: String,
    /// `scheme://host[:port]` of `base`: the only origin `@odata.nextLink` may point at.
    origin: String,
    dry_run: bool,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.base)
    }

    fn get_url(&self, url: &str) -> Result<Response, TaskError> {
        Request::get(url).header("accept", "application/json").send().map_err(http_error)
    }

    fn mutate(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Sent, TaskError> {
        let mut req = Request::new(method, self.url(path)).header("accept", "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        req.mutate()
    }

    fn user(&self, user: &str) -> Result<User, TaskError> {
        let url = self.url(&format!(
            "/users/{}?$select=id,userPrincipalName,mail,displayName,accountEnabled",
            encode_path_segment(user)
        ));
        let resp = self.get_url(&url)?;
        if resp.status() == 404 {
            let err = graph_error(&resp);
            let code = if err.code.is_empty() { "HTTP 404".to_string() } else { err.code };
            return Err(permanent(format!("no Microsoft Graph user {user:?} ({code})")));
        }
        check(resp)?.json()
    }

    /// Every page of the user's direct memberships.
    fn member_of(&self, uid: &str, page_size: u32) -> Result<Vec<DirectoryObject>, TaskError> {
        let mut url = self.url(&format!("/users/{uid}/memberOf?$top={page_size}"));
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page = check(self.get_url(&url)?)?.json()?;
            all.extend(page.value);
            let Some(next) = page.next_link else { return Ok(all) };
            // The link is absolute; following it elsewhere would send the request (and the
            // host would send the credential, were that host allowed) somewhere we never named.
            if origin(&next).as_deref() != Some(self.origin.as_str()) {
                return Err(permanent(format!(
                    "Graph returned an @odata.nextLink outside {} ({}); refusing to follow it",
                    self.origin,
                    origin(&next).unwrap_or_else(|| "an unparseable URL".into())
                )));
            }
            if next == url {
                return Err(transient("Graph returned the same @odata.nextLink twice; stopping"));
            }
            url = next;
        }
        Err(permanent(format!("more than {MAX_PAGES} pages of memberOf; giving up")))
    }
}

fn graph_error(resp: &Response) -> GraphError {
    serde_json::from_slice::<GraphErrorBody>(&resp.raw.body).map(|b| b.error).unwrap_or_default()
}

/// Turns non-2xx answers into task errors, following Graph's error shape.
fn check(resp: Response) -> Result<Response, TaskError> {
    if resp.is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let err = graph_error(&resp);
    let what = if err.code.is_empty() {
        format!("Microsoft Graph answered HTTP {status}")
    } else {
        format!("Graph {} ({status}): {}", err.code, err.message)
    };
    let retry_after = retry_after_ms(&resp);
    Err(match (status, retry_after) {
        (429 | 503 | 504, Some(wait)) => rate_limited(what, wait),
        // Graph asks for exponential backoff when it names no wait: the step's retry policy.
        (429, None) => rate_limited(what, 1000),
        (500..=599 | 408, _) => transient(what),
        (401, _) => permanent(format!("{what} (is GRAPH_ACCESS_TOKEN a valid token for Microsoft Graph?)")),
        (403, _) => permanent(format!("{what} (the app lacks a permission this action needs)")),
        _ => permanent(what),
    })
}

/// `Retry-After` in milliseconds: delta-seconds, or an HTTP date measured against the
/// response's own `Date` header (the plugin has no clock worth trusting).
fn retry_after_ms(resp: &Response) -> Option<u64> {
    let v = resp.header("retry-after")?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.max(1) * 1000);
    }
    let at = parse_http_date(v)?;
    let now = resp.header("date").and_then(parse_http_date)?;
    Some(at.saturating_sub(now).max(1) * 1000)
}

/// `scheme://host[:port]`, lower-cased, default ports dropped; `None` for anything odd
/// (no scheme, user info in the authority).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') || !(scheme == "https" || scheme == "http") {
        return None;
    }
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host.to_string(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

/// The user, as `lookup` reports them (Graph's own field names).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct UserOut {
    /// The user's object id: what later steps can pass as `user:`.
    id: String,
    user_principal_name: Option<String>,
    mail: Option<String>,
    display_name: Option<String>,
    /// False once disabled.
    account_enabled: Option<bool>,
}

/// `disable`'s output: the user as `lookup` reports them when already disabled, else what changed
/// (or, in a dry run, what would have).
#[derive(Serialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
struct DisableOut {
    id: String,
    /// Already disabled: the userPrincipalName (null if Graph gave none).
    #[serde(skip_serializing_if = "Option::is_none")]
    user_principal_name: Option<Option<String>>,
    /// Already disabled: the mail address (null if Graph gave none).
    #[serde(skip_serializing_if = "Option::is_none")]
    mail: Option<Option<String>>,
    /// Already disabled: the display name (null if Graph gave none).
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<Option<String>>,
    /// False (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    account_enabled: Option<bool>,
    /// Disabled by this step: `accountEnabled` before it (true, or null if Graph did not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Option<bool>>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `revoke_sessions`' output.
#[derive(Serialize, JsonSchema)]
struct SessionsOut {
    id: String,
    /// True: refresh tokens and session cookies were revoked (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions_revoked: Option<bool>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `remove_groups`' output.
#[derive(Serialize, JsonSchema)]
struct GroupsOut {
    id: String,
    /// Names (else ids) of the groups the user was removed from.
    removed: Vec<String>,
    /// Memberships left alone, and why.
    kept: Vec<Kept>,
    dry_run: bool,
}

/// A membership `remove_groups` leaves alone.
#[derive(Serialize, JsonSchema)]
struct Kept {
    /// The group's (role's, unit's) object id.
    id: String,
    /// Its display name, else its id.
    name: String,
    /// Its `@odata.type`, e.g. `#microsoft.graph.directoryRole`.
    #[serde(rename = "type")]
    kind: String,
    /// Why it stays.
    reason: String,
}

fn summary(user: &User) -> UserOut {
    UserOut {
        id: user.id.clone(),
        user_principal_name: user.user_principal_name.clone(),
        mail: user.mail.clone(),
        display_name: user.display_name.clone(),
        account_enabled: user.account_enabled,
    }
}

/// Why a membership stays, or `None` if the user can be removed from it.
fn keep_reason(o: &DirectoryObject) -> Option<&'static str> {
    if o.odata_type != "#microsoft.graph.group" {
        return Some("not a group");
    }
    if o.group_types.iter().any(|t| t == "DynamicMembership") {
        return Some("dynamic membership: its rule decides who is in it");
    }
    if o.mail_enabled == Some(true) && !o.group_types.iter().any(|t| t == "Unified") {
        return Some("mail-enabled security group or distribution list: managed in Exchange Online");
    }
    None
}

fn name(o: &DirectoryObject) -> String {
    o.display_name.clone().unwrap_or_else(|| o.id.clone())
}

struct Graph;

impl Guest for Graph {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let mut base = input.api_url.trim().trim_end_matches('/').to_string();
        // Accept `https://graph.microsoft.com/v1.0` too: the version is ours to add.
        if let Some(stripped) = base.strip_suffix("/v1.0") {
            base = stripped.to_string();
        }
        let Some(origin) = origin(&base) else {
            return Err(permanent(format!("api_url must be an http(s):// URL, got {:?}", input.api_url)));
        };
        if input.user.trim().is_empty() {
            return Err(permanent("user is empty"));
        }
        if !(1..=999).contains(&input.page_size) {
            return Err(permanent(format!("page_size must be between 1 and 999, got {}", input.page_size)));
        }
        let api = Api { base, origin, dry_run: inv.dry_run };
        // Every action starts from the user's current state: that makes each idempotent.
        let user = api.user(input.user.trim())?;
        let uid = encode_path_segment(&user.id);
        match input.action {
            Action::Lookup => unchanged(&summary(&user)),
            Action::Disable => {
                if user.account_enabled == Some(false) {
                    let s = summary(&user);
                    return unchanged(&DisableOut {
                        id: s.id,
                        user_principal_name: Some(s.user_principal_name),
                        mail: Some(s.mail),
                        display_name: Some(s.display_name),
                        account_enabled: s.account_enabled,
                        ..DisableOut::default()
                    });
                }
                match api.mutate("PATCH", &format!("/users/{uid}"), Some(&json!({ "accountEnabled": false })))? {
                    Sent::DryRun => {
                        changed(&DisableOut { id: user.id, would: Some("disable".into()), ..DisableOut::default() })
                    }
                    Sent::Done(resp) => {
                        check(resp)?;
                        changed(&DisableOut {
                            id: user.id,
                            account_enabled: Some(false),
                            previous: Some(user.account_enabled),
                            ..DisableOut::default()
                        })
                    }
                }
            }
            Action::RevokeSessions => match api.mutate("POST", &format!("/users/{uid}/revokeSignInSessions"), None)? {
                Sent::DryRun => changed(&SessionsOut {
                    id: user.id,
                    sessions_revoked: None,
                    would: Some("revoke sign-in sessions".into()),
                }),
                Sent::Done(resp) => {
                    let revoked: Revoked = check(resp)?.json()?;
                    if !revoked.value {
                        return Err(transient("Graph answered revokeSignInSessions with value false"));
                    }
                    changed(&SessionsOut { id: user.id, sessions_revoked: Some(true), would: None })
                }
            },
            Action::RemoveGroups => {
                let memberships = api.member_of(&uid, input.page_size)?;
                let mut kept = Vec::new();
                let mut removable = Vec::new();
                for o in &memberships {
                    match keep_reason(o) {
                        Some(reason) => kept.push(Kept {
                            id: o.id.clone(),
                            name: name(o),
                            kind: o.odata_type.clone(),
                            reason: reason.into(),
                        }),
                        None => removable.push(o),
                    }
                }
                let mut removed = Vec::new();
                for g in &removable {
                    let path = format!("/groups/{}/members/{uid}/$ref", encode_path_segment(&g.id));
                    match api.mutate("DELETE", &path, None)? {
                        Sent::DryRun => {}
                        Sent::Done(resp) if resp.status() == 404 => continue, // already gone
                        Sent::Done(resp) => {
                            check(resp).map_err(|mut e| {
                                e.message = format!("removing {:?} from {:?}: {}", user.id, name(g), e.message);
                                e
                            })?;
                        }
                    }
                    removed.push(name(g));
                }
                let nothing = removed.is_empty();
                let output = GroupsOut { id: user.id, removed, kept, dry_run: api.dry_run };
                if nothing { unchanged(&output) } else { changed(&output) }
            }
        }
    }

    fn contract() -> Vec<ActionSpec> {
        vec![
            action::<Input, UserOut>("lookup", "Finds the user (by object id or userPrincipalName); changes nothing"),
            action::<Input, DisableOut>("disable", "Disables the account (accountEnabled: false; reversible)"),
            action::<Input, SessionsOut>(
                "revoke_sessions",
                "Revokes the user's refresh tokens and session cookies (revokeSignInSessions)",
            ),
            action::<Input, GroupsOut>(
                "remove_groups",
                "Removes the user from every ordinary group; roles, dynamic and Exchange-managed groups are kept",
            ),
        ]
    }

    fn describe() -> PluginInfo {
        info(
            "graph",
            env!("CARGO_PKG_VERSION"),
            "Microsoft Entra ID via Microsoft Graph: lookup, disable, revoke sign-in sessions, remove group memberships",
            &[
                ("action", "string", true, "lookup | disable | revoke_sessions | remove_groups"),
                ("user", "string", true, "the user's object id or userPrincipalName"),
                ("api_url", "string", false, "Graph's base URL; default https://graph.microsoft.com"),
                ("page_size", "integer", false, "remove_groups: $top of each memberOf page (1-999, default 100)"),
            ],
        )
    }
}

export_plugin!(Graph);
