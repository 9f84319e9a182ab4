//! A generic HTTP step.
//!
//! ```yaml
//! - id: notify
//!   uses: http
//!   with:
//!     method: POST
//!     url: https://hooks.example.com/offboarded
//!     headers: { x-source: offramp }
//!     json: { user: "{{ inputs.email }}" }
//!     expect: [200, 201, 204]
//!   allow: [https://hooks.example.com]
//! ```
//!
//! Output: `{ "status": 200, "headers": {...}, "body": <JSON or text> }`. A status outside
//! `expect` fails the step: 408, 429 and 5xx transiently (retried), others permanently.

use std::collections::BTreeMap;

use offramp_plugin_sdk::{
    ActionSpec, Guest, HttpError, Invocation, Outcome, PluginInfo, Request, TaskError, action, changed, export_plugin,
    http_error, info, input, permanent, rate_limited, transient, unchanged,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The HTTP method (any case): GET (the default), POST, PUT, PATCH, DELETE, HEAD, …
    #[serde(default = "get")]
    method: String,
    /// An absolute URL; its host must be in the step's `allow:` list.
    url: String,
    /// Extra request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON body, any JSON value (sets `content-type: application/json`). Not with `body`.
    #[serde(default)]
    json: Option<Value>,
    /// A text body. Not with `json`.
    #[serde(default)]
    body: Option<String>,
    /// Statuses that count as success; default: any 2xx.
    #[serde(default)]
    expect: Vec<u16>,
}

fn get() -> String {
    "GET".into()
}

/// The step's output: the response (`status`, `headers`, `body`), or in a dry run the request
/// that was held back (`dry_run`, `method`, `url`) when it was a mutating one. Fields are in
/// alphabetical order: the JSON keeps the key order it had when it was built with `json!` (a
/// sorted map).
#[derive(Serialize, JsonSchema, Default)]
struct Output {
    /// The response body: its JSON if it parses as JSON, otherwise its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    /// Dry run: `true`, the request was not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
    /// The response headers (names as the server sent them; of a repeated header, the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, String>>,
    /// Dry run: the method that would have been used (upper-cased).
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    /// The response's HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// Dry run: the URL that would have been requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

struct Http;

impl Guest for Http {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let method = input.method.to_ascii_uppercase();
        if input.json.is_some() && input.body.is_some() {
            return Err(permanent("give either `json` or `body`, not both"));
        }
        let mut req = Request::new(&method, input.url.clone());
        for (name, value) in &input.headers {
            req = req.header(name, value);
        }
        if let Some(body) = &input.json {
            req = req.json(body);
        } else if let Some(body) = input.body {
            req = req.body(body.into_bytes());
        }
        let resp = match req.send() {
            Ok(resp) => resp,
            Err(HttpError::DryRun) => {
                return changed(&Output {
                    dry_run: Some(true),
                    method: Some(method),
                    url: Some(input.url),
                    ..Output::default()
                });
            }
            Err(e) => return Err(http_error(e)),
        };
        let status = resp.status();
        let ok = if input.expect.is_empty() { resp.is_success() } else { input.expect.contains(&status) };
        let body = serde_json::from_slice::<Value>(&resp.raw.body).unwrap_or_else(|_| Value::String(resp.text()));
        if !ok {
            let snippet: String = resp.text().chars().take(300).collect();
            let msg = format!("{method} {} answered {status}: {snippet}", input.url);
            return Err(match status {
                429 => match resp.header("retry-after").and_then(|s| s.trim().parse::<u64>().ok()) {
                    Some(secs) => rate_limited(msg, secs * 1000),
                    None => transient(msg),
                },
                408 | 500..=599 => transient(msg),
                _ => permanent(msg),
            });
        }
        let headers: BTreeMap<String, String> = resp.raw.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        let output = Output { body: Some(body), headers: Some(headers), status: Some(status), ..Output::default() };
        if method == "GET" || method == "HEAD" { unchanged(&output) } else { changed(&output) }
    }

    fn contract() -> Vec<ActionSpec> {
        vec![action::<Input, Output>("", "Sends one HTTP request and checks its status")]
    }

    fn describe() -> PluginInfo {
        info(
            "http",
            env!("CARGO_PKG_VERSION"),
            "Sends one HTTP request and checks its status",
            &[
                ("method", "string", false, "GET (default), POST, PUT, PATCH, DELETE, HEAD"),
                ("url", "string", true, "absolute URL; its host must be in the step's allow list"),
                ("headers", "object", false, "extra request headers"),
                ("json", "any", false, "JSON request body"),
                ("body", "string", false, "text request body"),
                ("expect", "array", false, "statuses that count as success (default: 2xx)"),
            ],
        )
    }
}

export_plugin!(Http);
