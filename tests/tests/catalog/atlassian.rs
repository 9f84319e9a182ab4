//! The atlassian plugin (JavaScript, plugins/js/atlassian) against the mock Atlassian admin APIs:
//! finding the account by email across pages, disabling it and the second run being unchanged,
//! leavers without a managed account, refusals as readable errors, the 429 wait, dry runs, and
//! each vendor's credential going to that vendor only.

use std::time::{Duration, Instant};

use offramp::engine::StartRequest;
use offramp::store::{RunStatus, StepStatus};
use offramp_mock::Fault;
use offramp_mock::atlassian::SAMPLE_ORG_ID;

use crate::common::{Harness, tokens};

const ALICE: &str = "5f8d2c1b9e3a4d0012a4b6c1";
const DANA: &str = "5f8d2c1b9e3a4d0012a4b6c3";
const CAROL: &str = "5f8d2c1b9e3a4d0012a4b6c4";

const CREDENTIAL: &str = r#"credentials: [{ host: "{{ vars.atlassian_url }}", secret: ATLASSIAN_API_KEY, header: Authorization, format: "Bearer {secret}" }]"#;

/// One atlassian step with these `with:` entries; `extra` is appended to the step.
fn pipeline(with: &str, extra: &str) -> String {
    format!(
        r#"version: 1
name: atlassian
vars: {{ atlassian_url: https://api.atlassian.com }}
inputs: {{ email: {{ type: email, required: false }} }}
steps:
  - id: atl
    uses: atlassian
    with: {{ {with}, api_url: "{{{{ vars.atlassian_url }}}}" }}
    allow: ["{{{{ vars.atlassian_url }}}}"]
    {CREDENTIAL}
{extra}"#
    )
}

fn by_email() -> String {
    format!(r#"email: "{{{{ inputs.email }}}}", org_id: {SAMPLE_ORG_ID}, message: Left the company"#)
}

fn paths(h: &Harness) -> Vec<String> {
    h.mock.state.requests().into_iter().map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[tokio::test]
async fn atlassian_finds_by_email_disables_and_a_second_run_is_unchanged() {
    let h = Harness::new().await;
    let yaml = pipeline(&by_email(), "");
    // Dana is on the second page of the organization's managed accounts.
    let (id, status) = h.run(&yaml, &[("email", "dana@example.com")]).await;
    let s = &h.steps(&id).await["atl"];
    assert_eq!(status, RunStatus::Succeeded, "{:?} {:?}", s.error, s.log);
    assert_eq!(s.status, StepStatus::Succeeded);
    let out = s.output.as_ref().unwrap();
    assert_eq!((out["account_id"].as_str(), out["status"].as_str()), (Some(DANA), Some("inactive")));
    let dana = h.mock.state.atlassian.user(DANA).unwrap();
    assert_eq!(dana.account_status, "inactive");
    assert_eq!(dana.disable_message.as_deref(), Some("Left the company"));
    let users = format!("/admin/v1/orgs/{SAMPLE_ORG_ID}/users");
    assert_eq!(
        paths(&h),
        [
            format!("GET {users}"),
            format!("GET {users}"), // the second page (?cursor=2)
            format!("GET /users/{DANA}/manage/profile"),
            format!("POST /users/{DANA}/manage/lifecycle/disable"),
        ]
    );
    assert_eq!(h.mock.state.requests()[1].query.as_deref(), Some("cursor=2"));

    let (id, status) = h.run(&yaml, &[("email", "dana@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let s = &h.steps(&id).await["atl"];
    assert_eq!(s.status, StepStatus::Unchanged, "{:?}", s.error);
    assert_eq!(s.output.as_ref().unwrap()["status"], "inactive");
    assert_eq!(h.mock.state.requests().iter().filter(|r| r.method == "POST").count(), 1, "no second disable");
}

#[tokio::test]
async fn atlassian_without_a_managed_account_is_unchanged_but_a_wrong_id_is_an_error() {
    let h = Harness::new().await;
    let yaml = pipeline(&by_email(), "");
    // Erin has no account at all; Carol's account is not managed by the organization.
    for email in ["erin@example.com", "carol@partner.example"] {
        let (id, status) = h.run(&yaml, &[("email", email)]).await;
        assert_eq!(status, RunStatus::Succeeded);
        let s = &h.steps(&id).await["atl"];
        assert_eq!(s.status, StepStatus::Unchanged, "{email}: {:?}", s.error);
        assert_eq!(s.output.as_ref().unwrap()["found"], false);
    }
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET" && r.path.starts_with("/admin/v1/")));

    // An explicit account id that does not exist is a mistake, not a leaver without an account.
    let (id, status) = h.run(&pipeline(r#"account_id: "557058:0000-nobody""#, "    on_failure: continue\n"), &[]).await;
    assert_eq!(status, RunStatus::Failed);
    let s = &h.steps(&id).await["atl"];
    assert_eq!(s.error.as_deref(), Some("no Atlassian account 557058:0000-nobody (HTTP 404)"));
    assert!(h.mock.state.requests().last().unwrap().path.starts_with("/users/557058%3A0000-nobody/"));

    // Carol by id: Atlassian's 403 key becomes a readable message.
    let (id, _) = h.run(&pipeline(&format!("account_id: {CAROL}"), "    on_failure: continue\n"), &[]).await;
    let s = &h.steps(&id).await["atl"];
    assert_eq!((s.status, s.attempts), (StepStatus::Failed, 1));
    assert_eq!(
        s.error.as_deref(),
        Some(
            "Atlassian refused (HTTP 403, forbidden.targetUnverified): the account's email is not on one of the \
             organization's verified domains"
        )
    );
}

#[tokio::test]
async fn atlassian_rate_limit_waits_for_retry_after_then_succeeds() {
    let h = Harness::new().await;
    h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/lifecycle/disable".into(),
        status: 429,
        times: 1,
        delay_ms: 0,
    });
    let yaml = pipeline(
        &format!("account_id: {ALICE}"),
        "    retry: { attempts: 2, backoff: { initial: 10ms, max: 10ms } }\n",
    );
    let started = Instant::now();
    let (id, status) = h.run(&yaml, &[]).await;
    let s = &h.steps(&id).await["atl"];
    assert_eq!(status, RunStatus::Succeeded, "{:?}", s.error);
    // The host waited out Retry-After: 1 and sent the disable again, in the one attempt.
    assert_eq!((s.status, s.attempts), (StepStatus::Succeeded, 1));
    assert_eq!(crate::common::rate_limit_waits(s), 1, "{}", s.requests);
    let alice = h.mock.state.atlassian.user(ALICE).unwrap();
    assert_eq!((alice.account_status.as_str(), alice.disable_message), ("inactive", None));
    let events = h.store().events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "attempt_failed"));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn atlassian_dry_run_sends_no_disable() {
    let h = Harness::new().await;
    let plan = h.plan(&pipeline(&by_email(), ""));
    let inputs = [("email".to_string(), "alice@example.com".to_string())].into_iter().collect();
    let id = h.engine.start(&plan, StartRequest { inputs, requested_by: "t".into(), dry_run: true }).await.unwrap();
    assert_eq!(h.engine.drive(&id).await.unwrap(), RunStatus::Succeeded);
    let s = &h.steps(&id).await["atl"];
    assert_eq!(s.output.as_ref().unwrap()["would"], "disable", "{:?}", s.error);
    assert!(h.mock.state.requests().iter().all(|r| r.method == "GET"), "{:?}", paths(&h));
    assert_eq!(h.mock.state.atlassian.user(ALICE).unwrap().account_status, "active");
}

#[tokio::test]
async fn each_vendor_credential_goes_to_its_own_steps_only() {
    let h = Harness::new().await;
    // Both vendors live on the one mock host, so only the step's own `credentials:` decide
    // which token a request carries.
    let yaml = format!(
        r#"version: 1
name: both
vars: {{ atlassian_url: https://api.atlassian.com, zoom_url: https://api.zoom.us }}
inputs: {{ email: {{ type: email, required: true }} }}
steps:
  - id: atl
    uses: atlassian
    with: {{ email: "{{{{ inputs.email }}}}", org_id: {SAMPLE_ORG_ID}, api_url: "{{{{ vars.atlassian_url }}}}" }}
    allow: ["{{{{ vars.atlassian_url }}}}"]
    {CREDENTIAL}
  - id: zoom
    uses: zoom
    with: {{ email: "{{{{ inputs.email }}}}", api_url: "{{{{ vars.zoom_url }}}}" }}
    allow: ["{{{{ vars.zoom_url }}}}"]
    credentials: [{{ host: "{{{{ vars.zoom_url }}}}", secret: ZOOM_ACCESS_TOKEN, header: Authorization, format: "Bearer {{secret}}" }}]
  - id: wrong_key
    uses: atlassian
    with: {{ account_id: {ALICE}, api_url: "{{{{ vars.atlassian_url }}}}" }}
    allow: ["{{{{ vars.atlassian_url }}}}"]
    credentials: [{{ host: "{{{{ vars.atlassian_url }}}}", secret: ZOOM_ACCESS_TOKEN, header: Authorization, format: "Bearer {{secret}}" }}]
    needs: [atl]
    on_failure: continue
"#
    );
    let (id, status) = h.run(&yaml, &[("email", "alice@example.com")]).await;
    let s = h.steps(&id).await;
    assert_eq!(s["atl"].status, StepStatus::Succeeded, "{:?}", s["atl"].error);
    assert_eq!(s["zoom"].status, StepStatus::Succeeded, "{:?}", s["zoom"].error);
    let (atl, zoom) = (format!("Bearer {}", tokens().atlassian), format!("Bearer {}", tokens().zoom));
    let requests = h.mock.state.requests();
    let of = |prefixes: &[&str]| -> Vec<_> {
        requests.iter().filter(|r| prefixes.iter().any(|p| r.path.starts_with(p))).collect()
    };
    assert!(!of(&["/v2/"]).is_empty() && !of(&["/users/", "/admin/v1/"]).is_empty());
    assert!(of(&["/v2/"]).iter().all(|r| r.authorization.as_deref() == Some(zoom.as_str())), "{requests:?}");
    // The Atlassian API key went to the Atlassian paths only; the Zoom token that a misconfigured
    // step sent there was refused the way api.atlassian.com refuses an unknown key.
    let atlassian_requests = of(&["/users/", "/admin/v1/"]);
    assert!(atlassian_requests.iter().all(|r| r.authorization.as_deref() == Some(atl.as_str()) || r.status == 401));
    assert_eq!(s["wrong_key"].status, StepStatus::Failed);
    assert_eq!(s["wrong_key"].error.as_deref(), Some("Atlassian answered HTTP 401: Unauthorized"));
    assert_eq!(status, RunStatus::Failed, "the refused step fails the run at the end");
}
