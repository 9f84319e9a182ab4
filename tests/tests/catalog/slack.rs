//! The slack plugin against the mock: SCIM lookup and deactivation, `admin.users.session.reset`,
//! idempotent re-runs, Slack's 429 + `Retry-After` turned into a wait, Slack's error bodies
//! turned into readable messages, and the admin token going to Slack only.

use std::time::{Duration, Instant};

use offramp::store::{RunStatus, StepStatus};
use offramp_mock::{Fault, LoggedRequest};

use crate::common::{Harness, tokens};

/// The pipeline a Slack admin writes: look the leaver up, wipe their sessions, deactivate them.
/// `secret` is the credential injected into both Slack hosts.
fn pipeline(secret: &str) -> String {
    let step = |id: &str, needs: &str, action: &str, user: &str| {
        format!(
            r#"  - id: {id}
{needs}    uses: slack
    with:
      action: {action}
      user: "{user}"
      scim_url: "{{{{ vars.slack_scim_url }}}}"
      api_url: "{{{{ vars.slack_url }}}}"
    retry: {{ attempts: 3, backoff: {{ initial: 10ms, max: 20ms }} }}
    allow: ["{{{{ vars.slack_scim_url }}}}", "{{{{ vars.slack_url }}}}"]
    credentials:
      - {{ host: "{{{{ vars.slack_scim_url }}}}", secret: {secret}, header: Authorization, format: "Bearer {{secret}}" }}
      - {{ host: "{{{{ vars.slack_url }}}}", secret: {secret}, header: Authorization, format: "Bearer {{secret}}" }}
"#
        )
    };
    format!(
        r#"version: 1
name: slack-offboarding
vars:
  slack_scim_url: https://api.slack.com
  slack_url: https://slack.com
inputs:
  email: {{ type: email, required: true }}
steps:
{}{}{}"#,
        step("lookup", "", "lookup", "{{ inputs.email }}"),
        step("reset", "    needs: [lookup]\n", "reset_sessions", "{{ steps.lookup.output.id }}"),
        step("deactivate", "    needs: [reset]\n", "deactivate", "{{ inputs.email }}"),
    )
}

fn slack_requests(h: &Harness) -> Vec<LoggedRequest> {
    h.mock
        .state
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/scim/") || r.path.starts_with("/api/"))
        .collect()
}

#[tokio::test]
async fn alice_is_signed_out_and_deactivated() {
    let h = Harness::new().await;
    let (id, status) = h.run(&pipeline("SLACK_ADMIN_TOKEN"), &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{:?}", s.values().map(|x| (&x.step_id, &x.error)).collect::<Vec<_>>());
    assert_eq!(s["lookup"].status, StepStatus::Unchanged);
    let found = s["lookup"].output.as_ref().unwrap();
    assert_eq!((found["id"].as_str(), found["active"].as_bool()), (Some("U01ALICE"), Some(true)));
    assert_eq!(found["email"], "alice@example.com");
    assert_eq!(s["reset"].status, StepStatus::Succeeded);
    assert_eq!(s["reset"].output.as_ref().unwrap()["sessions_reset"], true);
    assert_eq!(s["deactivate"].status, StepStatus::Succeeded);
    assert_eq!(s["deactivate"].output.as_ref().unwrap()["active"], false);

    let slack = &h.mock.state.slack;
    let alice = slack.scim_user_by_email("alice@example.com").unwrap();
    assert!(!alice.active, "the mock's Alice is deactivated");
    assert_eq!(alice.sessions, 0);
    assert_eq!(slack.session_resets(), vec!["U01ALICE".to_string()]);
    assert!(slack.scim_user("U03DANA").unwrap().active, "nobody else was touched");

    let calls: Vec<(String, String)> = slack_requests(&h).into_iter().map(|r| (r.method, r.path)).collect();
    assert!(calls.contains(&("POST".into(), "/api/admin.users.session.reset".into())), "{calls:?}");
    assert!(calls.contains(&("DELETE".into(), "/scim/v2/Users/U01ALICE".into())), "{calls:?}");
    let lookup = h.mock.state.requests().into_iter().find(|r| r.path == "/scim/v2/Users").unwrap();
    assert_eq!(lookup.query.as_deref(), Some("filter=email%20eq%20%22alice%40example.com%22"));
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let h = Harness::new().await;
    let yaml = pipeline("SLACK_ADMIN_TOKEN");
    let (first, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(h.steps(&first).await["deactivate"].status, StepStatus::Succeeded);
    let sent_before = h.mock.state.requests().len();

    let (second, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&second).await;
    for step in ["lookup", "reset", "deactivate"] {
        assert_eq!(s[step].status, StepStatus::Unchanged, "{step}: {:?}", s[step].output);
    }
    let again = &h.mock.state.requests()[sent_before..];
    assert!(again.iter().all(|r| r.method == "GET"), "a re-run only reads: {again:?}");
    assert_eq!(h.mock.state.slack.session_resets().len(), 1, "no second session reset");

    // Bob was deactivated before offramp ever ran: nothing to do either.
    let (bob, status) = h.run(&yaml, &[("email", "bob@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&bob).await;
    assert_eq!((s["reset"].status, s["deactivate"].status), (StepStatus::Unchanged, StepStatus::Unchanged));
    assert!(!h.mock.state.slack.scim_user("U02BOB").unwrap().active);
    assert!(!slack_requests(&h).iter().any(|r| r.path.ends_with("/U02BOB") && r.method == "DELETE"));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after_then_succeed() {
    let h = Harness::new().await;
    // Slack's Web API limiter: HTTP 429, Retry-After: 1, {"ok": false, "error": "ratelimited"}.
    h.mock.state.slack.throttle_admin(1);
    // SCIM's: HTTP 429, Retry-After: 1, {"Errors": {"description": "rate_limited", "code": 429}}.
    h.mock.state.inject(Fault {
        method: Some("DELETE".into()),
        path_contains: "/scim/v2/Users/".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let started = Instant::now();
    let (id, status) = h.run(&pipeline("SLACK_ADMIN_TOKEN"), &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    // Both 429s were waited out in the host (Retry-After: 1) and sent again: one attempt each.
    assert_eq!((s["reset"].status, s["reset"].attempts), (StepStatus::Succeeded, 1));
    assert_eq!((s["deactivate"].status, s["deactivate"].attempts), (StepStatus::Succeeded, 1));
    assert_eq!(crate::common::rate_limit_waits(&s["reset"]), 1, "{}", s["reset"].requests);
    assert_eq!(crate::common::rate_limit_waits(&s["deactivate"]), 1, "{}", s["deactivate"].requests);
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());

    let statuses: Vec<(String, u16)> = slack_requests(&h).into_iter().map(|r| (r.method, r.status)).collect();
    assert_eq!(statuses.iter().filter(|(_, st)| *st == 429).count(), 2, "{statuses:?}");
    assert!(!h.mock.state.slack.scim_user("U01ALICE").unwrap().active);
    assert_eq!(h.mock.state.slack.session_resets(), vec!["U01ALICE".to_string()]);
}

#[tokio::test]
async fn an_unknown_member_is_a_readable_permanent_error() {
    let h = Harness::new().await;
    let (id, status) = h.run(&pipeline("SLACK_ADMIN_TOKEN"), &[("email", "nobody@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = h.steps(&id).await;
    assert_eq!((s["lookup"].status, s["lookup"].attempts), (StepStatus::Paused, 1), "permanent: not retried");
    assert_eq!(s["lookup"].error.as_deref(), Some("no Slack member with the email \"nobody@example.com\""));
    assert_eq!(s["reset"].status, StepStatus::Pending);

    // An unknown user id: SCIM's 404 body, read as a message.
    let yaml = pipeline("SLACK_ADMIN_TOKEN").replace("{{ steps.lookup.output.id }}", "U99NOBODY");
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = h.steps(&id).await;
    assert_eq!(s["reset"].error.as_deref(), Some("no Slack member with the id \"U99NOBODY\""));
    assert!(h.mock.state.slack.session_resets().is_empty());
    assert!(h.mock.state.slack.scim_user("U01ALICE").unwrap().active);
}

#[tokio::test]
async fn the_admin_token_goes_to_slack_only() {
    let h = Harness::new().await;
    let (id, status) = h.run(&pipeline("SLACK_ADMIN_TOKEN"), &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let expected = format!("Bearer {}", tokens().slack);
    let all = h.mock.state.requests();
    assert!(all.len() >= 4, "{all:?}");
    for r in &all {
        assert!(r.path.starts_with("/scim/v2/") || r.path.starts_with("/api/admin."), "only Slack was called: {r:?}");
        assert_eq!(r.authorization.as_deref(), Some(expected.as_str()), "{r:?}");
    }
    // The plugin never saw the token: nothing it recorded contains it.
    for (step, rec) in h.steps(&id).await {
        let text = format!("{:?} {:?} {:?} {}", rec.output, rec.error, rec.log, rec.requests);
        assert!(!text.contains(&tokens().slack), "{step} leaked the token: {text}");
    }

    // Another vendor's token sent to Slack: refused the way Slack refuses it, said plainly.
    let h = Harness::new().await;
    let (id, status) = h.run(&pipeline("GITHUB_TOKEN"), &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let err = h.steps(&id).await["lookup"].error.clone().unwrap();
    assert!(err.starts_with("Slack SCIM (401): invalid_authentication"), "{err}");
    assert!(err.contains("SLACK_ADMIN_TOKEN"), "{err}");
    assert!(h.mock.state.slack.scim_user("U01ALICE").unwrap().active);
}

#[tokio::test]
async fn a_dry_run_reads_but_changes_nothing() {
    let h = Harness::new().await;
    let plan = h.plan(&pipeline("SLACK_ADMIN_TOKEN"));
    let inputs = [("email".to_string(), "alice@example.com".to_string())].into_iter().collect();
    let request = offramp::engine::StartRequest { inputs, requested_by: "t".into(), dry_run: true };
    let id = h.engine.start(&plan, request).await.unwrap();
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!(s["reset"].output.as_ref().unwrap()["would"], "reset all web and mobile sessions");
    assert_eq!(s["deactivate"].output.as_ref().unwrap()["would"], "deactivate");
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "{:?}", h.mock.state.requests());
    assert!(h.mock.state.slack.scim_user("U01ALICE").unwrap().active);
    assert!(h.mock.state.slack.session_resets().is_empty());
}
