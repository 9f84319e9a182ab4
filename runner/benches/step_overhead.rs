//! Per-step sandbox overhead.
//!
//! `cargo bench -p offramp --bench step_overhead`
//!
//! - `noop_step`: a fresh store + instance of the testkit plugin, one `run` call doing nothing,
//!   drop — what every step attempt pays before the plugin's own work.
//! - `load_cached_component`: read a plugin file, hash it, load its compiled form from the disk
//!   cache and link it (`InstancePre`) — what a process pays per plugin at start.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use offramp::sandbox::{AttemptResult, Invoke, Sandbox};

fn testkit() -> PathBuf {
    PathBuf::from(offramp::TEST_PLUGINS_DIR).join("testkit.wasm")
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
    // Sanity: the benchmarked call really succeeds.
    let report = rt.block_on(sandbox.invoke(&plugin, &client, invoke()));
    assert!(matches!(report.result, AttemptResult::Done { .. }), "{:?}", report.result);

    c.bench_function("noop_step", |b| {
        b.to_async(&rt).iter(|| async { sandbox.invoke(&plugin, &client, invoke()).await });
    });
    c.bench_function("load_cached_component", |b| {
        b.iter(|| sandbox.load(&testkit()).expect("load"));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
