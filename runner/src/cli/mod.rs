//! The `offramp` command line.

mod batch;
#[cfg(feature = "mock")]
mod demo;
mod out;
mod plugin;
mod report;
mod runs;
mod scaffold;
mod serve;

use out::{err, errln, outln};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::engine::{Engine, EngineConfig};
use crate::http::NetworkPolicy;
use crate::pipeline::{self, LoadOptions};
use crate::sandbox::Sandbox;
use crate::secrets::SecretSource;
use crate::store;

/// Exit codes: 0 succeeded, 1 failed or aborted (or an error), 2 invalid input, 3 paused.
const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;
const EXIT_PAUSED: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "offramp", version, about = "Employee offboarding as YAML pipelines of sandboxed WebAssembly steps")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Results database: sqlite://PATH (default sqlite://offramp.db).
    #[arg(long, global = true, env = "DATABASE_URL", default_value = "sqlite://offramp.db")]
    database_url: String,
    /// Where `uses: NAME` finds NAME.wasm (default: the plugins built with offramp).
    #[arg(long, global = true, env = "OFFRAMP_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// A file of NAME=value secrets, read before the environment.
    #[arg(long, global = true, env = "OFFRAMP_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,
    /// Where compiled plugins are cached (default ~/.cache/offramp/components).
    #[arg(long, global = true, env = "OFFRAMP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Steps of one run that may run at the same time.
    #[arg(long, global = true, env = "OFFRAMP_MAX_PARALLEL", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_parallel: u16,
    /// How long a run stays leased to a process that stopped renewing it (it died): after a
    /// crash, other processes wait this long before taking its runs over. Renewed every third.
    #[arg(long, global = true, env = "OFFRAMP_LEASE", default_value = "30s", value_parser = lease_duration)]
    lease: Duration,
    /// The operator's config file (no secrets in it). `offramp serve` reads all of it; every
    /// command reads its `network:` section (what pipelines may reach, hosts allowed private
    /// addresses, HTTP limits).
    #[arg(long, global = true, env = "OFFRAMP_CONFIG")]
    config: Option<PathBuf>,
    /// Let this host resolve to a loopback/private/link-local address (an internal service, a
    /// local mock); adds to the config file's `network.allow_private`. Repeatable;
    /// OFFRAMP_ALLOW_PRIVATE takes a comma-separated list.
    #[arg(long = "allow-private", global = true, env = "OFFRAMP_ALLOW_PRIVATE", value_delimiter = ',')]
    allow_private: Vec<String>,
    /// The config file's contents, read once per command (see [`operator_config`]).
    #[arg(skip)]
    operator: std::sync::OnceLock<serve::FileConfig>,
}

fn lease_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 30s, 2m or 500ms)"))?;
    if d < Duration::from_millis(300) || d > Duration::from_secs(3600) {
        return Err("a lease must be between 300ms and 1h".into());
    }
    Ok(d)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline: live progress, then the results table.
    /// Exit 0 succeeded, 1 failed or aborted, 3 paused.
    Run(RunArgs),
    /// Check pipeline files; print every error with its line. Exit 0 valid, 2 invalid.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override a pipeline var (operator setting) for the check.
        #[arg(long = "var", value_parser = key_value)]
        vars: Vec<(String, String)>,
    },
    /// Inspect past and current runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Continue a paused run: retry, skip or abort its paused step.
    Resume(ResumeArgs),
    /// Continue every run that was in flight when offramp stopped (what `offramp serve` does at
    /// start). Finished steps are not run again; a step that was running runs again with the
    /// same idempotency key, or pauses ("outcome unknown") if it is `idempotent: false`.
    Recover {
        #[arg(long)]
        json: bool,
    },
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// The whole Slack conversation (command, Start, a paused step, Retry) against the real
    /// server routes, a mock Slack and a mock Okta, with no credentials.
    #[cfg(feature = "mock")]
    Demo {
        /// Where `offboarding.yaml` is (default: pipelines/ of this checkout).
        #[arg(long)]
        pipelines_dir: Option<PathBuf>,
    },
    /// Serve the mock SaaS that the tests and the demo use (Okta, Google Workspace, Microsoft
    /// Graph, Slack, GitHub, Zoom, Atlassian, at their real paths, plus `/__echo`) on loopback,
    /// to try a plugin with `offramp plugin run` without a real account. Runs until Ctrl-C.
    #[cfg(feature = "mock")]
    Mock {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8900")]
        listen: std::net::SocketAddr,
        /// The made-up tokens each vendor expects are derived from this seed (printed at start).
        #[arg(long, default_value = "mock-token")]
        token_seed: String,
    },
    /// Print the pipeline format's JSON Schema.
    Schema,
    /// Run the Slack app's backend: the slash command, its buttons, channel reporting, /api/runs.
    /// Needs SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN (environment or secrets file).
    Serve(serve::ServeArgs),
    /// Who may request runs and decide on paused steps in Slack.
    #[command(subcommand)]
    Approvers(serve::ApproversCommand),
    /// The vendor credentials of the config file's `credentials:`.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

#[derive(Subcommand, Debug)]
enum CredentialsCommand {
    /// For each configured credential: get it (minting a token where it is minted) and make one
    /// harmless read of its vendor's API with it. Exit 0 all ok, 1 if any failed.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    pipeline: PathBuf,
    /// A pipeline input, `--input email=alice@example.com`; repeat for more.
    #[arg(long = "input", short = 'i', value_parser = key_value)]
    inputs: Vec<(String, String)>,
    /// Override a pipeline var (operator setting), `--var okta_url=https://acme.okta.com`.
    #[arg(long = "var", value_parser = key_value)]
    vars: Vec<(String, String)>,
    /// Send no mutating request (only GET/HEAD); record what would have been sent.
    #[arg(long)]
    dry_run: bool,
    /// Who asked for the run, for the event log (default: $USER).
    #[arg(long)]
    requested_by: Option<String>,
    /// Print the final run as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Many runs, one per row, as one batch: a CSV whose header row names inputs, or JSON
    /// lines. `--input` values apply to every row that does not set them.
    #[arg(long, value_name = "FILE")]
    inputs_file: Option<PathBuf>,
    /// With --inputs-file: runs driven at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    concurrency: u16,
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    /// The newest runs, or a batch's runs.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only this batch's runs (`offramp run --inputs-file` prints its id).
        #[arg(long)]
        batch: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One run: its steps, and with --events its event log.
    Show {
        run_id: String,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        events: bool,
    },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("decision").required(true).args(["retry", "skip", "abort"])))]
struct ResumeArgs {
    run_id: String,
    /// Run the paused step again.
    #[arg(long)]
    retry: bool,
    /// Mark the paused step skipped and carry on.
    #[arg(long)]
    skip: bool,
    /// End the run.
    #[arg(long)]
    abort: bool,
    /// Which paused step (needed when several are paused).
    #[arg(long)]
    step: Option<String>,
    /// Who decided, for the event log (default: $USER).
    #[arg(long = "as")]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("empty key in `{s}`"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("OFFRAMP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Validate { files, vars } => validate(&g, &files, vars).await,
        Command::Schema => {
            outln!("{}", serde_json::to_string_pretty(&pipeline::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => runs::run(&g, args).await,
        Command::Runs(cmd) => runs::runs(&g, cmd).await,
        Command::Resume(args) => runs::resume(&g, args).await,
        Command::Recover { json } => runs::recover(&g, json).await,
        Command::Plugin(cmd) => plugin::dispatch(&g, cmd).await,
        #[cfg(feature = "mock")]
        Command::Mock { listen, token_seed } => plugin::mock(listen, &token_seed).await,
        Command::Serve(args) => serve::serve(&g, args).await,
        Command::Approvers(cmd) => serve::approvers(&g, cmd).await,
        Command::Credentials(CredentialsCommand::Check { json }) => credentials_check(&g, json).await,
        #[cfg(feature = "mock")]
        Command::Demo { pipelines_dir } => {
            demo::run(pipelines_dir, g.cache_dir.clone().or_else(Sandbox::default_cache_dir)).await
        }
    }
}

fn plugins_dir(g: &Global) -> PathBuf {
    g.plugins_dir.clone().unwrap_or_else(|| PathBuf::from(crate::BUILTIN_PLUGINS_DIR))
}

/// The operator's config file (`--config`), read on first use; empty without one.
fn operator_config(g: &Global) -> Result<&serve::FileConfig> {
    if let Some(file) = g.operator.get() {
        return Ok(file);
    }
    let file = match &g.config {
        Some(path) => serve::read_config(path)?,
        None => Default::default(),
    };
    Ok(g.operator.get_or_init(|| file))
}

/// The operator's network policy: the config file's `network:` plus `--allow-private`.
fn network(g: &Global) -> Result<NetworkPolicy> {
    let mut config = operator_config(g)?.network.clone();
    config.allow_private.extend(g.allow_private.iter().filter(|h| !h.trim().is_empty()).cloned());
    config.policy().map_err(|errors| {
        let shown = g.config.as_ref().map_or_else(|| "--allow-private".to_string(), |p| p.display().to_string());
        anyhow::anyhow!("{shown}: {}", errors.join("; "))
    })
}

/// The operator's plugin limits: the config file's `sandbox:`.
fn sandbox(g: &Global) -> Result<Arc<Sandbox>> {
    let limits = operator_config(g)?.sandbox.limits().map_err(|errors| {
        let shown = g.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        anyhow::anyhow!("{shown}: {}", errors.join("; "))
    })?;
    let cache = g.cache_dir.clone().or_else(Sandbox::default_cache_dir);
    Ok(Arc::new(Sandbox::with_limits(cache, limits)?))
}

fn load_options(g: &Global, vars: Vec<(String, String)>) -> Result<LoadOptions> {
    Ok(LoadOptions {
        plugins_dir: plugins_dir(g),
        vars: vars.into_iter().collect(),
        allow_cap: network(g)?.allow,
        contracts: Default::default(),
    })
}

/// Checks pipelines completely, the plugins' declared contracts included (which loads each
/// plugin once: compiled components are cached on disk).
async fn validate(g: &Global, files: &[PathBuf], vars: Vec<(String, String)>) -> Result<ExitCode> {
    let opts = load_options(g, vars)?;
    let sandbox = sandbox(g)?;
    let mut bad = 0;
    for file in files {
        match pipeline::load_checked(file, &opts, &sandbox).await {
            Ok(plan) => {
                let n = plan.steps.len();
                outln!("{}: ok ({n} step{})", file.display(), if n == 1 { "" } else { "s" })
            }
            Err(e) => {
                bad += 1;
                err!("{e}");
                if matches!(e, pipeline::LoadError::Read { .. }) {
                    errln!();
                }
            }
        }
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INVALID) })
}

/// The process's credentials: the config file's `credentials:` over the secrets.
fn credentials(g: &Global, client: &crate::http::GateClient) -> Result<crate::credentials::Credentials> {
    crate::credentials::Credentials::new(secrets(g)?, &operator_config(g)?.credentials, client).map_err(|errors| {
        let shown = g.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        anyhow::anyhow!("{shown}: {}", errors.join("; "))
    })
}

async fn credentials_check(g: &Global, json: bool) -> Result<ExitCode> {
    let client = crate::http::GateClient::new(network(g)?).context("setting up the HTTP client")?;
    let creds = credentials(g, &client)?;
    let reports = creds.check(&client).await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        outln!("no `credentials:` in the config file: every credential a pipeline names is a static secret");
    } else {
        for r in &reports {
            match &r.outcome {
                Ok(what) => outln!("ok    {} ({}): {what}", r.name, r.kind),
                Err(why) => outln!("FAIL  {} ({}): {why}", r.name, r.kind),
            }
        }
    }
    Ok(if reports.iter().all(|r| r.ok()) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

fn secrets(g: &Global) -> Result<SecretSource> {
    match &g.secrets_file {
        Some(path) => Ok(SecretSource::from_file(path)?),
        None => Ok(SecretSource::from_env()),
    }
}

async fn engine(g: &Global) -> Result<Engine> {
    engine_with(g, sandbox(g)?).await
}

async fn engine_with(g: &Global, sandbox: Arc<Sandbox>) -> Result<Engine> {
    let store = store::open(&g.database_url).await.context("opening the results database")?;
    let config = EngineConfig {
        max_parallel_steps: usize::from(g.max_parallel),
        lease: g.lease,
        network: network(g)?,
        credentials: operator_config(g)?.credentials.clone(),
        batches: operator_config(g)?.batches.clone(),
        ..EngineConfig::default()
    };
    Ok(Engine::new(store, sandbox, secrets(g)?, config)?)
}

fn whoami() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).map_or_else(|_| "cli".into(), |u| format!("cli:{u}"))
}
