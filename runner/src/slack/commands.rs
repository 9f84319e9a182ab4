//! `POST /slack/commands`: the slash command. Verified, then answered within the ack budget:
//! help, status, or a confirmation with Start / Cancel (under a two-person rule, a request
//! posted to the channel for other approvers).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::command_text::{self, SlashCommand};
use super::{AppError, AppState, blocks, ephemeral};
use crate::engine::{EngineError, NewBatchRequest, Person, RequestRefused};
use crate::pipeline::{InputType, Plan};
use crate::store::StoreError;

/// The slash command's form, with the fields Slack always sends (others are ignored).
#[derive(Debug, serde::Deserialize)]
struct SlashForm {
    command: String,
    text: String,
    user_id: String,
    #[allow(dead_code, reason = "required: Slack always sends it")]
    team_id: String,
    channel_id: String,
    response_url: String,
    #[allow(dead_code, reason = "required: Slack always sends it")]
    trigger_id: String,
}

pub(super) async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // Slack's certificate check: answered like Bolt does, before anything else; it does nothing.
    if is_ssl_check(&body) {
        return StatusCode::OK.into_response();
    }
    let signature = match state.inner.verifier.verify(&headers, &body, super::verify::unix_now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(target: "offramp::serve", reason = %e, "refused an unverified slash command");
            return AppError::Unauthorized.into_response();
        }
    };
    // A signed body that is not a well-formed command (not UTF-8, a field missing) is refused
    // before anything is recorded, as on /slack/interactions.
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => {
            tracing::info!(target: "offramp::serve", error = %e, "unreadable slash command form");
            return AppError::BadRequest.into_response();
        }
    };
    let response_url = Some(form.response_url.clone());
    let work = {
        let state = state.clone();
        async move { answer(&state, &signature, form).await }
    };
    ack_within(&state, response_url, work).await
}

/// The slash command's form body: strict UTF-8 (raw and percent-decoded), every field Slack
/// sends present.
fn parse_form(body: &[u8]) -> Result<SlashForm, String> {
    super::form::check_utf8(body)?;
    serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
}

/// Everything the route does with an untrusted body before it needs state (for the fuzzer):
/// the `ssl_check` probe, the form, and the command text.
pub(super) fn parse_untrusted(body: &[u8]) -> Option<String> {
    let _ = is_ssl_check(body);
    let form = parse_form(body).ok()?;
    Some(format!("{:?}", super::command_text::parse(&form.text)))
}

fn is_ssl_check(body: &[u8]) -> bool {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .is_ok_and(|pairs| pairs.iter().any(|(k, v)| k == "ssl_check" && v == "1"))
}

/// Runs `work`; answers with its reply if it is ready within the ack budget, else answers
/// "working on it" now and sends the reply through `response_url` when it is ready.
async fn ack_within(
    state: &AppState,
    response_url: Option<String>,
    work: impl Future<Output = Value> + Send + 'static,
) -> Response {
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(state.config().ack_budget, &mut task).await {
        Ok(Ok(reply)) => axum::Json(reply).into_response(),
        Ok(Err(e)) => {
            tracing::error!(target: "offramp::serve", error = %e, "slash command handler failed");
            axum::Json(ephemeral("Something went wrong in offramp; the operator can see it in the server log."))
                .into_response()
        }
        Err(_) => {
            let state = state.clone();
            tokio::spawn(async move {
                match task.await {
                    Ok(reply) => state.respond_later(response_url, reply),
                    Err(e) => tracing::error!(target: "offramp::serve", error = %e, "slash command handler failed"),
                }
            });
            axum::Json(ephemeral("Working on it…")).into_response()
        }
    }
}

async fn usage(state: &AppState, problem: Option<&str>) -> Value {
    let mut text = String::new();
    if let Some(p) = problem {
        text.push_str(&format!(":warning: {p}\n\n"));
    }
    text.push_str(&usage_text(state).await);
    ephemeral(text)
}

/// The usage, with examples built from the pipelines' real inputs: the default pipeline with
/// what it requires, then another pipeline (if there is one) the same way.
async fn usage_text(state: &AppState) -> String {
    let command = &state.config().command;
    let default = &state.config().default_pipeline;
    let mut text = String::from("*Usage*\n");
    match state.load_pipeline(default).await {
        Ok(plan) => {
            let args = example_args(&plan, None);
            text.push_str(&format!(
                "`{command} {args}` — offboard someone with the default pipeline (`{default}`{})\n",
                required_note(&plan)
            ));
            text.push_str(&format!(
                "`{command} {}` — several people at once (spaces, commas or new lines between them): one confirmation, one channel message; more than {} need another approver's Start\n",
                args.replacen("alice@example.com", "alice@example.com bob@example.com", 1),
                state.engine().batch_policy().two_person_over
            ));
        }
        Err(e) => text.push_str(&format!(":warning: the default pipeline `{default}` cannot be loaded: {e}\n")),
    }
    let mut another = None;
    for name in state.pipeline_names().into_iter().filter(|n| n != default) {
        if let Ok(plan) = state.load_pipeline(&name).await {
            another = Some((plan, name));
            break;
        }
    }
    if let Some((plan, other)) = another {
        text.push_str(&format!(
            "`{command} {}` — another pipeline{}\n",
            example_args(&plan, Some(&other)),
            required_note(&plan)
        ));
    }
    text.push_str(&format!("`{command} status RUN_ID` — where a run stands\n`{command} help` — this message"));
    text
}

/// The inputs a requester must give besides the subject: required, with no default.
fn required_inputs(plan: &Plan) -> impl Iterator<Item = (&String, &crate::pipeline::model::InputSpec)> {
    let subject = subject_input(plan);
    plan.inputs.iter().filter(move |(n, s)| Some(n.as_str()) != subject && s.required && s.default.is_none())
}

/// `alice@example.com [pipeline=NAME] key=value…` for the inputs a pipeline requires.
fn example_args(plan: &Plan, pipeline: Option<&str>) -> String {
    let mut args = vec!["alice@example.com".to_string()];
    if let Some(p) = pipeline {
        args.push(format!("pipeline={p}"));
    }
    for (name, spec) in required_inputs(plan) {
        let value = match spec.kind {
            InputType::Email => "dana@example.com".to_string(),
            InputType::Bool => "true".to_string(),
            InputType::Int => "1".to_string(),
            InputType::String => format!("{}-value", name.replace('_', "-")),
        };
        args.push(format!("{name}={value}"));
    }
    args.join(" ")
}

/// "; `manager`: Who receives their Google Drive files…" — what the required inputs are for,
/// from their descriptions.
fn required_note(plan: &Plan) -> String {
    let notes: Vec<String> = required_inputs(plan)
        .filter(|(_, s)| !s.description.is_empty())
        .map(|(n, s)| format!("`{n}`: {}", s.description.trim_end_matches('.')))
        .collect();
    if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
}

const UNAVAILABLE: &str = "offramp cannot reach its database right now; nothing was started. Try again shortly.";

async fn answer(state: &AppState, signature: &str, form: SlashForm) -> Value {
    let cmd_name = &state.config().command;
    let parsed = command_text::parse(&form.text);
    // Only a run request changes anything: its signature is recorded for every replica.
    let durable = if matches!(parsed, Ok(SlashCommand::Offboard { .. })) && form.command == *cmd_name {
        super::Durable::Yes
    } else {
        super::Durable::No
    };
    match state.first_sighting(signature, durable).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(target: "offramp::serve", user = %form.user_id, "replayed slash command refused");
            return ephemeral("This request was already handled.");
        }
        Err(e) => {
            tracing::error!(target: "offramp::serve", error = %e, "replay check failed");
            return ephemeral(UNAVAILABLE);
        }
    }
    if form.command != *cmd_name {
        return ephemeral(format!("This offramp answers `{cmd_name}`, not `{}`.", form.command));
    }
    let parsed = match parsed {
        Ok(c) => c,
        Err(problem) => return usage(state, Some(&problem)).await,
    };
    if parsed == SlashCommand::Help {
        return usage(state, None).await;
    }
    match state.is_approver(&form.user_id).await {
        Ok(true) => {}
        Ok(false) => {
            let text = blocks::truncate(&form.text, 200);
            state.log_refusal(&form.user_id, json!({ "command": cmd_name, "text": text })).await;
            return ephemeral(format!(
                "You are not on offramp's approvers list, so you cannot start or follow offboarding runs. \
                 An operator can add you with `offramp approvers add {}`.",
                form.user_id
            ));
        }
        Err(e) => {
            tracing::error!(target: "offramp::serve", error = %e, "approver check failed");
            return ephemeral(UNAVAILABLE);
        }
    }
    match parsed {
        SlashCommand::Help => usage(state, None).await,
        SlashCommand::Status { run_id } => status(state, &run_id).await,
        SlashCommand::Offboard { subjects, pipeline, inputs } => {
            match request(state, &form, &subjects, pipeline, inputs).await {
                Ok(v) => v,
                Err(Refusal::Tell(msg)) => usage(state, Some(&msg)).await,
                Err(Refusal::Store(e)) => {
                    tracing::error!(target: "offramp::serve", error = %e, "cannot record a request");
                    ephemeral(UNAVAILABLE)
                }
            }
        }
    }
}

async fn status(state: &AppState, run_id: &str) -> Value {
    match super::reporter::view(state, run_id).await {
        Ok(message) => {
            let mut v = ephemeral(message.0);
            v["blocks"] = message.1;
            v
        }
        Err(StoreError::NotFound(_)) => ephemeral(format!("There is no run `{run_id}`.")),
        Err(e) => {
            tracing::error!(target: "offramp::serve", error = %e, "status lookup failed");
            ephemeral(UNAVAILABLE)
        }
    }
}

/// The two-person rule: posts the request to the channel for other approvers, in the
/// background (Slack may be slow); a failure is told through `response_url` if there is one.
pub(super) fn ask_for_approval(
    state: &AppState,
    req: &crate::store::RunRequest,
    plan: &Plan,
    response_url: Option<String>,
) {
    let (text, blocks) = blocks::request_message(req, plan, &[], true);
    let (st, channel, id) = (state.clone(), state.config().channel.clone(), req.id.clone());
    tokio::spawn(async move {
        st.api().pace(&channel).await;
        match st.api().post_message(&channel, &text, Some(&blocks), None).await {
            Ok(ts) => {
                if let Err(e) = st.store().set_request_message(&id, &channel, &ts).await {
                    tracing::error!(target: "offramp::serve", error = %e, "cannot record the approval message");
                }
            }
            Err(e) => {
                tracing::error!(target: "offramp::slack", error = %e, request = %id, "cannot post the approval request");
                st.respond_later(
                    response_url,
                    ephemeral(format!(
                        ":warning: offramp could not post the approval request to <#{channel}> ({e}); nothing will run. Is the bot in that channel?"
                    )),
                );
            }
        }
    });
}

enum Refusal {
    Tell(String),
    Store(StoreError),
}

/// The pipeline input the subject fills: its first `email` input, else its first required one.
pub(super) fn subject_input(plan: &Plan) -> Option<&str> {
    plan.inputs
        .iter()
        .find(|(_, s)| s.kind == InputType::Email)
        .or_else(|| plan.inputs.iter().find(|(_, s)| s.required))
        .map(|(n, _)| n.as_str())
}

async fn request(
    state: &AppState,
    form: &SlashForm,
    subjects: &[String],
    pipeline: Option<String>,
    inputs: BTreeMap<String, String>,
) -> Result<Value, Refusal> {
    let name = pipeline.unwrap_or_else(|| state.config().default_pipeline.clone());
    let plan = state.load_pipeline(&name).await.map_err(Refusal::Tell)?;
    let Some(field) = subject_input(&plan) else {
        return Err(Refusal::Tell(format!("pipeline `{name}` has no input for who is leaving")));
    };
    if inputs.contains_key(field) {
        return Err(Refusal::Tell(format!("`{field}` is the person being offboarded; give it once, first")));
    }
    // One run per person, each with the options given.
    let rows = subjects
        .iter()
        .map(|s| {
            let mut row = inputs.clone();
            row.insert(field.to_string(), s.clone());
            row
        })
        .collect();
    let new = NewBatchRequest { pipeline: name.clone(), rows, channel_id: Some(form.channel_id.clone()) };
    let req = match state.engine().request_batch(&plan, new, Person { via: "slack", id: &form.user_id }).await {
        Ok(req) => req,
        Err(RequestRefused::Engine(EngineError::Inputs(errors))) => {
            // A message Slack will show: the first problems, then how many more.
            const SHOWN: usize = 20;
            let mut text = errors.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
            if errors.len() > SHOWN {
                text.push_str(&format!("; … and {} more", errors.len() - SHOWN));
            }
            return Err(Refusal::Tell(text));
        }
        Err(RequestRefused::Store(e)) => return Err(Refusal::Store(e)),
        Err(e) => return Err(Refusal::Tell(e.to_string())),
    };
    let subject = &req.subject;
    if req.approvals_needed == 0 {
        let (text, blocks) = blocks::request_message(&req, &plan, &[], false);
        return Ok(json!({ "response_type": "ephemeral", "text": text, "blocks": blocks }));
    }
    ask_for_approval(state, &req, &plan, Some(form.response_url.clone()));
    Ok(ephemeral(format!(
        "Asked for approval in <#{}>: {} approver{}{} must press Start before `{name}` runs for {subject}.",
        state.config().channel,
        req.approvals_needed,
        if req.approvals_needed == 1 { "" } else { "s" },
        if req.allow_self { "" } else { " other than you" },
    )))
}
