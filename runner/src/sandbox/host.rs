//! What a plugin instance can reach: the per-attempt store data and the host side of each import.
//!
//! WASI is linked with nothing granted (no files, env, args, sockets or stdin); stdout and
//! stderr go to a capped buffer that becomes part of the step's log. Both HTTP paths end in
//! [`crate::http::Gate::send`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{wit_http, wit_log, wit_types};
use crate::http::{Gate, HttpFailure, IncomingResponse, OutgoingRequest};

/// Bytes of stdout/stderr kept per stream.
pub(crate) const STDIO_CAP: usize = 64 * 1024;
/// Log lines kept per attempt, and the longest line.
const LOG_MAX_LINES: usize = 1000;
const LOG_MAX_LINE: usize = 4096;

/// The step's log: `log` calls, then captured stdout/stderr.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer {
    lines: Arc<Mutex<Vec<String>>>,
    dropped: Arc<Mutex<usize>>,
}

impl LogBuffer {
    pub(crate) fn push(&self, line: String) {
        let Ok(mut lines) = self.lines.lock() else { return };
        if lines.len() >= LOG_MAX_LINES {
            if let Ok(mut d) = self.dropped.lock() {
                *d += 1;
            }
            return;
        }
        let mut line = line;
        if line.len() > LOG_MAX_LINE {
            let mut cut = LOG_MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …[truncated]");
        }
        lines.push(line);
    }

    pub(crate) fn take(&self) -> Vec<String> {
        let mut out = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        let dropped = self.dropped.lock().map(|d| *d).unwrap_or(0);
        if dropped > 0 {
            out.push(format!("[{dropped} more log lines dropped]"));
        }
        out
    }
}

/// Caps linear memory and remembers whether the cap was hit, for a readable error.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Store data of one attempt.
pub(crate) struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    hooks: GateHooks,
    gate: Arc<Gate>,
    pub(crate) memory: MemoryCap,
    pub(crate) log: LogBuffer,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

impl StepState {
    pub(crate) fn new(gate: Arc<Gate>, memory_limit: usize) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAP);
        let stderr = MemoryOutputPipe::new(STDIO_CAP);
        // Nothing granted: no preopens, env, args, stdin or network. Clocks and randomness
        // are WASI's defaults (standard libraries need them to start).
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
        StepState {
            wasi,
            table: ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            hooks: GateHooks { gate: gate.clone() },
            gate,
            memory: MemoryCap { limit: memory_limit, hit: false },
            log: LogBuffer::default(),
            stdout,
            stderr,
        }
    }

    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http_ctx, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl wit_types::Host for StepState {}

impl wit_log::Host for StepState {
    fn log(&mut self, level: wit_log::Level, message: String) {
        let level = match level {
            wit_log::Level::Debug => "debug",
            wit_log::Level::Info => "info",
            wit_log::Level::Warn => "warn",
            wit_log::Level::Error => "error",
        };
        let line = self.gate.redactor().text(&message);
        self.log.push(format!("[{level}] {line}"));
    }
}

impl wit_http::Host for StepState {
    async fn send(&mut self, req: wit_http::Request) -> Result<wit_http::Response, wit_http::HttpError> {
        let gate = self.gate.clone();
        let out = OutgoingRequest { method: req.method, url: req.url, headers: req.headers, body: req.body };
        match gate.send(out).await {
            Ok(IncomingResponse { status, headers, body }) => Ok(wit_http::Response { status, headers, body }),
            Err(e) => Err(match e {
                HttpFailure::Denied(why) => wit_http::HttpError::Denied(why),
                HttpFailure::Invalid(why) => wit_http::HttpError::InvalidRequest(why),
                HttpFailure::Timeout => wit_http::HttpError::Timeout,
                HttpFailure::Transport(why) => wit_http::HttpError::Transport(why),
                HttpFailure::TooLarge(n) => wit_http::HttpError::ResponseTooLarge(n),
                HttpFailure::DryRun => wit_http::HttpError::DryRun,
            }),
        }
    }
}

/// Routes `wasi:http/outgoing-handler` through the same [`Gate`].
pub(crate) struct GateHooks {
    gate: Arc<Gate>,
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for GateHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<wasmtime_wasi_http::WasiBody>, IoFuture)>>
            + Send,
    > {
        let gate = self.gate.clone();
        Box::new(async move {
            use wasmtime_wasi_http::Error as E;
            let (parts, mut body) = request.into_parts();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    bytes.extend_from_slice(&data);
                    if bytes.len() > 8 * 1024 * 1024 {
                        return Err(E::HttpRequestBodySize(Some(bytes.len() as u64)));
                    }
                }
            }
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let req = OutgoingRequest {
                method: parts.method.to_string(),
                url: parts.uri.to_string(),
                headers,
                body: (!bytes.is_empty()).then_some(bytes),
            };
            let resp = gate.send(req).await.map_err(|e| match e {
                HttpFailure::Denied(_) | HttpFailure::DryRun => E::HttpRequestDenied,
                HttpFailure::Invalid(_) => E::HttpRequestUriInvalid,
                HttpFailure::Timeout => E::ConnectionTimeout,
                HttpFailure::Transport(why) => E::InternalError(Some(why)),
                HttpFailure::TooLarge(n) => E::HttpResponseBodySize(Some(n)),
            })?;
            let mut builder = http::Response::builder().status(resp.status);
            for (n, v) in &resp.headers {
                builder = builder.header(n, v);
            }
            let body = Full::new(Bytes::from(resp.body)).map_err(|never| match never {}).boxed_unsync();
            let response = builder.body(body).map_err(|e| E::InternalError(Some(e.to_string())))?;
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
