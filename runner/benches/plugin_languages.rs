//! What a step costs in each plugin language: the same work — one lookup, one authenticated GET
//! to the mock vendor through the gate, parse the JSON answer, report `unchanged` — by the Rust
//! `okta` plugin, the Python `zoom` plugin (componentize-py) and the JavaScript `atlassian`
//! plugin (componentize-js).
//!
//! `scripts/tools.sh && cargo bench -p offramp --bench plugin_languages`
//!
//! - `lookup_step/<lang>`: a fresh store + instance, the `run` call with its request, drop.
//! - `load_cached/<lang>`: read the file, hash it, load the compiled form from the disk cache,
//!   link it — what a process pays per plugin at start.
//! - printed once, before: each component's size and its first compile (no cache).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use offramp::pipeline::{CredentialPlan, Grant, Origin};
use offramp::sandbox::{AttemptResult, Invoke, Sandbox};
use offramp::secrets::Secret;
use offramp_mock::{MockServer, MockState, MockTokens};

fn plugin(name: &str) -> PathBuf {
    PathBuf::from(offramp::BUILTIN_PLUGINS_DIR).join(format!("{name}.wasm"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let tokens = MockTokens::from_seed("bench");
    let mock = rt.block_on(MockServer::start_with(MockState::sample(&tokens))).expect("mock");
    let url = mock.url();
    let origin = Origin::parse(&url).expect("origin");
    let policy = offramp::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).expect("policy");
    let client = offramp::http::GateClient::new(policy).expect("client");
    // (language, plugin, input, credential header format, token) — each answer is `unchanged`.
    let cases = [
        (
            "rust",
            "okta",
            serde_json::json!({ "action": "lookup", "org_url": url, "user": "alice@example.com" }),
            "SSWS {secret}",
            tokens.okta.clone(),
        ),
        (
            "python",
            "zoom",
            serde_json::json!({ "email": "bob@example.com", "api_url": url }),
            "Bearer {secret}",
            tokens.zoom.clone(),
        ),
        (
            "js",
            "atlassian",
            serde_json::json!({ "account_id": "5f8d2c1b9e3a4d0012a4b6c2", "api_url": url }),
            "Bearer {secret}",
            tokens.atlassian.clone(),
        ),
    ];
    let invoke = |input: &serde_json::Value, format: &str, token: &str| Invoke {
        input: input.clone(),
        allow: vec![Grant::origin(origin.clone())],
        credentials: vec![(
            CredentialPlan {
                origin: origin.clone(),
                secret: "TOKEN".into(),
                header: "authorization".into(),
                format: format.into(),
            },
            Secret::new(token),
        )],
        timeout: Duration::from_secs(30),
        memory_bytes: 256 * 1024 * 1024,
        dry_run: false,
    };

    let cache = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new(Some(cache.path().to_path_buf())).expect("sandbox");
    let mut loaded = Vec::new();
    for (lang, name, input, format, token) in &cases {
        let size = std::fs::metadata(plugin(name)).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let p = sandbox.plugin(&plugin(name)).unwrap_or_else(|e| panic!("{name} loads: {e}"));
        println!(
            "{lang:<7} {name:<10} {:>6.1} MiB, first compile {:>6.2} s",
            size as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        // Sanity: the benchmarked call really does the lookup and answers `unchanged`.
        let report = rt.block_on(sandbox.invoke(&p, &client, invoke(input, format, token)));
        assert!(matches!(report.result, AttemptResult::Done { .. }), "{lang}: {:?}", report.result);
        loaded.push((*lang, *name, p, input.clone(), *format, token.clone()));
    }

    let mut group = c.benchmark_group("lookup_step");
    for (lang, _, p, input, format, token) in &loaded {
        group.bench_function(*lang, |b| {
            b.to_async(&rt).iter(|| async { sandbox.invoke(p, &client, invoke(input, format, token)).await });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("load_cached");
    for (lang, name, ..) in &loaded {
        group.bench_function(*lang, |b| b.iter(|| sandbox.load(&plugin(name)).expect("load")));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
