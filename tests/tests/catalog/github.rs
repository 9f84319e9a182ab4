//! The github plugin against the mock GitHub REST API: lookup and removal of organization
//! memberships, idempotent second runs, primary (`x-ratelimit-reset`) and secondary
//! (`retry-after`) rate limits turned into waits, 404s, and the token going to GitHub only.

use std::time::{Duration, Instant};

use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;
use serde_json::json;

use crate::common::{Harness, tokens};

/// One github step; `extra` goes under the step (e.g. a `retry:` line).
fn step(id: &str, action: &str, org: &str, extra: &str) -> String {
    format!(
        r#"  - id: {id}
    uses: github
    with: {{ action: {action}, api_url: "{{{{ vars.github_url }}}}", org: {org}, username: "{{{{ inputs.login }}}}" }}
    allow: ["{{{{ vars.github_url }}}}"]
    credentials: [{{ host: "{{{{ vars.github_url }}}}", secret: GITHUB_TOKEN, format: "Bearer {{secret}}" }}]
{extra}"#
    )
}

fn pipeline(steps: &[String]) -> String {
    format!(
        "version: 1\nname: github\nvars: {{ github_url: https://api.github.com }}\ninputs:\n  login: {{ type: string, required: true }}\nsteps:\n{}",
        steps.concat()
    )
}

fn lookup_then_remove() -> String {
    pipeline(&[step("lookup", "lookup", "acme", ""), step("remove", "remove_member", "acme", "    needs: [lookup]\n")])
}

#[tokio::test]
async fn github_removes_a_member_and_a_second_run_is_unchanged() {
    let h = Harness::new().await;
    let yaml = lookup_then_remove();
    let (id, status) = h.run(&yaml, &[("login", "alice-gh")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["lookup"].status, StepStatus::Unchanged);
    let found = s["lookup"].output.as_ref().unwrap();
    assert_eq!(
        (found["member"].clone(), found["role"].clone(), found["state"].clone()),
        (json!(true), json!("member"), json!("active"))
    );
    assert_eq!(s["remove"].status, StepStatus::Succeeded);
    assert_eq!(s["remove"].output.as_ref().unwrap()["removed"], true);
    assert_eq!(h.mock.state.github.member("alice-gh"), None);
    assert!(h.mock.state.github.member("dana-gh").is_some(), "nobody else went");
    let deletes: Vec<_> = h.mock.state.requests().into_iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!((deletes[0].path.as_str(), deletes[0].status), ("/orgs/acme/memberships/alice-gh", 204));

    // Again: no longer a member, nothing to do, no DELETE sent.
    let (id, status) = h.run(&yaml, &[("login", "alice-gh")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["lookup"].output.as_ref().unwrap()["member"], false);
    assert_eq!(s["remove"].status, StepStatus::Unchanged);
    assert_eq!(h.mock.state.requests().iter().filter(|r| r.method == "DELETE").count(), 1);

    // An owner and a pending invitation go the same way.
    for (login, role, state) in [("dana-gh", "admin", "active"), ("erin-gh", "member", "pending")] {
        let (id, status) = h.run(&yaml, &[("login", login)]).await;
        assert_eq!(status, RunStatus::Succeeded);
        let out = h.steps(&id).await["remove"].output.clone().unwrap();
        assert_eq!((out["previous_role"].as_str(), out["previous_state"].as_str()), (Some(role), Some(state)));
        assert_eq!(h.mock.state.github.member(login), None);
    }
}

#[tokio::test]
async fn github_rate_limits_become_waits_then_the_removal_goes_through() {
    let h = Harness::new().await;
    // The primary limit on the read (403, x-ratelimit-remaining: 0, reset a second away), the
    // secondary one on the delete (429, retry-after: 1).
    h.mock.state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/orgs/acme/memberships/".into(),
        status: 403,
        times: 1,
        delay_ms: 0,
    });
    h.mock.state.inject(Fault {
        method: Some("DELETE".into()),
        path_contains: "/orgs/acme/memberships/".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let retry = "    retry: { attempts: 3, backoff: { initial: 10ms, max: 10ms } }\n";
    let yaml = pipeline(&[step("remove", "remove_member", "acme", retry)]);
    let started = Instant::now();
    let (id, status) = h.run(&yaml, &[("login", "alice-gh")]).await;
    let s = &h.steps(&id).await["remove"];
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    // Both limits were waited out in the host (the primary one's reset, the secondary one's
    // Retry-After) and the requests sent again, in one attempt.
    assert_eq!((s.status, s.attempts), (StepStatus::Succeeded, 1));
    assert_eq!(crate::common::rate_limit_waits(s), 2, "{}", s.requests);
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(h.mock.state.github.member("alice-gh"), None);
}

#[tokio::test]
async fn github_non_members_are_unchanged_and_unknown_orgs_are_errors() {
    let h = Harness::new().await;
    // Not in the organization: nothing to do.
    let (id, status) = h.run(&lookup_then_remove(), &[("login", "nobody-gh")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!(s["lookup"].output.as_ref().unwrap()["member"], false);
    assert_eq!(s["remove"].status, StepStatus::Unchanged);
    assert_eq!(s["remove"].output.as_ref().unwrap()["removed"], false);
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"));

    // A 404 for an organization the token cannot see is not "not a member": it stops the run.
    let yaml = pipeline(&[step("remove", "remove_member", "umbrella", "")]);
    let (id, status) = h.run(&yaml, &[("login", "alice-gh")]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = &h.steps(&id).await["remove"];
    assert!(s.error.as_deref().unwrap().starts_with("GitHub organization \"umbrella\" not found"), "{:?}", s.error);
    assert_eq!(s.attempts, 1);
    assert!(h.mock.state.github.member("alice-gh").is_some());

    // Input that is not a GitHub login never reaches the API.
    let before = h.mock.state.requests().len();
    let (id, status) = h.run(&lookup_then_remove(), &[("login", "alice/../admin")]).await;
    assert_eq!(status, RunStatus::Paused);
    assert!(h.steps(&id).await["lookup"].error.as_deref().unwrap().contains("is not a GitHub login"));
    assert_eq!(h.mock.state.requests().len(), before);
}

#[tokio::test]
async fn the_github_token_goes_to_github_only() {
    let h = Harness::new().await;
    // The older `token` scheme works as well as `Bearer`.
    let yaml = lookup_then_remove().replace("format: \"Bearer {secret}\"", "format: \"token {secret}\"");
    let (id, status) = h.run(&yaml, &[("login", "alice-gh")]).await;
    assert_eq!(status, RunStatus::Succeeded, "{:#?}", h.steps(&id).await);
    let expected = format!("token {}", tokens().github);
    let requests = h.mock.state.requests();
    assert_eq!(requests.len(), 3, "lookup, then read and delete: {requests:#?}");
    assert!(requests.iter().all(|r| r.authorization.as_ref() == Some(&expected)), "{requests:#?}");
    for rec in h.steps(&id).await.values() {
        let all = format!("{:?} {:?} {:?} {}", rec.output, rec.error, rec.log, rec.requests);
        assert!(!all.contains(&tokens().github), "{}: {all}", rec.step_id);
    }

    // Another vendor's token is GitHub's 401, named and not retried.
    let wrong = lookup_then_remove().replace("GITHUB_TOKEN", "GRAPH_ACCESS_TOKEN");
    let (id, status) = h.run(&wrong, &[("login", "dana-gh")]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = &h.steps(&id).await["lookup"];
    assert!(s.error.as_deref().unwrap().starts_with("GitHub 401: Bad credentials"), "{:?}", s.error);
    assert_eq!(s.attempts, 1);
    assert!(h.mock.state.github.member("dana-gh").is_some());
}
