//! The engine end to end: real plugins in the real sandbox, a real SQLite results table.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, TOKEN};
use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;
use serde_json::json;

const VARS: &str = "vars: { okta_url: http://placeholder }\n";

#[tokio::test]
async fn dag_runs_in_order_and_independent_steps_overlap() {
    let h = Harness::new().await;
    // b and c both need a; each makes a request the mock holds for 400 ms. If they ran one
    // after the other, their time windows could not overlap.
    h.mock.state.inject(Fault {
        method: None,
        path_contains: "/__echo/slow".into(),
        status: 0,
        times: 2,
        delay_ms: 400,
    });
    let yaml = format!(
        r#"version: 1
name: dag
{VARS}steps:
  - id: a
    uses: testkit
    with: {{ mode: echo, value: 1 }}
  - id: b
    needs: [a]
    uses: testkit
    with: {{ mode: http, request: {{ url: "{{{{ vars.okta_url }}}}/__echo/slow/b" }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
  - id: c
    needs: [a]
    uses: testkit
    with: {{ mode: http, request: {{ url: "{{{{ vars.okta_url }}}}/__echo/slow/c" }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
  - id: d
    needs: [b, c]
    uses: testkit
    with: {{ mode: echo, value: done }}
"#
    );
    let (id, status) = h.run(&yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    for step in ["a", "b", "c", "d"] {
        assert_eq!(s[step].status, StepStatus::Succeeded, "{step}: {:?}", s[step].error);
    }
    let t = |step: &str, f: fn(&offramp::store::StepRecord) -> &Option<String>| f(&s[step]).clone().unwrap();
    let started = |x: &str| t(x, |r| &r.started_at);
    let finished = |x: &str| t(x, |r| &r.finished_at);
    assert!(finished("a") <= started("b") && finished("a") <= started("c"), "b and c start after a");
    assert!(finished("b") <= started("d") && finished("c") <= started("d"), "d starts after b and c");
    assert!(started("b") < finished("c") && started("c") < finished("b"), "b and c ran at the same time");
}

#[tokio::test]
async fn outputs_flow_into_later_steps_through_templates() {
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: templating
inputs:
  email: { type: email, required: true }
  count: { type: int, default: 2 }
steps:
  - id: first
    uses: testkit
    with: { mode: echo, value: { groups: [eng, vpn], user: "{{ inputs.email }}" } }
  - id: second
    needs: [first]
    uses: testkit
    with:
      mode: echo
      value:
        groups: "{{ steps.first.output.value.groups }}"
        sentence: "{{ steps.first.output.value.user }} is in {{ steps.first.output.value.groups | length }} groups"
        count: "{{ inputs.count }}"
        run: "{{ run.id }}"
"#;
    let (id, status) = h.run(yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    let value = &s["second"].output.as_ref().unwrap()["value"];
    assert_eq!(value["groups"], json!(["eng", "vpn"]), "a sole expression keeps its type");
    assert_eq!(value["sentence"], "alice@example.com is in 2 groups");
    assert_eq!(value["count"], json!(2));
    assert_eq!(value["run"], json!(id));
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_idempotency_key() {
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: retry
steps:
  - id: flaky
    uses: testkit
    with: { mode: fail, times: 2, kind: transient }
    retry: { attempts: 3, backoff: { initial: 10ms, max: 50ms, factor: 2 } }
"#;
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = &h.steps(&id).await["flaky"];
    assert_eq!((s.status, s.attempts), (StepStatus::Succeeded, 3));
    let out = s.output.as_ref().unwrap();
    assert_eq!(out["attempt"], 3);
    assert_eq!(out["idempotency_key"], json!(s.idempotency_key), "the plugin got the row's key");
    assert_eq!(s.idempotency_key, offramp::engine::idempotency_key(&id, "flaky"));
    let events = h.store().events(&id).await.unwrap();
    let failed: Vec<_> = events.iter().filter(|e| e.kind == "attempt_failed").collect();
    assert_eq!(failed.len(), 2);
    assert!(failed[0].detail["error"].as_str().unwrap().contains("planned failure on attempt 1"));
}

#[tokio::test]
async fn retries_run_out_and_the_run_pauses() {
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: exhausted
steps:
  - id: flaky
    uses: testkit
    with: { mode: fail, times: 5 }
    retry: { attempts: 2, backoff: { initial: 10ms, max: 10ms } }
  - id: after
    needs: [flaky]
    uses: testkit
    with: { mode: noop }
"#;
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = h.steps(&id).await;
    assert_eq!((s["flaky"].status, s["flaky"].attempts), (StepStatus::Paused, 2));
    assert_eq!(s["after"].status, StepStatus::Pending, "nothing after a paused step starts");
}

#[tokio::test]
async fn a_looping_plugin_is_stopped_by_its_timeout() {
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: loop
steps:
  - id: spin
    uses: testkit
    with: { mode: loop }
    timeout: 300ms
    retry: { attempts: 1 }
    on_failure: abort
  - id: next
    needs: [spin]
    uses: testkit
    with: { mode: noop }
"#;
    let started = Instant::now();
    let (id, status) = h.run(yaml, &[]).await;
    let took = started.elapsed();
    assert_eq!(status, RunStatus::Failed);
    let s = h.steps(&id).await;
    assert_eq!(s["spin"].status, StepStatus::Failed);
    assert!(s["spin"].error.as_deref().unwrap().contains("timed out after 300ms"), "{:?}", s["spin"].error);
    assert_eq!(s["next"].status, StepStatus::Skipped);
    // Compilation is cached by the shared sandbox; allow generous slack for a loaded CI box.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The host is unharmed: the same engine runs a normal step right after.
    let (_, ok) =
        h.run("version: 1\nname: after\nsteps:\n  - { id: fine, uses: testkit, with: { mode: noop } }\n", &[]).await;
    assert_eq!(ok, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_memory_hungry_plugin_fails_cleanly() {
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: memory
steps:
  - id: hog
    uses: testkit
    with: { mode: memory, mb: 200 }
    memory: 32MiB
    on_failure: continue
  - id: modest
    uses: testkit
    with: { mode: memory, mb: 8 }
    memory: 32MiB
"#;
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Failed, "a failed step with on_failure: continue fails the run at the end");
    let s = h.steps(&id).await;
    assert_eq!(s["hog"].status, StepStatus::Failed);
    assert!(s["hog"].error.as_deref().unwrap().contains("ran out of memory"), "{:?}", s["hog"].error);
    assert!(s["hog"].error.as_deref().unwrap().contains("32 MiB"));
    assert_eq!(s["modest"].status, StepStatus::Succeeded, "{:?}", s["modest"].error);
    assert_eq!(s["modest"].output.as_ref().unwrap()["allocated_mb"], 8);
}

#[tokio::test]
async fn a_panicking_plugin_becomes_a_failed_step_with_its_message() {
    let h = Harness::new().await;
    let yaml =
        "version: 1\nname: p\nsteps:\n  - { id: boom, uses: testkit, with: { mode: panic }, on_failure: abort }\n";
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Failed);
    let s = &h.steps(&id).await["boom"];
    assert!(s.error.as_deref().unwrap().contains("crashed"), "{:?}", s.error);
    assert!(s.error.as_deref().unwrap().contains("testkit was asked to panic"), "{:?}", s.error);
    assert!(s.log.iter().any(|l| l.contains("testkit was asked to panic")), "{:?}", s.log);
}

#[tokio::test]
async fn a_host_outside_the_allow_list_is_refused() {
    let h = Harness::new().await;
    let yaml = format!(
        r#"version: 1
name: deny
{VARS}steps:
  - id: sneaky
    uses: testkit
    with: {{ mode: http, request: {{ url: "{{{{ vars.okta_url }}}}/__echo/x" }} }}
    allow: ["https://example.okta.com"]
    on_failure: abort
"#
    );
    let (id, status) = h.run(&yaml, &[]).await;
    assert_eq!(status, RunStatus::Failed);
    let s = &h.steps(&id).await["sneaky"];
    let err = s.error.as_deref().unwrap();
    assert!(err.contains("request denied by the host") && err.contains("is not in this step's `allow:` list"), "{err}");
    assert!(h.mock.state.requests().is_empty(), "nothing reached the mock: {:?}", h.mock.state.requests());
    assert_eq!(s.requests[0]["method"], "GET");
    assert!(s.requests[0]["outcome"].as_str().unwrap().starts_with("denied"));
}

#[tokio::test]
async fn the_plugin_cannot_see_or_override_its_credential() {
    let h = Harness::new().await;
    let yaml = format!(
        r#"version: 1
name: creds
{VARS}steps:
  - id: env
    uses: testkit
    with: {{ mode: env }}
  - id: echo
    uses: testkit
    with:
      mode: http
      request:
        url: "{{{{ vars.okta_url }}}}/__echo/who"
        headers: [[authorization, "Bearer plugin-chosen"], [x-trace, "1"]]
    allow: ["{{{{ vars.okta_url }}}}"]
    credentials:
      - {{ host: "{{{{ vars.okta_url }}}}", secret: OKTA_API_TOKEN, format: "SSWS {{secret}}" }}
"#
    );
    let (id, status) = h.run(&yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    // The host injected the real credential, replacing the plugin's own Authorization header.
    let seen = h.mock.state.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("SSWS {TOKEN}").as_str()));
    // The mock echoed the header back, but the plugin only ever saw it redacted.
    let body = s["echo"].output.as_ref().unwrap()["body"].as_str().unwrap().to_string();
    // The whole header value the host formatted is one redaction.
    assert!(body.contains("\"authorization\":\"[REDACTED]\""), "{body}");
    assert!(body.contains("\"x-trace\":\"1\""), "other headers pass: {body}");
    // Nowhere in the results table: outputs, logs, requests, events.
    let everything = format!("{:?} {:?}", h.store().steps(&id).await.unwrap(), h.store().events(&id).await.unwrap());
    assert!(!everything.contains(TOKEN));
    assert_eq!(s["echo"].requests[0]["credential"], "OKTA_API_TOKEN");
    // And the environment is empty.
    assert_eq!(s["env"].output.as_ref().unwrap()["vars"], json!([]));
    let db = std::fs::read(h.dir.path().join("offramp.db")).unwrap();
    assert!(!db.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token is not in the database file");
}

#[tokio::test]
async fn a_plugin_cannot_read_files() {
    let h = Harness::new().await;
    let yaml = "version: 1\nname: f\nsteps:\n  - { id: read, uses: testkit, with: { mode: file, path: /etc/passwd }, on_failure: abort }\n";
    let (id, _) = h.run(yaml, &[]).await;
    let s = &h.steps(&id).await["read"];
    assert_eq!(s.status, StepStatus::Failed);
    assert!(s.error.as_deref().unwrap().contains("cannot read /etc/passwd"), "{:?}", s.error);
}

#[tokio::test]
async fn a_false_condition_skips_the_step_and_its_dependents() {
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: cond
inputs: { flag: { type: bool, default: false } }
steps:
  - id: gate
    if: "inputs.flag"
    uses: testkit
    with: { mode: noop }
  - id: after_gate
    needs: [gate]
    uses: testkit
    with: { mode: noop }
  - id: independent
    uses: testkit
    with: { mode: noop }
"#;
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!(s["gate"].status, StepStatus::Skipped);
    assert_eq!(s["gate"].error.as_deref(), Some("condition `inputs.flag` was false"));
    assert_eq!(s["after_gate"].status, StepStatus::Skipped);
    assert_eq!(s["after_gate"].error.as_deref(), Some("needs `gate`, which was skipped"));
    assert_eq!(s["independent"].status, StepStatus::Unchanged);
}

#[tokio::test]
async fn decisions_retry_skip_and_abort_and_only_one_wins() {
    use offramp::engine::{Decision, DecisionOutcome};
    let h = Harness::new().await;
    let yaml = r#"version: 1
name: decide
steps:
  - id: flaky
    uses: testkit
    with: { mode: fail, times: 1, kind: permanent }
  - id: after
    needs: [flaky]
    uses: testkit
    with: { mode: noop }
"#;
    // Retry: attempt 2 succeeds and the run finishes.
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Paused);
    let e = &h.engine;
    let (a, b) = tokio::join!(
        e.decide(&id, "flaky", Some(1), Decision::Retry, "ann"),
        e.decide(&id, "flaky", Some(1), Decision::Abort, "bob"),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| **o == DecisionOutcome::Applied).count(), 1, "{outcomes:?}");
    let winner = if outcomes[0] == DecisionOutcome::Applied { "retry" } else { "abort" };
    let status = e.drive(&id).await.unwrap();
    if winner == "retry" {
        assert_eq!(status, RunStatus::Succeeded);
        assert_eq!(h.steps(&id).await["flaky"].attempts, 2);
    } else {
        assert_eq!(status, RunStatus::Aborted);
    }
    // A stale click (the step moved on) is a no-op that says who handled it.
    let again = e.decide(&id, "flaky", Some(1), Decision::Skip, "cat").await.unwrap();
    assert!(
        matches!(again, DecisionOutcome::AlreadyHandled { by: Some(ref by), .. } if by.contains(if winner == "retry" { "ann" } else { "bob" })),
        "{again:?}"
    );

    // Skip: the step is skipped by a person, and the steps after it run.
    let (id, _) = h.run(yaml, &[]).await;
    assert_eq!(e.decide(&id, "flaky", None, Decision::Skip, "ann").await.unwrap(), DecisionOutcome::Applied);
    assert_eq!(e.drive(&id).await.unwrap(), RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!(s["flaky"].status, StepStatus::Skipped);
    assert_eq!(s["after"].status, StepStatus::Unchanged);

    // Abort: the run ends, nothing else runs.
    let (id, _) = h.run(yaml, &[]).await;
    assert_eq!(e.decide(&id, "flaky", None, Decision::Abort, "ann").await.unwrap(), DecisionOutcome::Applied);
    assert_eq!(e.drive(&id).await.unwrap(), RunStatus::Aborted);
    let s = h.steps(&id).await;
    assert_eq!(s["flaky"].status, StepStatus::Failed);
    assert_eq!(s["after"].status, StepStatus::Skipped);
}

#[tokio::test]
async fn the_okta_pipeline_offboards_alice_and_absorbs_a_503() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/lifecycle/suspend".into(),
        status: 503,
        times: 1,
        delay_ms: 0,
    });
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/okta.yaml")).unwrap();
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["lookup"].status, StepStatus::Unchanged);
    assert_eq!((s["suspend"].status, s["suspend"].attempts), (StepStatus::Succeeded, 2));
    assert_eq!(s["remove_groups"].output.as_ref().unwrap()["removed"], json!(["Engineering", "VPN users"]));
    let alice = h.mock.state.okta.user("alice@example.com").unwrap();
    assert_eq!(alice.status, "DEPROVISIONED");
    assert_eq!(alice.groups, vec!["00g1everyone", "00g4sfdc"], "Everyone and app groups stay");
    assert!(h.mock.state.requests().iter().all(|r| r.authorization.as_deref() == Some(&format!("SSWS {TOKEN}"))));

    // Bob is already suspended: suspend is `unchanged`, the rest still runs.
    let (id, status) = h.run(&yaml, &[("email", "bob@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(h.steps(&id).await["suspend"].status, StepStatus::Unchanged);
    // Carol is deprovisioned: the condition skips suspend and everything after it.
    let (id, status) = h.run(&yaml, &[("email", "carol@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!(s["suspend"].status, StepStatus::Skipped);
    assert_eq!(s["deactivate"].status, StepStatus::Skipped);
}

#[tokio::test]
async fn okta_rate_limits_are_waited_out_in_the_host() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/api/v1/users/".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let yaml = format!(
        r#"version: 1
name: rl
{VARS}steps:
  - id: lookup
    uses: okta
    with: {{ action: lookup, org_url: "{{{{ vars.okta_url }}}}", user: alice@example.com }}
    retry: {{ attempts: 2, backoff: {{ initial: 10ms, max: 10ms }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
    credentials: [{{ host: "{{{{ vars.okta_url }}}}", secret: OKTA_API_TOKEN, format: "SSWS {{secret}}" }}]
"#
    );
    let (id, status) = h.run(&yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    // The 429 E0000047 never reached the plugin: the host waited for X-Rate-Limit-Reset and
    // sent the request again, within the one attempt.
    let s = &h.steps(&id).await["lookup"];
    assert_eq!(s.attempts, 1);
    assert_eq!(common::rate_limit_waits(s), 1, "{}", s.requests);
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
    let seen: Vec<u16> = h.mock.state.requests().iter().map(|r| r.status).collect();
    assert_eq!(seen, [429, 200]);
}

/// When the vendor's wait does not fit in the step's time, the plugin gets the 429 and the
/// step is retried after the wait the plugin reads from the headers.
#[tokio::test]
async fn a_rate_limit_longer_than_the_step_reaches_the_plugin() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("PATCH".into()),
        path_contains: "/v1.0/users/".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let yaml = r#"version: 1
name: rl
vars: { graph_url: x }
steps:
  - id: disable
    uses: graph
    with: { action: disable, api_url: "{{ vars.graph_url }}", user: alice@example.com }
    timeout: 900ms
    retry: { attempts: 2, backoff: { initial: 10ms, max: 10ms } }
    allow: ["{{ vars.graph_url }}"]
    credentials: [{ host: "{{ vars.graph_url }}", secret: GRAPH_ACCESS_TOKEN }]
"#;
    let started = Instant::now();
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(h.steps(&id).await["disable"].attempts, 2);
    let events = h.store().events(&id).await.unwrap();
    let failed = events.iter().find(|e| e.kind == "attempt_failed").expect("one failed attempt");
    assert!(failed.detail["error"].as_str().unwrap().contains("Graph TooManyRequests (429)"), "{}", failed.detail);
    // Retry-After: 1 — the step's retry honours it, not the 10ms backoff.
    assert!(failed.detail["retry_in_ms"].as_u64().unwrap() >= 1000, "{}", failed.detail);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn dry_run_sends_no_mutating_request() {
    let h = Harness::new().await;
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/okta.yaml")).unwrap();
    let plan = h.plan(&yaml);
    let inputs = [("email".to_string(), "alice@example.com".to_string())].into_iter().collect();
    let id = h
        .engine
        .start(&plan, offramp::engine::StartRequest { inputs, requested_by: "t".into(), dry_run: true })
        .await
        .unwrap();
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "{:?}", h.mock.state.requests());
    assert_eq!(h.mock.state.okta.user("alice@example.com").unwrap().status, "ACTIVE");
    let s = h.steps(&id).await;
    assert_eq!(s["suspend"].output.as_ref().unwrap()["would"], "suspend");
    assert_eq!(s["suspend"].requests.as_array().unwrap().iter().filter(|r| r["dry_run"] == true).count(), 1);
}

#[tokio::test]
async fn wasi_http_goes_through_the_same_policy() {
    let h = Harness::new().await;
    let yaml = format!(
        r#"version: 1
name: wasi-http
{VARS}steps:
  - id: allowed
    uses: testkit
    with: {{ mode: wasi_http, request: {{ url: "{{{{ vars.okta_url }}}}/__echo/std", headers: [[authorization, "Bearer mine"]] }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
    credentials: [{{ host: "{{{{ vars.okta_url }}}}", secret: OKTA_API_TOKEN, format: "SSWS {{secret}}" }}]
  - id: refused
    uses: testkit
    with: {{ mode: wasi_http, request: {{ url: "http://127.0.0.1:9/__echo/nope" }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
    on_failure: continue
"#
    );
    let (id, _) = h.run(&yaml, &[]).await;
    let s = h.steps(&id).await;
    assert_eq!(s["allowed"].status, StepStatus::Succeeded, "{:?}", s["allowed"].error);
    let out = s["allowed"].output.as_ref().unwrap();
    assert_eq!(out["status"], 200);
    assert!(out["body"].as_str().unwrap().contains("\"authorization\":\"[REDACTED]\""), "{out}");
    let seen = h.mock.state.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("SSWS {TOKEN}").as_str()));
    assert_eq!(s["refused"].status, StepStatus::Failed);
    assert!(s["refused"].error.as_deref().unwrap().contains("HttpRequestDenied"), "{:?}", s["refused"].error);
    assert!(s["refused"].requests[0]["outcome"].as_str().unwrap().contains("not in this step's `allow:` list"));
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_for_the_next_process() {
    let cache = tempfile::tempdir().unwrap();
    let path = std::path::PathBuf::from(offramp::TEST_PLUGINS_DIR).join("testkit.wasm");
    let first = offramp::sandbox::Sandbox::new(Some(cache.path().to_path_buf())).unwrap();
    first.load(&path).unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "cwasm"));
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    // A second engine (as in a new process) loads the compiled file instead of compiling again.
    let second = offramp::sandbox::Sandbox::new(Some(cache.path().to_path_buf())).unwrap();
    let plugin = second.load(&path).unwrap();
    assert_eq!(std::fs::metadata(&files[0]).unwrap().modified().unwrap(), written, "not rewritten");
    let report = second
        .invoke(
            &plugin,
            &offramp::http::GateClient::new(Default::default()).unwrap(),
            offramp::sandbox::Invoke {
                input: json!({ "mode": "echo", "value": 7 }),
                allow: vec![],
                credentials: vec![],
                timeout: Duration::from_secs(5),
                memory_bytes: 64 << 20,
                dry_run: false,
            },
        )
        .await;
    assert!(matches!(report.result, offramp::sandbox::AttemptResult::Done { ref output, .. } if output["value"] == 7));
    // A corrupt cache entry is ignored and replaced, not trusted.
    std::fs::write(&files[0], b"garbage").unwrap();
    let third = offramp::sandbox::Sandbox::new(Some(cache.path().to_path_buf())).unwrap();
    assert!(third.load(&path).is_ok());
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
}

/// A warm-up (serve type-checking every pipeline at start) compiles on a thread of its own: a
/// plugin a step needs meanwhile is not queued behind it. Before, a small component waited for
/// the whole of the Python one's compile (0.4 s alone; 14 s behind it), and a run recovered at
/// start waited for every pipeline's plugins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_a_step_needs_is_not_queued_behind_a_warm_up() {
    let dir = std::path::PathBuf::from(offramp::TEST_PLUGINS_DIR);
    // No disk cache: both really compile.
    let sandbox = Arc::new(offramp::sandbox::Sandbox::new(None).unwrap());
    let started = Instant::now();
    let warm_up = tokio::spawn({
        let (sandbox, zoom) = (sandbox.clone(), dir.join("zoom.wasm"));
        offramp::sandbox::in_background(async move {
            sandbox.plugin_async(&zoom).await.unwrap();
            started.elapsed()
        })
    });
    // Let the warm-up get going, then a step's load arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    sandbox.plugin_async(&dir.join("testkit.wasm")).await.unwrap();
    let needed = asked.elapsed();
    let warm_up = warm_up.await.unwrap();
    assert!(
        needed * 4 < warm_up,
        "the step's plugin took {needed:?} to load, the warm-up beside it {warm_up:?}: it waited for the warm-up"
    );
}

#[tokio::test]
async fn okta_errors_become_readable_step_errors() {
    let h = Harness::new().await;
    let step = |user: &str, secret: &str| {
        format!(
            r#"version: 1
name: okta-errors
{VARS}steps:
  - id: lookup
    uses: okta
    with: {{ action: lookup, org_url: "{{{{ vars.okta_url }}}}", user: "{user}" }}
    retry: {{ attempts: 1 }}
    allow: ["{{{{ vars.okta_url }}}}"]
    credentials: [{{ host: "{{{{ vars.okta_url }}}}", secret: {secret}, format: "SSWS {{secret}}" }}]
"#
        )
    };
    // 404 E0000007: a permanent failure naming the user; the run pauses for a person.
    let (id, status) = h.run(&step("nobody@example.com", "OKTA_API_TOKEN"), &[]).await;
    assert_eq!(status, RunStatus::Paused);
    let err = h.steps(&id).await["lookup"].error.clone().unwrap();
    assert_eq!(err, "no Okta user \"nobody@example.com\" (E0000007)");
    // A secret the operator never set: the step pauses before any request is sent.
    let (id, status) = h.run(&step("alice@example.com", "NOT_SET_ANYWHERE"), &[]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = &h.steps(&id).await["lookup"];
    assert!(s.error.as_deref().unwrap().contains("secret `NOT_SET_ANYWHERE` is not set"), "{:?}", s.error);
    assert_eq!(s.attempts, 0, "the plugin never ran");
    assert_eq!(h.mock.state.requests().len(), 1, "only the first run reached the mock");
}

#[tokio::test]
async fn the_http_plugin_checks_statuses_and_retries_server_errors() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/__echo/hook".into(),
        status: 500,
        times: 1,
        delay_ms: 0,
    });
    let yaml = format!(
        r#"version: 1
name: http
{VARS}steps:
  - id: post
    uses: http
    with: {{ method: POST, url: "{{{{ vars.okta_url }}}}/__echo/hook", json: {{ user: alice }}, headers: {{ x-source: offramp }} }}
    retry: {{ attempts: 2, backoff: {{ initial: 10ms, max: 10ms }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
  - id: wrong_status
    uses: http
    with: {{ url: "{{{{ vars.okta_url }}}}/__echo/x", expect: [201] }}
    allow: ["{{{{ vars.okta_url }}}}"]
    on_failure: continue
"#
    );
    let (id, status) = h.run(&yaml, &[]).await;
    assert_eq!(status, RunStatus::Failed);
    let s = h.steps(&id).await;
    assert_eq!((s["post"].status, s["post"].attempts), (StepStatus::Succeeded, 2));
    let body = &s["post"].output.as_ref().unwrap()["body"];
    assert_eq!(body["body"], "{\"user\":\"alice\"}");
    assert_eq!(body["headers"]["x-source"], "offramp");
    assert_eq!(body["headers"]["content-type"], "application/json");
    assert_eq!(s["wrong_status"].status, StepStatus::Failed);
    assert!(s["wrong_status"].error.as_deref().unwrap().starts_with("GET "), "{:?}", s["wrong_status"].error);
    assert!(s["wrong_status"].error.as_deref().unwrap().contains("answered 200"));
}

#[tokio::test]
async fn a_decision_taken_while_other_steps_still_run_is_picked_up() {
    use offramp::engine::{Decision, DecisionOutcome};
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: None,
        path_contains: "/__echo/slow".into(),
        status: 0,
        times: 1,
        delay_ms: 1500,
    });
    let yaml = format!(
        r#"version: 1
name: decide-while-running
{VARS}steps:
  - id: quick_fail
    uses: testkit
    with: {{ mode: fail, times: 1, kind: permanent }}
  - id: slow
    uses: testkit
    with: {{ mode: http, request: {{ url: "{{{{ vars.okta_url }}}}/__echo/slow" }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
"#
    );
    let id = h.start(&yaml, &[]).await;
    let engine = h.engine.clone();
    let driver = tokio::spawn({
        let id = id.clone();
        async move { engine.drive(&id).await }
    });
    // Wait until quick_fail is paused while slow is still running, then retry it.
    let mut decided = false;
    for _ in 0..100 {
        let s = h.steps(&id).await;
        if s["quick_fail"].status == StepStatus::Paused && s["slow"].status == StepStatus::Running {
            let outcome = h.engine.decide(&id, "quick_fail", None, Decision::Retry, "ann").await.unwrap();
            assert_eq!(outcome, DecisionOutcome::Applied);
            decided = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(decided, "never saw quick_fail paused while slow ran");
    let status = driver.await.unwrap().unwrap();
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!((s["quick_fail"].status, s["quick_fail"].attempts), (StepStatus::Succeeded, 2));
    assert_eq!(s["slow"].status, StepStatus::Succeeded);
}

/// What a run looks like after its process died while `second` was running attempt 1: the
/// first step finished, the second claimed (`running`, attempt 1), the run `running`.
/// The lease owner of a process that was killed.
const DEAD: &str = "host:4242:dead";

async fn crashed_run(h: &Harness, idempotent: bool) -> String {
    use offramp::store::{Event, Guard, StepChange};
    let yaml = format!(
        r#"version: 1
name: crash
steps:
  - id: first
    uses: testkit
    with: {{ mode: echo, value: one }}
  - id: second
    needs: [first]
    uses: testkit
    idempotent: {idempotent}
    with: {{ mode: echo, value: "{{{{ run.id }}}}" }}
  - id: third
    needs: [second]
    uses: testkit
    with: {{ mode: noop }}
"#
    );
    let id = h.start(&yaml, &[]).await;
    let store = h.store();
    // The process that was driving it died: its lease has run out.
    store.release_run(&id, h.engine.owner()).await.unwrap();
    assert!(store.claim_run(&id, DEAD, offramp::store::now_ms(), 0).await.unwrap());
    let ev = |k: &str| Event::new("engine", k, json!({}));
    assert!(
        store.set_run_status(&id, &[RunStatus::Pending], RunStatus::Running, None, ev("run_started")).await.unwrap()
    );
    let finish = StepChange {
        status: Some(StepStatus::Succeeded),
        attempts: Some(1),
        output: Some(json!({ "value": "one" })),
        finished: true,
        ..Default::default()
    };
    assert!(
        store.change_step(&id, "first", &[StepStatus::Pending], None, None, finish, ev("step_finished")).await.unwrap()
    );
    let claim =
        StepChange { status: Some(StepStatus::Running), attempts: Some(1), started: true, ..Default::default() };
    assert!(
        store
            .change_step(
                &id,
                "second",
                &[StepStatus::Pending],
                Some(Guard::Attempt(0)),
                None,
                claim,
                ev("step_started")
            )
            .await
            .unwrap()
    );
    id
}

#[tokio::test]
async fn a_step_interrupted_by_a_crash_runs_again_with_the_same_key_and_the_next_attempt() {
    let h = Harness::new().await;
    let id = crashed_run(&h, true).await;
    let claimed = h.engine.claim_orphans(10).await.unwrap();
    assert_eq!(claimed, [offramp::store::Claimed { run_id: id.clone(), previous_owner: Some(DEAD.into()) }]);
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    let steps = h.steps(&id).await;
    assert_eq!(steps["first"].attempts, 1, "a finished step is not run again");
    assert_eq!(steps["first"].output, Some(json!({ "value": "one" })), "its result is kept");
    assert_eq!(steps["second"].attempts, 2, "the interrupted step runs as attempt 2");
    assert_eq!(steps["second"].idempotency_key, offramp::engine::idempotency_key(&id, "second"));
    assert_eq!(steps["third"].status, StepStatus::Unchanged, "the rest of the run went on");
    assert!(h.engine.claim_orphans(10).await.unwrap().is_empty());
    assert_eq!(h.store().run(&id).await.unwrap().lease, None, "a finished run is nobody's");
}

#[tokio::test]
async fn a_non_idempotent_step_interrupted_by_a_crash_waits_for_a_person() {
    use offramp::engine::{Decision, DecisionOutcome};
    let h = Harness::new().await;
    let id = crashed_run(&h, false).await;
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Paused);
    let steps = h.steps(&id).await;
    let second = &steps["second"];
    assert_eq!((second.status, second.attempts, second.pauses), (StepStatus::Paused, 1, 1));
    assert!(second.error.as_deref().unwrap().starts_with("outcome unknown"), "{:?}", second.error);
    assert_eq!(steps["third"].status, StepStatus::Pending, "nothing after it ran");
    let events = h.store().events(&id).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "step_outcome_unknown"));
    // A person checked: it did not take effect. Retry runs it as attempt 2.
    assert_eq!(h.engine.decide(&id, "second", None, Decision::Retry, "ann").await.unwrap(), DecisionOutcome::Applied);
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    assert_eq!(h.steps(&id).await["second"].attempts, 2);
}

/// A one-step pipeline whose step takes `ms` (the mock holds its request).
fn slow_yaml(ms: u64) -> String {
    format!(
        r#"version: 1
name: slow
{VARS}steps:
  - id: slow
    uses: testkit
    with: {{ mode: http, request: {{ url: "{{{{ vars.okta_url }}}}/__echo/slow?delay_ms={ms}" }} }}
    allow: ["{{{{ vars.okta_url }}}}"]
"#
    )
}

/// A second engine (another process, in effect) on the harness's database.
fn other_engine(h: &Harness, owner: &str, lease: Duration) -> offramp::engine::Engine {
    let config =
        offramp::engine::EngineConfig { owner: owner.into(), lease, network: common::loopback(), ..Default::default() };
    let secrets = offramp::secrets::SecretSource::fixed([("OKTA_API_TOKEN".to_string(), TOKEN.to_string())]);
    offramp::engine::Engine::new(h.store().clone(), common::sandbox(), secrets, config).unwrap()
}

#[tokio::test]
async fn a_run_leased_to_a_live_process_is_left_to_it() {
    let config = offramp::engine::EngineConfig {
        owner: "alive".into(),
        lease: Duration::from_millis(300),
        network: common::loopback(),
        ..Default::default()
    };
    let h = Harness::with_config(config).await;
    let id = h.start(&slow_yaml(1_500), &[]).await;
    let driver = {
        let (engine, id) = (h.engine.clone(), id.clone());
        tokio::spawn(async move { engine.drive(&id).await })
    };
    let other = other_engine(&h, "other", Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(200)).await;
    match other.drive(&id).await {
        Err(offramp::engine::EngineError::Leased { owner, .. }) => assert_eq!(owner, "alive"),
        other => panic!("expected Leased, got {other:?}"),
    }
    // Nor does a second drive in the same process (it would take the running step for an
    // interrupted one).
    match h.engine.drive(&id).await {
        Err(offramp::engine::EngineError::Leased { owner, .. }) => assert!(owner.contains("this process")),
        other => panic!("expected Leased, got {other:?}"),
    }
    // Well past several lease lengths, the heartbeat keeps it: nobody else claims it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(other.claim_orphans(10).await.unwrap().is_empty());
    }
    assert_eq!(driver.await.unwrap().unwrap(), RunStatus::Succeeded);
    let steps = h.steps(&id).await;
    assert_eq!(steps["slow"].attempts, 1, "run once, by its owner");
    let hits = h.mock.state.requests().iter().filter(|r| r.path == "/__echo/slow").count();
    assert_eq!(hits, 1);
}

#[tokio::test]
async fn a_process_that_lost_its_lease_stops_writing() {
    let h = Harness::new().await;
    let id = h.start(&slow_yaml(800), &[]).await;
    let driver = {
        let (engine, id) = (h.engine.clone(), id.clone());
        tokio::spawn(async move { engine.drive(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile another process took the run over (as if this one had stalled past its lease).
    let store = h.store();
    store.release_run(&id, h.engine.owner()).await.unwrap();
    assert!(store.claim_run(&id, "thief", offramp::store::now_ms(), i64::MAX).await.unwrap());
    let result = driver.await.unwrap();
    assert!(result.as_ref().is_err_and(|e| e.is_lease_lost()), "{result:?}");
    // Its outcome was not written: the step is still `running`, for the new owner to run again.
    let steps = h.steps(&id).await;
    assert_eq!((steps["slow"].status, steps["slow"].attempts), (StepStatus::Running, 1));
    assert_eq!(store.run(&id).await.unwrap().lease.unwrap().owner, "thief");
    let events = store.events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "step_finished"), "{events:?}");
}

#[tokio::test]
async fn only_runs_being_driven_keep_their_lease() {
    // A run this process created but is not driving (say its drive failed and could not release
    // it) is not kept alive by the heartbeat: its lease runs out and another process takes it.
    let config = offramp::engine::EngineConfig {
        owner: "alive".into(),
        lease: Duration::from_millis(300),
        network: common::loopback(),
        ..Default::default()
    };
    let h = Harness::with_config(config).await;
    let id = h.start(&slow_yaml(10), &[]).await;
    let other = other_engine(&h, "other", Duration::from_secs(30));
    assert!(other.claim_orphans(10).await.unwrap().is_empty(), "freshly leased to its creator");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let claimed = other.claim_orphans(10).await.unwrap();
    assert_eq!(claimed, [offramp::store::Claimed { run_id: id.clone(), previous_owner: Some("alive".into()) }]);
    assert_eq!(other.drive(&id).await.unwrap(), RunStatus::Succeeded);
}

#[tokio::test]
async fn a_burst_bigger_than_the_pool_waits_its_turn_instead_of_failing() {
    // Two instances at a time, the pool sized for two: sixteen spinning plugins at once (each
    // yields every epoch tick, so all sixteen are in flight together) must all get their turn
    // and end by their own timeout, not fail to instantiate.
    let limits = offramp::sandbox::SandboxLimits { max_instances: 2, ..Default::default() };
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache");
    let sandbox = Arc::new(offramp::sandbox::Sandbox::with_limits(Some(cache), limits).unwrap());
    let plugin =
        Arc::new(sandbox.load(&std::path::PathBuf::from(offramp::TEST_PLUGINS_DIR).join("testkit.wasm")).unwrap());
    let client = offramp::http::GateClient::new(Default::default()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (sandbox, plugin, client) = (sandbox.clone(), plugin.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let inv = offramp::sandbox::Invoke {
                input: json!({ "mode": "loop", "value": i }),
                allow: vec![],
                credentials: vec![],
                timeout: Duration::from_millis(100),
                memory_bytes: 16 << 20,
                dry_run: false,
            };
            sandbox.invoke(&plugin, &client, inv).await.result
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        assert!(
            matches!(result, offramp::sandbox::AttemptResult::Failed { ref message, .. } if message.starts_with("timed out after 100ms")),
            "attempt {i}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_plugin_needing_more_than_the_per_plugin_caps_is_refused_with_the_reason() {
    let limits = offramp::sandbox::SandboxLimits { max_core_instances: 1, ..Default::default() };
    let sandbox = offramp::sandbox::Sandbox::with_limits(None, limits).unwrap();
    let path = std::path::PathBuf::from(offramp::TEST_PLUGINS_DIR).join("testkit.wasm");
    let err = sandbox.load(&path).err().expect("refused").to_string();
    assert!(err.contains("needs more than the sandbox allows"), "{err}");
    assert!(err.contains("exceeds the configured maximum of 1"), "{err}");
}

/// Issue 12 §3: the results table is the audit trail. A mutating request is in the event log
/// before it leaves (`request_sent`), its answer after; an attempt killed after its change
/// leaves the step `running` with only the `request_sent`. The re-run finds nothing to do:
/// the step is recorded as changed by the interrupted attempt — status, note, and the
/// attempt's request in its record — not as `unchanged`.
#[tokio::test]
async fn a_rerun_that_finds_the_work_done_is_credited_to_the_interrupted_attempt() {
    use offramp::store::{Event, StepChange};
    let h = Harness::new().await;
    let yaml = format!(
        "version: 1\nname: audit\nvars: {{ okta_url: \"https://example.okta.com\" }}\ninputs: {{ email: {{ type: email, required: true }} }}\nsteps:\n  - id: suspend\n    uses: okta\n    with: {{ action: suspend, org_url: \"{{{{ vars.okta_url }}}}\", user: \"{{{{ inputs.email }}}}\" }}\n    {}\n    credentials:\n      - {{ host: \"{{{{ vars.okta_url }}}}\", secret: OKTA_API_TOKEN, format: \"SSWS {{secret}}\" }}\n",
        common::allow_mock()
    );
    // A run that goes through: the mutation is written ahead, then answered.
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let events = h.store().events(&id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let sent = kinds.iter().position(|k| *k == "request_sent").expect("written ahead");
    let answered = kinds.iter().position(|k| *k == "request_answered").expect("answered");
    let finished = kinds.iter().position(|k| *k == "step_finished").unwrap();
    assert!(sent < answered && answered < finished, "{kinds:?}");
    assert_eq!(events[answered].detail["outcome"], "200");
    assert!(events[sent].detail["url"].as_str().unwrap().ends_with("/lifecycle/suspend"));

    // What kill -9 right after the suspend leaves: the step running at attempt 1, the request
    // written ahead with no answer, and Bob suspended at Okta.
    let run = h.start(&yaml, &[("email", "bob@example.com")]).await;
    let store = h.store();
    let running =
        StepChange { status: Some(StepStatus::Running), attempts: Some(1), started: true, ..Default::default() };
    assert!(
        store
            .change_step(
                &run,
                "suspend",
                &[StepStatus::Pending],
                None,
                None,
                running,
                Event::new("engine", "step_started", json!({}))
            )
            .await
            .unwrap()
    );
    let url = format!("{}/api/v1/users/00u2bob/lifecycle/suspend", h.mock.url());
    let sent = json!({ "attempt": 1, "seq": 1, "method": "POST", "url": url, "credential": "OKTA_API_TOKEN" });
    store.append_event(Some(&run), Some("suspend"), Event::new("engine", "request_sent", sent)).await.unwrap();
    h.mock.state.okta.update("bob@example.com", |u| u.status = "SUSPENDED".into());
    let before = h.mock.state.requests().len();

    assert_eq!(h.engine.drive(&run).await.unwrap(), RunStatus::Succeeded);
    let s = &h.steps(&run).await["suspend"];
    assert!(
        h.mock.state.requests()[before..].iter().all(|r| r.method == "GET"),
        "the re-run found Bob suspended and sent nothing"
    );
    assert_eq!((s.status, s.attempts), (StepStatus::Succeeded, 2), "{s:?}");
    let note = s.note.clone().unwrap_or_default();
    assert!(note.contains("changed by attempt 1") && note.contains("/lifecycle/suspend"), "{note}");
    let requests = s.requests.as_array().unwrap();
    let first = &requests[0];
    assert_eq!((first["attempt"].as_u64(), first["method"].as_str()), (Some(1), Some("POST")), "{requests:?}");
    assert!(first["outcome"].as_str().unwrap().contains("no answer"), "{first}");
    assert!(requests.iter().any(|r| r["attempt"] == 2), "the re-run's own requests follow");
}
