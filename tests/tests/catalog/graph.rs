//! The graph plugin against the mock Microsoft Graph: disable, revoke sessions, remove group
//! memberships across `@odata.nextLink` pages (leaving directory roles, dynamic groups and
//! Exchange-managed lists alone), idempotent second runs, `Retry-After` waits, readable errors,
//! and the token going to Graph only.

use std::time::{Duration, Instant};

use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;
use serde_json::json;

use crate::common::{Harness, tokens};

const ALICE: &str = "6e7b768e-07e2-4810-8459-485f84f8f204";

/// One graph step; `extra` goes under the step (e.g. a `retry:` line).
fn step(id: &str, action: &str, user: &str, with_extra: &str, extra: &str) -> String {
    format!(
        r#"  - id: {id}
    uses: graph
    with: {{ action: {action}, api_url: "{{{{ vars.graph_url }}}}", user: "{user}"{with_extra} }}
    allow: ["{{{{ vars.graph_url }}}}"]
    credentials: [{{ host: "{{{{ vars.graph_url }}}}", secret: GRAPH_ACCESS_TOKEN, format: "Bearer {{secret}}" }}]
{extra}"#
    )
}

fn pipeline(steps: &[String]) -> String {
    format!(
        "version: 1\nname: graph\nvars: {{ graph_url: https://graph.microsoft.com }}\ninputs:\n  email: {{ type: email, required: true }}\nsteps:\n{}",
        steps.concat()
    )
}

/// lookup → disable, revoke_sessions, remove_groups (two entries a page).
fn offboarding() -> String {
    let after = "    needs: [lookup]\n";
    pipeline(&[
        step("lookup", "lookup", "{{ inputs.email }}", "", ""),
        step("disable", "disable", "{{ steps.lookup.output.id }}", "", after),
        step("revoke", "revoke_sessions", "{{ steps.lookup.output.id }}", "", after),
        step("remove_groups", "remove_groups", "{{ steps.lookup.output.id }}", ", page_size: 2", after),
    ])
}

#[tokio::test]
async fn graph_offboards_alice_across_pages_and_leaves_roles_and_dynamic_groups() {
    let h = Harness::new().await;
    let yaml = offboarding();
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["lookup"].status, StepStatus::Unchanged);
    let looked_up = s["lookup"].output.as_ref().unwrap();
    assert_eq!(looked_up["id"], ALICE);
    assert_eq!(looked_up["accountEnabled"], true, "asked for with $select: {looked_up}");
    assert_eq!(s["disable"].status, StepStatus::Succeeded);
    assert_eq!(s["revoke"].status, StepStatus::Succeeded);
    assert_eq!(s["remove_groups"].status, StepStatus::Succeeded);
    let out = s["remove_groups"].output.as_ref().unwrap();
    assert_eq!(out["removed"], json!(["Engineering", "VPN Users", "All Company", "Design Reviews", "Project Falcon"]));
    let kept: Vec<(&str, &str)> = out["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kept,
        [
            ("All Employees (dynamic)", "#microsoft.graph.group"),
            ("sales-announce@example.com", "#microsoft.graph.group"),
            ("Global Reader", "#microsoft.graph.directoryRole"),
        ]
    );

    // The tenant agrees.
    let alice = h.mock.state.graph.user("alice@example.com").unwrap();
    assert!(!alice.account_enabled);
    assert_eq!(alice.sessions_revoked, 1);
    assert_eq!(
        h.mock.state.graph.member_of_names(ALICE),
        ["All Employees (dynamic)", "sales-announce@example.com", "Global Reader"]
    );
    // Eight memberships at two a page: four pages, the last three reached through the nextLink.
    let requests = h.mock.state.requests();
    let pages: Vec<_> = requests.iter().filter(|r| r.path.ends_with("/memberOf")).collect();
    assert_eq!(pages.len(), 4, "{pages:#?}");
    assert!(pages[1..].iter().all(|r| r.query.as_deref().unwrap_or("").contains("$skiptoken=")), "{pages:#?}");
    let deletes: Vec<_> = requests.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 5);
    assert!(deletes.iter().all(|r| r.path.ends_with("/$ref") && r.status == 204), "{deletes:#?}");

    // A second run finds nothing to do, except revoking sessions (Graph can't tell there are none).
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s["disable"].status, StepStatus::Unchanged);
    assert_eq!(s["remove_groups"].status, StepStatus::Unchanged);
    assert_eq!(s["remove_groups"].output.as_ref().unwrap()["removed"], json!([]));
    assert_eq!(s["revoke"].status, StepStatus::Succeeded);
    assert_eq!(h.mock.state.graph.user(ALICE).unwrap().sessions_revoked, 2);
    assert_eq!(h.mock.state.requests().iter().filter(|r| r.method == "DELETE").count(), 5, "no new deletes");

    // Bob is disabled already.
    let (id, status) = h.run(&yaml, &[("email", "bob@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = h.steps(&id).await;
    assert_eq!(s["disable"].status, StepStatus::Unchanged);
    assert_eq!(s["remove_groups"].output.as_ref().unwrap()["removed"], json!(["Engineering"]));
}

#[tokio::test]
async fn graph_throttling_waits_for_retry_after_then_finishes_the_job() {
    let h = Harness::new().await;
    // A 429 on the PATCH, and another on the second group removal.
    h.mock.state.inject(Fault {
        method: Some("PATCH".into()),
        path_contains: "/v1.0/users/".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    h.mock.state.inject(Fault {
        method: Some("DELETE".into()),
        path_contains: "/members/".into(),
        status: 0,
        times: 1,
        delay_ms: 0,
    });
    h.mock.state.inject(Fault {
        method: Some("DELETE".into()),
        path_contains: "/members/".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let retry = "    retry: { attempts: 3, backoff: { initial: 10ms, max: 10ms } }\n";
    let yaml = pipeline(&[
        step("disable", "disable", "{{ inputs.email }}", "", retry),
        step(
            "remove_groups",
            "remove_groups",
            "{{ inputs.email }}",
            ", page_size: 3",
            &format!("{retry}    needs: [disable]\n"),
        ),
    ]);
    let started = Instant::now();
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(status, RunStatus::Succeeded, "{s:#?}");
    // Each 429 was waited out in the host (Retry-After: 1) and the request sent again.
    assert_eq!((s["disable"].status, s["disable"].attempts), (StepStatus::Succeeded, 1));
    assert_eq!((s["remove_groups"].status, s["remove_groups"].attempts), (StepStatus::Succeeded, 1));
    assert_eq!(crate::common::rate_limit_waits(&s["disable"]), 1, "{}", s["disable"].requests);
    assert_eq!(crate::common::rate_limit_waits(&s["remove_groups"]), 1, "{}", s["remove_groups"].requests);
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
    assert!(started.elapsed() >= Duration::from_millis(1900));
    // The group removed before the 429 is not removed twice, and the rest still went.
    assert!(!h.mock.state.graph.user(ALICE).unwrap().account_enabled);
    assert_eq!(
        h.mock.state.graph.member_of_names(ALICE),
        ["All Employees (dynamic)", "sales-announce@example.com", "Global Reader"]
    );
    let out = s["remove_groups"].output.as_ref().unwrap();
    assert_eq!(out["removed"].as_array().unwrap().len(), 5, "all five in the one attempt: {out}");
}

#[tokio::test]
async fn graph_errors_are_readable_and_permanent() {
    let h = Harness::new().await;
    // An unknown user: 404 Request_ResourceNotFound, no retry, the run pauses for a person.
    let yaml = pipeline(&[step("disable", "disable", "{{ inputs.email }}", "", "")]);
    let (id, status) = h.run(&yaml, &[("email", "nobody@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = &h.steps(&id).await["disable"];
    assert_eq!(s.error.as_deref(), Some("no Microsoft Graph user \"nobody@example.com\" (Request_ResourceNotFound)"));
    assert_eq!(s.attempts, 1, "a missing user is not retried");

    // Another vendor's token: Graph's 401, named.
    let wrong = yaml.replace("GRAPH_ACCESS_TOKEN", "GITHUB_TOKEN");
    let (id, status) = h.run(&wrong, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = &h.steps(&id).await["disable"];
    let err = s.error.as_deref().unwrap();
    assert!(err.starts_with("Graph InvalidAuthenticationToken (401): Access token validation failure"), "{err}");
    assert_eq!(s.attempts, 1);
    assert!(h.mock.state.graph.user(ALICE).unwrap().account_enabled);
}

#[tokio::test]
async fn graph_refuses_a_next_link_off_its_origin() {
    let h = Harness::new().await;
    h.mock.state.graph.set_next_link_origin(Some("https://graph.evil.example"));
    let yaml = pipeline(&[step("remove_groups", "remove_groups", "{{ inputs.email }}", ", page_size: 2", "")]);
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let err = h.steps(&id).await["remove_groups"].error.clone().unwrap();
    assert!(err.contains("@odata.nextLink outside http://127.0.0.1:"), "{err}");
    assert!(err.contains("https://graph.evil.example"), "{err}");
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "nothing removed on a partial listing");
    assert_eq!(h.mock.state.graph.member_of_names(ALICE).len(), 8);
}

#[tokio::test]
async fn graph_dry_run_lists_what_it_would_remove_and_changes_nothing() {
    let h = Harness::new().await;
    let plan = h.plan(&offboarding());
    let inputs = [("email".to_string(), "alice@example.com".to_string())].into_iter().collect();
    let request = offramp::engine::StartRequest { inputs, requested_by: "t".into(), dry_run: true };
    let id = h.engine.start(&plan, request).await.unwrap();
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "{:#?}", h.mock.state.requests());
    let s = h.steps(&id).await;
    assert_eq!(s["disable"].output.as_ref().unwrap()["would"], "disable");
    assert_eq!(s["remove_groups"].output.as_ref().unwrap()["removed"].as_array().unwrap().len(), 5);
    let alice = h.mock.state.graph.user(ALICE).unwrap();
    assert!(alice.account_enabled);
    assert_eq!(alice.sessions_revoked, 0);
    assert_eq!(h.mock.state.graph.member_of_names(ALICE).len(), 8);
}

#[tokio::test]
async fn the_graph_token_goes_to_graph_only() {
    let h = Harness::new().await;
    let yaml = format!(
        "{}  - id: github
    uses: github
    with: {{ action: lookup, api_url: \"{{{{ vars.github_url }}}}\", org: acme, username: alice-gh }}
    allow: [\"{{{{ vars.github_url }}}}\"]
    credentials: [{{ host: \"{{{{ vars.github_url }}}}\", secret: GITHUB_TOKEN, format: \"Bearer {{secret}}\" }}]
",
        offboarding().replace("vars: { graph_url", "vars: { github_url: https://api.github.com, graph_url")
    );
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded, "{:#?}", h.steps(&id).await);
    let graph = format!("Bearer {}", tokens().graph);
    let github = format!("Bearer {}", tokens().github);
    let requests = h.mock.state.requests();
    assert!(requests.iter().any(|r| r.path.starts_with("/orgs/")), "the GitHub step ran");
    for r in &requests {
        let expected = if r.path.starts_with("/v1.0/") { &graph } else { &github };
        assert_eq!(r.authorization.as_ref(), Some(expected), "{r:?}");
    }
    // Nothing the plugin logged or returned holds the token.
    let s = h.steps(&id).await;
    for rec in s.values() {
        let all = format!("{:?} {:?} {:?} {}", rec.output, rec.error, rec.log, rec.requests);
        assert!(!all.contains(&tokens().graph), "{}: {all}", rec.step_id);
    }
}
