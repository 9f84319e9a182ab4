//! `POST /slack/interactions`: button clicks. This is where a click becomes an engine
//! decision: Start → [`Engine::approve_request`](crate::engine::Engine::approve_request) then
//! [`Engine::start_request`](crate::engine::Engine::start_request), Cancel →
//! [`Engine::cancel_request`](crate::engine::Engine::cancel_request) (the rules of a request
//! live there), Retry / Skip / Abort → [`Engine::decide`](crate::engine::Engine::decide), the
//! same entry point as `offramp resume`. The click is acknowledged at once; its effect and any
//! answer follow (through the store, the run message and the `response_url`). What is Slack's
//! is only how each outcome is said and shown.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocks::{self, DecisionRef, mention};
use super::{AppError, AppState, ephemeral};
use crate::engine::{Approval, Decision, DecisionOutcome, EngineError, Person, RequestRefused, Started};
use crate::store::{RequestStatus, RunRequest, StoreError};

#[derive(Debug, Deserialize)]
struct Form {
    payload: String,
}

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    response_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

pub(super) async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = match state.inner.verifier.verify(&headers, &body, super::verify::unix_now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(target: "offramp::serve", reason = %e, "refused an unverified interaction");
            return AppError::Unauthorized.into_response();
        }
    };
    let Some(payload) = parse_payload(&body) else {
        tracing::info!(target: "offramp::serve", "unreadable interaction payload");
        return AppError::BadRequest.into_response();
    };
    // Acknowledge now; the click's effect follows in the background.
    tokio::spawn(async move { click(state, signature, payload).await });
    StatusCode::OK.into_response()
}

/// The interaction body: a form whose `payload` field is JSON.
fn parse_payload(body: &[u8]) -> Option<Payload> {
    super::form::check_utf8(body).ok()?;
    serde_urlencoded::from_bytes::<Form>(body).ok().and_then(|f| serde_json::from_str::<Payload>(&f.payload).ok())
}

/// Everything the route does with an untrusted body before it needs state (for the fuzzer):
/// the payload, and each button's value as a decision reference.
pub(super) fn parse_untrusted(body: &[u8]) -> Option<usize> {
    let payload = parse_payload(body)?;
    Some(
        payload
            .actions
            .iter()
            .filter_map(|a| a.value.as_deref())
            .filter(|v| serde_json::from_str::<super::blocks::DecisionRef>(v).is_ok())
            .count(),
    )
}

async fn click(state: AppState, signature: String, payload: Payload) {
    let reply_to = payload.response_url.clone();
    let tell = |text: String| state.respond_later(reply_to.clone(), with_no_replace(ephemeral(text)));
    match state.first_sighting(&signature, super::Durable::Yes).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(target: "offramp::serve", user = %payload.user.id, "replayed interaction ignored");
            return;
        }
        Err(e) => {
            tracing::error!(target: "offramp::serve", error = %e, "replay check failed");
            return tell("offramp cannot reach its database right now; nothing happened. Try again shortly.".into());
        }
    }
    if payload.kind != "block_actions" {
        return;
    }
    let Some(action) = payload.actions.first() else { return };
    let user = payload.user.id.as_str();
    let value = action.value.clone().unwrap_or_default();
    match state.is_approver(user).await {
        Ok(true) => {}
        Ok(false) => {
            state.log_refusal(user, json!({ "button": action.action_id, "value": value })).await;
            return tell(format!(
                "You are not on offramp's approvers list, so this click did nothing. An operator can add you with `offramp approvers add {user}`."
            ));
        }
        Err(e) => {
            tracing::error!(target: "offramp::serve", error = %e, "approver check failed");
            return tell("offramp cannot reach its database right now; nothing happened. Try again shortly.".into());
        }
    }
    let outcome = match action.action_id.as_str() {
        blocks::START => start(&state, user, &value, &reply_to).await,
        blocks::CANCEL => cancel(&state, user, &value, &reply_to).await,
        blocks::RETRY => decide(&state, user, &value, Decision::Retry).await,
        blocks::SKIP => decide(&state, user, &value, Decision::Skip).await,
        blocks::ABORT => decide(&state, user, &value, Decision::Abort).await,
        other => Err(format!("offramp does not know the button `{other}`.")),
    };
    if let Err(text) = outcome {
        tell(text);
    }
}

/// An ephemeral answer that leaves the clicked message as it is.
fn with_no_replace(mut v: Value) -> Value {
    v["replace_original"] = json!(false);
    v
}

fn store_trouble(e: impl std::fmt::Display) -> String {
    tracing::error!(target: "offramp::serve", error = %e, "store error while handling a click");
    "offramp cannot reach its database right now; nothing happened. Try again shortly.".into()
}

fn closed_text(req: &RunRequest) -> String {
    match req.status {
        RequestStatus::Pending => "This request is still waiting.".into(),
        RequestStatus::Started => format!(
            "This request was already started by {} ({}).",
            req.decided_by.as_deref().map_or_else(|| "someone".into(), mention),
            match (&req.run_id, &req.batch_id) {
                (_, Some(batch)) => format!("batch `{batch}`"),
                (run, None) => format!("run `{}`", run.as_deref().unwrap_or("?")),
            }
        ),
        RequestStatus::Cancelled => format!(
            "This request was cancelled by {}.",
            req.decided_by.as_deref().map_or_else(|| "someone".into(), mention)
        ),
    }
}

/// How a refused Start or Cancel is said.
fn refusal_text(refused: RequestRefused) -> String {
    match refused {
        RequestRefused::Unknown => "offramp has no record of this request.".into(),
        RequestRefused::Closed(req) => closed_text(&req),
        RequestRefused::OnlyRequester { requested_by } => {
            format!("Only {} can start this request.", mention(&requested_by))
        }
        RequestRefused::OwnRequest { needed } => format!(
            "You asked for this run, so your Start does not count: {needed} other approver{} must press it.",
            if needed == 1 { "" } else { "s" }
        ),
        RequestRefused::AlreadyApproved => "You have already approved this request.".into(),
        e @ RequestRefused::TooMany { .. } => format!("{e}."),
        RequestRefused::PipelineChanged { pipeline } => format!(
            "Pipeline `{pipeline}` changed since this request was made, so it was not started. Run the command again to see the new steps."
        ),
        RequestRefused::Engine(EngineError::Inputs(errors)) => {
            format!("The run could not start: {}", errors.join("; "))
        }
        RequestRefused::Engine(e) => store_trouble(e),
        RequestRefused::Store(e) => store_trouble(e),
    }
}

fn slack(user: &str) -> Person<'_> {
    Person { via: "slack", id: user }
}

async fn start(state: &AppState, user: &str, request_id: &str, reply_to: &Option<String>) -> Result<(), String> {
    match state.engine().approve_request(request_id, slack(user)).await.map_err(refusal_text)? {
        (req, Approval::Start) => launch(state, &req, user, reply_to).await,
        (req, Approval::Waiting { count, needed }) => {
            // Not enough yet: show the approvals so far on the channel post.
            refresh_request_message(state, &req).await;
            Err(format!("Approved ({count} of {needed}). The run starts when enough approvers have pressed Start."))
        }
    }
}

/// Re-renders the channel post of a two-person request (approvals so far), unless it has
/// been started or cancelled meanwhile (then its closing update must not be undone).
async fn refresh_request_message(state: &AppState, req: &RunRequest) {
    let (Some(channel), Some(ts)) = (&req.message_channel, &req.message_ts) else { return };
    let Ok(plan) = state.load_pipeline(&req.pipeline).await else { return };
    state.api().pace(channel).await;
    match state.store().request(&req.id).await {
        Ok(now) if now.status == RequestStatus::Pending => {}
        _ => return,
    }
    let approvals = state.store().approvals(&req.id).await.unwrap_or_default();
    let (text, blocks) = blocks::request_message(req, &plan, &approvals, true);
    if let Err(e) = state.api().update(channel, ts, &text, &blocks).await {
        tracing::warn!(target: "offramp::slack", error = %e, "cannot update the approval request");
    }
}

/// Starts the run of an approved request ([`Engine::start_request`](crate::engine::Engine::start_request):
/// of two racing clicks one starts it), then drives it and closes the request's messages.
async fn launch(state: &AppState, req: &RunRequest, user: &str, reply_to: &Option<String>) -> Result<(), String> {
    let plan = state.load_pipeline(&req.pipeline).await?;
    let started = state.engine().start_request(&plan, req, slack(user)).await.map_err(refusal_text)?;
    let actor = slack(user).actor();
    let what = match &started {
        Started::Run(run_id) => {
            state.spawn_run(run_id, Some(req.id.clone()));
            format!("run `{run_id}`")
        }
        Started::Batch { id, runs } => {
            state.spawn_batch(id, runs);
            format!("batch `{id}` ({} runs)", runs.len())
        }
    };
    let text = format!(
        "Started {what}: `{}` for {} (approved by {}). Follow it in <#{}>.",
        req.pipeline,
        req.subject,
        mention(&actor),
        state.config().channel
    );
    // The ephemeral confirmation loses its buttons; so does a channel approval post.
    state.respond_later(
        reply_to.clone(),
        json!({ "replace_original": true, "text": text, "blocks": blocks::request_closed(&text) }),
    );
    if let (Some(channel), Some(ts)) = (&req.message_channel, &req.message_ts) {
        let (api, channel, ts) = (state.api().clone(), channel.clone(), ts.clone());
        tokio::spawn(async move {
            api.pace(&channel).await;
            if let Err(e) = api.update(&channel, &ts, &text, &blocks::request_closed(&text)).await {
                tracing::warn!(target: "offramp::slack", error = %e, "cannot close the approval request");
            }
        });
    }
    Ok(())
}

async fn cancel(state: &AppState, user: &str, request_id: &str, reply_to: &Option<String>) -> Result<(), String> {
    let req = state.engine().cancel_request(request_id, slack(user)).await.map_err(refusal_text)?;
    let actor = slack(user).actor();
    let text = format!("Cancelled by {}: nothing was run for {}.", mention(&actor), req.subject);
    state.respond_later(
        reply_to.clone(),
        json!({ "replace_original": true, "text": text, "blocks": blocks::request_closed(&text) }),
    );
    if let (Some(channel), Some(ts)) = (&req.message_channel, &req.message_ts) {
        state.api().pace(channel).await;
        if let Err(e) = state.api().update(channel, ts, &text, &blocks::request_closed(&text)).await {
            tracing::warn!(target: "offramp::slack", error = %e, "cannot close the approval request");
        }
    }
    Ok(())
}

async fn decide(state: &AppState, user: &str, value: &str, decision: Decision) -> Result<(), String> {
    let Ok(target) = serde_json::from_str::<DecisionRef>(value) else {
        return Err("This button does not say which step it is about; use `offramp resume` instead.".into());
    };
    let actor = format!("slack:{user}");
    match state.engine().decide(&target.run_id, &target.step_id, Some(target.pause), decision, &actor).await {
        Ok(DecisionOutcome::Applied) => {
            state.spawn_run(&target.run_id, None);
            Ok(())
        }
        Ok(DecisionOutcome::AlreadyHandled { by, status }) => Err(format!(
            "`{}` is already {status}{}: your {decision} did nothing.",
            target.step_id,
            by.map(|b| match b.split_once(' ') {
                Some((who, what)) => format!(" (handled by {} {what})", mention(who)),
                None => format!(" (handled by {})", mention(&b)),
            })
            .unwrap_or_default()
        )),
        Err(EngineError::Store(StoreError::NotFound(_))) => Err(format!("There is no run `{}`.", target.run_id)),
        Err(EngineError::Decision(msg)) => Err(msg),
        Err(e) => Err(store_trouble(e)),
    }
}
