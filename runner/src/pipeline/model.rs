//! The pipeline file format: what a user writes, as Rust types.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored key.
//! The JSON Schema in `schema/pipeline.schema.json` is generated from these types
//! (`offramp schema > schema/pipeline.schema.json`; a test keeps it current).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::yaml::Spanned;

/// A pipeline file.
///
/// ```yaml
/// version: 1
/// name: offboarding
/// description: Standard offboarding checklist
/// vars: { okta_url: https://example.okta.com }
/// inputs:
///   email: { type: email, required: true }
/// steps:
///   - id: lookup
///     uses: okta
///     with: { action: lookup, org_url: "{{ vars.okta_url }}", user: "{{ inputs.email }}" }
///     allow: ["{{ vars.okta_url }}"]
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "I: Deserialize<'de>, S: Deserialize<'de>"))]
#[schemars(title = "offramp pipeline")]
pub struct PipelineDoc<I, S> {
    /// The format version. Always `version: 1` for now.
    pub version: Spanned<u32>,
    /// A short name, shown in Slack and in `offramp runs list`: `name: offboarding`.
    pub name: Spanned<String>,
    /// What the pipeline is for: `description: Standard offboarding checklist`.
    #[serde(default)]
    pub description: String,
    /// Operator-controlled constants (API base URLs, org names). Templates read them as
    /// `{{ vars.okta_url }}`; the operator may override them with `--var okta_url=...`.
    /// Unlike inputs, the person who requests a run cannot change them, so `allow:` and
    /// `credentials:` may use them.
    ///
    /// ```yaml
    /// vars:
    ///   okta_url: https://example.okta.com
    /// ```
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// What the requester supplies: `inputs: { email: { type: email, required: true } }`.
    #[serde(default)]
    pub inputs: BTreeMap<String, I>,
    /// Who must agree before a run requested in Slack starts. Without it, the requester's own
    /// Start click is enough. With it, the request is posted to the channel and other approved
    /// users press Start:
    ///
    /// ```yaml
    /// approval: { approvers: 1, allow_self: false }
    /// ```
    #[serde(default)]
    pub approval: Option<Approval>,
    /// The steps. Steps run as soon as every step in their `needs:` has finished.
    pub steps: Vec<S>,
}

/// The two-person rule: `approval: { approvers: 1, allow_self: false }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// How many approved users must press Start (1 to 5): `approvers: 1`.
    #[serde(default = "one")]
    pub approvers: u32,
    /// Whether the requester's own Start counts as one of them: `allow_self: false` (the default).
    #[serde(default)]
    pub allow_self: bool,
}

fn one() -> u32 {
    1
}

impl Approval {
    /// No rule: the requester's own Start is enough.
    pub const NONE: Approval = Approval { approvers: 0, allow_self: true };
}

impl Default for Approval {
    fn default() -> Self {
        Approval::NONE
    }
}

/// A parsed, validated pipeline.
pub type Pipeline = PipelineDoc<InputSpec, Step>;

/// One input of the pipeline.
///
/// ```yaml
/// inputs:
///   email:   { type: email, required: true, description: The leaver's work email }
///   dry_run: { type: bool, default: false }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `string`, `email`, `bool` or `int`.
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Whether the requester must give it. An input with a `default` is never required.
    #[serde(default)]
    pub required: bool,
    /// Used when the requester gives no value: `default: false`.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Shown in `offramp plugin inspect`, the Slack confirmation and `--help` output.
    #[serde(default)]
    pub description: String,
}

/// The type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Email,
    Bool,
    Int,
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputType::String => "string",
            InputType::Email => "email",
            InputType::Bool => "bool",
            InputType::Int => "int",
        })
    }
}

/// One step: a plugin call with its input, limits and capabilities.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the pipeline; lower-case letters, digits and `_`: `id: suspend_okta`.
    /// Later steps read this step's output as `{{ steps.suspend_okta.output }}`.
    pub id: Spanned<String>,
    /// The plugin: a name from the plugins directory (`uses: okta`) or a path to a
    /// component relative to this file (`uses: ./plugins/custom.wasm`).
    pub uses: Spanned<String>,
    /// The plugin's input. Strings are minijinja templates over `inputs`, `vars`, `steps`
    /// and `run`: `user: "{{ steps.lookup.output.id }}"`. A string that is exactly one
    /// `{{ expression }}` keeps the expression's type (list, number, ...).
    #[serde(default, rename = "with")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub with: Spanned<serde_json::Value>,
    /// Steps that must finish first: `needs: [lookup]`.
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    /// Run only when this expression is true, e.g.
    /// `if: "steps.lookup.output.status != 'DEPROVISIONED'"`. A step not taken is `skipped`.
    #[serde(default, rename = "if")]
    pub condition: Option<Spanned<String>>,
    /// Retries for transient failures: `retry: { attempts: 3, backoff: { initial: 1s, max: 30s, factor: 2 } }`.
    #[serde(default)]
    pub retry: Retry,
    /// Wall-clock limit for one attempt, plugin and HTTP included: `timeout: 30s` (default 60s).
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// Linear-memory cap for the plugin: `memory: 64MiB` (default 64MiB).
    #[serde(default)]
    pub memory: Option<Spanned<String>>,
    /// What a failure does after retries: `pause` (default) waits for a person,
    /// `abort` ends the run, `continue` carries on with steps that do not need this one.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Whether running the step twice is harmless (the default, `true`). A step found running
    /// after a crash is run again with the same idempotency key; with `idempotent: false` the
    /// run pauses instead ("outcome unknown") so a person checks and decides.
    #[serde(default)]
    pub idempotent: Option<bool>,
    /// Where the step may send HTTP requests: `allow: [https://example.okta.com]`.
    /// Each entry is `scheme://host[:port]` (`https://*.example.com` for every subdomain), or
    /// a map that also narrows methods and path prefixes:
    /// `{ host: https://api.github.com, methods: [GET, DELETE], paths: [/orgs/acme/] }`.
    /// Anything else is refused.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// Secrets the host adds to requests for one host; the plugin never sees them.
    #[serde(default)]
    pub credentials: Vec<Credential>,
}

/// Retry policy for transient failures.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included: `attempts: 3` (default 3; 1 means no retry).
    #[serde(default = "default_attempts")]
    pub attempts: Spanned<u32>,
    /// Wait between attempts.
    #[serde(default)]
    pub backoff: Backoff,
}

fn default_attempts() -> Spanned<u32> {
    Spanned::new(3)
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: default_attempts(), backoff: Backoff::default() }
    }
}

/// Exponential backoff: `backoff: { initial: 1s, max: 30s, factor: 2 }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The first wait (default 1s).
    #[serde(default = "default_initial")]
    pub initial: Spanned<String>,
    /// The longest wait (default 30s).
    #[serde(default = "default_max")]
    pub max: Spanned<String>,
    /// Each wait is the previous one times this (default 2).
    #[serde(default = "default_factor")]
    pub factor: Spanned<f64>,
}

fn default_initial() -> Spanned<String> {
    Spanned::new("1s".into())
}
fn default_max() -> Spanned<String> {
    Spanned::new("30s".into())
}
fn default_factor() -> Spanned<f64> {
    Spanned::new(2.0)
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: default_initial(), max: default_max(), factor: default_factor() }
    }
}

/// What happens when a step has failed for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Pause the run until someone chooses retry, skip or abort.
    #[default]
    Pause,
    /// End the run as failed.
    Abort,
    /// Record the failure and go on with steps that do not need this one.
    Continue,
}

/// One `allow:` entry: a host, or a host with methods and path prefixes.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AllowEntry {
    /// `https://example.okta.com`
    Host(Spanned<String>),
    /// `{ host: https://api.github.com, methods: [GET, DELETE], paths: [/orgs/acme/] }`
    Rule(AllowRule),
}

impl AllowEntry {
    /// The host part, as written.
    pub fn host(&self) -> &Spanned<String> {
        match self {
            AllowEntry::Host(h) => h,
            AllowEntry::Rule(r) => &r.host,
        }
    }
}

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AllowEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a host like `https://example.com`, or `{ host: ..., methods: [...], paths: [...] }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AllowEntry, E> {
                Ok(AllowEntry::Host(Spanned { value: v.to_string(), loc: super::yaml::current_loc() }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<AllowEntry, A::Error> {
                AllowRule::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(AllowEntry::Rule)
            }
        }
        d.deserialize_any(V)
    }
}

/// `{ host: https://api.github.com, methods: [GET, DELETE], paths: [/orgs/acme/] }`
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `scheme://host[:port]`, as in a plain entry.
    pub host: Spanned<String>,
    /// The only methods allowed (default: any): `methods: [GET, DELETE]`.
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    /// The only path prefixes allowed (default: any): `paths: [/api/v1/users/]`.
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
}

/// A credential the host injects into requests to one host.
///
/// ```yaml
/// credentials:
///   - host: https://example.okta.com
///     secret: OKTA_API_TOKEN          # an environment variable (or secrets-file key)
///     header: Authorization           # default
///     format: "SSWS {secret}"         # default "Bearer {secret}"
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// `scheme://host[:port]`, which must also be in the step's `allow:`.
    pub host: Spanned<String>,
    /// The secret's name: upper-case letters, digits and `_`.
    pub secret: Spanned<String>,
    /// The header to set (default `Authorization`). A header of the same name set by the
    /// plugin is dropped.
    #[serde(default = "default_header")]
    pub header: Spanned<String>,
    /// The header value, with `{secret}` where the secret goes (default `Bearer {secret}`).
    #[serde(default = "default_format")]
    pub format: Spanned<String>,
}

fn default_header() -> Spanned<String> {
    Spanned::new("Authorization".into())
}
fn default_format() -> Spanned<String> {
    Spanned::new("Bearer {secret}".into())
}

/// Default wall-clock limit of one attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default linear-memory cap of one plugin instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Largest memory cap a step may ask for.
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

/// Parses `64MiB`, `512KiB`, `1GiB`, `1048576` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a size; write e.g. `64MiB`, `512KiB` or `1GiB`"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1024,
        "MiB" | "M" | "MB" => 1024 * 1024,
        "GiB" | "G" | "GB" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit `{other}`; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses `30s`, `2m`, `1h 30m`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `30s`, `2m` or `500ms`"))
}
