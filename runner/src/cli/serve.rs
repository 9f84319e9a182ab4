//! `offramp serve` and `offramp approvers`: settings from a config file, the environment and
//! flags (flags win, then the environment, then the file); secrets only from the environment
//! or the secrets file.

use super::out::{errln, outln};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::{Global, key_value};
use crate::pipeline::LoadOptions;
use crate::secrets::SecretError;
use crate::slack::{self, AppState, ConfigError, ServeConfig, SlackApiConfig};
use crate::store;

#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:3000; put a TLS proxy in front).
    #[arg(long, env = "OFFRAMP_LISTEN")]
    listen: Option<SocketAddr>,
    /// The reporting channel's id, e.g. C0123456789.
    #[arg(long, env = "OFFRAMP_SLACK_CHANNEL")]
    channel: Option<String>,
    /// The slash command's name (default /offboard).
    #[arg(long, env = "OFFRAMP_SLACK_COMMAND")]
    command: Option<String>,
    /// Where `pipeline=NAME` finds NAME.yaml (default ./pipelines).
    #[arg(long, env = "OFFRAMP_PIPELINES_DIR")]
    pipelines_dir: Option<PathBuf>,
    /// The pipeline used without `pipeline=` (default offboarding).
    #[arg(long, env = "OFFRAMP_DEFAULT_PIPELINE")]
    default_pipeline: Option<String>,
    /// Slack's Web API (default https://slack.com/api).
    #[arg(long, env = "SLACK_API_URL")]
    slack_api_url: Option<String>,
    /// Override a pipeline var (operator setting), `--var okta_url=https://acme.okta.com`.
    #[arg(long = "var", value_parser = key_value)]
    vars: Vec<(String, String)>,
    /// Remind the run's Slack thread after a run has been paused this long, and again every
    /// this long (default 4h).
    #[arg(long, env = "OFFRAMP_PAUSE_REMINDER")]
    pause_reminder: Option<String>,
}

/// The config file.
///
/// ```yaml
/// listen: 0.0.0.0:3000
/// channel: C0123456789
/// command: /offboard
/// pipelines_dir: /etc/offramp/pipelines
/// default_pipeline: offboarding
/// pause_reminder: 4h
/// vars: { okta_url: https://acme.okta.com }
/// network:
///   allow: [https://*.okta.com, https://slack.com]
///   allow_private: [hr.corp.internal]
///   limits: { max_requests: 100, max_request_bytes: 1MiB, max_response_bytes: 4MiB, request_timeout: 30s }
/// sandbox: { max_instances: 32, max_output_bytes: 1MiB, max_log_lines: 1000 }
/// credentials:
///   OKTA_API_TOKEN: { kind: okta, org_url: https://acme.okta.com, client_id: 0oa1…, private_key: OKTA_KEY, scopes: [okta.users.manage] }
/// batches: { two_person_over: 10, max_size: 1000 }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    listen: Option<SocketAddr>,
    channel: Option<String>,
    command: Option<String>,
    pipelines_dir: Option<PathBuf>,
    default_pipeline: Option<String>,
    slack_api_url: Option<String>,
    /// e.g. `2500ms`
    ack_budget: Option<String>,
    /// e.g. `4h`: when a paused run gets a reminder in its thread (and how often after).
    pause_reminder: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// What plugins may reach, and how much (see [`crate::http::policy`]).
    #[serde(default)]
    pub(super) network: crate::http::NetworkConfig,
    /// Limits on every plugin instance (see [`crate::sandbox::SandboxConfig`]).
    #[serde(default)]
    pub(super) sandbox: crate::sandbox::SandboxConfig,
    /// Where each vendor credential comes from: a static secret, or a token offramp mints
    /// (see [`crate::credentials`]).
    #[serde(default)]
    pub(super) credentials: crate::credentials::CredentialsConfig,
    /// Requests naming several people (see [`crate::engine::BatchPolicy`]).
    #[serde(default)]
    pub(super) batches: crate::engine::BatchPolicy,
}

pub(super) fn read_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str_with_options(&text, crate::pipeline::yaml::options())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn required_secret(source: &crate::secrets::SecretSource, name: &'static str) -> Result<crate::secrets::Secret> {
    match source.get(name) {
        Ok(s) => Ok(s),
        Err(SecretError::Missing(_) | SecretError::Empty(_)) => Err(ConfigError::MissingSecret(name).into()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn serve(g: &Global, args: ServeArgs) -> Result<ExitCode> {
    let file = super::operator_config(g)?;
    let secrets = super::secrets(g)?;
    // Fail closed before anything else happens.
    let signing_secret = required_secret(&secrets, "SLACK_SIGNING_SECRET")?;
    let bot_token = required_secret(&secrets, "SLACK_BOT_TOKEN")?;
    let api_token = secrets.get("OFFRAMP_API_TOKEN").ok();
    if api_token.is_none() {
        tracing::warn!(target: "offramp::serve", "OFFRAMP_API_TOKEN is not set: /api/runs refuses every request");
    }
    let channel = args.channel.or(file.channel.clone()).ok_or(ConfigError::NoChannel)?;
    let mut vars = file.vars.clone();
    vars.extend(args.vars);
    let ack_budget = match &file.ack_budget {
        Some(t) => humantime::parse_duration(t).with_context(|| format!("ack_budget `{t}`"))?,
        None => Duration::from_millis(2500),
    };
    if ack_budget >= Duration::from_secs(3) {
        bail!("ack_budget must be under 3s (Slack drops slower answers)");
    }
    let pause_reminder = match args.pause_reminder.or(file.pause_reminder.clone()) {
        Some(t) => {
            humantime::parse_duration(&t).with_context(|| format!("pause_reminder `{t}` (write it like 4h or 30m)"))?
        }
        None => Duration::from_secs(4 * 3600),
    };
    if pause_reminder < Duration::from_secs(1) {
        bail!("pause_reminder must be at least 1s");
    }
    let config = ServeConfig {
        signing_secret,
        bot_token,
        api_token,
        slack: SlackApiConfig {
            base_url: args
                .slack_api_url
                .or(file.slack_api_url.clone())
                .unwrap_or_else(|| "https://slack.com/api".into()),
            channel_rate: NonZeroU32::MIN,
            ..SlackApiConfig::default()
        },
        channel,
        command: args.command.or(file.command.clone()).unwrap_or_else(|| "/offboard".into()),
        pipelines_dir: args.pipelines_dir.or(file.pipelines_dir.clone()).unwrap_or_else(|| PathBuf::from("pipelines")),
        default_pipeline: args
            .default_pipeline
            .or(file.default_pipeline.clone())
            .unwrap_or_else(|| "offboarding".into()),
        load: LoadOptions {
            plugins_dir: super::plugins_dir(g),
            vars,
            allow_cap: super::network(g)?.allow,
            contracts: Default::default(),
        },
        ack_budget,
        pause_reminder,
    };
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let engine = super::engine(g).await?;
    // What `offramp credentials check` prints, in the log at start (a vendor that is down
    // now does not stop the server: its steps retry or pause).
    let checking = engine.clone();
    tokio::spawn(async move {
        for r in checking.credentials().check(checking.http_client()).await {
            match &r.outcome {
                Ok(what) => {
                    tracing::info!(target: "offramp::credentials", credential = %r.name, kind = %r.kind, "ok: {what}")
                }
                Err(why) => {
                    tracing::error!(target: "offramp::credentials", credential = %r.name, kind = %r.kind, "check failed: {why}")
                }
            }
        }
    });
    let state = AppState::new(config, engine).await?;
    let picked_up = state.recover().await?;
    if picked_up > 0 {
        errln!("offramp serve: picking up {picked_up} run(s) that were in flight when offramp last stopped");
    }
    // Runs of a replica that dies later are taken over once their lease runs out.
    let watch = state.watch_for_orphans((g.lease / 3).max(Duration::from_millis(100)));
    let reminders = state.watch_pauses();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    errln!(
        "offramp serve: listening on http://{} — Slack URLs: /slack/commands, /slack/interactions; reporting to {}",
        listener.local_addr()?,
        state.config().channel
    );
    // Every pipeline, type-checked against its plugins (compiling any not in the cache yet):
    // the ones that fail are named now, not at someone's first request.
    let checking = {
        let state = state.clone();
        tokio::spawn(async move {
            for (name, why) in state.invalid_pipelines().await {
                errln!("offramp serve: warning: requests for `{name}` will be refused: {why}");
            }
        })
    };
    let served = axum::serve(listener, slack::app(state)).with_graceful_shutdown(shutdown_signal()).await;
    checking.abort();
    watch.abort();
    reminders.abort();
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    errln!("offramp serve: shutting down");
}

#[derive(Subcommand, Debug)]
pub(super) enum ApproversCommand {
    /// Allow Slack users to request runs and decide on paused steps.
    Add {
        /// Slack user ids, like U024BE7LH (profile → ⋯ → Copy member ID).
        #[arg(required = true)]
        users: Vec<String>,
        /// Who is adding them, for the event log (default: $USER).
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Take the permission away.
    Remove {
        #[arg(required = true)]
        users: Vec<String>,
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Who is on the list.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A Slack user id: `U…` or `W…`, upper-case letters and digits.
fn user_id(s: &str) -> Result<String> {
    let id = s.trim().trim_start_matches("<@").trim_end_matches('>').trim_start_matches('@');
    let ok = id.len() >= 3
        && id.len() <= 32
        && (id.starts_with('U') || id.starts_with('W'))
        && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !ok {
        bail!(
            "`{s}` is not a Slack user id. Ids look like U024BE7LH: in Slack, open the person's profile, click ⋯ and choose \"Copy member ID\""
        );
    }
    Ok(id.to_string())
}

pub(super) async fn approvers(g: &Global, cmd: ApproversCommand) -> Result<ExitCode> {
    let store: Arc<dyn store::Store> = store::open(&g.database_url).await.context("opening the results database")?;
    match cmd {
        ApproversCommand::Add { users, actor } => {
            let ids = users.iter().map(|u| user_id(u)).collect::<Result<Vec<_>>>()?;
            let actor = actor.unwrap_or_else(super::whoami);
            for id in ids {
                if store.add_approver(&id, &actor).await? {
                    outln!("added {id}");
                } else {
                    outln!("{id} is already an approver");
                }
            }
        }
        ApproversCommand::Remove { users, actor } => {
            let ids = users.iter().map(|u| user_id(u)).collect::<Result<Vec<_>>>()?;
            let actor = actor.unwrap_or_else(super::whoami);
            let mut missing = 0;
            for id in ids {
                if store.remove_approver(&id, &actor).await? {
                    outln!("removed {id}");
                } else {
                    errln!("{id} was not an approver");
                    missing += 1;
                }
            }
            if missing > 0 {
                return Ok(ExitCode::from(super::EXIT_FAILED));
            }
        }
        ApproversCommand::List { json } => {
            let list = store.approvers().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                outln!("no approvers yet: add one with `offramp approvers add U024BE7LH`");
            } else {
                for a in list {
                    outln!("{:<12} added by {} at {}", a.user_id, a.added_by, a.added_at);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::user_id;

    #[test]
    fn user_ids() {
        assert_eq!(user_id("U024BE7LH").unwrap(), "U024BE7LH");
        assert_eq!(user_id("<@W12345>").unwrap(), "W12345");
        assert!(user_id("alice").unwrap_err().to_string().contains("Copy member ID"));
        assert!(user_id("u024be7lh").is_err());
        assert!(user_id("U1; DROP TABLE").is_err());
    }

    #[test]
    fn the_batches_section_is_read_and_a_typo_in_it_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offramp.yaml");
        std::fs::write(&path, "batches: { two_person_over: 3 }\n").unwrap();
        let file = super::read_config(&path).unwrap();
        assert_eq!(file.batches, crate::engine::BatchPolicy { two_person_over: 3, max_size: 1000 });
        assert!(super::read_config(&dir.path().join("none.yaml")).is_err());
        std::fs::write(&path, "batches: { two_persons_over: 3 }\n").unwrap();
        let err = super::read_config(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `two_persons_over`"), "{err}");
    }
}
