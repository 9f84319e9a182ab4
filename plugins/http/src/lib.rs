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
    Guest, HttpError, Invocation, Outcome, PluginInfo, Request, TaskError, changed, export_plugin, http_error, info,
    input, permanent, rate_limited, transient, unchanged,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON body (sets `content-type: application/json`).
    #[serde(default)]
    json: Option<Value>,
    /// A text body.
    #[serde(default)]
    body: Option<String>,
    /// Statuses that count as success; default: any 2xx.
    #[serde(default)]
    expect: Vec<u16>,
}

fn get() -> String {
    "GET".into()
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
                return changed(&json!({ "dry_run": true, "method": method, "url": input.url }));
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
        let headers: BTreeMap<&str, &str> = resp.raw.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let output = json!({ "status": status, "headers": headers, "body": body });
        if method == "GET" || method == "HEAD" { unchanged(&output) } else { changed(&output) }
    }

    fn contract() -> Vec<offramp_plugin_sdk::ActionSpec> {
        vec![]
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
