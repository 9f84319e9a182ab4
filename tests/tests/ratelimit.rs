//! Vendor rate limits shared by every run: many runs at once against an Okta that enforces its
//! per-window limit (429 `E0000047` with Okta's headers). A 429 is a wait in the host, never a
//! failed step; the operator's `network.rate_limits` keeps requests under the vendor's limit.

mod common;

use common::{Harness, TOKEN, tokens};
use offramp::engine::{EngineConfig, StartRequest};
use offramp::http::NetworkConfig;
use offramp::http::limiter::RateLimitConfig;
use offramp::secrets::SecretSource;
use offramp::store::RunStatus;
use offramp_mock::MockServer;

const LOOKUP: &str = r#"
version: 1
name: lookup
vars: { okta_url: x }
steps:
  - id: okta_user
    uses: okta
    with: { action: lookup, org_url: "{{ vars.okta_url }}", user: alice@example.com }
    retry: { attempts: 1 }
    allow: ["{{ vars.okta_url }}"]
    credentials: [{ host: "{{ vars.okta_url }}", secret: OKTA_API_TOKEN, format: "SSWS {secret}" }]
"#;

async fn harness() -> Harness {
    let mock = MockServer::start(TOKEN).await.expect("mock starts");
    let network = NetworkConfig { allow_private: vec!["127.0.0.1".into()], ..Default::default() }
        .policy()
        .expect("a valid policy");
    let config = EngineConfig { network, ..EngineConfig::default() };
    Harness::assemble(mock, SecretSource::fixed(tokens().secrets()), config).await
}

/// `n` runs of the lookup, all started at once; each one's final status and step attempts.
async fn many(h: &Harness, n: usize) -> Vec<(RunStatus, u32)> {
    let plan = h.plan(LOOKUP);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (engine, plan) = (h.engine.clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            let req = StartRequest { inputs: Default::default(), requested_by: "test".into(), dry_run: false };
            let id = engine.start(&plan, req).await.expect("run starts");
            let status = engine.drive(&id).await.expect("drive");
            (id, status)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (id, status) = t.await.expect("task");
        let attempts = h.steps(&id).await["okta_user"].attempts;
        out.push((status, attempts));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendors_429s_are_waited_out_and_no_step_fails() {
    let h = harness().await;
    h.mock.state.okta.set_rate_limit(6, 2);
    let results = many(&h, 24).await;
    for (status, attempts) in &results {
        assert_eq!(*status, RunStatus::Succeeded, "{results:?}");
        assert_eq!(*attempts, 1, "the wait happened in the host, not as a step retry: {results:?}");
    }
    let (refused, served) = h.mock.state.okta.rate_limit_counts();
    assert_eq!(served, 24, "each lookup reached Okta once");
    // The first request goes alone and Okta's headers in its answer say the budget; each new
    // window is learnt the same way, so the burst never lands on a window at once (before,
    // 14 to 27 of these 24 lookups' requests were answered 429: everyone went at the start
    // and again together at each reset).
    eprintln!("{refused} of {} requests answered 429", refused + served);
    assert!(refused <= 2, "{refused} answered 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_rate_limit_keeps_every_run_under_the_vendors() {
    // The limit is keyed by origin: the mock first, then the engine.
    let mock = MockServer::start(TOKEN).await.expect("mock starts");
    mock.state.okta.set_rate_limit(6, 2);
    let network = NetworkConfig {
        allow_private: vec!["127.0.0.1".into()],
        // 150 a minute is 5 a 2-second window: under Okta's 6.
        rate_limits: [(mock.url(), RateLimitConfig { per_minute: Some(150), concurrency: Some(4) })]
            .into_iter()
            .collect(),
        ..Default::default()
    }
    .policy()
    .expect("a valid policy");
    let config = EngineConfig { network, ..EngineConfig::default() };
    let h = Harness::assemble(mock, SecretSource::fixed(tokens().secrets()), config).await;
    let results = many(&h, 15).await;
    assert!(results.iter().all(|(s, a)| *s == RunStatus::Succeeded && *a == 1), "{results:?}");
    let (refused, served) = h.mock.state.okta.rate_limit_counts();
    assert_eq!((refused, served), (0, 15), "paced under the vendor's limit: no 429 at all");
}
