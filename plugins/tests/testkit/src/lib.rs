//! A plugin for the host's own tests and benchmarks: `with: { mode: ... }` picks a behaviour.
//!
//! Modes: `noop`, `echo`, `fail` (fails `times` attempts with `kind`, then succeeds), `loop`
//! (spins forever), `memory` (grows memory by `mb` MiB), `http` (sends `request`, returns the
//! response), `wasi_http` (the same through `wasi:http/outgoing-handler`), `env` (returns the environment it can see), `file` (tries to read `path`),
//! `panic`, `print` (writes to stdout and stderr).

use offramp_plugin_sdk::{
    Guest, Invocation, Level, Outcome, PluginInfo, Request, TaskError, changed, export_plugin, http_error, info, input,
    log, needs_human, permanent, transient, unchanged,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    mode: String,
    #[serde(default)]
    times: u32,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    mb: u32,
    #[serde(default)]
    request: Option<HttpInput>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    value: Value,
    /// Mode http: a request the host refuses is the output, not a failure (a plugin that
    /// carries on whatever happens).
    #[serde(default)]
    tolerate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpInput {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

struct Testkit;

impl Guest for Testkit {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        match input.mode.as_str() {
            "noop" => unchanged(&Value::Null),
            "echo" => changed(&json!({
                "value": input.value,
                "run_id": inv.run_id,
                "step_id": inv.step_id,
                "attempt": inv.attempt,
                "idempotency_key": inv.idempotency_key,
                "dry_run": inv.dry_run,
            })),
            "fail" => {
                if inv.attempt <= input.times {
                    let msg = format!("planned failure on attempt {}", inv.attempt);
                    Err(match input.kind.as_deref().unwrap_or("transient") {
                        "permanent" => permanent(msg),
                        "needs-human" => needs_human(msg),
                        _ => transient(msg),
                    })
                } else {
                    changed(&json!({ "attempt": inv.attempt, "idempotency_key": inv.idempotency_key }))
                }
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                for _ in 0..input.mb {
                    chunks.push(vec![1u8; 1 << 20]);
                }
                changed(&json!({ "allocated_mb": chunks.len() }))
            }
            "http" => {
                let spec = input.request.ok_or_else(|| permanent("mode http needs `request`"))?;
                let mut req = Request::new(&spec.method, spec.url);
                for (n, v) in &spec.headers {
                    req = req.header(n, v);
                }
                if let Some(body) = spec.body {
                    req = req.body(body.into_bytes());
                }
                let resp = match req.send() {
                    Ok(resp) => resp,
                    Err(e) if input.tolerate => return changed(&json!({ "refused": format!("{e:?}") })),
                    Err(e) => return Err(http_error(e)),
                };
                changed(&json!({
                    "status": resp.status(),
                    "headers": resp.raw.headers,
                    "body": resp.text(),
                }))
            }
            "wasi_http" => {
                // The standard wasi:http/outgoing-handler, as HTTP client libraries use it.
                let spec = input.request.ok_or_else(|| permanent("mode wasi_http needs `request`"))?;
                let (status, body) = wasi_http_get(&spec.url, &spec.headers).map_err(permanent)?;
                changed(&json!({ "status": status, "body": body }))
            }
            "env" => {
                let vars: Vec<(String, String)> = std::env::vars().collect();
                let args: Vec<String> = std::env::args().collect();
                changed(&json!({ "vars": vars, "args": args }))
            }
            "file" => {
                let path = input.path.unwrap_or_else(|| "/etc/passwd".into());
                match std::fs::read_to_string(&path) {
                    Ok(text) => changed(&json!({ "read": text.len() })),
                    Err(e) => Err(permanent(format!("cannot read {path}: {e}"))),
                }
            }
            "panic" => panic!("testkit was asked to panic"),
            "print" => {
                println!("hello on stdout");
                eprintln!("hello on stderr");
                log(Level::Info, "hello from log");
                unchanged(&Value::Null)
            }
            other => Err(permanent(format!("unknown mode {other:?}"))),
        }
    }

    fn contract() -> Vec<offramp_plugin_sdk::ActionSpec> {
        vec![]
    }

    fn describe() -> PluginInfo {
        info(
            "testkit",
            env!("CARGO_PKG_VERSION"),
            "Behaviours for testing the host: noop, echo, fail, loop, memory, http, env, file, panic, print",
            &[
                ("mode", "string", true, "which behaviour"),
                ("times", "integer", false, "mode fail: attempts that fail"),
                ("kind", "string", false, "mode fail: transient | permanent | needs-human"),
                ("mb", "integer", false, "mode memory: MiB to allocate"),
                ("request", "object", false, "mode http: {method, url, headers, body}"),
                ("path", "string", false, "mode file: the path to read"),
                ("value", "any", false, "mode echo: returned as output.value"),
                ("tolerate", "boolean", false, "mode http: a refused request is the output, not a failure"),
            ],
        )
    }
}

/// A GET through `wasi:http/outgoing-handler`.
fn wasi_http_get(url: &str, headers: &[(String, String)]) -> Result<(u16, String), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasi::io::streams::StreamError;

    let (scheme, rest) = url.split_once("://").ok_or("URL without a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value.as_bytes()).map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_method(&Method::Get).map_err(|()| "bad method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let body = request.body().map_err(|()| "no body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("wasi:http refused: {e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("finishing the body: {e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("wasi:http error: {e:?}"))?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "no body")?;
    let stream = incoming.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body: {e:?}")),
        }
    }
    drop(stream);
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

export_plugin!(Testkit);
