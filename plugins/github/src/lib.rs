//! GitHub organization offboarding through the GitHub REST API.
//!
//! ```yaml
//! - id: github
//!   uses: github
//!   with:
//!     action: remove_member      # lookup | remove_member
//!     org: acme
//!     username: "{{ inputs.github_login }}"
//!     # api_url: https://api.github.com   (the default; GHE Server: https://HOST/api/v3)
//!   retry: { attempts: 3 }
//!   allow: [https://api.github.com]
//!   credentials:
//!     - host: api.github.com
//!       secret: GITHUB_TOKEN
//!       header: Authorization
//!       format: "Bearer {secret}"
//! ```
//!
//! The token is injected by the host; this plugin never sees it. It needs the `admin:org` scope
//! (classic) or the organization "Members: read and write" permission (fine-grained / app).
//!
//! - `lookup` reads `GET /orgs/{org}/memberships/{username}`: `{member, state, role}`.
//! - `remove_member` removes the membership (`DELETE` on the same path), which also cancels a
//!   pending invitation. Someone who is not a member is `unchanged`.
//!
//! GitHub answers 404 both for "not a member" and for an organization the token cannot see, so
//! a 404 is checked against `GET /orgs/{org}`: an unknown organization is a permanent error, not a
//! silent success. Rate limits: a 403/429 with `x-ratelimit-remaining: 0` waits until
//! `x-ratelimit-reset` (epoch seconds, measured against the response's `Date`); one with
//! `retry-after` waits that many seconds (the secondary limit); both become transient errors
//! with the wait.

use offramp_plugin_sdk::{
    ActionSpec, Guest, HttpError, Invocation, Level, Outcome, PluginInfo, Request, Response, TaskError, action,
    changed, encode_path_segment, export_plugin, http_error, info, input, log, parse_http_date, permanent,
    rate_limited, transient, unchanged,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The REST API version this plugin is written against.
const API_VERSION: &str = "2022-11-28";

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// What to do.
    action: Action,
    /// The REST API's base URL: `https://api.github.com` unless GitHub Enterprise Server
    /// (`https://HOST/api/v3`) or a test says otherwise.
    #[serde(default = "default_api_url")]
    api_url: String,
    /// The organization's login, e.g. `acme`.
    org: String,
    /// The member's GitHub login (a leading `@` is ignored). Empty: the person has no GitHub
    /// account, and the step checks nothing (`unchanged`, `checked: false`).
    username: String,
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Lookup,
    RemoveMember,
}

#[derive(Deserialize)]
struct Membership {
    /// `active` or `pending` (invited, not yet accepted).
    state: String,
    /// `admin` (an owner) or `member`.
    role: String,
    #[serde(default)]
    user: Option<MemberUser>,
}

#[derive(Deserialize)]
struct MemberUser {
    login: String,
    #[serde(default)]
    id: Option<u64>,
}

#[derive(Deserialize, Default)]
struct GitHubError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    documentation_url: String,
}

struct Api {
    base: String,
}

impl Api {
    fn request(&self, method: &str, path: &str) -> Request {
        Request::new(method, format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("user-agent", concat!("offramp-github-plugin/", env!("CARGO_PKG_VERSION")))
    }

    fn get(&self, path: &str) -> Result<Response, TaskError> {
        self.request("GET", path).send().map_err(http_error)
    }

    /// The membership, or `None` if GitHub says there is none (after making sure the
    /// organization itself is visible: GitHub answers 404 for both).
    fn membership(&self, org: &str, username: &str) -> Result<Option<Membership>, TaskError> {
        let path = format!("/orgs/{}/memberships/{}", encode_path_segment(org), encode_path_segment(username));
        let resp = self.get(&path)?;
        if resp.status() == 404 {
            self.ensure_org(org)?;
            return Ok(None);
        }
        Ok(Some(check(resp)?.json()?))
    }

    fn ensure_org(&self, org: &str) -> Result<(), TaskError> {
        let resp = self.get(&format!("/orgs/{}", encode_path_segment(org)))?;
        if resp.status() == 404 {
            return Err(permanent(format!(
                "GitHub organization {org:?} not found (or the token cannot see it: it needs admin:org or the \
                 organization's Members permission)"
            )));
        }
        check(resp).map(|_| ())
    }
}

/// Turns non-2xx answers into task errors, following GitHub's error shape and rate-limit headers.
fn check(resp: Response) -> Result<Response, TaskError> {
    if resp.is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let err: GitHubError = serde_json::from_slice(&resp.raw.body).unwrap_or_default();
    let what = if err.message.is_empty() {
        format!("GitHub answered HTTP {status}")
    } else {
        format!("GitHub {status}: {}", err.message)
    };
    if (status == 403 || status == 429)
        && let Some(wait) = rate_limit_wait_ms(&resp, &err)
    {
        return Err(rate_limited(what, wait));
    }
    Err(match status {
        500..=599 | 408 => transient(what),
        401 => permanent(format!("{what} (is GITHUB_TOKEN valid and unexpired?)")),
        403 => permanent(format!(
            "{what} (the token needs admin:org, or the organization's Members: read and write permission)"
        )),
        _ if err.documentation_url.is_empty() => permanent(what),
        _ => permanent(format!("{what} (see {})", err.documentation_url)),
    })
}

/// How long a rate-limited answer says to wait, or `None` if the 403/429 is not a rate limit.
/// Secondary limits send `retry-after`; the primary one `x-ratelimit-remaining: 0` and
/// `x-ratelimit-reset` (epoch seconds, measured against the response's `Date` header so the
/// plugin needs no clock). GitHub's advice when neither is there: wait at least a minute.
fn rate_limit_wait_ms(resp: &Response, err: &GitHubError) -> Option<u64> {
    if let Some(secs) = resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(secs.max(1) * 1000);
    }
    if resp.header("x-ratelimit-remaining").map(str::trim) == Some("0") {
        let reset = resp.header("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok());
        let now = resp.header("date").and_then(parse_http_date);
        return Some(match (reset, now) {
            (Some(reset), Some(now)) => reset.saturating_sub(now).max(1) * 1000,
            _ => 60_000,
        });
    }
    if resp.status() == 429 || err.message.to_ascii_lowercase().contains("rate limit") {
        return Some(60_000);
    }
    None
}

/// GitHub logins and organization names: letters, digits and hyphens (plus `_` for Enterprise
/// Managed Users' `_shortcode` suffix).
fn valid_login(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// Output fields are declared in alphabetical order: the JSON keeps the key order it had when it
// was built with `json!` (a sorted map).

/// `lookup`'s output.
#[derive(Serialize, JsonSchema)]
struct LookupOut {
    /// `false` when no login was given (nothing was checked); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    checked: Option<bool>,
    /// Whether the user is a member (or invited: see `state`); null when no login was given.
    member: Option<bool>,
    /// The organization.
    org: String,
    /// A member's role: `admin` (an owner) or `member`.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    /// A member's state: `active`, or `pending` (invited, not yet accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// A member's numeric GitHub user id (null if GitHub did not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<Option<u64>>,
    /// The login (as GitHub spells it, for a member); null when none was given.
    username: Option<String>,
}

/// `remove_member`'s output.
#[derive(Serialize, JsonSchema, Default)]
struct RemoveOut {
    /// `false` when no login was given (nothing was checked); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    checked: Option<bool>,
    /// `false` when the user was not a member (nothing to remove); null when no login was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<Option<bool>>,
    /// The organization.
    org: String,
    /// The role the removed member had.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_role: Option<String>,
    /// The state the removed membership had (`active` or `pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_state: Option<String>,
    /// Whether this step removed the membership (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<bool>,
    /// Dry run: the member's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    /// Dry run: the membership's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// The login; null when none was given.
    username: Option<String>,
    /// Dry run: what the step would have done.
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<String>,
}

fn summary(org: &str, username: &str, m: Option<&Membership>) -> LookupOut {
    match m {
        Some(m) => LookupOut {
            checked: None,
            member: Some(true),
            org: org.into(),
            role: Some(m.role.clone()),
            state: Some(m.state.clone()),
            user_id: Some(m.user.as_ref().and_then(|u| u.id)),
            username: Some(m.user.as_ref().map(|u| u.login.as_str()).unwrap_or(username).into()),
        },
        None => LookupOut {
            checked: None,
            member: Some(false),
            org: org.into(),
            role: None,
            state: None,
            user_id: None,
            username: Some(username.into()),
        },
    }
}

/// `remove_member`'s answer when there is no membership to remove.
fn not_a_member(org: &str, username: &str) -> RemoveOut {
    RemoveOut {
        member: Some(Some(false)),
        org: org.into(),
        removed: Some(false),
        username: Some(username.into()),
        ..RemoveOut::default()
    }
}

struct GitHub;

impl Guest for GitHub {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let base = input.api_url.trim().trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(permanent(format!("api_url must start with https://, got {:?}", input.api_url)));
        }
        let (org, username) = (input.org.trim(), input.username.trim().trim_start_matches('@'));
        if !valid_login(org) {
            return Err(permanent(format!("org {:?} is not a GitHub organization name", input.org)));
        }
        // No login given (a pipeline input left empty: the leaver has no GitHub account): nothing
        // to look up or remove. Said as `unchanged` rather than made a skipped step, because a
        // skipped step skips every step that needs it.
        if username.is_empty() {
            log(Level::Warn, "no GitHub login given: GitHub was not checked");
            return match input.action {
                Action::Lookup => unchanged(&LookupOut {
                    checked: Some(false),
                    member: None,
                    org: org.into(),
                    role: None,
                    state: None,
                    user_id: None,
                    username: None,
                }),
                Action::RemoveMember => unchanged(&RemoveOut {
                    checked: Some(false),
                    member: Some(None),
                    org: org.into(),
                    username: None,
                    ..RemoveOut::default()
                }),
            };
        }
        if !valid_login(username) {
            return Err(permanent(format!("username {:?} is not a GitHub login", input.username)));
        }
        let api = Api { base };
        // Every action starts from the current membership: that makes each idempotent.
        let membership = api.membership(org, username)?;
        match input.action {
            Action::Lookup => unchanged(&summary(org, username, membership.as_ref())),
            Action::RemoveMember => {
                let Some(m) = membership else {
                    return unchanged(&not_a_member(org, username));
                };
                let path = format!("/orgs/{}/memberships/{}", encode_path_segment(org), encode_path_segment(username));
                match api.request("DELETE", &path).send() {
                    Err(HttpError::DryRun) => changed(&RemoveOut {
                        org: org.into(),
                        role: Some(m.role),
                        state: Some(m.state),
                        username: Some(username.into()),
                        would: Some("remove from the organization".into()),
                        ..RemoveOut::default()
                    }),
                    Err(e) => Err(http_error(e)),
                    // Gone between our read and the delete (a retry of ours, or someone else).
                    Ok(resp) if resp.status() == 404 => unchanged(&not_a_member(org, username)),
                    Ok(resp) => {
                        check(resp)?;
                        changed(&RemoveOut {
                            org: org.into(),
                            previous_role: Some(m.role),
                            previous_state: Some(m.state),
                            removed: Some(true),
                            username: Some(username.into()),
                            ..RemoveOut::default()
                        })
                    }
                }
            }
        }
    }

    fn contract() -> Vec<ActionSpec> {
        vec![
            action::<Input, LookupOut>("lookup", "Reads the user's membership of the organization; changes nothing"),
            action::<Input, RemoveOut>(
                "remove_member",
                "Removes the user from the organization (or cancels their invitation)",
            ),
        ]
    }

    fn describe() -> PluginInfo {
        info(
            "github",
            env!("CARGO_PKG_VERSION"),
            "GitHub organizations: look up a membership, remove a member (or cancel their invitation)",
            &[
                ("action", "string", true, "lookup | remove_member"),
                ("org", "string", true, "the organization's login, e.g. acme"),
                ("username", "string", true, "the member's GitHub login"),
                ("api_url", "string", false, "the REST API's base URL; default https://api.github.com"),
            ],
        )
    }
}

export_plugin!(GitHub);
