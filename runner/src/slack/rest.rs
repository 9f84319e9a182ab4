//! `/api/…`: the results table and run requests for machines (an HR system, a script), behind
//! the bearer token `OFFRAMP_API_TOKEN`.
//!
//! `POST /api/runs` asks for one run or many (a batch) under the same rules as `/offboard`
//! ([`Engine::request_batch`](crate::engine::Engine::request_batch)): every row is checked
//! before anything is recorded; a request the rules let its requester start alone starts at
//! once (201), one that needs approvers — the pipeline's `approval:`, or more people than the
//! operator's `batches: { two_person_over }` — is posted to the Slack channel for them (202).
//!
//! ```text
//! POST /api/runs
//! Authorization: Bearer …
//! { "pipeline": "offboarding", "requested_by": "workday",
//!   "inputs": { "manager": "dana@example.com" },          // every run's
//!   "runs": [ { "email": "alice@example.com" }, { "email": "bob@example.com", "manager": "eve@example.com" } ] }
//! ```

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{AppError, AppState};
use crate::engine::{Approval, EngineError, NewBatchRequest, Person, RequestRefused, Started};

fn check_bearer(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(expected) = &state.config().api_token else { return Err(AppError::Unauthorized) };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized)?;
    let (a, b) = (given.trim().as_bytes(), expected.expose().as_bytes());
    if a.len() == b.len() && bool::from(a.ct_eq(b)) { Ok(()) } else { Err(AppError::Unauthorized) }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

pub(super) async fn list_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, AppError> {
    check_bearer(&state, &headers)?;
    let runs = state.store().runs(q.limit.clamp(1, 500)).await?;
    Ok(axum::Json(json!({ "runs": runs })))
}

pub(super) async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    check_bearer(&state, &headers)?;
    let run = state.store().run(&id).await?;
    let steps = state.store().steps(&id).await?;
    let events = state.store().events(&id).await?;
    Ok(axum::Json(json!({ "run": run, "steps": steps, "events": events })))
}

/// A batch and where each of its runs stands.
pub(super) async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    check_bearer(&state, &headers)?;
    let batch = state.store().batch(&id).await?;
    let runs = state.store().batch_runs(&id).await?;
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| json!({ "id": r.id, "subject": r.subject, "status": r.status, "finished_at": r.finished_at }))
        .collect();
    Ok(axum::Json(json!({ "batch": batch, "runs": runs })))
}

/// What `POST /api/runs` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRuns {
    /// A pipeline of the pipelines directory; the default pipeline without one.
    #[serde(default)]
    pipeline: Option<String>,
    /// Who asks, for the event log and the approvers (`api:NAME`); `api:client` without one.
    #[serde(default)]
    requested_by: Option<String>,
    /// Inputs every run gets (a row's own value wins).
    #[serde(default)]
    inputs: BTreeMap<String, Value>,
    /// One object of inputs per run; without it, one run of `inputs`.
    #[serde(default)]
    runs: Option<Vec<BTreeMap<String, Value>>>,
}

/// An input value as the pipeline's `key=value` text: strings as they are, numbers and
/// booleans written out; anything else is refused.
fn raw_input(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => Err(format!("`{key}` must be a string, number or boolean")),
    }
}

pub(super) async fn create_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    check_bearer(&state, &headers)?;
    let ask: CreateRuns = serde_json::from_slice(&body)
        .map_err(|e| AppError::Invalid(vec![format!("the body is not a run request: {e}")]))?;
    let requester = ask.requested_by.unwrap_or_else(|| "client".into());
    // Shown in Slack messages: no room for markup (`<!channel>`, a link, a code span's end).
    if requester.is_empty()
        || requester.len() > 64
        || !requester.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(AppError::Invalid(vec!["`requested_by` must be 1-64 of A-Z a-z 0-9 . _ -".into()]));
    }
    let max = state.engine().batch_policy().max_size as usize;
    if ask.runs.as_ref().is_some_and(|r| r.len() > max) {
        return Err(AppError::Invalid(vec![format!(
            "{} runs in one request; at most {max} (the operator's `batches: {{ max_size }}`)",
            ask.runs.as_ref().map_or(0, Vec::len)
        )]));
    }
    let name = match ask.pipeline {
        Some(p) => super::command_text::pipeline_name(&p).map_err(|e| AppError::Invalid(vec![e]))?,
        None => state.config().default_pipeline.clone(),
    };
    let plan = state.load_pipeline(&name).await.map_err(|e| AppError::Invalid(vec![e]))?;
    let mut problems = Vec::new();
    let shared: BTreeMap<String, String> = ask
        .inputs
        .iter()
        .filter_map(|(k, v)| {
            raw_input(k, v).map_err(|e| problems.push(format!("inputs: {e}"))).ok().map(|v| (k.clone(), v))
        })
        .collect();
    let rows: Vec<BTreeMap<String, String>> = match ask.runs {
        None => vec![shared.clone()],
        Some(rows) => rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut inputs = shared.clone();
                for (k, v) in row {
                    match raw_input(k, v) {
                        Ok(v) => {
                            inputs.insert(k.clone(), v);
                        }
                        Err(e) => problems.push(format!("runs[{i}]: {e}")),
                    }
                }
                inputs
            })
            .collect(),
    };
    if rows.is_empty() {
        problems.push("`runs` is empty: nothing to start".into());
    }
    if !problems.is_empty() {
        return Err(AppError::Invalid(problems));
    }
    let by = Person { via: "api", id: &requester };
    let new = NewBatchRequest { pipeline: name.clone(), rows, channel_id: None };
    let req = state.engine().request_batch(&plan, new, by).await.map_err(refused)?;
    if req.approvals_needed > 0 {
        super::commands::ask_for_approval(&state, &req, &plan, None);
        let body = json!({
            "request": req.id,
            "status": "pending",
            "approvals_needed": req.approvals_needed,
            "message": format!("waiting for {} approver(s) in the Slack channel to press Start", req.approvals_needed),
        });
        return Ok((StatusCode::ACCEPTED, axum::Json(body)));
    }
    // Nobody else needs to agree: the requester's own request starts now.
    let req = match state.engine().approve_request(&req.id, by).await.map_err(refused)? {
        (req, Approval::Start) => req,
        (_, Approval::Waiting { .. }) => {
            return Err(AppError::Internal(anyhow::anyhow!("an API request waits for approvals it was not asked")));
        }
    };
    let started = state.engine().start_request(&plan, &req, by).await.map_err(refused)?;
    let body = match &started {
        Started::Run(id) => {
            state.spawn_run(id, Some(req.id.clone()));
            json!({ "request": req.id, "status": "started", "runs": [id] })
        }
        Started::Batch { id, runs } => {
            state.spawn_batch(id, runs);
            json!({ "request": req.id, "status": "started", "batch": id, "runs": runs })
        }
    };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// A refused request, said to the machine that made it: input problems in full, the rest
/// without internals.
fn refused(e: RequestRefused) -> AppError {
    match e {
        RequestRefused::Engine(EngineError::Inputs(problems)) => AppError::Invalid(problems),
        RequestRefused::Store(e) => e.into(),
        RequestRefused::Engine(e) => AppError::Internal(e.into()),
        e @ (RequestRefused::TooMany { .. } | RequestRefused::PipelineChanged { .. }) => {
            AppError::Invalid(vec![e.to_string()])
        }
        other => AppError::Internal(anyhow::anyhow!("{other}")),
    }
}
