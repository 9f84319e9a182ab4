//! Okta user lifecycle steps against the Okta Management API (`/api/v1`).
//!
//! ```yaml
//! - id: suspend
//!   uses: okta
//!   with:
//!     action: suspend   # lookup | suspend | clear_sessions | revoke_tokens | remove_groups
//!                       # | unassign_apps | deactivate
//!     org_url: https://example.okta.com
//!     user: "{{ steps.lookup.output.id }}"   # an id, a login or an email
//!   allow: [https://example.okta.com]
//!   credentials:
//!     - host: example.okta.com
//!       secret: OKTA_API_TOKEN
//!       header: Authorization
//!       format: "SSWS {secret}"
//! ```
//!
//! - `clear_sessions`: ends every session and the OAuth tokens issued with them.
//! - `revoke_tokens`: revokes every OAuth grant (`DELETE /users/{id}/grants`) and every
//!   refresh token, client by client (`/users/{id}/clients/{clientId}/tokens`).
//! - `unassign_apps`: removes each direct app assignment (`DELETE /apps/{app}/users/{id}
//!   ?sendEmail=false`); assignments that come through a group are reported and left to
//!   `remove_groups`.
//! - `deactivate`: `sendEmail=false`, asynchronous (`Prefer: respond-async`). While Okta shows
//!   `transitioningToStatus: DEPROVISIONED`, the step polls a few times, then fails transient
//!   ("still deprovisioning") so the step's `retry:` waits and the next attempt polls again
//!   instead of deactivating twice (after `poll_wait_ms`, default 10 s).
//!
//! The API token is injected by the host; this plugin never sees it.
//! Errors follow Okta's shapes: `{errorCode, errorSummary}`; 404 `E0000007` is "not found";
//! 429 carries `X-Rate-Limit-Reset` (epoch seconds), turned into a transient error with the wait.

use offramp_plugin_sdk::{
    ActionSpec, Guest, Invocation, Outcome, PluginInfo, Request, Response, Sent, TaskError, action, changed,
    encode_path_segment, export_plugin, http_error, info, input, ms_until_epoch, permanent, rate_limited, transient,
    unchanged,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// What to do.
    action: Action,
    /// Your Okta org, e.g. `https://example.okta.com`.
    org_url: String,
    /// An Okta user id, login or email.
    user: String,
    /// `deactivate` only: how long to wait before checking an unfinished asynchronous
    /// deactivation again (the step's `retry:` bounds how many times).
    #[serde(default = "default_poll_wait_ms")]
    poll_wait_ms: u64,
}

fn default_poll_wait_ms() -> u64 {
    10_000
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Lookup,
    Suspend,
    ClearSessions,
    RevokeTokens,
    RemoveGroups,
    UnassignApps,
    Deactivate,
}

#[derive(Deserialize)]
struct User {
    id: String,
    status: String,
    #[serde(rename = "transitioningToStatus", default)]
    transitioning_to: Option<String>,
    #[serde(default)]
    profile: Profile,
}

#[derive(Deserialize, Default)]
struct Profile {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    profile: GroupProfile,
}

#[derive(Deserialize, Default)]
struct GroupProfile {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Grant {
    id: String,
    #[serde(rename = "clientId", default)]
    client_id: String,
}

#[derive(Deserialize)]
struct Client {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
}

#[derive(Deserialize)]
struct AppLink {
    label: String,
    #[serde(rename = "appInstanceId")]
    app_id: String,
}

#[derive(Deserialize, Default)]
struct OktaError {
    #[serde(rename = "errorCode", default)]
    code: String,
    #[serde(rename = "errorSummary", default)]
    summary: String,
}

struct Api {
    base: String,
    dry_run: bool,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn get(&self, path: &str) -> Result<Response, TaskError> {
        let resp = Request::get(self.url(path)).header("accept", "application/json").send().map_err(http_error)?;
        check(resp)
    }

    fn mutate(&self, method: &str, path: &str) -> Result<Sent, TaskError> {
        self.send(Request::new(method, self.url(path)).header("accept", "application/json"))
    }

    fn send(&self, req: Request) -> Result<Sent, TaskError> {
        req.mutate()
    }

    fn user(&self, user: &str) -> Result<User, TaskError> {
        self.get(&format!("/users/{}", encode_path_segment(user)))?.json()
    }
}

/// The `errorCode` of an Okta error answer, or "".
fn okta_code(resp: &Response) -> String {
    serde_json::from_slice::<OktaError>(&resp.raw.body).map(|e| e.code).unwrap_or_default()
}

/// Turns non-2xx answers into task errors, following Okta's error shapes.
fn check(resp: Response) -> Result<Response, TaskError> {
    if resp.is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let err: OktaError = serde_json::from_slice(&resp.raw.body).unwrap_or_default();
    let what = if err.code.is_empty() {
        format!("Okta answered HTTP {status}")
    } else {
        format!("Okta {} ({status}): {}", err.code, err.summary)
    };
    Err(match status {
        429 => rate_limited(what, rate_limit_wait_ms(&resp)),
        500..=599 | 408 => transient(what),
        _ => permanent(what),
    })
}

/// Milliseconds until `X-Rate-Limit-Reset` (epoch seconds), measured against the response's own
/// `Date` header so the plugin needs no clock. Unknown → 1 s.
fn rate_limit_wait_ms(resp: &Response) -> u64 {
    let reset = resp.header("x-rate-limit-reset").and_then(|v| v.trim().parse::<u64>().ok());
    reset.and_then(|reset| ms_until_epoch(resp, reset)).unwrap_or(1000)
}

/// The user, as `lookup`, `suspend` and `deactivate` report them.
#[derive(Serialize, JsonSchema, Default)]
struct UserOut {
    /// Okta's user id (`00u…`): what later steps pass as `user:`.
    id: String,
    /// ACTIVE, SUSPENDED, DEPROVISIONED, … (absent in a dry run that would change it).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    /// The status before this step changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `clear_sessions`' output.
#[derive(Serialize, JsonSchema, Default)]
struct SessionsOut {
    id: String,
    sessions_cleared: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth_tokens: Option<bool>,
    /// Why nothing was cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `remove_groups`' output.
#[derive(Serialize, JsonSchema)]
struct GroupsOut {
    id: String,
    /// Names of the groups the user was removed from.
    removed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

/// `revoke_tokens`' output.
#[derive(Serialize, JsonSchema, Default)]
struct TokensOut {
    id: String,
    /// How many OAuth grants were revoked.
    grants: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant_clients: Option<Vec<String>>,
    /// Clients whose refresh tokens were revoked.
    refresh_token_clients: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

/// `unassign_apps`' output.
#[derive(Serialize, JsonSchema)]
struct AppsOut {
    id: String,
    /// Labels of the apps unassigned.
    removed: Vec<String>,
    /// Apps assigned through a group (they go with `remove_groups`).
    left: Vec<LeftApp>,
    dry_run: bool,
}

#[derive(Serialize, JsonSchema)]
struct LeftApp {
    app: String,
    why: String,
}

fn summary(user: &User) -> UserOut {
    UserOut {
        id: user.id.clone(),
        status: Some(user.status.clone()),
        login: user.profile.login.clone(),
        email: user.profile.email.clone(),
        ..UserOut::default()
    }
}

fn would(id: &str, what: &str) -> UserOut {
    UserOut { id: id.to_string(), would: Some(what.into()), ..UserOut::default() }
}

fn now_status(id: &str, status: &str, previous: &str) -> UserOut {
    UserOut { id: id.to_string(), status: Some(status.into()), previous: Some(previous.into()), ..UserOut::default() }
}

/// A DELETE that found nothing to delete (404) is as good as one that deleted it.
fn done_or_gone(sent: Sent) -> Result<(), TaskError> {
    match sent {
        Sent::DryRun => Ok(()),
        Sent::Done(resp) if resp.status() == 404 => Ok(()),
        Sent::Done(resp) => check(resp).map(|_| ()),
    }
}

/// Reads the user up to this many times while Okta finishes an asynchronous deactivation.
const DEPROVISION_POLLS: u32 = 5;

fn deactivate(api: &Api, user: User, poll_wait_ms: u64) -> Result<Outcome, TaskError> {
    if user.status == "DEPROVISIONED" {
        return unchanged(&summary(&user));
    }
    let previous = user.status.clone();
    // A deactivation already under way (ours, from an earlier attempt): wait for it, don't repeat it.
    if user.transitioning_to.as_deref() != Some("DEPROVISIONED") {
        let req = Request::post(
            api.url(&format!("/users/{}/lifecycle/deactivate?sendEmail=false", encode_path_segment(&user.id))),
        )
        .header("accept", "application/json")
        .header("prefer", "respond-async");
        match api.send(req)? {
            Sent::DryRun => return changed(&would(&user.id, "deactivate")),
            Sent::Done(resp) => {
                check(resp)?;
            }
        }
    }
    for _ in 0..DEPROVISION_POLLS {
        let now = api.user(&user.id)?;
        if now.status == "DEPROVISIONED" {
            return changed(&now_status(&user.id, "DEPROVISIONED", &previous));
        }
        if now.transitioning_to.as_deref() != Some("DEPROVISIONED") {
            return Err(permanent(format!(
                "Okta accepted the deactivation but the user is {} and no longer transitioning",
                now.status
            )));
        }
    }
    Err(rate_limited(
        format!("Okta is still deprovisioning {} (transitioningToStatus DEPROVISIONED); will check again", user.id),
        poll_wait_ms.max(1000),
    ))
}

struct Okta;

impl Guest for Okta {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let base = input.org_url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(permanent(format!("org_url must start with https://, got {:?}", input.org_url)));
        }
        let api = Api { base, dry_run: inv.dry_run };
        // Every action starts from the user's current state: that makes each idempotent.
        let user = match api.user(&input.user) {
            Err(e) if e.message.contains("E0000007") => {
                return Err(permanent(format!("no Okta user {:?} (E0000007)", input.user)));
            }
            other => other?,
        };
        let uid = encode_path_segment(&user.id);
        match input.action {
            Action::Lookup => unchanged(&summary(&user)),
            Action::Suspend => {
                // A deprovisioned user is past suspension: nothing to do either.
                if user.status == "SUSPENDED" || user.status == "DEPROVISIONED" {
                    return unchanged(&summary(&user));
                }
                match api.mutate("POST", &format!("/users/{uid}/lifecycle/suspend"))? {
                    Sent::DryRun => changed(&would(&user.id, "suspend")),
                    Sent::Done(resp) if resp.status() == 400 => {
                        // E0000001: only ACTIVE users can be suspended. Re-read: a concurrent
                        // suspend (or a retry of ours) makes this a no-op.
                        let now = api.user(&user.id)?;
                        if now.status == "SUSPENDED" {
                            unchanged(&summary(&now))
                        } else {
                            Err(check(resp).err().unwrap_or_else(|| {
                                permanent(format!("Okta refused to suspend a user in status {}", now.status))
                            }))
                        }
                    }
                    Sent::Done(resp) => {
                        check(resp)?;
                        changed(&now_status(&user.id, "SUSPENDED", &user.status))
                    }
                }
            }
            // Deactivation ended every session and token: nothing left to clear.
            Action::ClearSessions if user.status == "DEPROVISIONED" => unchanged(&SessionsOut {
                id: user.id.clone(),
                reason: Some("the user is deprovisioned".into()),
                ..SessionsOut::default()
            }),
            Action::ClearSessions => match api.mutate("DELETE", &format!("/users/{uid}/sessions?oauthTokens=true"))? {
                Sent::DryRun => changed(&SessionsOut {
                    id: user.id.clone(),
                    would: Some("clear sessions and OAuth tokens".into()),
                    ..SessionsOut::default()
                }),
                Sent::Done(resp) => {
                    check(resp)?;
                    changed(&SessionsOut {
                        id: user.id.clone(),
                        sessions_cleared: true,
                        oauth_tokens: Some(true),
                        ..SessionsOut::default()
                    })
                }
            },
            Action::RemoveGroups => {
                let groups: Vec<Group> = api.get(&format!("/users/{uid}/groups"))?.json()?;
                // Only OKTA_GROUP memberships can be removed; `Everyone` is BUILT_IN and
                // APP_GROUPs are owned by their app.
                let removable: Vec<&Group> = groups.iter().filter(|g| g.kind == "OKTA_GROUP").collect();
                if removable.is_empty() {
                    return unchanged(&GroupsOut { id: user.id.clone(), removed: vec![], dry_run: None });
                }
                let mut removed = Vec::new();
                for g in removable {
                    let path = format!("/groups/{}/users/{uid}", encode_path_segment(&g.id));
                    match api.mutate("DELETE", &path)? {
                        Sent::DryRun => {}
                        Sent::Done(resp) if resp.status() == 404 => continue, // already gone
                        Sent::Done(resp) => {
                            check(resp)?;
                        }
                    }
                    removed.push(g.profile.name.clone());
                }
                changed(&GroupsOut { id: user.id.clone(), removed, dry_run: Some(api.dry_run) })
            }
            Action::RevokeTokens => {
                let grants: Vec<Grant> = api.get(&format!("/users/{uid}/grants"))?.json()?;
                let clients: Vec<Client> = api.get(&format!("/users/{uid}/clients"))?.json()?;
                if grants.is_empty() && clients.is_empty() {
                    return unchanged(&TokensOut { id: user.id.clone(), ..TokensOut::default() });
                }
                if !grants.is_empty() {
                    done_or_gone(api.mutate("DELETE", &format!("/users/{uid}/grants"))?)?;
                }
                let mut revoked = Vec::new();
                for c in &clients {
                    let path = format!("/users/{uid}/clients/{}/tokens", encode_path_segment(&c.client_id));
                    done_or_gone(api.mutate("DELETE", &path)?)?;
                    revoked.push(c.client_name.clone().unwrap_or_else(|| c.client_id.clone()));
                }
                changed(&TokensOut {
                    id: user.id.clone(),
                    grants: grants.len(),
                    grant_ids: Some(grants.iter().map(|g| g.id.clone()).collect()),
                    grant_clients: Some(grants.iter().map(|g| g.client_id.clone()).collect()),
                    refresh_token_clients: revoked,
                    dry_run: Some(api.dry_run),
                })
            }
            Action::UnassignApps => {
                let links: Vec<AppLink> = api.get(&format!("/users/{uid}/appLinks"))?.json()?;
                let mut removed = Vec::new();
                let mut via_group = Vec::new();
                for app in &links {
                    let path = format!("/apps/{}/users/{uid}?sendEmail=false", encode_path_segment(&app.app_id));
                    match api.mutate("DELETE", &path)? {
                        Sent::DryRun => removed.push(app.label.clone()),
                        Sent::Done(resp) if resp.status() == 404 => {} // already unassigned
                        // Assigned through a group (400 E0000001): it goes with the group
                        // membership. Anything else, a 403 (the token may not manage apps)
                        // included, fails the step below.
                        Sent::Done(resp) if resp.status() == 400 && okta_code(&resp) == "E0000001" => {
                            let why = check(resp).err().map(|e| e.message).unwrap_or_default();
                            via_group.push(LeftApp { app: app.label.clone(), why });
                        }
                        Sent::Done(resp) => {
                            check(resp)?;
                            removed.push(app.label.clone());
                        }
                    }
                }
                let nothing = removed.is_empty();
                let output = AppsOut { id: user.id.clone(), removed, left: via_group, dry_run: api.dry_run };
                if nothing { unchanged(&output) } else { changed(&output) }
            }
            Action::Deactivate => deactivate(&api, user, input.poll_wait_ms),
        }
    }

    fn describe() -> PluginInfo {
        info(
            "okta",
            env!("CARGO_PKG_VERSION"),
            "Okta user lifecycle: lookup, suspend, clear sessions, revoke grants and refresh tokens, remove groups, \
             unassign apps, deactivate",
            &[
                (
                    "action",
                    "string",
                    true,
                    "lookup | suspend | clear_sessions | revoke_tokens | remove_groups | unassign_apps | deactivate",
                ),
                ("org_url", "string", true, "your Okta org, e.g. https://example.okta.com"),
                ("user", "string", true, "an Okta user id, login or email"),
                ("poll_wait_ms", "integer", false, "deactivate: wait before re-checking a slow deactivation (10000)"),
            ],
        )
    }

    fn contract() -> Vec<ActionSpec> {
        vec![
            action::<Input, UserOut>("lookup", "Finds the user (by id, login or email); changes nothing"),
            action::<Input, UserOut>("suspend", "Suspends the user (they cannot sign in; reversible)"),
            action::<Input, SessionsOut>("clear_sessions", "Ends every session and the OAuth tokens issued with them"),
            action::<Input, TokensOut>("revoke_tokens", "Revokes every OAuth grant and refresh token"),
            action::<Input, GroupsOut>("remove_groups", "Removes the user from every Okta group"),
            action::<Input, AppsOut>("unassign_apps", "Removes direct app assignments"),
            action::<Input, UserOut>("deactivate", "Deactivates (deprovisions) the user"),
        ]
    }
}

export_plugin!(Okta);
