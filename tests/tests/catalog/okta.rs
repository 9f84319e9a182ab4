//! The Okta plugin's completion: OAuth grants and refresh tokens, app assignments, and the
//! asynchronous deactivation.

use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;
use serde_json::json;

use crate::common::{Harness, TOKEN};

/// One step per action, in the order a checklist runs them.
fn pipeline(deactivate_retry: &str) -> String {
    let step = |id: &str, action: &str, needs: &str, extra: &str| {
        format!(
            r#"  - id: {id}
    uses: okta
    {needs}
    with: {{ action: {action}, org_url: "{{{{ vars.okta_url }}}}", user: "{{{{ inputs.email }}}}" }}
    allow: ["{{{{ vars.okta_url }}}}"]
    credentials: [{{ host: "{{{{ vars.okta_url }}}}", secret: OKTA_API_TOKEN, format: "SSWS {{secret}}" }}]
{extra}"#
        )
    };
    let mut yaml = String::from(
        "version: 1\nname: okta-all\nvars: { okta_url: https://example.okta.com }\n\
         inputs: { email: { type: email, required: true } }\nsteps:\n",
    );
    yaml += &step("tokens", "revoke_tokens", "", "");
    yaml += &step("apps", "unassign_apps", "needs: [tokens]", "");
    yaml += &step("groups", "remove_groups", "needs: [apps]", "");
    yaml += &step("deactivate", "deactivate", "needs: [groups]", deactivate_retry);
    yaml
}

#[tokio::test]
async fn tokens_apps_groups_and_an_asynchronous_deactivation() {
    let h = Harness::new().await;
    let yaml = pipeline("");
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");

    let tokens = s["tokens"].output.as_ref().unwrap();
    assert_eq!(s["tokens"].status, StepStatus::Succeeded);
    assert_eq!(tokens["grants"], 3);
    assert_eq!(tokens["refresh_token_clients"].as_array().unwrap().len(), 2, "{tokens}");
    let apps = s["apps"].output.as_ref().unwrap();
    assert_eq!(apps["removed"], json!(["Slack", "Zoom"]));
    assert_eq!(apps["left"][0]["app"], "Salesforce", "a group assignment is left to the group: {apps}");
    assert!(apps["left"][0]["why"].as_str().unwrap().contains("through a group"), "{apps}");

    let alice = h.mock.state.okta.user("alice@example.com").unwrap();
    assert!(alice.grants.is_empty() && alice.refresh_tokens.is_empty(), "{alice:?}");
    assert_eq!(alice.apps.len(), 1, "only the group-assigned app stays: {:?}", alice.apps);
    assert_eq!(alice.status, "DEPROVISIONED");
    assert_eq!(alice.transitioning_to, None);

    // Deactivation was asked asynchronously, without an email, once.
    let seen = h.mock.state.requests();
    let deactivations: Vec<_> = seen.iter().filter(|r| r.path.ends_with("/lifecycle/deactivate")).collect();
    assert_eq!(deactivations.len(), 1, "{deactivations:?}");
    assert_eq!(deactivations[0].query.as_deref(), Some("sendEmail=false"));
    assert_eq!(deactivations[0].status, 202, "Prefer: respond-async was sent");
    assert_eq!(s["deactivate"].output.as_ref().unwrap()["previous"], "ACTIVE");
    assert!(seen.iter().all(|r| r.authorization.as_deref() == Some(&format!("SSWS {TOKEN}"))));

    // A second run finds nothing left to do.
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    for step in ["tokens", "apps", "groups", "deactivate"] {
        assert_eq!(s[step].status, StepStatus::Unchanged, "{step}: {:?}", s[step].output);
    }
}

#[tokio::test]
async fn a_slow_deprovisioning_is_waited_for_not_repeated() {
    let h = Harness::new().await;
    // Okta takes longer than one attempt's five reads: the attempt ends transient ("still
    // deprovisioning", 2 s), and the next attempt watches the same deactivation finish.
    h.mock.state.okta.set_deprovision_reads(7);
    let yaml = pipeline("    retry: { attempts: 3, backoff: { initial: 10ms, max: 10ms } }\n")
        .replace("action: deactivate,", "action: deactivate, poll_wait_ms: 2000,");
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["deactivate"].attempts, 2, "{:?}", s["deactivate"]);
    let events = h.store().events(&id).await.unwrap();
    let failed = events.iter().find(|e| e.kind == "attempt_failed").expect("a failed attempt");
    assert!(failed.detail["error"].as_str().unwrap().contains("still deprovisioning"), "{}", failed.detail);
    assert!(failed.detail["retry_in_ms"].as_u64().unwrap() >= 2000, "{}", failed.detail);
    let posts = h.mock.state.requests().iter().filter(|r| r.path.ends_with("/lifecycle/deactivate")).count();
    assert_eq!(posts, 1, "the deactivation was asked once, then only watched");
    assert_eq!(h.mock.state.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED");
}

#[tokio::test]
async fn a_rate_limited_grant_listing_waits_then_succeeds() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/grants".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let mut yaml = pipeline("");
    yaml = yaml.replacen(
        "  - id: apps",
        "    retry: { attempts: 2, backoff: { initial: 10ms, max: 10ms } }\n  - id: apps",
        1,
    );
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    // The host waited for X-Rate-Limit-Reset and sent the listing again: one attempt.
    assert_eq!(s["tokens"].attempts, 1);
    assert_eq!(crate::common::rate_limit_waits(&s["tokens"]), 1, "{}", s["tokens"].requests);
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
}

#[tokio::test]
async fn a_token_that_may_not_manage_apps_fails_the_step_instead_of_passing_it() {
    let h = Harness::new().await;
    // 403 E0000006 on the first unassignment: not a group assignment, a missing permission.
    h.mock.state.inject(Fault {
        method: Some("DELETE".into()),
        path_contains: "/apps/".into(),
        status: 403,
        times: 1,
        delay_ms: 0,
    });
    let (id, status) = h.run(&pipeline(""), &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Paused, "{s:#?}");
    assert_eq!(s["apps"].status, StepStatus::Paused);
    assert!(s["apps"].error.as_deref().unwrap().contains("E0000006"), "{:?}", s["apps"].error);
    assert_eq!(s["deactivate"].status, StepStatus::Pending, "nothing after it ran");
}
