//! Per-step sandbox overhead, side by side with its limit: a bare wasmtime host.
//!
//! `cargo bench -p offramp --bench step_overhead`
//!
//! - `noop_step/offramp`: a fresh store + instance of the testkit plugin, one `run` call doing
//!   nothing, drop — what every step attempt pays before the plugin's own work (admission, the
//!   gate, limits, epoch deadline, stdio capture, output checks, redaction).
//! - `noop_step/bare_wasmtime`: the same component in the least a host can do — one
//!   `InstancePre`, the pooling allocator, WASI with nothing granted, instantiate, call `run`,
//!   drop. The issue's limit is offramp ≤ 1.25× this; the bench prints the ratio.
//! - `load_cached_component`: read a plugin file, hash it, load its compiled form from the disk
//!   cache and link it (`InstancePre`) — what a process pays per plugin at start.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use offramp::sandbox::{AttemptResult, Invoke, Sandbox};

fn testkit() -> PathBuf {
    PathBuf::from(offramp::TEST_PLUGINS_DIR).join("testkit.wasm")
}

/// The least a host can be: wasmtime's own pieces, nothing of offramp's.
mod bare {
    use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
    use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

    wasmtime::component::bindgen!({
        path: "../wit",
        world: "offramp:plugin/task",
        imports: { "offramp:plugin/http.send": async },
        exports: { default: async },
    });
    use self::offramp::plugin::{http, log, types};

    pub struct State {
        wasi: WasiCtx,
        http: WasiHttpCtx,
        hooks: DenyAll,
        table: ResourceTable,
    }

    /// wasi:http with no way out (the default hooks without `default-send-request`).
    struct DenyAll;
    type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;
    impl wasmtime_wasi_http::WasiHttpHooks for DenyAll {
        fn send_request(
            &mut self,
            _request: ::http::Request<wasmtime_wasi_http::WasiBody>,
            _options: Option<wasmtime_wasi_http::RequestOptions>,
            _fut: IoFuture,
        ) -> Box<
            dyn Future<Output = wasmtime_wasi_http::Result<(::http::Response<wasmtime_wasi_http::WasiBody>, IoFuture)>>
                + Send,
        > {
            Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
        }
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
        }
    }
    impl WasiHttpView for State {
        fn http(&mut self) -> WasiHttpCtxView<'_> {
            WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
        }
    }
    impl types::Host for State {}
    impl log::Host for State {
        fn log(&mut self, _level: log::Level, _message: String) {}
    }
    impl http::Host for State {
        async fn send(&mut self, _req: http::Request) -> Result<http::Response, http::HttpError> {
            Err(http::HttpError::Denied("no network".into()))
        }
    }

    pub struct Host {
        engine: Engine,
        pre: TaskPre<State>,
    }

    impl Host {
        pub fn new(wasm: &[u8]) -> wasmtime::Result<Host> {
            let mut config = Config::new();
            config.wasm_component_model(true);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(PoolingAllocationConfig::new()));
            let engine = Engine::new(&config)?;
            let mut linker: Linker<State> = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
            Task::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s)?;
            let component = Component::new(&engine, wasm)?;
            let pre = TaskPre::new(linker.instantiate_pre(&component)?)?;
            Ok(Host { engine, pre })
        }

        /// Instantiate, call `run` with a no-op input, drop.
        pub async fn noop(&self) -> wasmtime::Result<bool> {
            let state = State {
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                hooks: DenyAll,
                table: ResourceTable::new(),
            };
            let mut store = Store::new(&self.engine, state);
            let task = self.pre.instantiate_async(&mut store).await?;
            let inv = types::Invocation {
                input: r#"{"mode":"noop"}"#.into(),
                run_id: "bench".into(),
                step_id: "bench".into(),
                attempt: 1,
                idempotency_key: "bench".into(),
                dry_run: false,
            };
            Ok(task.call_run(&mut store, &inv).await?.is_ok())
        }
    }
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new(Some(cache.path().to_path_buf())).expect("sandbox");
    let plugin = sandbox.plugin(&testkit()).expect("testkit loads");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let client = offramp::http::GateClient::new(Default::default()).unwrap();
    let invoke = || Invoke {
        input: serde_json::json!({ "mode": "noop" }),
        allow: vec![],
        credentials: vec![],
        timeout: Duration::from_secs(10),
        memory_bytes: 64 * 1024 * 1024,
        dry_run: false,
    };
    let bare = bare::Host::new(&std::fs::read(testkit()).expect("testkit")).expect("bare host");
    // Sanity: both benchmarked calls really succeed.
    let report = rt.block_on(sandbox.invoke(&plugin, &client, invoke()));
    assert!(matches!(report.result, AttemptResult::Done { .. }), "{:?}", report.result);
    assert!(rt.block_on(bare.noop()).expect("bare call"), "the bare host's run failed");

    let mut group = c.benchmark_group("noop_step");
    group.bench_function("offramp", |b| {
        b.to_async(&rt).iter(|| async { sandbox.invoke(&plugin, &client, invoke()).await });
    });
    group.bench_function("bare_wasmtime", |b| {
        b.to_async(&rt).iter(|| async { bare.noop().await });
    });
    group.finish();
    c.bench_function("load_cached_component", |b| {
        b.iter(|| sandbox.load(&testkit()).expect("load"));
    });

    // The ratio, measured in alternating rounds so both sides see the same machine.
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    const ROUNDS: u32 = 10;
    const CALLS: u32 = 300;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..CALLS {
            rt.block_on(sandbox.invoke(&plugin, &client, invoke()));
        }
        ours += t.elapsed();
        let t = Instant::now();
        for _ in 0..CALLS {
            let _ = rt.block_on(bare.noop());
        }
        theirs += t.elapsed();
    }
    let n = ROUNDS * CALLS;
    println!(
        "noop step: offramp {:.1} µs, bare wasmtime {:.1} µs per call ({n} calls each, alternating): {:.2}× (limit 1.25×)",
        ours.as_secs_f64() * 1e6 / f64::from(n),
        theirs.as_secs_f64() * 1e6 / f64::from(n),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
