//! The Slack front door: `offramp serve` is the Slack app's backend.
//!
//! A request's path: [`app`] routes it; [`verify`] checks it came from Slack (signed, fresh,
//! not replayed); [`commands`] turns `/offboard …` into a confirmation; [`interactions`] turns
//! a button click into an engine decision (Start → [`Engine::start_for_request`], Retry / Skip /
//! Abort → [`Engine::decide`]); [`reporter`] keeps the run's one channel message current; [`api`]
//! is the Slack Web API client. Every Slack request is acknowledged within the ack budget
//! (Slack's limit is 3 s) whatever the database or the pipeline does: slow work finishes in the
//! background and answers through the `response_url`.

pub mod api;
mod batches;
pub mod blocks;
mod command_text;
mod commands;
mod form;
mod interactions;
mod reminders;
mod reporter;
mod rest;
mod verify;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub use api::{SlackApi, SlackApiConfig, SlackError};

use crate::engine::Engine;
use crate::pipeline::{self, LoadOptions, Plan};
use crate::secrets::Secret;
use crate::store::{Event, EventKind, Store, StoreError};

/// Settings of `offramp serve`.
#[derive(Clone)]
pub struct ServeConfig {
    /// The Slack app's signing secret (verifies requests).
    pub signing_secret: Secret,
    /// The bot token, `xoxb-…` (posts and updates messages).
    pub bot_token: Secret,
    /// Bearer token of `/api/runs`; without one the API refuses every request.
    pub api_token: Option<Secret>,
    pub slack: SlackApiConfig,
    /// The reporting channel's id, e.g. `C0123456789`.
    pub channel: String,
    /// The slash command, e.g. `/offboard`.
    pub command: String,
    /// Where `pipeline=NAME` finds `NAME.yaml`.
    pub pipelines_dir: PathBuf,
    /// The pipeline used without `pipeline=`.
    pub default_pipeline: String,
    /// Plugins directory and operator vars, as for `offramp run`.
    pub load: LoadOptions,
    /// How long a command may take before it is acknowledged with "working on it" and answered
    /// later through its `response_url` (Slack's own limit is 3 s).
    pub ack_budget: Duration,
    /// A paused run gets a reminder in its Slack thread after this long, and again every
    /// this long until someone decides.
    pub pause_reminder: Duration,
}

/// Why `offramp serve` will not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{0} is not set (or empty): offramp serve will not run without it. Put it in the environment or the secrets file (--secrets-file); see README \"Connect it to Slack\"."
    )]
    MissingSecret(&'static str),
    #[error("the reporting channel is not set: --channel C0123456789 (or OFFRAMP_SLACK_CHANNEL)")]
    NoChannel,
    #[error("the slash command must start with `/`, like `/offboard` (got `{0}`)")]
    BadCommand(String),
    #[error("the default pipeline `{name}` does not load: {message}")]
    DefaultPipeline { name: String, message: String },
    #[error("no pipeline in the pipelines directory declares the var(s) {0}: check the spelling")]
    UnknownVars(String),
    #[error("{0}")]
    Slack(#[from] SlackError),
}

/// One HTTP error type: callers see a status and a short fixed message; details go to the log.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("unauthorized")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("bad request")]
    BadRequest,
    #[error("unavailable")]
    Unavailable,
    /// What the caller sent does not fit (the problems are theirs to see: no internals).
    #[error("invalid request")]
    Invalid(Vec<String>),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::NoRequest(_) => AppError::NotFound,
            other => AppError::Internal(other.into()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadRequest => StatusCode::BAD_REQUEST,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Invalid(problems) => {
                let body = json!({ "error": self.to_string(), "problems": problems });
                return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
            }
            AppError::Internal(e) => {
                tracing::error!(target: "offramp::serve", error = format!("{e:#}"), "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, axum::Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Whether a request's signature must be recorded where every replica sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// It changes something (a run request, a click).
    Yes,
    /// It only reads (help, status, a mistake answered with the usage).
    No,
}

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServeConfig,
    engine: Engine,
    verifier: verify::Verifier,
    api: SlackApi,
    /// Signatures this process saw lately (the replay guard's first line).
    replays: verify::ReplayGuard,
    /// Runs with a live reporter (one per run per process).
    reporters: Mutex<HashSet<String>>,
    /// Runs being driven here, and whether another pass was asked for meanwhile.
    drivers: Mutex<HashMap<String, bool>>,
    /// Pipelines that validated, by file, with the SHA-256 of the text they were validated
    /// from: an unchanged file is not validated again (an edited one is, at once).
    plans: Mutex<HashMap<std::path::PathBuf, (String, Plan)>>,
}

impl AppState {
    /// Checks the settings (fail closed: no signing secret or bot token, no server).
    pub async fn new(config: ServeConfig, engine: Engine) -> Result<Self, ConfigError> {
        if config.signing_secret.expose().trim().is_empty() {
            return Err(ConfigError::MissingSecret("SLACK_SIGNING_SECRET"));
        }
        if config.bot_token.expose().trim().is_empty() {
            return Err(ConfigError::MissingSecret("SLACK_BOT_TOKEN"));
        }
        if config.channel.trim().is_empty() {
            return Err(ConfigError::NoChannel);
        }
        if !config.command.starts_with('/') || config.command.len() < 2 {
            return Err(ConfigError::BadCommand(config.command.clone()));
        }
        let api = SlackApi::new(config.bot_token.clone(), config.slack.clone())?;
        let verifier = verify::Verifier::new(config.signing_secret.clone());
        let state = AppState {
            inner: Arc::new(Inner {
                config,
                engine,
                verifier,
                api,
                replays: verify::ReplayGuard::default(),
                reporters: Mutex::default(),
                drivers: Mutex::default(),
                plans: Mutex::default(),
            }),
        };
        // The default pipeline's structure only, so a misconfigured server fails at once and a
        // good one starts at once; the plugins' contracts (which may mean compiling them) are
        // checked for every request, and for every pipeline in the background once serving.
        let default = state.config().default_pipeline.clone();
        state
            .pipeline_path(&default)
            .and_then(|path| {
                pipeline::load_declared(&path, &state.config().load).map_err(|e| e.to_string().trim_end().to_string())
            })
            .map_err(|message| ConfigError::DefaultPipeline { name: default, message })?;
        // A var no pipeline declares is a typo (each pipeline takes only the vars it declares).
        let mut declared = std::collections::BTreeSet::new();
        for name in state.pipeline_names() {
            let path = state.config().pipelines_dir.join(format!("{name}.yaml"));
            declared.extend(std::fs::read_to_string(path).map(|t| pipeline::declared_vars(&t)).unwrap_or_default());
        }
        let unknown: Vec<String> =
            state.config().load.vars.keys().filter(|k| !declared.contains(*k)).cloned().collect();
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownVars(unknown.join(", ")));
        }
        Ok(state)
    }

    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.inner.engine.store()
    }

    pub(crate) fn api(&self) -> &SlackApi {
        &self.inner.api
    }

    /// Loads `NAME.yaml` from the pipelines directory, type-checked against its plugins'
    /// contracts like `offramp validate` does. The error is fit to show a requester.
    pub(crate) async fn load_pipeline(&self, name: &str) -> Result<Plan, String> {
        let path = self.pipeline_path(name)?;
        let refused = |e: pipeline::LoadError| {
            tracing::error!(target: "offramp::serve", pipeline = %path.display(), error = %e, "pipeline does not load");
            // The same located messages `offramp validate` prints (a pipeline holds no secrets).
            let located = crate::text::truncate(e.to_string().trim_end(), 2500);
            format!(
                "pipeline `{name}` does not validate, so nothing was started; an operator must fix it (`offramp validate`):\n```\n{located}\n```"
            )
        };
        let text = pipeline::read(&path).map_err(refused)?;
        let hash = crate::digest::sha256_hex(text.as_bytes());
        if let Some((seen, plan)) = self.inner.plans.lock().ok().and_then(|m| m.get(&path).cloned())
            && seen == hash
        {
            return Ok(plan);
        }
        let sandbox = self.inner.engine.sandbox();
        let plan = pipeline::check_declared(text, &path, &self.config().load, sandbox).await.map_err(refused)?;
        if let Ok(mut m) = self.inner.plans.lock() {
            m.insert(path, (hash, plan.clone()));
        }
        Ok(plan)
    }

    /// The file of pipeline `name`, which must exist.
    fn pipeline_path(&self, name: &str) -> Result<std::path::PathBuf, String> {
        let name = command_text::pipeline_name(name)?;
        let path = self.config().pipelines_dir.join(format!("{name}.yaml"));
        if !path.is_file() {
            return Err(format!("there is no pipeline `{name}` (known: {})", self.pipeline_names().join(", ")));
        }
        Ok(path)
    }

    /// The pipelines that do not validate, each with why: `serve` says so when it starts
    /// (requests for them are refused with the same messages).
    pub async fn invalid_pipelines(&self) -> Vec<(String, String)> {
        // Nobody waits for this: its compiles must not hold up a step's or a request's.
        crate::sandbox::in_background(async {
            let mut out = Vec::new();
            for name in self.pipeline_names() {
                if let Err(why) = self.load_pipeline(&name).await {
                    out.push((name, why));
                }
            }
            out
        })
        .await
    }

    fn pipeline_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.config().pipelines_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension().is_some_and(|x| x == "yaml")).then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        names.sort();
        names
    }

    /// Whether a verified request is new: a replay is refused even inside the five-minute
    /// window. This process's own memory answers first, with no database work (so `help` and
    /// `status` cost no write); a request that changes something (`durable`: a run request, a
    /// click) is also recorded in the database, so a replay sent to another replica is refused
    /// too. A read-only request replayed to another replica is answered again — it reads
    /// nothing its signer could not.
    pub(crate) async fn first_sighting(&self, signature: &str, durable: Durable) -> Result<bool, StoreError> {
        let now = verify::unix_now();
        if !self.inner.replays.first(signature, now) {
            return Ok(false);
        }
        match durable {
            Durable::No => Ok(true),
            Durable::Yes => self.store().first_sighting(signature, now, verify::REPLAY_WINDOW_SECS).await,
        }
    }

    /// Logs a refused request (not on the approvers list) in the event log.
    pub(crate) async fn log_refusal(&self, user: &str, what: Value) {
        let event = Event::new(&format!("slack:{user}"), EventKind::Refused, what);
        if let Err(e) = self.store().append_event(None, None, event).await {
            tracing::error!(target: "offramp::serve", error = %e, "cannot record a refusal");
        }
    }

    pub(crate) async fn is_approver(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self.store().approver(user).await?.is_some())
    }

    /// Drives a run in the background (and makes sure its channel message follows it). A
    /// second call while the run is being driven asks for one more pass instead of a second
    /// driver, so a step that is still running is never mistaken for an interrupted one.
    pub(crate) fn spawn_run(&self, run_id: &str, request_id: Option<String>) {
        let (state, run_id) = (self.clone(), run_id.to_string());
        tokio::spawn(async move {
            reporter::ensure(&state, &run_id, request_id).await;
            state.drive_in_background(&run_id);
        });
    }

    /// Drives every run of a batch just started, reported in the batch's one message.
    pub(crate) fn spawn_batch(&self, batch_id: &str, runs: &[String]) {
        batches::ensure(self, batch_id);
        for run_id in runs {
            self.drive_in_background(run_id);
        }
    }

    fn drive_in_background(&self, run_id: &str) {
        {
            let Ok(mut drivers) = self.inner.drivers.lock() else { return };
            if let Some(again) = drivers.get_mut(run_id) {
                *again = true;
                return;
            }
            drivers.insert(run_id.to_string(), false);
        }
        let (state, run_id) = (self.clone(), run_id.to_string());
        tokio::spawn(async move {
            // If the drive panics, forget the run here so a later click can drive it again.
            let mut release = OnDrop::new({
                let (state, run_id) = (state.clone(), run_id.clone());
                move || {
                    if let Ok(mut drivers) = state.inner.drivers.lock() {
                        drivers.remove(&run_id);
                    }
                }
            });
            loop {
                match state.engine().drive(&run_id).await {
                    Ok(_) => {}
                    Err(e @ crate::engine::EngineError::Leased { .. }) => {
                        tracing::info!(target: "offramp::serve", run = %run_id, "{e}");
                    }
                    Err(e) if e.is_lease_lost() => {
                        tracing::warn!(target: "offramp::serve", run = %run_id, error = %e, "stopped driving the run");
                    }
                    Err(e) => {
                        tracing::error!(target: "offramp::serve", run = %run_id, error = %e, "driving the run failed");
                    }
                }
                let Ok(mut drivers) = state.inner.drivers.lock() else { return };
                match drivers.get_mut(&run_id) {
                    Some(again) if *again => *again = false,
                    _ => {
                        drivers.remove(&run_id);
                        release.disarm();
                        return;
                    }
                }
            }
        });
    }

    /// Claims the runs nobody drives any more (a process, this one or a replica, died and its
    /// lease ran out) and drives them in the background, with their channel message. `offramp
    /// serve` calls it at start and then every `takeover_scan`. Returns how many.
    pub async fn recover(&self) -> Result<usize, crate::engine::EngineError> {
        const BATCH: u32 = 100;
        let mut total = 0;
        loop {
            let claimed = self.engine().claim_orphans(BATCH).await?;
            for claim in &claimed {
                tracing::info!(
                    target: "offramp::serve",
                    run = %claim.run_id,
                    previous_owner = claim.previous_owner.as_deref().unwrap_or("none"),
                    "taking over a run nobody drives"
                );
                self.spawn_run(&claim.run_id, None);
            }
            total += claimed.len();
            // A full batch: there may be more (a replica with many runs died).
            if claimed.len() < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Calls [`AppState::recover`] every `every`, for as long as the returned task lives.
    pub fn watch_for_orphans(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = state.recover().await {
                    tracing::warn!(target: "offramp::serve", error = %e, "cannot look for runs to take over");
                }
            }
        })
    }

    /// Answers through a `response_url` in the background, logging a failure.
    pub(crate) fn respond_later(&self, response_url: Option<String>, body: Value) {
        let Some(url) = response_url else { return };
        let api = self.api().clone();
        tokio::spawn(async move {
            if let Err(e) = api.respond(&url, &body).await {
                tracing::warn!(target: "offramp::slack", error = %e, "cannot answer through response_url");
            }
        });
    }
}

/// The `X-Slack-Signature` Slack would send for `body` at `timestamp` (the demo and the
/// benchmark sign their requests with it, like Slack does).
/// Entry points for the cargo-fuzz targets (fuzz/) and for replaying their corpora as tests:
/// each takes arbitrary bytes and must not panic.
#[doc(hidden)]
pub mod fuzz {
    use axum::http::{HeaderMap, HeaderValue};

    /// Slash command body: ssl_check probe, form, command text.
    pub fn command(data: &[u8]) {
        let _ = super::commands::parse_untrusted(data);
    }

    /// Interaction body: form, JSON payload, button values.
    pub fn interaction(data: &[u8]) {
        let _ = super::interactions::parse_untrusted(data);
    }

    /// Signature check. Input: the timestamp header's bytes, a newline, the signature
    /// header's bytes, a newline, the body. Whatever the input, verification must not panic,
    /// and a body signed with the right secret at a fresh timestamp must verify.
    pub fn signature(data: &[u8]) {
        const NOW: i64 = 1_700_000_000;
        let mut parts = data.splitn(3, |b| *b == b'\n');
        let (ts, sig, body) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next());
        let body = body.unwrap_or_default();
        let verifier = super::verify::Verifier::new(crate::secrets::Secret::new("fuzz-signing-secret"));
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(ts) {
            headers.insert("x-slack-request-timestamp", v);
        }
        if let Ok(v) = HeaderValue::from_bytes(sig) {
            headers.insert("x-slack-signature", v);
        }
        let _ = verifier.verify(&headers, body, NOW);
        // The real signature of this body always passes.
        let fresh = NOW - i64::from(ts.first().copied().unwrap_or(0));
        let mut good = HeaderMap::new();
        good.insert("x-slack-request-timestamp", HeaderValue::from(fresh));
        if let Ok(v) = HeaderValue::from_str(&verifier.sign(fresh, body)) {
            good.insert("x-slack-signature", v);
        }
        assert!(verifier.verify(&good, body, NOW).is_ok(), "a correctly signed request was refused");
    }
}

pub fn signature(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    verify::Verifier::new(Secret::new(signing_secret)).sign(timestamp, body)
}

/// Now, in unix seconds (the clock signatures are checked against).
pub fn unix_now() -> i64 {
    verify::unix_now()
}

/// Runs a closure when dropped (however the scope ends, a panic included) unless disarmed.
pub(crate) struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> OnDrop<F> {
    pub(crate) fn new(f: F) -> Self {
        OnDrop(Some(f))
    }

    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// The server's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/slack/commands", post(commands::handle))
        .route("/slack/interactions", post(interactions::handle))
        .route("/healthz", get(healthz))
        .route("/api/runs", get(rest::list_runs).post(rest::create_runs))
        .route("/api/runs/{id}", get(rest::run))
        .route("/api/batches/{id}", get(rest::batch))
        // Slack's payloads are small; an interaction carries its message, well under this.
        .layer(DefaultBodyLimit::max(512 * 1024))
        .with_state(state)
}

/// A message only the requester sees.
pub(crate) fn ephemeral(text: impl Into<String>) -> Value {
    json!({ "response_type": "ephemeral", "text": text.into() })
}

async fn healthz(State(state): State<AppState>) -> Result<impl IntoResponse, AppError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store().runs(1)).await {
        Ok(Ok(_)) => Ok(axum::Json(json!({ "status": "ok" }))),
        Ok(Err(e)) => {
            tracing::error!(target: "offramp::serve", error = %e, "health check: database error");
            Err(AppError::Unavailable)
        }
        Err(_) => Err(AppError::Unavailable),
    }
}
