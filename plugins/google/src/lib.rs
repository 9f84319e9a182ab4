//! Google Workspace offboarding steps against the Admin SDK: the Directory API
//! (`/admin/directory/v1`) and the Data Transfer API (`/admin/datatransfer/v1`).
//!
//! ```yaml
//! - id: google_suspend
//!   uses: google
//!   with:
//!     action: suspend        # lookup | suspend | sign_out | revoke_tokens | remove_groups | transfer
//!     user: "{{ inputs.email }}"   # a primary email or a Google user id
//!     # api_url: https://admin.googleapis.com   (the default)
//!   retry: { attempts: 4, backoff: { initial: 1s, max: 30s, factor: 2 } }
//!   allow: [https://admin.googleapis.com]
//!   credentials: &google
//!     - host: admin.googleapis.com
//!       secret: GOOGLE_ACCESS_TOKEN
//!       header: Authorization
//!       format: "Bearer {secret}"
//!
//! # Drive and Calendar to the manager. A transfer takes minutes to hours: each attempt polls it
//! # a few times, then asks to be retried in `poll_wait_ms`; the next attempt finds the same
//! # transfer and polls on. `retry.attempts` bounds the wait.
//! - id: google_transfer
//!   needs: [google_suspend]
//!   uses: google
//!   with:
//!     action: transfer
//!     user: "{{ inputs.email }}"
//!     to: "{{ inputs.manager }}"   # the new owner: an email or a Google user id
//!     poll_wait_ms: 60000         # the default
//!   retry: { attempts: 30 }
//!   allow: [https://admin.googleapis.com]
//!   credentials: *google
//! ```
//!
//! The access token (scopes `admin.directory.user`, `admin.directory.user.security`,
//! `admin.directory.group.readonly` to list groups, `admin.directory.group.member`,
//! `admin.datatransfer`) is injected by the host; this plugin
//! never sees it.
//!
//! Every action reads the current state first, so a rerun is `unchanged`: a suspended user
//! stays suspended, no tokens or groups left means nothing to do, a completed transfer to the
//! same new owner is not started again. `sign_out` is the exception: Google shows no sessions
//! to compare against, so it is sent every time (harmless) and reported as changed.
//!
//! Errors follow Google's shape `{"error": {"code", "message", "errors": [{"reason", ...}]}}`
//! and read "Google 404 notFound: Resource Not Found: userKey". Rate limits (403
//! `userRateLimitExceeded` / `rateLimitExceeded` / `quotaExceeded`, or 429) are transient with
//! a wait: `Retry-After` if Google sends one, else exponential backoff (1 s, 2 s, 4 s, ... by
//! attempt, at most 32 s), as Google's quota guide recommends. A failed transfer needs a person:
//! the run pauses with the reason.

use offramp_plugin_sdk::{
    ActionSpec, Guest, Invocation, Level, Outcome, PluginInfo, Request, Response, Sent, TaskError, action, changed,
    encode_path_segment, export_plugin, http_error, info, input, log, needs_human, permanent, rate_limited, require,
    transient, unchanged,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The Data Transfer API's application id for Drive and Docs.
const DRIVE: &str = "55656082996";
/// The Data Transfer API's application id for Calendar.
const CALENDAR: &str = "435070579839";
/// How many times one attempt fetches an unfinished transfer before handing back to the engine.
const POLLS_PER_ATTEMPT: u32 = 5;
/// Guards every paging loop against a server that never stops.
const MAX_PAGES: usize = 500;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// What to do.
    action: Action,
    /// The Admin SDK's base URL (default `https://admin.googleapis.com`).
    #[serde(default = "default_api_url")]
    api_url: String,
    /// A primary email or a Google user id.
    user: String,
    /// `transfer` only (and required there): the new owner's email or id, e.g. the manager.
    #[serde(default)]
    to: Option<String>,
    /// `transfer` only: how long (ms) to wait before checking an unfinished transfer again
    /// (the step's `retry.attempts` bounds how many times).
    #[serde(default = "default_poll_wait_ms")]
    poll_wait_ms: u64,
}

fn default_api_url() -> String {
    "https://admin.googleapis.com".into()
}

fn default_poll_wait_ms() -> u64 {
    60_000
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Lookup,
    Suspend,
    SignOut,
    RevokeTokens,
    RemoveGroups,
    Transfer,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    primary_email: String,
    #[serde(default)]
    name: Name,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    relations: Vec<Relation>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Name {
    #[serde(default)]
    full_name: String,
}

#[derive(Deserialize)]
struct Relation {
    #[serde(default)]
    value: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct TokenList {
    #[serde(default)]
    items: Vec<Token>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Token {
    client_id: String,
    #[serde(default)]
    display_text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupPage {
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    id: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
struct ApplicationList {
    #[serde(default)]
    applications: Vec<Application>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Application {
    id: Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    transfer_params: Vec<Param>,
}

#[derive(Deserialize)]
struct Param {
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferPage {
    #[serde(default)]
    data_transfers: Vec<DataTransfer>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataTransfer {
    id: String,
    #[serde(default)]
    application_data_transfers: Vec<AppTransfer>,
    #[serde(default)]
    overall_transfer_status_code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppTransfer {
    application_id: Value,
    #[serde(default)]
    application_transfer_status: String,
}

impl DataTransfer {
    fn covers(&self, apps: &[&str]) -> bool {
        apps.iter().all(|a| self.application_data_transfers.iter().any(|t| id_text(&t.application_id) == *a))
    }
}

/// Google sends int64 ids as JSON strings; accept numbers too.
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<GoogleError>,
}

#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorDetail>,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    reason: String,
}

/// Google's error, read from a non-2xx answer.
struct Failure {
    status: u16,
    reason: String,
    /// "Google 404 notFound: Resource Not Found: userKey"
    text: String,
}

fn failure(resp: &Response) -> Failure {
    let status = resp.status();
    let err = serde_json::from_slice::<ErrorBody>(&resp.raw.body).unwrap_or_default().error.unwrap_or_default();
    let reason = err.errors.first().map(|e| e.reason.clone()).filter(|r| !r.is_empty()).unwrap_or(err.status);
    let text = match (reason.is_empty(), err.message.is_empty()) {
        (_, true) => format!("Google answered HTTP {status}"),
        (true, false) => format!("Google {status}: {}", err.message),
        (false, false) => format!("Google {status} {reason}: {}", err.message),
    };
    Failure { status, reason, text }
}

/// The reasons Google gives for "slow down" (the Directory API sends them as 403s).
fn is_rate_limit(f: &Failure) -> bool {
    f.status == 429
        || (f.status == 403
            && matches!(f.reason.as_str(), "userRateLimitExceeded" | "rateLimitExceeded" | "quotaExceeded"))
}

struct Api {
    base: String,
    /// 1 for the first attempt: rate-limit backoff grows with it.
    attempt: u32,
    dry_run: bool,
}

impl Api {
    fn directory(&self, path: &str) -> String {
        format!("{}/admin/directory/v1{path}", self.base)
    }

    fn datatransfer(&self, path: &str) -> String {
        format!("{}/admin/datatransfer/v1{path}", self.base)
    }

    fn get(&self, url: String) -> Result<Response, TaskError> {
        let resp = Request::get(url).header("accept", "application/json").send().map_err(http_error)?;
        self.check(resp)
    }

    /// Sends a mutating request; the answer is the caller's to check (a 404 may mean "already done").
    fn mutate(&self, req: Request) -> Result<Sent, TaskError> {
        req.header("accept", "application/json").mutate()
    }

    /// Turns non-2xx answers into task errors: rate limits and 5xx are transient, the rest permanent.
    fn check(&self, resp: Response) -> Result<Response, TaskError> {
        if resp.is_success() {
            return Ok(resp);
        }
        let f = failure(&resp);
        Err(if is_rate_limit(&f) {
            rate_limited(f.text, self.rate_limit_wait_ms(&resp))
        } else {
            match f.status {
                500..=599 | 408 => transient(f.text),
                _ => permanent(f.text),
            }
        })
    }

    /// `Retry-After` (seconds) if present, else Google's recommended exponential backoff by attempt.
    fn rate_limit_wait_ms(&self, resp: &Response) -> u64 {
        if let Some(secs) = resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
            return secs.clamp(1, 15 * 60) * 1000;
        }
        1000u64 << self.attempt.saturating_sub(1).min(5)
    }

    fn user(&self, key: &str) -> Result<User, TaskError> {
        let resp = Request::get(self.directory(&format!("/users/{}", encode_path_segment(key))))
            .header("accept", "application/json")
            .send()
            .map_err(http_error)?;
        if resp.status() == 404 {
            return Err(permanent(format!("no Google user {key:?} ({})", failure(&resp).text)));
        }
        self.check(resp)?.json()
    }
}

fn manager(user: &User) -> Option<&str> {
    user.relations.iter().find(|r| r.kind == "manager").map(|r| r.value.as_str())
}

/// The user, as `lookup` reports them.
#[derive(Serialize, JsonSchema)]
struct UserOut {
    /// Google's user id: what later steps can pass as `user:`.
    id: String,
    /// The primary email.
    email: String,
    /// The full name.
    name: String,
    suspended: bool,
    is_admin: bool,
    /// The manager's email (the `manager` relation), null when none is set.
    manager: Option<String>,
}

/// `suspend`'s output: the user as `lookup` reports them when already suspended, else what
/// changed (or, in a dry run, what would have).
#[derive(Serialize, JsonSchema, Default)]
struct SuspendOut {
    id: String,
    email: String,
    /// Already suspended: the full name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// True once suspended (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    suspended: Option<bool>,
    /// Already suspended: whether the user is an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    is_admin: Option<bool>,
    /// Already suspended: the manager's email, null when none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    manager: Option<Option<String>>,
    /// Suspended by this step: the `suspended` value before it (false).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<bool>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `sign_out`'s output.
#[derive(Serialize, JsonSchema)]
struct SignOutOut {
    id: String,
    email: String,
    /// True: every session was signed out (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_out: Option<bool>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

/// `revoke_tokens`' output.
#[derive(Serialize, JsonSchema)]
struct TokensOut {
    id: String,
    email: String,
    /// The apps whose OAuth tokens were revoked (their display names, else client ids).
    revoked: Vec<String>,
    /// Whether this was a dry run (absent when there were no tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

/// `remove_groups`' output.
#[derive(Serialize, JsonSchema)]
struct GroupsOut {
    id: String,
    email: String,
    /// The groups (emails, else ids) the user was removed from.
    removed: Vec<String>,
    /// Groups the user had already left by the time of the removal (absent when there were no
    /// groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    already_gone: Option<Vec<String>>,
    /// Whether this was a dry run (absent when there were no groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

/// `transfer`'s output.
#[derive(Serialize, JsonSchema)]
struct TransferOut {
    /// The old owner's primary email.
    from: String,
    /// The new owner's primary email.
    to: String,
    /// The applications transferred (e.g. "Drive and Docs", "Calendar").
    applications: Vec<String>,
    /// The Data Transfer API's transfer id (absent in a dry run that would start one).
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_id: Option<String>,
    /// The transfer's overall status: `completed`, or in a dry run the status of the one running.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

fn summary(user: &User) -> UserOut {
    UserOut {
        id: user.id.clone(),
        email: user.primary_email.clone(),
        name: user.name.full_name.clone(),
        suspended: user.suspended,
        is_admin: user.is_admin,
        manager: manager(user).map(str::to_string),
    }
}

fn suspend(api: &Api, user: &User) -> Result<Outcome, TaskError> {
    if user.suspended {
        let s = summary(user);
        return unchanged(&SuspendOut {
            id: s.id,
            email: s.email,
            name: Some(s.name),
            suspended: Some(s.suspended),
            is_admin: Some(s.is_admin),
            manager: Some(s.manager),
            ..SuspendOut::default()
        });
    }
    let req = Request::put(api.directory(&format!("/users/{}", encode_path_segment(&user.id))))
        .json(&json!({ "suspended": true }));
    match api.mutate(req)? {
        Sent::DryRun => changed(&SuspendOut {
            id: user.id.clone(),
            email: user.primary_email.clone(),
            would: Some("suspend".into()),
            ..SuspendOut::default()
        }),
        Sent::Done(resp) => {
            let now: User = api.check(resp)?.json()?;
            if !now.suspended {
                return Err(transient(format!(
                    "Google accepted the update but {} is not suspended yet",
                    user.primary_email
                )));
            }
            changed(&SuspendOut {
                id: now.id,
                email: now.primary_email,
                suspended: Some(true),
                previous: Some(false),
                ..SuspendOut::default()
            })
        }
    }
}

fn sign_out(api: &Api, user: &User) -> Result<Outcome, TaskError> {
    let req = Request::post(api.directory(&format!("/users/{}/signOut", encode_path_segment(&user.id))));
    match api.mutate(req)? {
        Sent::DryRun => changed(&SignOutOut {
            id: user.id.clone(),
            email: user.primary_email.clone(),
            signed_out: None,
            would: Some("sign out of every session".into()),
        }),
        Sent::Done(resp) => {
            api.check(resp)?;
            changed(&SignOutOut {
                id: user.id.clone(),
                email: user.primary_email.clone(),
                signed_out: Some(true),
                would: None,
            })
        }
    }
}

fn revoke_tokens(api: &Api, user: &User) -> Result<Outcome, TaskError> {
    let uid = encode_path_segment(&user.id);
    let list: TokenList = api.get(api.directory(&format!("/users/{uid}/tokens")))?.json()?;
    if list.items.is_empty() {
        return unchanged(&TokensOut {
            id: user.id.clone(),
            email: user.primary_email.clone(),
            revoked: vec![],
            dry_run: None,
        });
    }
    let (mut revoked, mut dry_run) = (Vec::new(), false);
    for token in &list.items {
        let url = api.directory(&format!("/users/{uid}/tokens/{}", encode_path_segment(&token.client_id)));
        match api.mutate(Request::delete(url))? {
            Sent::DryRun => dry_run = true,
            Sent::Done(resp) if resp.status() == 404 => continue, // revoked meanwhile
            Sent::Done(resp) => {
                api.check(resp)?;
            }
        }
        let name = if token.display_text.is_empty() { &token.client_id } else { &token.display_text };
        revoked.push(name.clone());
    }
    let nothing = revoked.is_empty();
    let out = TokensOut { id: user.id.clone(), email: user.primary_email.clone(), revoked, dry_run: Some(dry_run) };
    if nothing { unchanged(&out) } else { changed(&out) }
}

/// Every group the user is a direct member of, across all pages.
fn groups_of(api: &Api, user: &User) -> Result<Vec<Group>, TaskError> {
    let mut groups = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = api.directory(&format!("/groups?userKey={}&maxResults=200", encode_path_segment(&user.id)));
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={}", encode_path_segment(t)));
        }
        let page: GroupPage = api.get(url)?.json()?;
        groups.extend(page.groups);
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => return Ok(groups),
        }
    }
    Err(permanent(format!("Google listed more than {MAX_PAGES} pages of groups; giving up")))
}

fn remove_groups(api: &Api, user: &User) -> Result<Outcome, TaskError> {
    // The whole list first: removing while paging would shift later pages under us.
    let groups = groups_of(api, user)?;
    if groups.is_empty() {
        return unchanged(&GroupsOut {
            id: user.id.clone(),
            email: user.primary_email.clone(),
            removed: vec![],
            already_gone: None,
            dry_run: None,
        });
    }
    let uid = encode_path_segment(&user.id);
    let (mut removed, mut already_gone, mut dry_run) = (Vec::new(), Vec::new(), false);
    for g in &groups {
        let url = api.directory(&format!("/groups/{}/members/{uid}", encode_path_segment(&g.id)));
        let label = if g.email.is_empty() { g.id.clone() } else { g.email.clone() };
        match api.mutate(Request::delete(url))? {
            Sent::DryRun => dry_run = true,
            // "Resource Not Found: memberKey": removed meanwhile (or by an earlier attempt).
            Sent::Done(resp) if resp.status() == 404 => {
                already_gone.push(label);
                continue;
            }
            Sent::Done(resp) => {
                api.check(resp)?;
            }
        }
        removed.push(label);
    }
    let nothing = removed.is_empty();
    let out = GroupsOut {
        id: user.id.clone(),
        email: user.primary_email.clone(),
        removed,
        already_gone: Some(already_gone),
        dry_run: Some(dry_run),
    };
    if nothing { unchanged(&out) } else { changed(&out) }
}

/// The applications to transfer and the parameters to send each, limited to the parameters
/// Google lists for it: all Drive files (private and shared), and Calendar with its resources
/// released for future events.
fn transfer_apps(api: &Api) -> Result<Vec<(String, String, Value)>, TaskError> {
    let list: ApplicationList = api.get(api.datatransfer("/applications"))?.json()?;
    let wanted: [(&str, &str, &str, Value); 2] = [
        (DRIVE, "Drive and Docs", "PRIVACY_LEVEL", json!(["PRIVATE", "SHARED"])),
        (CALENDAR, "Calendar", "RELEASE_RESOURCES", json!(["TRUE"])),
    ];
    let mut apps = Vec::new();
    for (id, fallback, key, value) in wanted {
        let Some(app) = list.applications.iter().find(|a| id_text(&a.id) == id) else {
            return Err(permanent(format!("Google offers no {fallback} data transfer (application {id}) here")));
        };
        let params: Vec<Value> = app
            .transfer_params
            .iter()
            .filter(|p| p.key == key)
            .map(|p| json!({ "key": p.key, "value": value }))
            .collect();
        let name = if app.name.is_empty() { fallback.to_string() } else { app.name.clone() };
        apps.push((id.to_string(), name, json!({ "applicationId": id, "applicationTransferParams": params })));
    }
    Ok(apps)
}

/// Transfers for this old and new owner that cover every app, newest first as Google lists them.
fn existing_transfers(api: &Api, old: &User, new: &User, apps: &[&str]) -> Result<Vec<DataTransfer>, TaskError> {
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = api.datatransfer(&format!(
            "/transfers?oldOwnerUserId={}&newOwnerUserId={}",
            encode_path_segment(&old.id),
            encode_path_segment(&new.id)
        ));
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={}", encode_path_segment(t)));
        }
        let page: TransferPage = api.get(url)?.json()?;
        found.extend(page.data_transfers.into_iter().filter(|t| t.covers(apps)));
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => return Ok(found),
        }
    }
    Err(permanent(format!("Google listed more than {MAX_PAGES} pages of transfers; giving up")))
}

fn transfer(api: &Api, input: &Input, old: &User, poll_wait_ms: u64) -> Result<Outcome, TaskError> {
    let Some(to) = input.to.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(permanent("action transfer needs `to`: the new owner's email or id"));
    };
    let new = api.user(to)?;
    if new.id == old.id {
        return Err(permanent(format!("cannot transfer {}'s data to themselves", old.primary_email)));
    }
    let apps = transfer_apps(api)?;
    let ids: Vec<&str> = apps.iter().map(|(id, _, _)| id.as_str()).collect();
    let names: Vec<&str> = apps.iter().map(|(_, name, _)| name.as_str()).collect();
    let what = format!("{}'s {} data to {}", old.primary_email, names.join(" and "), new.primary_email);
    let out = |transfer_id: Option<&str>, status: Option<&str>, would: Option<String>| TransferOut {
        from: old.primary_email.clone(),
        to: new.primary_email.clone(),
        applications: names.iter().map(|n| n.to_string()).collect(),
        transfer_id: transfer_id.map(str::to_string),
        status: status.map(str::to_string),
        would,
    };

    // Idempotency: resume a transfer still running (ours from an earlier attempt, or anyone's);
    // a completed one means there is nothing to do. Failed ones are history: start afresh.
    let existing = existing_transfers(api, old, &new, &ids)?;
    let running = existing.iter().find(|t| !matches!(t.overall_transfer_status_code.as_str(), "completed" | "failed"));
    let id = match running {
        Some(t) => {
            log(Level::Info, &format!("resuming transfer {} ({})", t.id, t.overall_transfer_status_code));
            // A dry run reads, but does not wait on a transfer.
            if api.dry_run {
                return changed(&out(Some(&t.id), Some(&t.overall_transfer_status_code), None));
            }
            t.id.clone()
        }
        None => {
            if let Some(done) = existing.iter().find(|t| t.overall_transfer_status_code == "completed") {
                return unchanged(&out(Some(&done.id), Some("completed"), None));
            }
            let body = json!({
                "oldOwnerUserId": old.id,
                "newOwnerUserId": new.id,
                "applicationDataTransfers": apps.iter().map(|(_, _, body)| body.clone()).collect::<Vec<_>>(),
            });
            match api.mutate(Request::post(api.datatransfer("/transfers")).json(&body))? {
                Sent::DryRun => return changed(&out(None, None, Some(format!("transfer {what}")))),
                Sent::Done(resp) => {
                    let started: DataTransfer = api.check(resp)?.json()?;
                    log(Level::Info, &format!("started transfer {} of {what}", started.id));
                    started.id
                }
            }
        }
    };

    let url = api.datatransfer(&format!("/transfers/{}", encode_path_segment(&id)));
    let mut status = String::new();
    for _ in 0..POLLS_PER_ATTEMPT {
        let t: DataTransfer = api.get(url.clone())?.json()?;
        status = t.overall_transfer_status_code.clone();
        match status.as_str() {
            "completed" => return changed(&out(Some(&id), Some("completed"), None)),
            "failed" => {
                let per_app: Vec<String> = t
                    .application_data_transfers
                    .iter()
                    .map(|a| {
                        let app = id_text(&a.application_id);
                        let name = apps.iter().find(|(i, _, _)| *i == app).map_or(app.as_str(), |(_, n, _)| n);
                        format!("{name}: {}", a.application_transfer_status)
                    })
                    .collect();
                let hint = if new.suspended { format!(" ({} is suspended)", new.primary_email) } else { String::new() };
                return Err(needs_human(format!(
                    "Google could not transfer {what}: transfer {id} failed ({}){hint}. Check Admin console > \
                     Data transfer, fix the cause, then resume the run to start a new transfer.",
                    per_app.join(", ")
                )));
            }
            _ => {}
        }
    }
    log(Level::Info, &format!("transfer {id} is {status}; checking again in {poll_wait_ms} ms"));
    Err(rate_limited(format!("transfer {id} of {what} still in progress ({status})"), poll_wait_ms))
}

struct Google;

impl Guest for Google {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let base = input.api_url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(permanent(format!("api_url must start with https://, got {:?}", input.api_url)));
        }
        let api = Api { base, attempt: inv.attempt.max(1), dry_run: inv.dry_run };
        let user = api.user(input.user.trim())?;
        match input.action {
            Action::Lookup => unchanged(&summary(&user)),
            Action::Suspend => suspend(&api, &user),
            Action::SignOut => sign_out(&api, &user),
            Action::RevokeTokens => revoke_tokens(&api, &user),
            Action::RemoveGroups => remove_groups(&api, &user),
            Action::Transfer => transfer(&api, &input, &user, input.poll_wait_ms.max(1)),
        }
    }

    fn contract() -> Vec<ActionSpec> {
        vec![
            action::<Input, UserOut>("lookup", "Finds the user (by primary email or id); changes nothing"),
            action::<Input, SuspendOut>("suspend", "Suspends the user (they cannot sign in; reversible)"),
            action::<Input, SignOutOut>("sign_out", "Signs the user out of every web and device session"),
            action::<Input, TokensOut>("revoke_tokens", "Revokes every OAuth token the user granted to apps"),
            action::<Input, GroupsOut>(
                "remove_groups",
                "Removes the user from every group they are a direct member of",
            ),
            require(
                action::<Input, TransferOut>(
                    "transfer",
                    "Transfers the user's Drive and Calendar data to a new owner (`to`) and waits for it to complete",
                ),
                &["to"],
            ),
        ]
    }

    fn describe() -> PluginInfo {
        info(
            "google",
            env!("CARGO_PKG_VERSION"),
            "Google Workspace: lookup, suspend, sign out, revoke OAuth tokens, remove groups, transfer Drive and \
             Calendar data",
            &[
                ("action", "string", true, "lookup | suspend | sign_out | revoke_tokens | remove_groups | transfer"),
                ("api_url", "string", false, "the Admin SDK base URL (default https://admin.googleapis.com)"),
                ("user", "string", true, "the user's primary email or Google user id"),
                ("to", "string", false, "transfer: the new owner's email or id (e.g. the manager)"),
                (
                    "poll_wait_ms",
                    "integer",
                    false,
                    "transfer: wait before re-checking an unfinished transfer (default 60000); retry.attempts bounds it",
                ),
            ],
        )
    }
}

export_plugin!(Google);
