//! The `Store` contract, run against every implementation: SQLite always, PostgreSQL when
//! `OFFRAMP_TEST_DATABASE_URL` names a server (CI sets it; each test gets its own schema).
//! Without it the PostgreSQL half says it was skipped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use offramp::engine::{Engine, EngineConfig};
use offramp::secrets::SecretSource;
use offramp::store::{
    Event, Guard, Lease, NewBatch, NewRun, PgStore, RequestStatus, RunMessage, RunRequest, RunStatus, SqliteStore,
    StepChange, StepStatus, Store, StoreError,
};
use offramp_mock::MockServer;
use serde_json::json;

const PG_ENV: &str = "OFFRAMP_TEST_DATABASE_URL";

/// A fresh store of each kind; `finish` drops the PostgreSQL schema.
struct Stores {
    _dir: tempfile::TempDir,
    list: Vec<(&'static str, Arc<dyn Store>)>,
    schema: Option<(String, String)>,
}

impl Stores {
    async fn finish(self) {
        if let Some((url, schema)) = self.schema {
            drop(self.list);
            PgStore::drop_schema(&url, &schema).await.unwrap();
        }
    }
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let mut list: Vec<(&'static str, Arc<dyn Store>)> = vec![("sqlite", Arc::new(sqlite))];
    let mut schema = None;
    if let Some((pg, url, name)) = postgres().await {
        list.push(("postgres", pg));
        schema = Some((url, name));
    }
    Stores { _dir: dir, list, schema }
}

/// A PostgreSQL store in a schema of its own, or `None` (and a note) without a server.
async fn postgres() -> Option<(Arc<dyn Store>, String, String)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let Ok(url) = std::env::var(PG_ENV) else {
        eprintln!("skipped: the PostgreSQL half of this test (set {PG_ENV}=postgres://USER@HOST/DB to run it)");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("t_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    match PgStore::open_in_schema(&url, &schema).await {
        Ok(s) => Some((Arc::new(s), url, schema)),
        Err(e) => panic!("{PG_ENV} is set but PostgreSQL is not usable: {e}"),
    }
}

fn new_run(id: &str, steps: &[&str]) -> NewRun {
    NewRun {
        id: id.into(),
        pipeline_name: "p".into(),
        pipeline_hash: "h".into(),
        plan: json!({ "name": "p", "steps": steps }),
        subject: "alice@example.com".into(),
        inputs: json!({ "email": "alice@example.com", "n": 3 }),
        requested_by: "test".into(),
        dry_run: true,
        steps: steps.iter().map(|s| (s.to_string(), format!("key-{s}"))).collect(),
        lease: Lease { owner: "creator".into(), until_ms: 0 },
        batch_id: None,
    }
}

fn ev(kind: &str) -> Event {
    Event::new("test", kind, json!({ "k": kind }))
}

fn request(id: &str, needed: u32) -> RunRequest {
    RunRequest {
        id: id.into(),
        pipeline: "offboarding".into(),
        pipeline_hash: "h".into(),
        inputs: json!({ "email": "alice@example.com" }).as_object().unwrap().clone(),
        subject: "alice@example.com".into(),
        requested_by: "U1".into(),
        channel_id: Some("C1".into()),
        approvals_needed: needed,
        allow_self: false,
        status: RequestStatus::Pending,
        decided_by: None,
        run_id: None,
        message_channel: None,
        message_ts: None,
        created_at: "2026-11-28T00:00:00.000Z".into(),
        decided_at: None,
        batch: vec![],
        batch_id: None,
    }
}

#[tokio::test]
async fn runs_steps_and_events_round_trip() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        store.create_run(&new_run("r1", &["a", "b", "c"]), ev("run_created")).await.unwrap();
        store.create_run(&new_run("r2", &["x"]), ev("run_created")).await.unwrap();
        let run = store.run("r1").await.unwrap();
        assert_eq!(
            (run.status, run.dry_run, run.subject.as_str()),
            (RunStatus::Pending, true, "alice@example.com"),
            "{kind}"
        );
        assert_eq!(run.inputs, json!({ "email": "alice@example.com", "n": 3 }), "{kind}");
        assert_eq!(run.plan["steps"], json!(["a", "b", "c"]), "{kind}");
        assert!(run.finished_at.is_none());
        let steps = store.steps("r1").await.unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"], "{kind}: in pipeline order");
        assert!(steps.iter().all(|s| s.status == StepStatus::Pending && s.attempts == 0 && s.pauses == 0), "{kind}");
        assert_eq!(steps[1].idempotency_key, "key-b");
        assert_eq!(steps[0].requests, json!([]), "{kind}: no requests yet");
        assert_eq!(store.runs(10).await.unwrap().len(), 2, "{kind}");
        assert_eq!(store.runs(1).await.unwrap().len(), 1, "{kind}");
        assert!(matches!(store.run("nope").await, Err(StoreError::NotFound(_))), "{kind}");
        let events = store.events("r1").await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind.as_str(), &events[0].detail),
            ("run_created", &json!({ "k": "run_created" })),
            "{kind}"
        );
        // A duplicate id is refused and leaves nothing behind.
        assert!(store.create_run(&new_run("r1", &["z"]), ev("run_created")).await.is_err(), "{kind}");
        assert_eq!(store.steps("r1").await.unwrap().len(), 3, "{kind}");

        assert!(
            store
                .set_run_status("r1", &[RunStatus::Pending], RunStatus::Running, None, ev("run_started"))
                .await
                .unwrap()
        );
        assert!(
            !store.set_run_status("r1", &[RunStatus::Pending], RunStatus::Paused, None, ev("nope")).await.unwrap(),
            "{kind}"
        );
        assert!(store.set_run_status("r1", &[], RunStatus::Succeeded, None, ev("run_succeeded")).await.unwrap());
        let run = store.run("r1").await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(run.finished_at.is_some(), "{kind}: finishing stamps finished_at");
        let kinds: Vec<String> = store.events("r1").await.unwrap().into_iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(kinds, ["run_created", "run_started", "run_succeeded"], "{kind}: a refused change logs nothing");
        store.append_event(None, None, ev("loose")).await.unwrap();
        let recent = store.recent_events(2).await.unwrap();
        assert_eq!(recent[0].kind, "loose", "{kind}: newest first");
        assert!(recent[0].run_id.is_none());
    }
    stores.finish().await;
}

/// A batch, its runs naming it, read back in the order they were made; a run outside it is not
/// listed.
#[tokio::test]
async fn batches_round_trip() {
    let stores = stores().await;
    for (kind, s) in &stores.list {
        let batch = NewBatch {
            id: format!("batch-{kind}"),
            pipeline_name: "offboarding".into(),
            requested_by: "cli:root".into(),
            approved_by: Some("U0ADMIN".into()),
            size: 2,
            request_id: None,
        };
        s.create_batch(&batch).await.unwrap();
        for id in ["b1", "b2"] {
            let mut run = new_run(&format!("{kind}-{id}"), &["a"]);
            run.batch_id = Some(batch.id.clone());
            s.create_run(&run, Event::new("t", "run_created", json!({}))).await.unwrap();
        }
        s.create_run(&new_run(&format!("{kind}-loose"), &["a"]), Event::new("t", "run_created", json!({})))
            .await
            .unwrap();
        let got = s.batch(&batch.id).await.unwrap();
        assert_eq!(
            (got.size, got.approved_by.as_deref(), got.requested_by.as_str()),
            (2, Some("U0ADMIN"), "cli:root"),
            "{kind}"
        );
        let runs = s.batch_runs(&batch.id).await.unwrap();
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [format!("{kind}-b1"), format!("{kind}-b2")], "{kind}");
        assert_eq!(s.run(&format!("{kind}-b1")).await.unwrap().batch_id.as_deref(), Some(batch.id.as_str()));
        assert_eq!(s.run(&format!("{kind}-loose")).await.unwrap().batch_id, None);
        assert!(matches!(s.batch("nope").await, Err(StoreError::NotFound(_))), "{kind}");
    }
    stores.finish().await;
}

#[tokio::test]
async fn step_changes_are_conditional() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        store.create_run(&new_run("r", &["a"]), ev("run_created")).await.unwrap();
        let claim = |attempt| StepChange {
            status: Some(StepStatus::Running),
            started: true,
            attempts: Some(attempt),
            ..Default::default()
        };
        // Claim at attempt 0; a second claim at attempt 0 from pending fails (it is running now).
        assert!(
            store
                .change_step("r", "a", &[StepStatus::Pending], Some(Guard::Attempt(0)), None, claim(1), ev("s"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .change_step("r", "a", &[StepStatus::Pending], Some(Guard::Attempt(0)), None, claim(1), ev("s"))
                .await
                .unwrap(),
            "{kind}"
        );
        assert!(
            !store
                .change_step("r", "a", &[StepStatus::Running], Some(Guard::Attempt(0)), None, claim(2), ev("s"))
                .await
                .unwrap(),
            "{kind}: wrong attempt"
        );
        let pause = StepChange {
            status: Some(StepStatus::Paused),
            error: Some(Some("boom".into())),
            log: Some(vec!["line 1".into(), "line \"2\"".into()]),
            requests: Some(json!([{ "method": "GET", "status": 500 }])),
            paused: true,
            ..Default::default()
        };
        assert!(
            store
                .change_step("r", "a", &[StepStatus::Running], Some(Guard::Attempt(1)), None, pause, ev("step_paused"))
                .await
                .unwrap()
        );
        let s = store.steps("r").await.unwrap().remove(0);
        assert_eq!(
            (s.status, s.attempts, s.pauses, s.error.as_deref()),
            (StepStatus::Paused, 1, 1, Some("boom")),
            "{kind}"
        );
        assert_eq!(s.log, ["line 1", "line \"2\""], "{kind}");
        assert_eq!(s.requests, json!([{ "method": "GET", "status": 500 }]), "{kind}");
        assert!(s.started_at.is_some() && s.finished_at.is_none(), "{kind}");
        // A decision names the pause.
        let retry = StepChange { status: Some(StepStatus::Pending), error: Some(None), ..Default::default() };
        assert!(
            !store
                .change_step("r", "a", &[StepStatus::Paused], Some(Guard::Pause(2)), None, retry.clone(), ev("d"))
                .await
                .unwrap(),
            "{kind}"
        );
        assert!(
            store
                .change_step("r", "a", &[StepStatus::Paused], Some(Guard::Pause(1)), None, retry.clone(), ev("d"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .change_step("r", "a", &[StepStatus::Paused], Some(Guard::Pause(1)), None, retry, ev("d"))
                .await
                .unwrap(),
            "{kind}"
        );
        let done = StepChange {
            status: Some(StepStatus::Succeeded),
            output: Some(json!({ "id": "00u1", "nested": [1, 2, { "x": null }] })),
            finished: true,
            ..Default::default()
        };
        assert!(store.change_step("r", "a", &[], None, None, done, ev("step_finished")).await.unwrap());
        let s = store.steps("r").await.unwrap().remove(0);
        assert_eq!(s.status, StepStatus::Succeeded);
        assert_eq!(s.error, None, "{kind}: Some(None) cleared the error");
        assert_eq!(s.output, Some(json!({ "id": "00u1", "nested": [1, 2, { "x": null }] })), "{kind}");
        assert!(s.finished_at.is_some());
        assert_eq!(store.events("r").await.unwrap().len(), 5, "{kind}: one event per applied change");
        assert!(
            !store.change_step("r", "nope", &[], None, None, StepChange::default(), ev("x")).await.unwrap(),
            "{kind}"
        );
    }
    stores.finish().await;
}

#[tokio::test]
async fn concurrent_decisions_on_one_pause_have_one_winner() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        store.create_run(&new_run("r", &["a"]), ev("run_created")).await.unwrap();
        let pause = StepChange { status: Some(StepStatus::Paused), paused: true, ..Default::default() };
        assert!(store.change_step("r", "a", &[], None, None, pause, ev("p")).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let to = if i % 2 == 0 { StepStatus::Pending } else { StepStatus::Skipped };
                store
                    .change_step(
                        "r",
                        "a",
                        &[StepStatus::Paused],
                        Some(Guard::Pause(1)),
                        None,
                        StepChange { status: Some(to), ..Default::default() },
                        ev("decision"),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{kind}");
        let decisions = store.events("r").await.unwrap().into_iter().filter(|e| e.kind == "decision").count();
        assert_eq!(decisions, 1, "{kind}");
    }
    stores.finish().await;
}

#[tokio::test]
async fn approvers_and_requests() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        assert!(store.add_approver("U1", "ops").await.unwrap());
        assert!(!store.add_approver("U1", "ops").await.unwrap(), "{kind}");
        assert!(store.add_approver("U2", "ops").await.unwrap());
        assert!(store.add_approver("U3", "ops").await.unwrap());
        assert_eq!(store.approvers().await.unwrap().len(), 3);
        assert_eq!(store.approver("U2").await.unwrap().unwrap().added_by, "ops");
        assert!(store.approver("U9").await.unwrap().is_none(), "{kind}");

        store.create_request(&request("q1", 2), ev("run_requested")).await.unwrap();
        let q = store.request("q1").await.unwrap();
        assert_eq!(
            (q.status, q.approvals_needed, q.allow_self, q.channel_id.as_deref()),
            (RequestStatus::Pending, 2, false, Some("C1")),
            "{kind}"
        );
        assert_eq!(q.inputs["email"], "alice@example.com");
        assert!(matches!(store.request("nope").await, Err(StoreError::NoRequest(_))), "{kind}");
        assert_eq!(store.approve_request("q1", "U2").await.unwrap(), Some(1));
        assert_eq!(store.approve_request("q1", "U2").await.unwrap(), None, "{kind}: once per person");
        assert_eq!(store.approve_request("q1", "U3").await.unwrap(), Some(2));
        // Someone taken off the list no longer counts.
        assert!(store.remove_approver("U3", "ops").await.unwrap());
        assert!(!store.remove_approver("U3", "ops").await.unwrap(), "{kind}");
        assert_eq!(store.approve_request("q1", "U1").await.unwrap(), Some(2), "{kind}: U3's approval dropped");
        assert_eq!(store.approvals("q1").await.unwrap().len(), 3);

        store.set_request_message("q1", "C1", "1700.0001").await.unwrap();
        assert_eq!(store.request("q1").await.unwrap().message_ts.as_deref(), Some("1700.0001"));

        // Racing Start clicks: one run.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create_run_for_request(
                        "q1",
                        &format!("U{i}"),
                        &new_run(&format!("run{i}"), &["a"]),
                        ev("run_created"),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{kind}");
        let q = store.request("q1").await.unwrap();
        assert_eq!(q.status, RequestStatus::Started);
        let run_id = q.run_id.clone().unwrap();
        assert!(store.run(&run_id).await.is_ok(), "{kind}: the run exists");
        assert_eq!(store.runs(100).await.unwrap().len(), 1, "{kind}: the losers created nothing");
        assert!(!store.cancel_request("q1", "U1", ev("request_cancelled")).await.unwrap(), "{kind}");
        assert_eq!(store.approve_request("q1", "U2").await.unwrap(), None, "{kind}: not pending any more");

        store.create_request(&request("q2", 0), ev("run_requested")).await.unwrap();
        assert!(store.cancel_request("q2", "U1", ev("request_cancelled")).await.unwrap());
        assert!(!store.create_run_for_request("q2", "U1", &new_run("late", &["a"]), ev("x")).await.unwrap(), "{kind}");
        assert!(store.run("late").await.is_err(), "{kind}");
        assert_eq!(store.request("q2").await.unwrap().decided_by.as_deref(), Some("U1"));
    }
    stores.finish().await;
}

/// A request for several people keeps each one's inputs; starting it records the batch and all
/// its runs in one go, once (racing Starts make one batch), and remembers the batch's message.
#[tokio::test]
async fn a_request_for_several_starts_one_batch_once() {
    let stores = stores().await;
    for (kind, s) in &stores.list {
        let mut req = request("qb", 1);
        req.subject = "2 people: alice@example.com, bob@example.com".into();
        req.batch = ["alice", "bob"]
            .iter()
            .map(|who| offramp::store::BatchItem {
                subject: format!("{who}@example.com"),
                inputs: json!({ "email": format!("{who}@example.com"), "manager": "dana@example.com" })
                    .as_object()
                    .unwrap()
                    .clone(),
            })
            .collect();
        s.create_request(&req, ev("run_requested")).await.unwrap();
        let back = s.request("qb").await.unwrap();
        assert_eq!(back.batch, req.batch, "{kind}");
        assert_eq!(s.request("q-none").await.map(|r| r.batch.len()).ok(), None);

        let batch = |n: usize| NewBatch {
            id: format!("{kind}-batch{n}"),
            pipeline_name: "offboarding".into(),
            requested_by: "slack:U1".into(),
            approved_by: Some(format!("slack:U{n}")),
            size: 2,
            request_id: Some("qb".into()),
        };
        let runs = |n: usize| -> Vec<(NewRun, Event)> {
            ["alice", "bob"]
                .iter()
                .map(|who| {
                    let mut run = new_run(&format!("{kind}-{n}-{who}"), &["a", "b"]);
                    run.batch_id = Some(format!("{kind}-batch{n}"));
                    (run, ev("run_created"))
                })
                .collect()
        };
        let mut tasks = Vec::new();
        for n in 0..4 {
            let (s, batch, runs) = (s.clone(), batch(n), runs(n));
            tasks.push(tokio::spawn(async move {
                s.create_batch_for_request("qb", "U9", &batch, &runs, &ev("run_approved")).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for (n, t) in tasks.into_iter().enumerate() {
            if t.await.unwrap() {
                won.push(n);
            }
        }
        assert_eq!(won.len(), 1, "{kind}: one Start wins");
        let winner = format!("{kind}-batch{}", won[0]);
        let q = s.request("qb").await.unwrap();
        assert_eq!((q.status, q.batch_id.as_deref()), (RequestStatus::Started, Some(winner.as_str())), "{kind}");
        assert_eq!(s.runs(100).await.unwrap().len(), 2, "{kind}: the losers created nothing");
        let runs = s.batch_runs(&winner).await.unwrap();
        assert_eq!(runs.len(), 2, "{kind}");
        assert!(runs.iter().all(|r| r.plan.is_null()), "{kind}: a batch's runs are listed without their plans");
        assert_eq!(s.steps(&runs[0].id).await.unwrap().len(), 2, "{kind}: steps created with the runs");
        let kinds: Vec<String> = s.events(&runs[1].id).await.unwrap().iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(kinds, ["run_created", "run_approved"], "{kind}: each run's approval in the same transaction");
        let b = s.batch(&winner).await.unwrap();
        assert_eq!((b.request_id.as_deref(), b.message_ts.as_deref()), (Some("qb"), None), "{kind}");
        s.set_batch_message(&winner, "C1", "1700.0002").await.unwrap();
        let b = s.batch(&winner).await.unwrap();
        assert_eq!((b.message_channel.as_deref(), b.message_ts.as_deref()), (Some("C1"), Some("1700.0002")), "{kind}");
    }
    stores.finish().await;
}

#[tokio::test]
async fn run_messages_and_replay_guard() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        assert!(store.run_message("r").await.unwrap().is_none());
        let m =
            RunMessage { run_id: "r".into(), channel: "C1".into(), ts: String::new(), request_id: Some("q".into()) };
        store.set_run_message(&m).await.unwrap();
        store.set_run_message(&RunMessage { ts: "1700.1".into(), ..m.clone() }).await.unwrap();
        let got = store.run_message("r").await.unwrap().unwrap();
        assert_eq!((got.ts.as_str(), got.request_id.as_deref()), ("1700.1", Some("q")), "{kind}");

        assert!(store.first_sighting("sig-a", 1_000, 660).await.unwrap());
        assert!(!store.first_sighting("sig-a", 1_001, 660).await.unwrap(), "{kind}: a replay");
        assert!(store.first_sighting("sig-b", 1_001, 660).await.unwrap());
        // Long after, the old signature is forgotten (its timestamp is out of the window anyway).
        assert!(store.first_sighting("sig-a", 2_000, 660).await.unwrap(), "{kind}");
    }
    stores.finish().await;
}

#[tokio::test]
async fn the_engine_runs_a_pipeline_on_each_store() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        let mock = MockServer::start(common::TOKEN).await.unwrap();
        let secrets = SecretSource::fixed([("OKTA_API_TOKEN".to_string(), common::TOKEN.to_string())]);
        let engine = Engine::new(
            store.clone(),
            common::sandbox(),
            secrets,
            EngineConfig { network: common::loopback(), ..EngineConfig::default() },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines/okta.yaml");
        let opts = offramp::pipeline::LoadOptions {
            plugins_dir: std::path::PathBuf::from(offramp::BUILTIN_PLUGINS_DIR),
            vars: [("okta_url".to_string(), mock.url())].into_iter().collect(),
            allow_cap: None,
            contracts: Default::default(),
        };
        let plan = offramp::pipeline::load(&path, &opts).unwrap();
        drop(dir);
        let req = offramp::engine::StartRequest {
            inputs: [("email".to_string(), "alice@example.com".to_string())].into_iter().collect(),
            requested_by: "test".into(),
            dry_run: false,
        };
        let id = engine.start(&plan, req).await.unwrap();
        assert_eq!(engine.drive(&id).await.unwrap(), RunStatus::Succeeded, "{kind}");
        let steps = store.steps(&id).await.unwrap();
        assert!(steps.iter().all(|s| s.status.is_finished()), "{kind}: {steps:?}");
        assert_eq!(
            steps.iter().find(|s| s.step_id == "deactivate").unwrap().output.as_ref().unwrap()["status"],
            "DEPROVISIONED"
        );
        assert_eq!(mock.state.okta.user("alice@example.com").unwrap().status, "DEPROVISIONED", "{kind}");
        let raw =
            serde_json::to_string(&store.events(&id).await.unwrap()).unwrap() + &serde_json::to_string(&steps).unwrap();
        assert!(!raw.contains(common::TOKEN), "{kind}: the token is not stored");
    }
    stores.finish().await;
}

/// Issue 12 §2: a step whose result the database refuses (PostgreSQL's jsonb cannot hold
/// `\u0000`; SQLite can) fails with that reason — it never stays `running`, the run ends, and
/// there is nothing left for `offramp recover` to pick up and die on again.
#[tokio::test]
async fn a_result_the_database_refuses_fails_the_step_and_the_run_ends() {
    let stores = stores().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poison.yaml");
    std::fs::write(
        &path,
        "version: 1\nname: poison\nsteps:\n  - { id: poison, uses: adversary, with: { attack: nul_output }, on_failure: continue }\n  - { id: after, uses: testkit, with: { mode: echo, value: 1 } }\n",
    )
    .unwrap();
    let opts = offramp::pipeline::LoadOptions {
        plugins_dir: std::path::PathBuf::from(offramp::TEST_PLUGINS_DIR),
        ..Default::default()
    };
    let plan = offramp::pipeline::load(&path, &opts).unwrap();
    for (kind, store) in stores.list.clone() {
        let config = EngineConfig { network: common::loopback(), ..EngineConfig::default() };
        let engine = Engine::new(store.clone(), common::sandbox(), SecretSource::fixed([]), config).unwrap();
        let req =
            offramp::engine::StartRequest { inputs: Default::default(), requested_by: "test".into(), dry_run: false };
        let id = engine.start(&plan, req).await.unwrap();
        let status = engine.drive(&id).await.unwrap_or_else(|e| panic!("{kind}: the drive failed: {e}"));
        let steps = store.steps(&id).await.unwrap();
        assert!(steps.iter().all(|s| s.status.is_finished()), "{kind}: {steps:?}");
        let poison = steps.iter().find(|s| s.step_id == "poison").unwrap();
        if kind == "postgres" {
            assert_eq!(status, RunStatus::Failed, "{kind}");
            assert_eq!(poison.status, StepStatus::Failed, "{kind}");
            let error = poison.error.clone().unwrap_or_default();
            assert!(error.contains("the step's result could not be stored"), "{kind}: {error}");
        } else {
            assert_eq!((status, poison.status), (RunStatus::Succeeded, StepStatus::Succeeded), "{kind}");
        }
        assert!(engine.claim_orphans(10).await.unwrap().is_empty(), "{kind}: nothing left in flight");
    }
    stores.finish().await;
}

#[tokio::test]
async fn leases_fence_writes_and_expire() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        store.create_run(&new_run("r", &["a"]), ev("run_created")).await.unwrap();
        // The creator's lease (until 0) has run out: A may claim it; B may not while A holds it.
        assert!(store.claim_run("r", "A", 1_000, 2_000).await.unwrap(), "{kind}");
        assert!(!store.claim_run("r", "B", 1_500, 9_000).await.unwrap(), "{kind}: A holds it until 2000");
        assert!(store.claim_run("r", "A", 1_500, 3_000).await.unwrap(), "{kind}: A may extend its own");
        let lease = store.run("r").await.unwrap().lease;
        assert_eq!(lease, Some(Lease { owner: "A".into(), until_ms: 3_000 }), "{kind}");
        // A stops renewing; at 3001 B takes over, and A's writes are refused from then on.
        assert!(store.claim_run("r", "B", 3_001, 10_000).await.unwrap(), "{kind}");
        let claim = StepChange { status: Some(StepStatus::Running), started: true, ..Default::default() };
        let refused = store.change_step("r", "a", &[], None, Some("A"), claim.clone(), ev("s")).await;
        assert!(matches!(refused, Err(StoreError::LeaseLost(ref r)) if r == "r"), "{kind}: {refused:?}");
        let refused = store.set_run_status("r", &[], RunStatus::Running, Some("A"), ev("x")).await;
        assert!(matches!(refused, Err(StoreError::LeaseLost(_))), "{kind}");
        assert_eq!(store.steps("r").await.unwrap()[0].status, StepStatus::Pending, "{kind}: nothing written");
        assert_eq!(store.events("r").await.unwrap().len(), 1, "{kind}: no event either");
        assert!(store.change_step("r", "a", &[], None, Some("B"), claim, ev("s")).await.unwrap(), "{kind}");
        // The heartbeat extends its owner's leases on the runs it names, and no one else's.
        store.create_run(&new_run("other", &["a"]), ev("run_created")).await.unwrap();
        assert!(store.claim_run("other", "C", 1, 50_000).await.unwrap());
        let both = ["r".to_string(), "other".to_string()];
        assert_eq!(store.renew_leases("B", &both, 20_000).await.unwrap(), 1, "{kind}");
        assert_eq!(store.run("r").await.unwrap().lease.unwrap().until_ms, 20_000, "{kind}");
        assert_eq!(store.run("other").await.unwrap().lease.unwrap().until_ms, 50_000, "{kind}");
        // Releasing someone else's lease does nothing; pausing the run ends the lease.
        store.release_run("r", "C").await.unwrap();
        assert_eq!(store.run("r").await.unwrap().lease.unwrap().owner, "B", "{kind}");
        assert!(store.set_run_status("r", &[], RunStatus::Running, Some("B"), ev("run_started")).await.unwrap());
        assert!(store.set_run_status("r", &[], RunStatus::Paused, Some("B"), ev("run_paused")).await.unwrap());
        assert_eq!(store.run("r").await.unwrap().lease, None, "{kind}: a paused run is nobody's");
    }
    stores.finish().await;
}

#[tokio::test]
async fn orphans_are_claimed_once_by_concurrent_claimers() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        // 40 runs whose process died, 1 still leased to a live process, 1 finished, 1 paused on
        // a step (waiting for a person), 1 paused with nothing paused (a decision that raced).
        for i in 0..40 {
            store.create_run(&new_run(&format!("dead{i:02}"), &["a"]), ev("run_created")).await.unwrap();
        }
        let mut live = new_run("live", &["a"]);
        live.lease = Lease { owner: "live".into(), until_ms: i64::MAX };
        store.create_run(&live, ev("run_created")).await.unwrap();
        for (id, to, step) in [
            ("done", RunStatus::Succeeded, StepStatus::Succeeded),
            ("waiting", RunStatus::Paused, StepStatus::Paused),
            ("raced", RunStatus::Paused, StepStatus::Pending),
        ] {
            store.create_run(&new_run(id, &["a"]), ev("run_created")).await.unwrap();
            let change = StepChange { status: Some(step), ..Default::default() };
            store.change_step(id, "a", &[], None, None, change, ev("s")).await.unwrap();
            store.set_run_status(id, &[], to, None, ev("r")).await.unwrap();
        }
        let mut tasks = Vec::new();
        for c in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_orphans(&format!("claimer{c}"), 1_000, 60_000, 3).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|c| c.run_id));
                }
            }));
        }
        let mut all: Vec<String> = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        let mut expected: Vec<String> = (0..40).map(|i| format!("dead{i:02}")).collect();
        expected.push("raced".into());
        expected.sort();
        assert_eq!(all, expected, "{kind}: every orphan claimed exactly once, nothing else");
        for id in &all {
            let claims = store.events(id).await.unwrap().into_iter().filter(|e| e.kind == "run_claimed").count();
            assert_eq!(claims, 1, "{kind}: {id}");
            assert!(store.run(id).await.unwrap().lease.unwrap().owner.starts_with("claimer"), "{kind}");
        }
        assert_eq!(store.run("live").await.unwrap().lease.unwrap().owner, "live", "{kind}");
    }
    stores.finish().await;
}

#[tokio::test]
async fn paused_runs_are_due_a_reminder_once_per_interval() {
    let stores = stores().await;
    for (kind, store) in stores.list.clone() {
        for id in ["paused", "running"] {
            store.create_run(&new_run(id, &["a"]), ev("run_created")).await.unwrap();
        }
        store.set_run_status("paused", &[], RunStatus::Paused, None, ev("run_paused")).await.unwrap();
        store.set_run_status("running", &[], RunStatus::Running, None, ev("run_started")).await.unwrap();
        // Pretend the clock reads 2030 (everything here happened "long ago").
        let due = store.due_reminders("2029-12-31T23:00:00.000Z", "2030-01-01T00:00:00.000Z", 10).await.unwrap();
        assert_eq!(due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["paused"], "{kind}");
        let again = store.due_reminders("2029-12-31T23:00:00.000Z", "2030-01-01T00:00:01.000Z", 10).await.unwrap();
        assert!(again.is_empty(), "{kind}: just reminded");
        let later = store.due_reminders("2030-01-01T00:30:00.000Z", "2030-01-01T01:30:00.000Z", 10).await.unwrap();
        assert_eq!(later.len(), 1, "{kind}: an interval later, again");
    }
    stores.finish().await;
}
