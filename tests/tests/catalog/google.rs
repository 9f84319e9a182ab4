//! The google plugin against the mock Admin SDK (Directory and Data Transfer APIs): every
//! action end to end with the mock's state checked, a rerun that changes nothing and starts no
//! second transfer, Google's 403/429 rate limits retried with a wait, a transfer that outlives
//! one attempt resumed (not restarted), a failed transfer pausing the run, Google's error body
//! as the message, dry runs, and the token going to Google only.

use std::collections::BTreeMap;

use offramp::engine::StartRequest;
use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;
use offramp_mock::google::{CALENDAR_APP_ID, DRIVE_APP_ID};
use serde_json::json;

use crate::common::{Harness, tokens};

const ALICE: &str = "alice@example.com";
const ALICE_ID: &str = "107730219654321098765";
const DANA_ID: &str = "109923456789012345678";

/// A pipeline with the given `google` steps; each step is `(id, needs, with-extras, step-extras)`,
/// its action the id, or `action:id`.
fn pipeline(steps: &[(&str, &[&str], &str, &str)]) -> String {
    let mut yaml = String::from(
        r#"version: 1
name: google
vars: { google_url: https://admin.googleapis.com }
inputs:
  email: { type: email, required: true }
steps:
"#,
    );
    for (id, needs, with, extra) in steps {
        let action = id.split(':').next().unwrap_or(id);
        let id = id.rsplit(':').next().unwrap_or(id);
        let needs = if needs.is_empty() { String::new() } else { format!("\n    needs: [{}]", needs.join(", ")) };
        yaml.push_str(&format!(
            r#"  - id: {id}{needs}
    uses: google
    with: {{ action: {action}, api_url: "{{{{ vars.google_url }}}}", user: "{{{{ inputs.email }}}}"{with} }}
    allow: ["{{{{ vars.google_url }}}}"]
    credentials:
      - {{ host: "{{{{ vars.google_url }}}}", secret: GOOGLE_ACCESS_TOKEN, header: Authorization, format: "Bearer {{secret}}" }}
{extra}"#
        ));
    }
    yaml
}

/// The whole offboarding: look Alice up, suspend her, then sign her out, revoke her tokens,
/// remove her groups and hand her Drive and Calendar to her manager (from the lookup).
fn offboarding() -> String {
    pipeline(&[
        ("lookup", &[], "", ""),
        ("suspend", &["lookup"], "", ""),
        ("sign_out", &["suspend"], "", ""),
        ("revoke_tokens", &["suspend"], "", ""),
        ("remove_groups", &["suspend"], "", ""),
        ("transfer", &["suspend"], ", to: \"{{ steps.lookup.output.manager }}\"", ""),
    ])
}

#[tokio::test]
async fn every_action_offboards_alice_in_the_mock() {
    let h = Harness::new().await;
    let g = &h.mock.state.google;
    assert_eq!(g.groups_of(ALICE).len(), 5, "sample: Alice is in five groups");
    let (id, status) = h.run(&offboarding(), &[("email", ALICE)]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{:?}", s.values().map(|r| (&r.step_id, &r.error)).collect::<Vec<_>>());

    let lookup = s["lookup"].output.as_ref().unwrap();
    assert_eq!(s["lookup"].status, StepStatus::Unchanged);
    assert_eq!(lookup["id"], ALICE_ID);
    assert_eq!(lookup["name"], "Alice Anders");
    assert_eq!(lookup["manager"], "dana@example.com");
    assert_eq!(lookup["suspended"], false);

    for step in ["suspend", "sign_out", "revoke_tokens", "remove_groups", "transfer"] {
        assert_eq!(s[step].status, StepStatus::Succeeded, "{step}: {:?}", s[step].error);
    }
    let alice = g.user(ALICE).unwrap();
    assert!(alice.suspended);
    assert_eq!(alice.sign_outs, 1);
    assert!(alice.tokens.is_empty());
    assert_eq!(s["revoke_tokens"].output.as_ref().unwrap()["revoked"], json!(["Slack", "Zoom for Google Calendar"]));

    // Five groups over two pages (the mock answers three a page): all gone.
    assert!(g.groups_of(ALICE).is_empty());
    let removed = s["remove_groups"].output.as_ref().unwrap()["removed"].as_array().unwrap().clone();
    assert_eq!(removed.len(), 5, "{removed:?}");
    assert!(removed.contains(&json!("project-falcon@example.com")));
    let lists: Vec<_> = h
        .mock
        .state
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/admin/directory/v1/groups")
        .collect();
    assert_eq!(lists.len(), 2, "two pages: {lists:?}");
    assert!(lists[1].query.as_deref().unwrap_or_default().contains("pageToken="), "{lists:?}");
    // Other people's memberships are untouched.
    assert_eq!(g.groups_of("dana@example.com"), ["all@example.com", "managers@example.com"]);
    assert!(!g.user("dana@example.com").unwrap().suspended);

    // One transfer, Alice to Dana, Drive (all files) and Calendar, completed.
    let transfers = g.transfers();
    assert_eq!(transfers.len(), 1);
    let t = &transfers[0];
    assert_eq!((t.old_owner_user_id.as_str(), t.new_owner_user_id.as_str()), (ALICE_ID, DANA_ID));
    assert_eq!(t.status, "completed");
    let apps: Vec<_> = t.applications.iter().map(|a| a.application_id.as_str()).collect();
    assert_eq!(apps, [DRIVE_APP_ID, CALENDAR_APP_ID]);
    assert_eq!(t.applications[0].params, [("PRIVACY_LEVEL".to_string(), vec!["PRIVATE".into(), "SHARED".into()])]);
    assert_eq!(t.applications[1].params, [("RELEASE_RESOURCES".to_string(), vec!["TRUE".into()])]);
    let out = s["transfer"].output.as_ref().unwrap();
    assert_eq!(out["transfer_id"], json!(t.id));
    assert_eq!(out["status"], "completed");
    assert_eq!(out["to"], "dana@example.com");
    assert_eq!(out["applications"], json!(["Drive and Docs", "Calendar"]));
}

#[tokio::test]
async fn a_second_run_changes_nothing_and_starts_no_second_transfer() {
    let h = Harness::new().await;
    let (_, first) = h.run(&offboarding(), &[("email", ALICE)]).await;
    assert_eq!(first, RunStatus::Succeeded);
    let before = h.mock.state.requests().len();

    let (id, status) = h.run(&offboarding(), &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    for step in ["lookup", "suspend", "revoke_tokens", "remove_groups", "transfer"] {
        assert_eq!(s[step].status, StepStatus::Unchanged, "{step}: {:?} {:?}", s[step].output, s[step].error);
    }
    // Google shows no sessions to compare with: sign-out is sent again (harmless).
    assert_eq!(s["sign_out"].status, StepStatus::Succeeded);

    let g = &h.mock.state.google;
    assert_eq!(g.transfers().len(), 1, "the completed transfer was found, not repeated");
    assert_eq!(s["transfer"].output.as_ref().unwrap()["transfer_id"], json!(g.transfers()[0].id));
    let second: Vec<_> = h.mock.state.requests().into_iter().skip(before).collect();
    let writes: Vec<String> =
        second.iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(writes, [format!("POST /admin/directory/v1/users/{ALICE_ID}/signOut")]);

    // Bob was suspended and has no tokens to begin with: nothing to do from the first run on.
    let (id, status) = h
        .run(&pipeline(&[("suspend", &[], "", ""), ("revoke_tokens", &[], "", "")]), &[("email", "bob@example.com")])
        .await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!((s["suspend"].status, s["revoke_tokens"].status), (StepStatus::Unchanged, StepStatus::Unchanged));
}

#[tokio::test]
async fn google_rate_limits_are_retried_after_a_wait() {
    let h = Harness::new().await;
    // 403 userRateLimitExceeded (what the Directory API sends) on the suspend, and 429
    // rateLimitExceeded on the token list.
    h.mock.state.inject(Fault {
        method: Some("PUT".into()),
        path_contains: "/admin/directory/v1/users/".into(),
        status: 403,
        times: 1,
        delay_ms: 0,
    });
    h.mock.state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/tokens".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let retry = "    retry: { attempts: 3, backoff: { initial: 10ms, max: 10ms } }\n";
    let yaml = pipeline(&[("suspend", &[], "", retry), ("revoke_tokens", &[], "", retry)]);
    let (id, status) = h.run(&yaml, &[("email", ALICE)]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{:?} {:?}", s["suspend"].error, s["revoke_tokens"].error);
    assert_eq!((s["suspend"].status, s["suspend"].attempts), (StepStatus::Succeeded, 2));
    // A 429 is waited out in the host (no Retry-After from Google: a second): one attempt.
    assert_eq!((s["revoke_tokens"].status, s["revoke_tokens"].attempts), (StepStatus::Succeeded, 1));
    assert_eq!(crate::common::rate_limit_waits(&s["revoke_tokens"]), 1, "{}", s["revoke_tokens"].requests);
    assert!(h.mock.state.google.user(ALICE).unwrap().suspended);
    assert!(h.mock.state.google.user(ALICE).unwrap().tokens.is_empty());

    let events = h.store().events(&id).await.unwrap();
    let failed = |step: &str| {
        events
            .iter()
            .find(|e| e.kind == "attempt_failed" && e.step_id.as_deref() == Some(step))
            .map(|e| e.detail.clone())
            .unwrap_or_else(|| panic!("{step} failed once"))
    };
    let suspend = failed("suspend");
    assert_eq!(suspend["error"], "Google 403 userRateLimitExceeded: User Rate Limit Exceeded");
    // No Retry-After on Google's 403: the plugin backs off 1 s on the first attempt, over the
    // step's own 10 ms.
    assert!(suspend["retry_in_ms"].as_u64().unwrap() >= 1000, "{suspend}");
    assert!(!events.iter().any(|e| e.kind == "attempt_failed" && e.step_id.as_deref() == Some("revoke_tokens")));
}

#[tokio::test]
async fn a_slow_transfer_is_resumed_by_the_next_attempt_not_restarted() {
    let h = Harness::new().await;
    let g = &h.mock.state.google;
    // Still running after the first attempt's five polls; done on the second attempt.
    g.set_polls_to_settle(7);
    let yaml = pipeline(&[(
        "transfer",
        &[],
        ", to: dana@example.com, poll_wait_ms: 50",
        "    retry: { attempts: 3, backoff: { initial: 10ms, max: 10ms } }\n",
    )]);
    let (id, status) = h.run(&yaml, &[("email", ALICE)]).await;
    let s = &h.steps(&id).await["transfer"];
    assert_eq!(status, RunStatus::Succeeded, "{:?}", s.error);
    assert_eq!((s.status, s.attempts), (StepStatus::Succeeded, 2));
    let transfers = g.transfers();
    assert_eq!(transfers.len(), 1, "one transfer, polled by both attempts");
    assert_eq!((transfers[0].status.as_str(), transfers[0].polls), ("completed", 8));

    let events = h.store().events(&id).await.unwrap();
    let failed = events.iter().find(|e| e.kind == "attempt_failed").expect("the first attempt handed back");
    let message = failed.detail["error"].as_str().unwrap();
    assert!(message.contains(&format!("transfer {} of alice@example.com's", transfers[0].id)), "{message}");
    assert!(message.contains("still in progress"), "{message}");
    assert!(failed.detail["retry_in_ms"].as_u64().unwrap() >= 50);
    let posts = h.mock.state.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn a_failed_transfer_pauses_the_run_and_a_resumed_one_starts_afresh() {
    let h = Harness::new().await;
    let g = &h.mock.state.google;
    let transfer =
        || pipeline(&[("transfer", &[], ", to: dana@example.com", ""), ("lookup:after", &["transfer"], "", "")]);

    // Armed failure.
    g.fail_next_transfer();
    let (id, status) = h.run(&transfer(), &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = h.steps(&id).await;
    assert_eq!((s["transfer"].status, s["transfer"].attempts), (StepStatus::Paused, 1), "needs a person: no retry");
    assert_eq!(s["after"].status, StepStatus::Pending);
    let err = s["transfer"].error.as_deref().unwrap();
    let first = g.transfers()[0].id.clone();
    assert!(
        err.contains(&format!(
            "Google could not transfer alice@example.com's Drive and Docs and Calendar data to dana@example.com: \
             transfer {first} failed (Drive and Docs: failed, Calendar: failed)"
        )),
        "{err}"
    );

    // A suspended new owner: Google fails the transfer, and the message says why.
    assert!(g.set_suspended("dana@example.com", true));
    let (id, status) = h.run(&transfer(), &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Paused);
    let err = h.steps(&id).await["transfer"].error.clone().unwrap();
    assert!(err.contains("(dana@example.com is suspended)"), "{err}");
    assert_eq!(g.transfers().len(), 2, "a failed transfer is not reused");

    // Fixed: the failed transfers are history, a new one starts and completes.
    assert!(g.set_suspended("dana@example.com", false));
    let (id, status) = h.run(&transfer(), &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Succeeded, "{:?}", h.steps(&id).await["transfer"].error);
    let statuses: Vec<_> = g.transfers().into_iter().map(|t| t.status).collect();
    assert_eq!(statuses, ["failed", "failed", "completed"]);
}

#[tokio::test]
async fn an_unknown_user_fails_for_good_with_googles_message() {
    let h = Harness::new().await;
    let yaml = pipeline(&[("suspend", &[], "", "    on_failure: abort\n")]);
    let (id, status) = h.run(&yaml, &[("email", "nobody@example.com")]).await;
    assert_eq!(status, RunStatus::Failed);
    let s = &h.steps(&id).await["suspend"];
    assert_eq!((s.status, s.attempts), (StepStatus::Failed, 1), "permanent: not retried");
    assert_eq!(
        s.error.as_deref(),
        Some("no Google user \"nobody@example.com\" (Google 404 notFound: Resource Not Found: userKey)")
    );

    // An unknown new owner for a transfer, too.
    let yaml = pipeline(&[("transfer", &[], ", to: nobody@example.com", "    on_failure: abort\n")]);
    let (id, status) = h.run(&yaml, &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Failed);
    let err = h.steps(&id).await["transfer"].error.clone().unwrap();
    assert!(err.contains("no Google user \"nobody@example.com\""), "{err}");
    assert!(h.mock.state.google.transfers().is_empty());
}

#[tokio::test]
async fn the_google_token_goes_to_google_only_and_a_wrong_one_is_refused() {
    let h = Harness::new().await;
    let (id, status) = h.run(&offboarding(), &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let expected = format!("Bearer {}", tokens().google);
    let seen = h.mock.state.requests();
    assert!(seen.len() >= 10, "{seen:?}");
    for r in &seen {
        assert!(r.path.starts_with("/admin/directory/v1/") || r.path.starts_with("/admin/datatransfer/v1/"), "{r:?}");
        assert_eq!(r.authorization.as_deref(), Some(expected.as_str()), "{r:?}");
    }
    // The token is nowhere in the results table.
    let everything = format!("{:?} {:?}", h.store().steps(&id).await.unwrap(), h.store().events(&id).await.unwrap());
    assert!(!everything.contains(&tokens().google));

    // Another vendor's token is refused the way Google refuses a bad one.
    let yaml =
        pipeline(&[("lookup", &[], "", "    on_failure: abort\n")]).replace("GOOGLE_ACCESS_TOKEN", "OKTA_API_TOKEN");
    let (id, status) = h.run(&yaml, &[("email", ALICE)]).await;
    assert_eq!(status, RunStatus::Failed);
    let err = h.steps(&id).await["lookup"].error.clone().unwrap();
    assert!(err.starts_with("Google 401 authError: Request had invalid authentication credentials"), "{err}");
}

#[tokio::test]
async fn a_dry_run_reads_but_changes_nothing() {
    let h = Harness::new().await;
    let plan = h.plan(&offboarding());
    let inputs = BTreeMap::from([("email".to_string(), ALICE.to_string())]);
    let id = h
        .engine
        .start(&plan, StartRequest { inputs, requested_by: "test".into(), dry_run: true })
        .await
        .expect("starts");
    let status = h.engine.drive(&id).await.expect("drive");
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{:?}", s.values().map(|r| (&r.step_id, &r.error)).collect::<Vec<_>>());
    assert_eq!(s["suspend"].output.as_ref().unwrap()["would"], "suspend");
    assert_eq!(s["revoke_tokens"].output.as_ref().unwrap()["revoked"].as_array().unwrap().len(), 2);
    assert_eq!(s["remove_groups"].output.as_ref().unwrap()["removed"].as_array().unwrap().len(), 5);
    let would = s["transfer"].output.as_ref().unwrap()["would"].as_str().unwrap().to_string();
    assert_eq!(would, "transfer alice@example.com's Drive and Docs and Calendar data to dana@example.com");

    let g = &h.mock.state.google;
    let alice = g.user(ALICE).unwrap();
    assert!(!alice.suspended);
    assert_eq!((alice.tokens.len(), alice.sign_outs, g.groups_of(ALICE).len()), (2, 0, 5));
    assert!(g.transfers().is_empty());
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "only reads reached Google");
}
