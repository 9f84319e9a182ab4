//! Helpers for writing offramp step plugins in Rust.
//!
//! ```ignore
//! use offramp_plugin_sdk::{action, export_plugin, ActionSpec, Guest, Invocation, Outcome, PluginInfo, TaskError};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Input { name: String }
//! #[derive(serde::Serialize, schemars::JsonSchema)]
//! struct Output { greeting: String }
//!
//! struct Hello;
//! impl Guest for Hello {
//!     fn run(inv: Invocation) -> Result<Outcome, TaskError> {
//!         let input: Input = offramp_plugin_sdk::input(&inv)?;
//!         offramp_plugin_sdk::changed(&Output { greeting: format!("hello {}", input.name) })
//!     }
//!     fn describe() -> PluginInfo { offramp_plugin_sdk::info("hello", "0.1.0", "Says hello", &[]) }
//!     fn contract() -> Vec<ActionSpec> { vec![action::<Input, Output>("", "Says hello")] }
//! }
//! export_plugin!(Hello);
//! ```
//!
//! HTTP goes through the host: build a [`Request`], call [`Request::send`]. The host checks the
//! URL against the step's `allow:` list and adds credentials; the plugin never sees them.
//!
//! `contract()` declares what each action takes and returns (JSON Schemas derived from the
//! types with schemars): `offramp validate` type-checks pipelines against it before they run.

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "described-task",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "offramp_plugin_sdk::bindings",
        generate_all,
    });
}

pub use bindings::Guest;
pub use bindings::export_plugin;
pub use bindings::offramp::plugin::http::{HttpError, Request as RawRequest, Response as RawResponse};
pub use bindings::offramp::plugin::log::Level;
pub use bindings::offramp::plugin::types::{
    ActionSpec, Change, ErrorKind, InputSpec, Invocation, Outcome, PluginInfo, TaskError,
};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses the step's `with:` input into `T`; a mismatch is a permanent error naming the problem.
pub fn input<T: DeserializeOwned>(inv: &Invocation) -> Result<T, TaskError> {
    serde_json::from_str(&inv.input).map_err(|e| permanent(format!("invalid step input: {e}")))
}

/// A successful outcome that changed something.
pub fn changed<T: Serialize>(output: &T) -> Result<Outcome, TaskError> {
    outcome(output, Change::Changed)
}

/// A successful outcome where nothing needed doing.
pub fn unchanged<T: Serialize>(output: &T) -> Result<Outcome, TaskError> {
    outcome(output, Change::Unchanged)
}

fn outcome<T: Serialize>(output: &T, change: Change) -> Result<Outcome, TaskError> {
    let output = serde_json::to_string(output).map_err(|e| permanent(format!("cannot encode output: {e}")))?;
    Ok(Outcome { output, change })
}

/// A failure worth retrying.
pub fn transient(message: impl Into<String>) -> TaskError {
    TaskError { kind: ErrorKind::Transient, message: message.into(), retry_after_ms: None }
}

/// A failure retrying will not fix.
pub fn permanent(message: impl Into<String>) -> TaskError {
    TaskError { kind: ErrorKind::Permanent, message: message.into(), retry_after_ms: None }
}

/// A failure a person must decide about; the run pauses.
pub fn needs_human(message: impl Into<String>) -> TaskError {
    TaskError { kind: ErrorKind::NeedsHuman, message: message.into(), retry_after_ms: None }
}

/// A rate-limit failure: transient, retried no sooner than `wait_ms` from now.
pub fn rate_limited(message: impl Into<String>, wait_ms: u64) -> TaskError {
    TaskError { kind: ErrorKind::Transient, message: message.into(), retry_after_ms: Some(wait_ms) }
}

/// Builds `describe()`'s answer. Each input is `(name, type, required, description)`.
pub fn info(name: &str, version: &str, description: &str, inputs: &[(&str, &str, bool, &str)]) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        inputs: inputs
            .iter()
            .map(|(n, t, r, d)| InputSpec {
                name: (*n).into(),
                type_name: (*t).into(),
                required: *r,
                description: (*d).into(),
            })
            .collect(),
    }
}

/// Declares an action: `with:` deserializes into `I`, the output serializes from `O`; both
/// schemas are derived with schemars. `name` is the `action:` value that selects it (`""` for a
/// plugin that does one thing); when `I` has an `action` field, this action's schema pins it to
/// `name`, so `with:` is checked against the right action.
pub fn action<I: schemars::JsonSchema, O: schemars::JsonSchema>(name: &str, description: &str) -> ActionSpec {
    action_schemas(name, description, schema_of::<I>(), schema_of::<O>())
}

/// Declares an action from hand-written JSON Schemas (`Value::Null`: not declared).
pub fn action_schemas(
    name: &str,
    description: &str,
    mut input: serde_json::Value,
    output: serde_json::Value,
) -> ActionSpec {
    if !name.is_empty()
        && let Some(props) = input.get_mut("properties").and_then(|p| p.as_object_mut())
        && let Some(action) = props.get_mut("action")
    {
        *action = serde_json::json!({ "const": name });
    }
    let text = |v: serde_json::Value| if v.is_null() { String::new() } else { v.to_string() };
    ActionSpec {
        name: name.into(),
        description: description.into(),
        input_schema: text(input),
        output_schema: text(output),
    }
}

/// Marks `with:` keys an action needs though its input type has them optional (one input type
/// shared by several actions): `require(action::<Input, Out>("transfer", "…"), &["to"])`.
pub fn require(mut spec: ActionSpec, keys: &[&str]) -> ActionSpec {
    if let Ok(mut schema) = serde_json::from_str::<serde_json::Value>(&spec.input_schema)
        && let Some(obj) = schema.as_object_mut()
    {
        let required = obj.entry("required").or_insert_with(|| serde_json::json!([]));
        if let Some(list) = required.as_array_mut() {
            for k in keys {
                if !list.iter().any(|v| v == k) {
                    list.push(serde_json::json!(k));
                }
            }
        }
        spec.input_schema = schema.to_string();
    }
    spec
}

fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

/// Writes a line to the step's log.
pub fn log(level: Level, message: &str) {
    bindings::offramp::plugin::log::log(level, message);
}

/// An outgoing HTTP request, sent through the host.
#[derive(Debug, Clone)]
pub struct Request {
    raw: RawRequest,
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self { raw: RawRequest { method: method.into(), url: url.into(), headers: Vec::new(), body: None } }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.raw.headers.push((name.into(), value.into()));
        self
    }
    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: Serialize>(mut self, body: &T) -> Self {
        self.raw.body = serde_json::to_vec(body).ok();
        self.header("content-type", "application/json")
    }
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.raw.body = Some(body);
        self
    }
    /// Sends the request. 4xx/5xx come back as `Ok(response)`; only transport problems are errors.
    pub fn send(self) -> Result<Response, HttpError> {
        bindings::offramp::plugin::http::send(&self.raw).map(|raw| Response { raw })
    }
}

/// What a mutating request did: it was sent (whatever the status), or a dry run held it back.
#[derive(Debug)]
pub enum Sent {
    Done(Response),
    DryRun,
}

impl Request {
    /// Sends a mutating request: a dry run's `HttpError::DryRun` becomes [`Sent::DryRun`], any
    /// other transport error a task error ([`http_error`]). The status is the caller's to check
    /// (a 404 on a delete may mean "already done").
    pub fn mutate(self) -> Result<Sent, TaskError> {
        match self.send() {
            Ok(resp) => Ok(Sent::Done(resp)),
            Err(HttpError::DryRun) => Ok(Sent::DryRun),
            Err(e) => Err(http_error(e)),
        }
    }
}

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Response {
    pub raw: RawResponse,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.raw.status
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.raw.status)
    }
    /// The first value of a header (names are matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw.body).into_owned()
    }
    /// Parses the body as JSON; a bad body is a transient error (a proxy's HTML error page, say).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_slice(&self.raw.body)
            .map_err(|e| transient(format!("HTTP {}: response is not the JSON expected: {e}", self.raw.status)))
    }
}

/// The usual mapping of a transport error to a task error; `dry-run` is the caller's to handle.
pub fn http_error(e: HttpError) -> TaskError {
    match e {
        HttpError::Denied(why) => permanent(format!("request denied by the host: {why}")),
        HttpError::InvalidRequest(why) => permanent(format!("invalid request: {why}")),
        HttpError::Timeout => transient("request timed out"),
        HttpError::Transport(why) => transient(format!("connection failed: {why}")),
        HttpError::ResponseTooLarge(limit) => permanent(format!("response larger than the host's {limit}-byte cap")),
        HttpError::DryRun => permanent("mutating request not sent (dry run)"),
    }
}

/// Percent-encodes one URL path segment (e.g. an Okta login `alice@example.com`).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the `Date` header's form) into
/// epoch seconds. Plugins have only coarse clocks; a rate-limit reset measured against the
/// response's own `Date` needs none.
pub fn parse_http_date(s: &str) -> Option<u64> {
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

/// Milliseconds from the response's `Date` until `reset` (epoch seconds), at least 1 s;
/// `None` without a parsable `Date`.
pub fn ms_until_epoch(resp: &Response, reset: u64) -> Option<u64> {
    let now = resp.header("date").and_then(parse_http_date)?;
    Some(reset.saturating_sub(now).max(1) * 1000)
}
