//! A run request's rules are the engine's: asked for, approved under the two-person rule,
//! started once, cancelled, refused when its pipeline changed. Slack (or any other front door)
//! calls these operations and only says the outcome; here they are used with no Slack at all.

mod common;

use common::Harness;
use offramp::engine::{Approval, EngineError, NewRequest, Person, RequestRefused, Started};
use offramp::pipeline::Plan;
use offramp::store::{EventKind, RequestStatus, RunStatus};

/// A one-step pipeline; `approvers: 0` leaves `approval:` out (the requester starts alone).
fn pipeline(approvers: u32, allow_self: bool, description: &str) -> String {
    let approval = match approvers {
        0 => String::new(),
        n => format!("approval: {{ approvers: {n}, allow_self: {allow_self} }}\n"),
    };
    format!(
        r#"version: 1
name: guarded
description: {description}
{approval}inputs: {{ email: {{ type: email, required: true }} }}
steps:
  - id: echo
    uses: testkit
    with: {{ mode: echo, value: "{{{{ inputs.email }}}}" }}
"#
    )
}

fn web(id: &str) -> Person<'_> {
    Person { via: "web", id }
}

fn asked(email: &str) -> NewRequest {
    NewRequest {
        pipeline: "guarded".into(),
        inputs: [("email".to_string(), email.to_string())].into(),
        channel_id: None,
    }
}

async fn request(h: &Harness, plan: &Plan, by: &str) -> String {
    h.engine.request_run(plan, asked("alice@example.com"), web(by)).await.expect("request recorded").id
}

#[tokio::test]
async fn two_approvers_other_than_the_requester_start_one_run() {
    let h = Harness::new().await;
    let plan = h.plan(&pipeline(2, false, "two others"));
    for who in ["ann", "bob", "cat"] {
        h.store().add_approver(who, "test").await.unwrap();
    }
    let id = request(&h, &plan, "ann").await;

    // The requester's own approval does not count.
    let own = h.engine.approve_request(&id, web("ann")).await.unwrap_err();
    assert!(matches!(own, RequestRefused::OwnRequest { needed: 2 }), "{own:?}");

    let (_, first) = h.engine.approve_request(&id, web("bob")).await.unwrap();
    assert_eq!(first, Approval::Waiting { count: 1, needed: 2 });
    let again = h.engine.approve_request(&id, web("bob")).await.unwrap_err();
    assert!(matches!(again, RequestRefused::AlreadyApproved), "{again:?}");

    let (req, second) = h.engine.approve_request(&id, web("cat")).await.unwrap();
    assert_eq!(second, Approval::Start);
    let Started::Run(run_id) = h.engine.start_request(&plan, &req, web("cat")).await.unwrap() else {
        panic!("a request for one person starts one run")
    };

    // A second Start finds the request closed, naming the run it started.
    let twice = h.engine.start_request(&plan, &req, web("bob")).await.unwrap_err();
    match twice {
        RequestRefused::Closed(now) => {
            assert_eq!(now.status, RequestStatus::Started);
            assert_eq!(now.run_id.as_deref(), Some(run_id.as_str()));
        }
        other => panic!("expected the request closed, got {other:?}"),
    }
    assert_eq!(h.engine.drive(&run_id).await.unwrap(), RunStatus::Succeeded);
    let run = h.store().run(&run_id).await.unwrap();
    assert_eq!(run.requested_by, "web:ann");
    let events = h.store().events(&run_id).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::RunApproved && e.actor == "web:cat"), "{events:?}");
}

#[tokio::test]
async fn without_approvers_only_the_requester_starts_and_anyone_can_cancel_once() {
    let h = Harness::new().await;
    let plan = h.plan(&pipeline(0, false, "no approval"));
    let id = request(&h, &plan, "ann").await;

    let other = h.engine.approve_request(&id, web("bob")).await.unwrap_err();
    // A requester who is not a Slack user is recorded with their front door.
    assert!(matches!(&other, RequestRefused::OnlyRequester { requested_by } if requested_by == "web:ann"), "{other:?}");
    let (_, mine) = h.engine.approve_request(&id, web("ann")).await.unwrap();
    assert_eq!(mine, Approval::Start);

    let cancelled = h.engine.cancel_request(&id, web("bob")).await.unwrap();
    assert_eq!(cancelled.id, id);
    let now = h.store().request(&id).await.unwrap();
    assert_eq!((now.status, now.decided_by.as_deref()), (RequestStatus::Cancelled, Some("web:bob")));
    let late = h.engine.approve_request(&id, web("ann")).await.unwrap_err();
    assert!(matches!(&late, RequestRefused::Closed(r) if r.status == RequestStatus::Cancelled), "{late:?}");
    assert!(matches!(h.engine.cancel_request(&id, web("ann")).await, Err(RequestRefused::Closed(_))));
    assert!(matches!(h.engine.approve_request("no-such-id", web("ann")).await, Err(RequestRefused::Unknown)));
}

#[tokio::test]
async fn a_request_whose_pipeline_changed_is_cancelled_not_started() {
    let h = Harness::new().await;
    let asked_for = h.plan(&pipeline(0, false, "as asked"));
    let id = request(&h, &asked_for, "ann").await;
    let (req, _) = h.engine.approve_request(&id, web("ann")).await.unwrap();

    let edited = h.plan(&pipeline(0, false, "edited since"));
    let refused = h.engine.start_request(&edited, &req, web("ann")).await.unwrap_err();
    assert!(matches!(&refused, RequestRefused::PipelineChanged { pipeline } if pipeline == "guarded"), "{refused:?}");
    let now = h.store().request(&id).await.unwrap();
    assert_eq!((now.status, now.run_id), (RequestStatus::Cancelled, None));
    assert!(h.store().runs(10).await.unwrap().is_empty(), "nothing started");
}

#[tokio::test]
async fn a_request_with_bad_inputs_is_refused_before_anything_is_recorded() {
    let h = Harness::new().await;
    let plan = h.plan(&pipeline(1, false, "inputs"));
    let refused = h.engine.request_run(&plan, asked("not-an-email"), web("ann")).await.unwrap_err();
    match refused {
        RequestRefused::Engine(EngineError::Inputs(errors)) => {
            assert!(errors.iter().any(|e| e.contains("not-an-email")), "{errors:?}")
        }
        other => panic!("expected an input error, got {other:?}"),
    }
    let events = h.store().recent_events(10).await.unwrap();
    assert!(events.iter().all(|e| e.kind != EventKind::RunRequested), "{events:?}");
}
