//! The wasmtime sandbox: one engine per process, one `InstancePre` per plugin, a fresh store and
//! instance for every attempt, limits on time and memory, compiled code cached on disk.

mod bindings;
mod describe;
mod host;
mod limits;
mod loading;
mod stdio;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::{HasSelf, Linker, ResourceTableError};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use bindings::{TaskPre, wit_types};
use host::StepState;

use crate::http::{Gate, GateClient, RequestRecord};

pub use describe::{PluginDescription, PluginInput};
pub use limits::{SandboxConfig, SandboxLimits};
pub use loading::in_background;

/// How often the epoch ticks; timeouts are enforced to this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Problems loading a plugin.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read plugin {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Compile { path: String, reason: String },
    #[error("{path} needs more than the sandbox allows: {reason} (the `sandbox:` limits in the config file)")]
    OverLimits { path: String, reason: String },
    #[error(
        "{path} does not fit offramp's plugin interface (world `task` or `described-task` of offramp:plugin@0.1.1): {reason}"
    )]
    Link { path: String, reason: String },
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// How a plugin's attempt ended, from the engine's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Transient,
    Permanent,
    NeedsHuman,
}

/// A step attempt's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttemptResult {
    Done { output: serde_json::Value, changed: bool },
    Failed { kind: FailureKind, message: String, retry_after: Option<Duration> },
}

/// A finished attempt: result, log and the requests it made.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub result: AttemptResult,
    pub log: Vec<String>,
    pub requests: Vec<RequestRecord>,
}

/// What one attempt is given.
pub(crate) struct AttemptSpec {
    pub input: serde_json::Value,
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub idempotency_key: String,
    pub dry_run: bool,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub gate: Arc<Gate>,
}

/// A one-off plugin call, see [`Sandbox::invoke`].
pub struct Invoke {
    pub input: serde_json::Value,
    pub allow: Vec<crate::pipeline::Grant>,
    /// Credentials the host injects, as in a step's `credentials:` (rule and value).
    pub credentials: Vec<(crate::pipeline::CredentialPlan, crate::secrets::Secret)>,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub dry_run: bool,
}

/// A compiled, linked plugin, ready to instantiate.
pub struct Plugin {
    pre: TaskPre<StepState>,
    /// What `contract()` declared, once asked (see describe.rs).
    contract: tokio::sync::OnceCell<Result<Vec<crate::pipeline::ActionDecl>, String>>,
    parsed: tokio::sync::OnceCell<crate::pipeline::Declared>,
    /// SHA-256 of the component bytes.
    pub digest: String,
    pub path: PathBuf,
}

/// The process-wide WebAssembly engine and its plugin cache.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StepState>,
    cache_dir: Option<PathBuf>,
    plugins: Mutex<HashMap<PathBuf, Arc<Plugin>>>,
    /// Instances alive at once are bounded by the pooling allocator; past that, an attempt
    /// waits its turn here instead of failing to instantiate (e.g. 1,000 runs recovered at once).
    admission: Arc<tokio::sync::Semaphore>,
    limits: SandboxLimits,
    _ticker: EpochTicker,
}

struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Sandbox {
    /// Builds the engine with the default limits. `cache_dir`: where compiled components are
    /// kept between processes.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, SandboxError> {
        Self::with_limits(cache_dir, SandboxLimits::default())
    }

    /// Builds the engine. The pooling allocator is sized so that `max_instances` plugins, each
    /// within the per-component caps, always fit: admission, not the pool, is what says wait.
    pub fn with_limits(cache_dir: Option<PathBuf>, limits: SandboxLimits) -> Result<Self, SandboxError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(usize::try_from(limits.max_stack_bytes).unwrap_or(512 << 10));
        // Enough frames to tell runaway recursion (one function, over and over) from a bug.
        config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES));
        let n = limits.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.max_core_instances_per_component(limits.max_core_instances);
        pool.max_memories_per_component(limits.max_memories);
        pool.max_tables_per_component(limits.max_tables);
        pool.table_elements(limits.max_table_elements as usize);
        pool.total_component_instances(n);
        pool.total_core_instances(n.saturating_mul(limits.max_core_instances));
        pool.total_memories(n.saturating_mul(limits.max_memories));
        pool.total_tables(n.saturating_mul(limits.max_tables));
        pool.total_stacks(n);
        pool.max_memory_size(crate::pipeline::model::MAX_MEMORY_BYTES as usize);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let mut linker: Linker<StepState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        bindings::Task::add_to_linker::<_, HasSelf<StepState>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        host::bound_wasi_http(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("offramp-epoch".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| SandboxError::Engine(e.to_string()))?;
        }
        if let Some(dir) = &cache_dir {
            let _ = std::fs::create_dir_all(dir);
        }
        Ok(Sandbox {
            engine,
            linker,
            cache_dir,
            plugins: Mutex::new(HashMap::new()),
            admission: Arc::new(tokio::sync::Semaphore::new(n as usize)),
            limits,
            _ticker: EpochTicker { stop },
        })
    }

    /// The default cache directory: `$XDG_CACHE_HOME/offramp` or `~/.cache/offramp`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("offramp").join("components"))
    }

    /// The interfaces a plugin imports, each with what this host gives it there.
    pub fn imports(&self, plugin: &Plugin) -> Vec<(String, &'static str)> {
        let component = plugin.pre.instance_pre().component();
        let mut out: Vec<(String, &'static str)> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| (name.to_string(), host::what_it_gets(name)))
            .collect();
        out.sort();
        out
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    pub(crate) fn store(&self, gate: Arc<Gate>, memory_bytes: u64, timeout: Duration) -> Store<StepState> {
        let memory = usize::try_from(memory_bytes).unwrap_or(usize::MAX);
        let mut store = Store::new(&self.engine, StepState::new(gate, memory, &self.limits));
        store.limiter(|s| &mut s.memory);
        // Every tick, a running guest yields to the async runtime (so a spinning plugin cannot
        // hold a worker thread that Slack acknowledgements need) until its time is up.
        let mut ticks_left = u64::try_from((timeout.as_millis() / EPOCH_TICK.as_millis()).max(1)).unwrap_or(u64::MAX);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks_left = ticks_left.saturating_sub(1);
            Ok(if ticks_left == 0 {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// Runs a plugin once outside any pipeline (for `offramp plugin run`-style tools and
    /// benchmarks): a fresh instance, the given input, HTTP limited to `allow`, the given
    /// credentials injected by the host.
    pub async fn invoke(&self, plugin: &Plugin, client: &GateClient, mut inv: Invoke) -> AttemptReport {
        let injections = std::mem::take(&mut inv.credentials)
            .into_iter()
            .map(|(rule, value)| crate::http::Injection::fixed(rule, value))
            .collect();
        self.invoke_with(plugin, client, inv, injections).await
    }

    /// As [`Sandbox::invoke`], with credentials already resolved (minted ones too).
    pub(crate) async fn invoke_with(
        &self,
        plugin: &Plugin,
        client: &GateClient,
        inv: Invoke,
        injections: Vec<crate::http::Injection>,
    ) -> AttemptReport {
        let deadline = tokio::time::Instant::now() + inv.timeout;
        let gate = Arc::new(Gate::new(client, inv.allow, injections, inv.dry_run, deadline));
        let spec = AttemptSpec {
            input: inv.input,
            run_id: "adhoc".into(),
            step_id: "adhoc".into(),
            attempt: 1,
            idempotency_key: "adhoc".into(),
            dry_run: inv.dry_run,
            timeout: inv.timeout,
            memory_bytes: inv.memory_bytes,
            gate,
        };
        self.run_attempt(plugin, spec).await
    }

    /// Runs one attempt of a step in a fresh instance. Never panics on plugin misbehaviour:
    /// traps, timeouts and memory exhaustion become failures with a readable message.
    pub(crate) async fn run_attempt(&self, plugin: &Plugin, spec: AttemptSpec) -> AttemptReport {
        // What the output must look like (asked before taking an instance slot: asking takes one).
        let contract = self.parsed_contract(plugin).await;
        let action = contract.as_deref().and_then(|c| c.action_for(&spec.input).map(|a| (c.plugin.as_str(), a)));
        // Wait for an instance slot first (the semaphore is never closed, so this cannot fail).
        let _turn = self.admission.acquire().await.ok();
        spec.gate.start_clock(spec.timeout);
        let gate = spec.gate.clone();
        let mut store = self.store(gate.clone(), spec.memory_bytes, spec.timeout);
        let inv = wit_types::Invocation {
            input: spec.input.to_string(),
            run_id: spec.run_id,
            step_id: spec.step_id,
            attempt: spec.attempt,
            idempotency_key: spec.idempotency_key,
            dry_run: spec.dry_run,
        };
        let mut instantiated = false;
        let call = async {
            let task = plugin.pre.instantiate_async(&mut store).await?;
            instantiated = true;
            task.call_run(&mut store, &inv).await
        };
        // The epoch deadline stops a spinning guest; this stops one blocked in a host call.
        let outcome = tokio::time::timeout(spec.timeout + EPOCH_TICK * 5, call).await;
        let redactor = gate.redactor();
        let result = match outcome {
            Err(_) => timeout_failure(spec.timeout),
            Ok(Ok(Ok(out))) if out.output.len() as u64 > self.limits.max_output_bytes => AttemptResult::Failed {
                kind: FailureKind::Permanent,
                message: format!(
                    "the plugin's output is {} bytes, over the limit of {} (`sandbox.max_output_bytes`)",
                    out.output.len(),
                    self.limits.max_output_bytes
                ),
                retry_after: None,
            },
            Ok(Ok(Ok(out))) => match serde_json::from_str::<serde_json::Value>(&redactor.text(&out.output)) {
                // Later steps were validated against the declared output: hold the plugin to it.
                Ok(output) if let Some(Err(why)) = action.map(|(_, a)| a.check_output(&output)) => {
                    let (plugin, a) = action.map(|(p, a)| (p, a.name.as_str())).unwrap_or_default();
                    let what = if a.is_empty() { plugin.to_string() } else { format!("{plugin} `{a}`") };
                    AttemptResult::Failed {
                        kind: FailureKind::Permanent,
                        message: redactor.text(&crate::text::truncate(
                            &format!("the plugin's output is not what {what} declares: {why}"),
                            MAX_ERROR_CHARS,
                        )),
                        retry_after: None,
                    }
                }
                Ok(output) => AttemptResult::Done { output, changed: matches!(out.change, wit_types::Change::Changed) },
                Err(e) => AttemptResult::Failed {
                    kind: FailureKind::Permanent,
                    message: format!("the plugin's output is not JSON: {e}"),
                    retry_after: None,
                },
            },
            Ok(Ok(Err(err))) => AttemptResult::Failed {
                kind: match err.kind {
                    wit_types::ErrorKind::Transient => FailureKind::Transient,
                    wit_types::ErrorKind::Permanent => FailureKind::Permanent,
                    wit_types::ErrorKind::NeedsHuman => FailureKind::NeedsHuman,
                },
                message: redactor.text(&crate::text::truncate(&err.message, MAX_ERROR_CHARS)),
                retry_after: err.retry_after_ms.map(Duration::from_millis),
            },
            Ok(Err(trap)) => {
                let state = store.data();
                let stderr = state.stderr.contents().0;
                let facts = TrapFacts {
                    instantiated,
                    memory_hit: state.memory.hit,
                    memory_bytes: spec.memory_bytes,
                    timeout: spec.timeout,
                    stderr: &stderr,
                };
                self.trap_failure(&trap, &facts, &state.log, &redactor)
            }
        };
        let state = store.data();
        let mut log = state.log.take();
        for (stream, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let (kept, dropped) = pipe.contents();
            let text = String::from_utf8_lossy(&kept).into_owned();
            for line in text.lines() {
                log.push(format!("[{stream}] {}", redactor.text(line)));
            }
            if dropped > 0 {
                log.push(format!(
                    "[host] {stream}: {dropped} more bytes dropped (over `sandbox.max_stdio_bytes`, {})",
                    self.limits.max_stdio_bytes
                ));
            }
        }
        AttemptReport { result, log, requests: state.gate().journal() }
    }
}

/// What [`Sandbox::trap_failure`] needs to know about the attempt besides the trap.
struct TrapFacts<'a> {
    instantiated: bool,
    memory_hit: bool,
    memory_bytes: u64,
    timeout: Duration,
    stderr: &'a [u8],
}

impl Sandbox {
    /// Why a trapped attempt failed, in words a pipeline author can act on: it could not start,
    /// ran out of memory, time or stack, called exit, went over a host limit, or crashed (with
    /// the trap's cause and the end of its stderr). The whole trap goes to the step's log.
    fn trap_failure(
        &self,
        trap: &wasmtime::Error,
        facts: &TrapFacts<'_>,
        log: &host::LogBuffer,
        redactor: &crate::secrets::Redactor,
    ) -> AttemptResult {
        let TrapFacts { instantiated, memory_hit, memory_bytes, timeout, stderr } = *facts;
        log.push(format!("[host] {}", crate::text::truncate(&format!("{trap:?}"), 4000)));
        let last_words = last_words(stderr);
        let failed = |message: String| AttemptResult::Failed {
            kind: FailureKind::Permanent,
            message: redactor.text(&message),
            retry_after: None,
        };
        let as_trap = trap.downcast_ref::<wasmtime::Trap>();
        if !instantiated && !memory_hit {
            failed(format!("the plugin could not start: {}", trap_summary(trap)))
        } else if memory_hit {
            failed(format!(
                "the plugin ran out of memory: it tried to grow past its {} MiB limit (raise `memory:` if it really needs more)",
                memory_bytes / (1024 * 1024)
            ))
        } else if matches!(as_trap, Some(wasmtime::Trap::Interrupt)) {
            timeout_failure(timeout)
        } else if matches!(as_trap, Some(wasmtime::Trap::StackOverflow)) {
            failed(format!(
                "the plugin ran out of stack (recursion too deep for the {} KiB limit, `sandbox.max_stack_bytes`)",
                self.limits.max_stack_bytes / 1024
            ))
        } else if matches!(as_trap, Some(wasmtime::Trap::MemoryOutOfBounds)) && is_runaway_recursion(trap) {
            // Rust and C keep their own stack in linear memory, below the data: deep
            // recursion runs off its bottom into an out-of-bounds access.
            failed(format!(
                "the plugin ran out of stack: its own stack in linear memory overflowed ({} frames deep when it trapped with an out-of-bounds memory access; deep recursion — a Rust plugin's stack is 1 MiB unless it is linked with `-C link-arg=-zstack-size=BYTES`){last_words}",
                backtrace_depth(trap)
            ))
        } else if let Some(exit) = trap.downcast_ref::<wasmtime_wasi::I32Exit>() {
            failed(format!(
                "the plugin called exit({}) instead of returning a result; exiting ends the attempt as failed{last_words}",
                exit.0
            ))
        } else if trap.chain().any(|e| {
            use wasmtime_wasi_http::FieldMapError as F;
            // wasmtime-wasi-http raises it as a typed error or as its text.
            matches!(e.downcast_ref::<F>(), Some(F::TotalSizeTooBig | F::TooManyFields))
                || [F::TotalSizeTooBig.to_string(), F::TooManyFields.to_string()].contains(&e.to_string())
        }) {
            failed(format!(
                "the plugin built a wasi:http header set over the host's limit of {} KiB per header object",
                host::FIELDS_BYTES / 1024
            ))
        } else if trap.chain().any(|e| matches!(e.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)))
        {
            failed(format!(
                "the plugin holds more than {} host objects at once (wasi:http requests, headers, streams…; `sandbox.max_host_resources`): it must drop what it no longer uses",
                self.limits.max_host_resources
            ))
        } else {
            failed(format!("the plugin crashed: {}{last_words}", trap_summary(trap)))
        }
    }
}

fn timeout_failure(timeout: Duration) -> AttemptResult {
    AttemptResult::Failed {
        kind: FailureKind::Transient,
        message: format!("timed out after {} (the step's `timeout:`)", humantime::format_duration(timeout)),
        retry_after: None,
    }
}

/// The longest error message a plugin's `task-error` keeps.
const MAX_ERROR_CHARS: usize = 16 * 1024;
/// A trap this many frames deep, most of them one function, is taken for runaway recursion.
const DEEP_RECURSION: usize = 64;
/// Frames kept of a trap's backtrace.
const BACKTRACE_FRAMES: usize = 256;
/// The stderr lines quoted in a crashed step's error.
const LAST_LINES: usize = 8;

/// The end of what the plugin wrote to stderr: a Rust panic message, the last lines of a
/// Python traceback, a JavaScript exception and its first stack frames.
fn last_words(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let noise = |l: &str| {
        let l = l.trim();
        l.is_empty()
            || l.starts_with("note: run with `RUST_BACKTRACE")
            || l.starts_with("Redirecting call to abort() to mozalloc_abort")
    };
    let mut lines: Vec<&str> = text.lines().rev().filter(|l| !noise(l)).take(LAST_LINES).collect();
    if lines.is_empty() {
        return String::new();
    }
    lines.reverse();
    let said: Vec<String> = lines.iter().map(|l| l.trim_end().chars().take(300).collect()).collect();
    format!(" — its last words (stderr): {}", said.join(" ⏎ "))
}

/// What kind of trap it was (`wasm \`unreachable\` instruction executed`), without the
/// multi-line wasm backtrace (which goes to the log): the trap, or the innermost cause.
fn trap_summary(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    let causes: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|c| !c.trim().is_empty() && !c.starts_with("error while executing at wasm backtrace"))
        .collect();
    match causes.last() {
        Some(c) => c.lines().next().unwrap_or("unknown error").to_string(),
        None => "unknown error".to_string(),
    }
}

/// How many wasm frames the trap's backtrace holds.
fn backtrace_depth(e: &wasmtime::Error) -> usize {
    e.downcast_ref::<wasmtime::WasmBacktrace>().map_or(0, |bt| bt.frames().len())
}

/// Whether the trap happened deep in recursion: at least [`DEEP_RECURSION`] frames, most of
/// them one function. An out-of-bounds access there is the plugin's own stack (in linear
/// memory) running off its end, not a stray pointer.
fn is_runaway_recursion(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else { return false };
    let frames = bt.frames();
    if frames.len() < DEEP_RECURSION {
        return false;
    }
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for f in frames {
        *counts.entry(f.func_index()).or_default() += 1;
    }
    counts.values().copied().max().unwrap_or(0) * 2 >= frames.len()
}
