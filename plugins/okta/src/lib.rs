//! Okta user lifecycle steps against the Okta Management API (`/api/v1`).
//!
//! ```yaml
//! - id: suspend
//!   uses: okta
//!   with:
//!     action: suspend          # lookup | suspend | clear_sessions | remove_groups | deactivate
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
//! The API token is injected by the host; this plugin never sees it.
//! Errors follow Okta's shapes: `{errorCode, errorSummary}`; 404 `E0000007` is "not found";
//! 429 carries `X-Rate-Limit-Reset` (epoch seconds), turned into a transient error with the wait.

use offramp_plugin_sdk::{
    Guest, HttpError, Invocation, Outcome, PluginInfo, Request, Response, TaskError, changed, encode_path_segment,
    export_plugin, http_error, info, input, permanent, rate_limited, transient, unchanged,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    action: Action,
    /// e.g. `https://example.okta.com`
    org_url: String,
    /// An Okta user id, login or email.
    user: String,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Lookup,
    Suspend,
    ClearSessions,
    RemoveGroups,
    Deactivate,
}

#[derive(Deserialize)]
struct User {
    id: String,
    status: String,
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

/// What a mutating call did.
enum Sent {
    Done(Response),
    DryRun,
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
        let req = Request::new(method, self.url(path)).header("accept", "application/json");
        match req.send() {
            Ok(resp) => Ok(Sent::Done(resp)),
            Err(HttpError::DryRun) => Ok(Sent::DryRun),
            Err(e) => Err(http_error(e)),
        }
    }

    fn user(&self, user: &str) -> Result<User, TaskError> {
        self.get(&format!("/users/{}", encode_path_segment(user)))?.json()
    }
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
    let now = resp.header("date").and_then(parse_http_date);
    match (reset, now) {
        (Some(reset), Some(now)) => reset.saturating_sub(now).max(1) * 1000,
        _ => 1000,
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into epoch seconds.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if hms.len() != 3 || year < 1970 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

fn summary(user: &User) -> Value {
    json!({
        "id": user.id,
        "status": user.status,
        "login": user.profile.login,
        "email": user.profile.email,
    })
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
                if user.status == "SUSPENDED" {
                    return unchanged(&summary(&user));
                }
                match api.mutate("POST", &format!("/users/{uid}/lifecycle/suspend"))? {
                    Sent::DryRun => changed(&json!({ "id": user.id, "would": "suspend" })),
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
                        changed(&json!({ "id": user.id, "status": "SUSPENDED", "previous": user.status }))
                    }
                }
            }
            Action::ClearSessions => match api.mutate("DELETE", &format!("/users/{uid}/sessions?oauthTokens=true"))? {
                Sent::DryRun => changed(&json!({ "id": user.id, "would": "clear sessions and OAuth tokens" })),
                Sent::Done(resp) => {
                    check(resp)?;
                    changed(&json!({ "id": user.id, "sessions_cleared": true, "oauth_tokens": true }))
                }
            },
            Action::RemoveGroups => {
                let groups: Vec<Group> = api.get(&format!("/users/{uid}/groups"))?.json()?;
                // Only OKTA_GROUP memberships can be removed; `Everyone` is BUILT_IN and
                // APP_GROUPs are owned by their app.
                let removable: Vec<&Group> = groups.iter().filter(|g| g.kind == "OKTA_GROUP").collect();
                if removable.is_empty() {
                    return unchanged(&json!({ "id": user.id, "removed": [] }));
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
                changed(&json!({ "id": user.id, "removed": removed, "dry_run": api.dry_run }))
            }
            Action::Deactivate => {
                if user.status == "DEPROVISIONED" {
                    return unchanged(&summary(&user));
                }
                match api.mutate("POST", &format!("/users/{uid}/lifecycle/deactivate?sendEmail=false"))? {
                    Sent::DryRun => changed(&json!({ "id": user.id, "would": "deactivate" })),
                    Sent::Done(resp) => {
                        check(resp)?;
                        changed(&json!({ "id": user.id, "status": "DEPROVISIONED", "previous": user.status }))
                    }
                }
            }
        }
    }

    fn describe() -> PluginInfo {
        info(
            "okta",
            env!("CARGO_PKG_VERSION"),
            "Okta user lifecycle: lookup, suspend, clear sessions and OAuth tokens, remove groups, deactivate",
            &[
                ("action", "string", true, "lookup | suspend | clear_sessions | remove_groups | deactivate"),
                ("org_url", "string", true, "your Okta org, e.g. https://example.okta.com"),
                ("user", "string", true, "an Okta user id, login or email"),
            ],
        )
    }
}

export_plugin!(Okta);
