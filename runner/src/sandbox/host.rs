//! What a plugin instance can reach: the per-attempt store data and the host side of each import.
//!
//! WASI is linked with nothing granted (no files, env, args, stdin; TCP, UDP and name lookup
//! refused); clocks are coarse (wall time to the second, monotonic time to the millisecond: no
//! fine timer for side channels); stdout and stderr go to capped buffers that become part of
//! the step's log. Both HTTP paths end in [`crate::http::Gate::send`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{wit_http, wit_log, wit_types};
use super::limits::SandboxLimits;
use super::stdio::CappedPipe;
use crate::http::{Gate, HttpFailure, IncomingResponse, OutgoingRequest};

/// The longest log line kept.
const LOG_MAX_LINE: usize = 4096;
/// In-memory size of one `wasi:http` fields (headers) object, names and values plus the
/// header map's own overhead.
pub(crate) const FIELDS_BYTES: usize = 32 * 1024;
/// What one `wasi:http` outgoing body may hold before the host sends it on: one write of this
/// size, plus one queued.
pub(crate) const BODY_CHUNK_BYTES: usize = 16 * 1024;
/// The longest extension method name a `wasi:http` request may carry.
pub(crate) const MAX_METHOD_BYTES: usize = 32;

/// The step's log: `log` calls, then captured stdout/stderr.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer {
    lines: Arc<Mutex<Vec<String>>>,
    dropped: Arc<Mutex<usize>>,
    bytes: Arc<Mutex<usize>>,
    max_lines: usize,
    max_bytes: usize,
}

impl LogBuffer {
    fn new(limits: &SandboxLimits) -> Self {
        LogBuffer {
            max_lines: limits.max_log_lines as usize,
            max_bytes: usize::try_from(limits.max_log_bytes).unwrap_or(usize::MAX),
            ..Default::default()
        }
    }

    pub(crate) fn push(&self, line: String) {
        let Ok(mut lines) = self.lines.lock() else { return };
        let Ok(mut bytes) = self.bytes.lock() else { return };
        if lines.len() >= self.max_lines || *bytes + line.len().min(LOG_MAX_LINE) > self.max_bytes {
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
        *bytes += line.len();
        lines.push(line);
    }

    pub(crate) fn take(&self) -> Vec<String> {
        let mut out = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        let dropped = self.dropped.lock().map(|d| *d).unwrap_or(0);
        if dropped > 0 {
            out.push(format!(
                "[{dropped} more log lines dropped: over `sandbox.max_log_lines` ({}) or `sandbox.max_log_bytes` ({})]",
                self.max_lines, self.max_bytes
            ));
        }
        out
    }
}

/// What an imported interface gives a plugin here (for `offramp plugin inspect`).
pub(crate) fn what_it_gets(interface: &str) -> &'static str {
    let name = interface.split('@').next().unwrap_or(interface);
    match name {
        "offramp:plugin/http" | "wasi:http/outgoing-handler" => {
            "HTTP through the gate: only what the step's `allow:` grants, public addresses, credentials injected by the host"
        }
        "wasi:http/types" => "HTTP types (requests still go through the gate)",
        "offramp:plugin/log" => "the step's log (capped, secrets redacted)",
        "offramp:plugin/types" => "offramp's types",
        "wasi:cli/environment" => "nothing: no variables, no arguments",
        "wasi:cli/stdin" => "an empty stdin",
        "wasi:cli/stdout" | "wasi:cli/stderr" => "captured into the step's log (capped, secrets redacted)",
        "wasi:cli/exit" => "ends the attempt (a failure)",
        "wasi:filesystem/preopens" | "wasi:filesystem/types" => "nothing: no directories are opened",
        "wasi:sockets/instance-network"
        | "wasi:sockets/network"
        | "wasi:sockets/tcp"
        | "wasi:sockets/tcp-create-socket"
        | "wasi:sockets/udp"
        | "wasi:sockets/udp-create-socket"
        | "wasi:sockets/ip-name-lookup" => "refused: no sockets, no name lookup",
        "wasi:clocks/wall-clock" => "wall time to the second",
        "wasi:clocks/monotonic-clock" => "monotonic time to the millisecond",
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => "random bytes",
        _ if name.starts_with("wasi:io/") || name.starts_with("wasi:cli/terminal") => "plumbing (streams, polling)",
        _ => "linked by the host",
    }
}

/// Caps linear memory and remembers whether the cap was hit, for a readable error.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) table_elements: usize,
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
        Ok(desired <= self.table_elements)
    }
}

/// Wall-clock time to the whole second.
struct CoarseWallClock;

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        std::time::Duration::from_secs(now.as_secs())
    }
}

/// Monotonic time (nanoseconds since the attempt started) to the millisecond.
struct CoarseMonotonicClock(std::time::Instant);

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        let ms = u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX / 1_000_000);
        ms.saturating_mul(1_000_000)
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
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
}

impl StepState {
    pub(crate) fn new(gate: Arc<Gate>, memory_limit: usize, limits: &SandboxLimits) -> Self {
        let stdio_cap = usize::try_from(limits.max_stdio_bytes).unwrap_or(usize::MAX);
        let stdout = CappedPipe::new(stdio_cap);
        let stderr = CappedPipe::new(stdio_cap);
        // Nothing granted: no preopens, env, args or stdin; sockets and name lookup refused
        // (the default socket check denies every address too). Randomness is WASI's default
        // (standard libraries need it to start); clocks are coarse.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(CoarseWallClock)
            .monotonic_clock(CoarseMonotonicClock(std::time::Instant::now()))
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_host_resources as usize);
        let mut http_ctx = WasiHttpCtx::new();
        http_ctx.set_field_size_limit(FIELDS_BYTES);
        StepState {
            wasi,
            table,
            http_ctx,
            hooks: GateHooks { gate: gate.clone() },
            gate,
            memory: MemoryCap { limit: memory_limit, table_elements: limits.max_table_elements as usize, hit: false },
            log: LogBuffer::new(limits),
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
        let out = OutgoingRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            body_charged: false,
        };
        match gate.send(out).await {
            Ok(IncomingResponse { status, headers, body }) => Ok(wit_http::Response { status, headers, body }),
            Err(e) => Err(match e {
                HttpFailure::Denied(why) => wit_http::HttpError::Denied(why),
                HttpFailure::Invalid(why) => wit_http::HttpError::InvalidRequest(why),
                HttpFailure::Timeout => wit_http::HttpError::Timeout,
                HttpFailure::Transport(why) => wit_http::HttpError::Transport(why),
                HttpFailure::TooLarge(n) => wit_http::HttpError::ResponseTooLarge(n),
                HttpFailure::RequestTooLarge(n) => {
                    wit_http::HttpError::InvalidRequest(format!("request body larger than {n} bytes"))
                }
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
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_BYTES
    }

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
            let cap = gate.limits().max_request_bytes;
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    if (bytes.len() + data.len()) as u64 > cap {
                        return Err(E::HttpRequestBodySize(Some((bytes.len() + data.len()) as u64)));
                    }
                    // Buffered here before the gate sees it: counted now, against the same budget.
                    gate.charge(data.len() as u64).map_err(|_| E::HttpRequestDenied)?;
                    bytes.extend_from_slice(&data);
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
                body_charged: true,
            };
            let resp = gate.send(req).await.map_err(|e| match e {
                HttpFailure::Denied(_) | HttpFailure::DryRun => E::HttpRequestDenied,
                HttpFailure::Invalid(_) => E::HttpRequestUriInvalid,
                HttpFailure::Timeout => E::ConnectionTimeout,
                HttpFailure::Transport(why) => E::InternalError(Some(why)),
                HttpFailure::TooLarge(n) => E::HttpResponseBodySize(Some(n)),
                HttpFailure::RequestTooLarge(n) => E::HttpRequestBodySize(Some(n)),
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

/// Bounds what `wasi:http` lets a plugin park in host memory: an extension method name would
/// otherwise be kept whatever its length (paths and authorities are capped at 64 KiB by the
/// `http` crate, header fields by [`FIELDS_BYTES`], the number of objects by the resource
/// table's capacity). Replaces `outgoing-request.set-method` with a version that refuses
/// names longer than [`MAX_METHOD_BYTES`] and otherwise does what wasmtime-wasi-http does.
pub(crate) fn bound_wasi_http(linker: &mut wasmtime::component::Linker<StepState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi_http::p2::bindings::http::types::{HostOutgoingRequest, Method, OutgoingRequest};
    linker.allow_shadowing(true);
    let result = (|| {
        let mut types = linker.instance("wasi:http/types@0.2.12")?;
        types.func_wrap(
            "[method]outgoing-request.set-method",
            |mut cx: wasmtime::StoreContextMut<'_, StepState>,
             (request, method): (Resource<OutgoingRequest>, Method)|
             -> wasmtime::Result<(Result<(), ()>,)> {
                if let Method::Other(name) = &method
                    && name.len() > MAX_METHOD_BYTES
                {
                    return Ok((Err(()),));
                }
                let mut view = cx.data_mut().http();
                Ok((HostOutgoingRequest::set_method(&mut view, request, method)?,))
            },
        )
    })();
    linker.allow_shadowing(false);
    result
}
