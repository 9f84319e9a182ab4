//! The zoom plugin (Python, plugins/python/zoom) against the mock Zoom API: deactivation and its
//! idempotency, a leaver without a Zoom user, Zoom's 429 turned into a wait, Zoom's error body
//! turned into a readable message, dry runs, and the access token going to Zoom only.

use offramp::engine::StartRequest;
use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;

use crate::common::{Harness, tokens};

const ALICE_ID: &str = "KDcuGIm1QgePTO8WbOqwIQ";

/// One zoom step; `extra` is appended to the step (e.g. a `retry:` line).
fn pipeline(extra: &str) -> String {
    format!(
        r#"version: 1
name: zoom
vars: {{ zoom_url: https://api.zoom.us }}
inputs: {{ email: {{ type: email, required: true }} }}
steps:
  - id: zoom
    uses: zoom
    with: {{ email: "{{{{ inputs.email }}}}", api_url: "{{{{ vars.zoom_url }}}}" }}
    allow: ["{{{{ vars.zoom_url }}}}"]
    credentials: [{{ host: "{{{{ vars.zoom_url }}}}", secret: ZOOM_ACCESS_TOKEN, header: Authorization, format: "Bearer {{secret}}" }}]
{extra}"#
    )
}

fn zoom_requests(h: &Harness) -> Vec<(String, String)> {
    h.mock.state.requests().into_iter().map(|r| (r.method, r.path)).collect()
}

#[tokio::test]
async fn zoom_deactivates_an_active_user_and_a_second_run_is_unchanged() {
    let h = Harness::new().await;
    let yaml = pipeline("");
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = &h.steps(&id).await["zoom"];
    assert_eq!(status, RunStatus::Succeeded, "{:?} {:?}", s.error, s.log);
    assert_eq!(s.status, StepStatus::Succeeded);
    let out = s.output.as_ref().unwrap();
    assert_eq!(
        (out["id"].as_str(), out["status"].as_str(), out["previous"].as_str()),
        (Some(ALICE_ID), Some("inactive"), Some("active"))
    );
    assert_eq!(h.mock.state.zoom.user("alice@example.com").unwrap().status, "inactive");
    assert_eq!(
        zoom_requests(&h),
        [
            ("GET".to_string(), "/v2/users/alice@example.com".to_string()),
            ("PUT".to_string(), format!("/v2/users/{ALICE_ID}/status")),
        ]
    );
    assert!(s.log.iter().any(|l| l.contains("deactivated Zoom user")), "{:?}", s.log);

    // Again: Alice is inactive now, so nothing is sent but the lookup.
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = &h.steps(&id).await["zoom"];
    assert_eq!(s.status, StepStatus::Unchanged, "{:?}", s.error);
    assert_eq!(s.output.as_ref().unwrap()["status"], "inactive");
    assert_eq!(h.mock.state.requests().iter().filter(|r| r.method == "PUT").count(), 1, "no second PUT");

    // The access token went to Zoom, as the credential said, and nowhere else.
    let expected = format!("Bearer {}", tokens().zoom);
    assert!(h.mock.state.requests().iter().all(|r| r.authorization.as_deref() == Some(expected.as_str())));
    assert!(!s.log.iter().any(|l| l.contains(&tokens().zoom)), "the plugin never saw the token");
}

#[tokio::test]
async fn zoom_leaver_without_a_zoom_user_or_already_inactive_is_unchanged() {
    let h = Harness::new().await;
    let yaml = pipeline("");
    let (id, status) = h.run(&yaml, &[("email", "erin@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = &h.steps(&id).await["zoom"];
    assert_eq!(s.status, StepStatus::Unchanged, "{:?}", s.error);
    assert_eq!(s.output.as_ref().unwrap()["found"], false);
    assert!(s.log.iter().any(|l| l.contains("has no Zoom user")), "{:?}", s.log);
    // The mock really answered Zoom's 404 (code 1001) to the lookup.
    assert_eq!(h.mock.state.requests()[0].status, 404);

    // Bob is already inactive in Zoom.
    let (id, _) = h.run(&yaml, &[("email", "bob@example.com")]).await;
    let s = &h.steps(&id).await["zoom"];
    assert_eq!(s.status, StepStatus::Unchanged, "{:?}", s.error);
    assert_eq!(s.output.as_ref().unwrap()["found"], true);
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "{:?}", zoom_requests(&h));
}

#[tokio::test]
async fn zoom_rate_limit_waits_for_retry_after_then_succeeds() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("PUT".into()),
        path_contains: "/status".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let yaml = pipeline("    retry: { attempts: 2, backoff: { initial: 10ms, max: 10ms } }\n");
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = &h.steps(&id).await["zoom"];
    assert_eq!(status, RunStatus::Succeeded, "{:?}", s.error);
    // Zoom's Retry-After is an HTTP date a second ahead: the host waited for it and sent the
    // PUT again, in the one attempt (the Python plugin never saw the 429).
    assert_eq!((s.status, s.attempts), (StepStatus::Succeeded, 1));
    assert_eq!(crate::common::rate_limit_waits(s), 1, "{}", s.requests);
    assert_eq!(h.mock.state.zoom.user(ALICE_ID).unwrap().status, "inactive");
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
}

#[tokio::test]
async fn zoom_refusal_is_a_readable_error_with_zooms_code() {
    let h = Harness::new().await;
    // Dana owns the Zoom account: Zoom refuses to change an owner's status (400, code 200).
    let (id, status) = h.run(&pipeline("    on_failure: continue\n"), &[("email", "dana@example.com")]).await;
    assert_eq!(status, RunStatus::Failed);
    let s = &h.steps(&id).await["zoom"];
    assert_eq!((s.status, s.attempts), (StepStatus::Failed, 1), "a refusal is not retried");
    assert_eq!(
        s.error.as_deref(),
        Some("Zoom error 200 (HTTP 400): Zoom Room and Admin users' status can not be activated or deactivated.")
    );
    assert_eq!(h.mock.state.zoom.user("dana@example.com").unwrap().status, "active");
}

#[tokio::test]
async fn zoom_dry_run_sends_no_put() {
    let h = Harness::new().await;
    let plan = h.plan(&pipeline(""));
    let inputs = [("email".to_string(), "alice@example.com".to_string())].into_iter().collect();
    let id = h.engine.start(&plan, StartRequest { inputs, requested_by: "t".into(), dry_run: true }).await.unwrap();
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    let s = &h.steps(&id).await["zoom"];
    assert_eq!(s.output.as_ref().unwrap()["would"], "deactivate");
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "{:?}", zoom_requests(&h));
    assert_eq!(h.mock.state.zoom.user("alice@example.com").unwrap().status, "active");
}
