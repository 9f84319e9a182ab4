//! `offramp plugin inspect | run | new` and `offramp mock`: the plugin author's commands.

use super::out::{err, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::{EXIT_INVALID, Global, key_value, load_options, network, sandbox, scaffold};
use crate::pipeline;

#[derive(Subcommand, Debug)]
pub(super) enum PluginCommand {
    /// Print what a plugin says about itself (`describe`), its digest, what each interface it
    /// imports gives it here, the limits it runs under, and (with --pipeline) what each step
    /// using it is allowed.
    Inspect {
        plugin: PathBuf,
        /// Also show the grants of the steps of this pipeline that use the plugin.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Pipeline vars for --pipeline, as for `validate`.
        #[arg(long = "var", value_parser = key_value)]
        vars: Vec<(String, String)>,
    },
    /// Run a plugin once, outside any pipeline, to try it against a mock or a real API:
    /// `offramp plugin run okta.wasm --input '{"action":"lookup",...}' --allow https://acme.okta.com
    /// --credential https://acme.okta.com=OKTA_API_TOKEN --format 'SSWS {secret}'`.
    /// Same sandbox, gate and limits as a step. Exit 0 if it succeeded, 1 if it failed.
    Run(PluginRunArgs),
    /// Start a plugin project that builds and runs as generated: `offramp plugin new --lang
    /// python zoom_deactivate`. Writes NAME/ (the plugin, a copy of the interface, a README
    /// with the build command and how to try it).
    New {
        /// rust, python or js.
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        /// The plugin's name: lowercase letters, digits and `_` (it becomes `uses: NAME`).
        #[arg(value_parser = |s: &str| scaffold::check_name(s).map(|()| s.to_string()))]
        name: String,
        /// The folder to create NAME/ in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub(super) struct PluginRunArgs {
    plugin: PathBuf,
    /// The plugin's input (what a step's `with:` renders to), as JSON.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Where it may send requests, as in a step's `allow:` (repeatable).
    #[arg(long)]
    allow: Vec<String>,
    /// `HOST=SECRET`: inject the secret (from the environment or --secrets-file) into requests
    /// to HOST, which must also be allowed (repeatable).
    #[arg(long = "credential", value_parser = key_value)]
    credentials: Vec<(String, String)>,
    /// The credential header's value, with `{secret}` where the secret goes.
    #[arg(long, default_value = "Bearer {secret}")]
    format: String,
    /// The credential header.
    #[arg(long, default_value = "Authorization")]
    header: String,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Linear-memory cap, e.g. 64MiB.
    #[arg(long, default_value = "64MiB")]
    memory: String,
    /// Send only GET/HEAD/OPTIONS; record the rest.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub(super) async fn dispatch(g: &Global, cmd: PluginCommand) -> Result<ExitCode> {
    match cmd {
        PluginCommand::Inspect { plugin, pipeline, vars } => inspect(g, &plugin, pipeline.as_deref(), vars).await,
        PluginCommand::Run(args) => plugin_run(g, args).await,
        PluginCommand::New { lang, name, dir } => {
            let root = scaffold::create(lang, &name, &dir)?;
            let (build, wasm) = scaffold::build_command(lang, &name);
            outln!("created {}", root.display());
            outln!("build it:  cd {} && {}", root.display(), build.replace("NAME", &name));
            outln!("try it:    see {}/README.md (offramp plugin run {wasm} ...)", root.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "mock")]
pub(super) async fn mock(listen: std::net::SocketAddr, seed: &str) -> Result<ExitCode> {
    if !listen.ip().is_loopback() {
        bail!(
            "the mock is for trying plugins on this machine: listen on a loopback address (127.0.0.1), not {listen} \
             (anyone who reaches it can read its request log and inject faults)"
        );
    }
    let tokens = offramp_mock::MockTokens::from_seed(seed);
    let server = offramp_mock::MockServer::listen(listen, offramp_mock::MockState::sample(&tokens))
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    outln!("mock SaaS on {} (made-up data: alice@example.com is active everywhere)", server.url());
    outln!("credentials each vendor expects (put them in a secrets file to try plugins):");
    for (name, value) in tokens.secrets() {
        outln!("  {name}={value}");
    }
    outln!("paths: /api/v1 (Okta), /admin/directory/v1 + /admin/datatransfer/v1 (Google), /v1.0 (Graph),");
    outln!("       /scim/v2 + /api/{{method}} (Slack), /orgs (GitHub), /v2/users (Zoom), /users (Atlassian),");
    outln!("       /__echo/... (answers with the request it got), /__mock/requests (what it saw)");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(ExitCode::SUCCESS)
}

async fn plugin_run(g: &Global, args: PluginRunArgs) -> Result<ExitCode> {
    use crate::pipeline::{CredentialPlan, Grant, Origin};
    use crate::sandbox::{AttemptResult, Invoke};
    let input: serde_json::Value =
        serde_json::from_str(&args.input).map_err(|e| anyhow::anyhow!("--input is not JSON: {e}"))?;
    let allow = args
        .allow
        .iter()
        .map(|a| Origin::parse(a).map(Grant::origin).map_err(|e| anyhow::anyhow!("--allow: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if !args.format.contains("{secret}") {
        bail!("--format must contain {{secret}} where the secret goes, e.g. 'SSWS {{secret}}'");
    }
    let client = crate::http::GateClient::new(network(g)?).context("setting up HTTP")?;
    // A credential the config file mints is minted here too; any other is a static secret.
    let creds = super::credentials(g, &client)?;
    let mut injections = Vec::new();
    for (host, secret) in &args.credentials {
        let origin = Origin::parse(host).map_err(|e| anyhow::anyhow!("--credential: {e}"))?;
        if !allow.iter().any(|a| a.origin.covers(&origin)) {
            bail!("--credential {origin}: allow it too (--allow {origin})");
        }
        let rule = CredentialPlan {
            origin,
            secret: secret.clone(),
            header: args.header.to_ascii_lowercase(),
            format: args.format.clone(),
        };
        let injection = creds.injection(&rule).await.with_context(|| format!("--credential {host}={secret}"))?;
        injections.push(injection);
    }
    let memory_bytes = pipeline::model::parse_bytes(&args.memory).map_err(|e| anyhow::anyhow!("--memory: {e}"))?;
    let sandbox = sandbox(g)?;
    let plugin = sandbox.plugin(&args.plugin)?;
    let inv =
        Invoke { input, allow, credentials: Vec::new(), timeout: args.timeout, memory_bytes, dry_run: args.dry_run };
    let report = sandbox.invoke_with(&plugin, &client, inv, injections).await;
    let ok = matches!(report.result, AttemptResult::Done { .. });
    if args.json {
        let v = run_json(&report);
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &report.result {
            AttemptResult::Done { output, changed } => {
                outln!("{} {}", if *changed { "changed" } else { "unchanged" }, serde_json::to_string_pretty(output)?);
            }
            AttemptResult::Failed { kind, message, .. } => outln!("failed ({kind:?}): {message}"),
        }
        for r in &report.requests {
            outln!(
                "request {} {} → {}{}",
                r.method,
                r.url,
                r.outcome,
                r.credential.as_deref().map(|c| format!(" (with {c})")).unwrap_or_default()
            );
        }
        for line in &report.log {
            outln!("log     {line}");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Each action with the `with:` keys it takes and the output fields it returns.
fn print_contract(c: &pipeline::Contract) {
    outln!("actions (`offramp validate` checks each step's `with:` and output references against these):");
    for a in &c.actions {
        let name = if a.name.is_empty() { "(its only action)" } else { a.name.as_str() };
        outln!("  {name}  {}", a.description);
        if let Some(input) = &a.input {
            outln!("    with:   {}", pipeline::schema::summary(input, "action"));
        }
        if let Some(output) = &a.output {
            outln!("    output: {}", pipeline::schema::summary(output, ""));
        }
    }
}

async fn inspect(
    g: &Global,
    path: &Path,
    pipeline_file: Option<&Path>,
    vars: Vec<(String, String)>,
) -> Result<ExitCode> {
    let sandbox = sandbox(g)?;
    let plugin = sandbox.plugin(path)?;
    let info = sandbox.describe(&plugin).await.map_err(|e| anyhow::anyhow!("describe() failed: {e}"))?;
    outln!("{} {}", info.name, info.version);
    outln!("{}", info.description);
    outln!("file    {}", path.display());
    outln!("sha256  {}", plugin.digest);
    let decls = sandbox.contract(&plugin).await.map_err(|e| anyhow::anyhow!("contract() failed: {e}"))?;
    let contract = pipeline::Contract::parse(&info.name, decls).map_err(|e| anyhow::anyhow!("the plugin: {e}"))?;
    outln!(
        "world   {}",
        if contract.is_some() {
            "offramp:plugin/described-task (0.1.1: declares a contract)"
        } else {
            "offramp:plugin/task (declares no contract: pipelines using it are not type-checked)"
        }
    );
    if let Some(c) = &contract {
        print_contract(c);
    }
    if info.inputs.is_empty() {
        outln!("inputs  (none declared)");
    } else {
        outln!("inputs:");
        let width = info.inputs.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for i in &info.inputs {
            outln!(
                "  {:<width$}  {:<8} {:<9} {}",
                i.name,
                i.type_name,
                if i.required { "required" } else { "optional" },
                i.description
            );
        }
    }
    outln!("imports (what this host gives it):");
    let imports = sandbox.imports(&plugin);
    let width = imports.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, gets) in &imports {
        outln!("  {name:<width$}  {gets}");
    }
    let l = sandbox.limits();
    let n = network(g)?;
    outln!("limits (operator, every step):");
    outln!(
        "  output {} KiB, stdout/stderr {} KiB each, log {} lines / {} KiB, stack {} KiB, {} instances at once",
        l.max_output_bytes / 1024,
        l.max_stdio_bytes / 1024,
        l.max_log_lines,
        l.max_log_bytes / 1024,
        l.max_stack_bytes / 1024,
        l.max_instances
    );
    outln!(
        "  HTTP: {} requests per attempt, request body {} KiB, response body {} KiB, {} per request",
        n.limits.max_requests,
        n.limits.max_request_bytes / 1024,
        n.limits.max_response_bytes / 1024,
        humantime::format_duration(n.limits.max_request_timeout)
    );
    outln!("  time and memory: each step's `timeout:` (default 60s) and `memory:` (default 64MiB)");
    if let Some(file) = pipeline_file {
        let plan = match pipeline::load(file, &load_options(g, vars)?) {
            Ok(plan) => plan,
            Err(e) => {
                err!("{e}");
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        };
        let mine = plugin.path.clone();
        let steps: Vec<_> = plan
            .steps
            .iter()
            .filter(|s| s.plugin.canonicalize().unwrap_or_else(|_| s.plugin.clone()) == mine)
            .collect();
        outln!("steps of {} using it:", file.display());
        if steps.is_empty() {
            outln!("  (none)");
        }
        for s in steps {
            let allow = if s.allow.is_empty() {
                "nothing (no network)".to_string()
            } else {
                s.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            outln!("  {}: allowed {allow}", s.id);
            for c in &s.credentials {
                outln!("  {}: secret {} → {} header of {}", s.id, c.secret, c.header, c.origin);
            }
            outln!(
                "  {}: timeout {}, memory {} MiB",
                s.id,
                humantime::format_duration(s.timeout),
                s.memory_bytes / (1024 * 1024)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `offramp plugin run --json`: the shape docs/plugins.md documents.
///
/// ```json
/// { "status": "changed" | "unchanged" | "failed",
///   "output": { … },                                      // when it succeeded
///   "error": { "kind": "transient" | "permanent" | "needs_human",
///              "message": "…", "retry_after_ms": 2000 },   // when it failed
///   "log": ["[info] …"], "requests": [{ "method": "GET", "url": "…", "outcome": "200" }] }
/// ```
pub(crate) fn run_json(report: &crate::sandbox::AttemptReport) -> serde_json::Value {
    let mut v = match &report.result {
        crate::sandbox::AttemptResult::Done { output, changed } => serde_json::json!({
            "status": if *changed { "changed" } else { "unchanged" },
            "output": output,
        }),
        crate::sandbox::AttemptResult::Failed { kind, message, retry_after } => serde_json::json!({
            "status": "failed",
            "error": {
                "kind": kind,
                "message": message,
                "retry_after_ms": retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            },
        }),
    };
    v["log"] = serde_json::json!(report.log);
    v["requests"] = serde_json::json!(report.requests);
    v
}
