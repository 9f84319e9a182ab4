//! `offramp demo`: the whole Slack conversation against the real server routes, on loopback,
//! running the full `offboarding` pipeline across every mocked service.
//!
//! The mock SaaS runs in-process, one loopback port per vendor (Okta, Google Workspace,
//! Microsoft Graph, Slack, GitHub, Zoom, Atlassian — each with its own made-up credential);
//! `offramp serve`'s router listens on another; the demo plays Slack's part, sending signed
//! requests like Slack does: `/offboard alice@example.com manager=dana@example.com ...` →
//! confirmation → Start → the run (an injected 503 on suspend and a Google rate limit, both
//! absorbed by retries; an injected 403 on the final deactivate, which pauses) → Retry →
//! success. It prints each Slack message as a person would see it, the results table, and what
//! each service saw. An in-memory database and made-up credentials: it runs anywhere.
//!
//! Okta, Google, Microsoft Graph, GitHub and Zoom credentials are minted by offramp, as with a
//! real tenant: keys made for this run (a Google service account key file, Okta's JWK with
//! DPoP, a GitHub App PEM) and client secrets, whose public halves the mocks' token endpoints
//! know. `offramp credentials check` runs first; at the end the demo checks that no minted token
//! reached a Slack message, the results table or the event log.

use super::out::outln;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use offramp_mock::oauth::{
    GitHubApp, GoogleServiceAccount, MicrosoftApp, OAuthConfig, OktaServiceApp, RsaKeyPair, ZoomApp,
};
use offramp_mock::{Fault, MockServer, MockState, MockTokens, Vendor};
use serde_json::{Value, json};

use crate::engine::{Engine, EngineConfig};
use crate::pipeline::LoadOptions;
use crate::sandbox::Sandbox;
use crate::secrets::{Secret, SecretSource};
use crate::slack::{self, AppState, ServeConfig, SlackApiConfig};
use crate::store::{RunStatus, SqliteStore, Store};

/// Every vendor's made-up credential is derived from this (see [`MockTokens::from_seed`]).
const DEMO_TOKEN: &str = "demo-token-not-a-real-secret";
const SIGNING_SECRET: &str = "demo-signing-secret-not-a-real-secret";
const BOT_TOKEN: &str = "xoxb-mock-token";
const CHANNEL: &str = "C0OFFRAMP";
const ADMIN: &str = "U0ADMIN";

/// The repository's pipelines folder (the demo runs from a checkout).
fn default_pipelines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("pipelines")
}

/// Plays Slack: signs and sends requests to the server.
struct FakeSlack {
    client: reqwest::Client,
    server: String,
    response_url: String,
}

impl FakeSlack {
    async fn post(&self, path: &str, body: String) -> Result<(u16, Value, Duration)> {
        let ts = slack::unix_now();
        let sig = slack::signature(SIGNING_SECRET, ts, body.as_bytes());
        let started = Instant::now();
        let resp = self
            .client
            .post(format!("{}{path}", self.server))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await?;
        let took = started.elapsed();
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null), took))
    }

    async fn command(&self, user: &str, text: &str) -> Result<(u16, Value, Duration)> {
        let body = serde_urlencoded::to_string([
            ("token", "deprecated-verification-token"),
            ("team_id", "T0MOCK"),
            ("channel_id", CHANNEL),
            ("user_id", user),
            ("command", "/offboard"),
            ("text", text),
            ("response_url", &self.response_url),
            ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
        ])?;
        self.post("/slack/commands", body).await
    }

    async fn click(&self, user: &str, action_id: &str, value: &str) -> Result<(u16, Value, Duration)> {
        let payload = json!({
            "type": "block_actions",
            "user": { "id": user },
            "team": { "id": "T0MOCK" },
            "channel": { "id": CHANNEL },
            "response_url": self.response_url,
            "actions": [{ "type": "button", "action_id": action_id, "value": value }],
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())])?;
        self.post("/slack/interactions", body).await
    }
}

/// The value of the first button with `action_id` in a message's blocks.
fn button_value(blocks: &Value, action_id: &str) -> Option<String> {
    blocks.as_array()?.iter().filter(|b| b["type"] == "actions").find_map(|b| {
        b["elements"].as_array()?.iter().find(|e| e["action_id"] == action_id)?["value"].as_str().map(str::to_string)
    })
}

fn show(title: &str, message: &Value) {
    outln!("┌─ {title}");
    for line in slack::blocks::render_text(message).lines() {
        outln!("│ {line}");
    }
    outln!("└─");
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> Result<T> {
    // Generous: on a slow machine a debug build's first steps still compile big components.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("the demo gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The vendors, each on its own loopback port: (name, pipeline vars pointing at it).
const VENDORS: &[(&str, &[&str])] = &[
    ("Okta", &["okta_url"]),
    ("Google Workspace", &["google_url"]),
    ("Microsoft Graph", &["graph_url"]),
    ("Slack", &["slack_url", "slack_scim_url"]),
    ("GitHub", &["github_url"]),
    ("Zoom", &["zoom_url"]),
    ("Atlassian", &["atlassian_url"]),
];

/// The credentials offramp mints in the demo, as an operator would set them up: each vendor's
/// token endpoint (on its mock) knows the public half of a key made for this demo run.
struct Tenants {
    oauth: OAuthConfig,
    /// The keys and client secrets, as the secrets file would hold them.
    secrets: Vec<(String, String)>,
}

const MINTED: &[&str] =
    &["OKTA_API_TOKEN", "GOOGLE_ACCESS_TOKEN", "GRAPH_ACCESS_TOKEN", "GITHUB_TOKEN", "ZOOM_ACCESS_TOKEN"];
const DEMO_ADMIN: &str = "it-admin@example.com";
const SA_EMAIL: &str = "offramp@acme-it.iam.gserviceaccount.com";
const GRAPH_CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const GRAPH_SECRET: &str = "demo-graph-client-secret-not-a-real-secret";
const ZOOM_SECRET: &str = "demo-zoom-client-secret-not-a-real-secret";
const GOOGLE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member",
    "https://www.googleapis.com/auth/admin.datatransfer",
];
const OKTA_SCOPES: &[&str] = &["okta.users.read", "okta.users.manage", "okta.groups.manage", "okta.apps.manage"];

impl Tenants {
    fn new(google_token_url: &str) -> Result<Tenants> {
        let key = || RsaKeyPair::generate().map_err(|e| anyhow::anyhow!("generating a demo key: {e}"));
        let (google, okta, github) = (key()?, key()?, key()?);
        let oauth = OAuthConfig {
            google: Some(GoogleServiceAccount {
                client_email: SA_EMAIL.into(),
                public_pem: google.public_pem.clone(),
                subjects: vec![DEMO_ADMIN.into()],
                scopes: GOOGLE_SCOPES.iter().map(|s| s.to_string()).collect(),
            }),
            microsoft: Some(MicrosoftApp {
                tenant: "acme.onmicrosoft.com".into(),
                client_id: GRAPH_CLIENT.into(),
                client_secret: Some(GRAPH_SECRET.into()),
                certificate: None,
            }),
            okta: Some(OktaServiceApp {
                client_id: "0oa1offramp".into(),
                public_pem: okta.public_pem.clone(),
                scopes: OKTA_SCOPES.iter().map(|s| s.to_string()).collect(),
                require_dpop: true,
            }),
            github: Some(GitHubApp { app_id: 123456, installation_id: 7890123, public_pem: github.public_pem.clone() }),
            zoom: Some(ZoomApp {
                account_id: "AcmeAccount1".into(),
                client_id: "zoomClient1".into(),
                client_secret: ZOOM_SECRET.into(),
            }),
            ..OAuthConfig::default()
        };
        let secrets = vec![
            (
                "GOOGLE_SERVICE_ACCOUNT_KEY".into(),
                google.google_key_file(SA_EMAIL, "demo-google-key", google_token_url),
            ),
            ("OKTA_SERVICE_APP_KEY".into(), okta.okta_jwk("demo-okta-key")),
            ("GITHUB_APP_PRIVATE_KEY".into(), github.private_pem.clone()),
            ("GRAPH_CLIENT_SECRET".into(), GRAPH_SECRET.into()),
            ("ZOOM_CLIENT_SECRET".into(), ZOOM_SECRET.into()),
        ];
        Ok(Tenants { oauth, secrets })
    }

    /// The operator's `credentials:`, pointed at the mocks (`url(vendor)`).
    fn config(url: impl Fn(&str) -> String) -> Result<crate::credentials::CredentialsConfig> {
        let (okta, google, graph, github, zoom) =
            (url("Okta"), url("Google Workspace"), url("Microsoft Graph"), url("GitHub"), url("Zoom"));
        Ok(serde_json::from_value(json!({
            "GOOGLE_ACCESS_TOKEN": {
                "kind": "google_service_account", "key": "GOOGLE_SERVICE_ACCOUNT_KEY", "subject": DEMO_ADMIN,
                "scopes": GOOGLE_SCOPES, "check": format!("{google}/admin/directory/v1/users/alice@example.com"),
            },
            "GRAPH_ACCESS_TOKEN": {
                "kind": "microsoft", "tenant": "acme.onmicrosoft.com", "client_id": GRAPH_CLIENT,
                "client_secret": "GRAPH_CLIENT_SECRET", "login_url": graph,
                "check": format!("{graph}/v1.0/users/alice@example.com"),
            },
            "OKTA_API_TOKEN": {
                "kind": "okta", "org_url": okta, "client_id": "0oa1offramp", "private_key": "OKTA_SERVICE_APP_KEY",
                "scopes": OKTA_SCOPES, "check": format!("{okta}/api/v1/users/alice@example.com"),
            },
            "GITHUB_TOKEN": {
                "kind": "github_app", "app_id": 123456, "installation_id": 7890123,
                "private_key": "GITHUB_APP_PRIVATE_KEY", "api_url": github, "check": format!("{github}/orgs/acme"),
            },
            "ZOOM_ACCESS_TOKEN": {
                "kind": "zoom", "account_id": "AcmeAccount1", "client_id": "zoomClient1",
                "client_secret": "ZOOM_CLIENT_SECRET", "token_url": format!("{zoom}/oauth/token"),
                "check": format!("{zoom}/v2/users/alice@example.com"),
            },
        }))?)
    }
}

pub(crate) async fn run(pipelines_dir: Option<PathBuf>, cache_dir: Option<PathBuf>) -> Result<ExitCode> {
    let tokens = MockTokens::from_seed(DEMO_TOKEN);
    // Google's key file names its token endpoint; the Google mock's port is known only once it
    // listens, so it gets its listener first.
    let google_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let google_url = format!("http://{}", google_listener.local_addr()?);
    let tenants = Tenants::new(&format!("{google_url}/token"))?;
    let state = MockState::sample(&tokens).with_oauth(tenants.oauth.clone());
    let mut servers = Vec::new();
    let mut vars: std::collections::BTreeMap<String, String> = [
        ("github_org".to_string(), "acme".to_string()),
        ("atlassian_org".to_string(), offramp_mock::atlassian::SAMPLE_ORG_ID.to_string()),
    ]
    .into_iter()
    .collect();
    let mut google_listener = Some(google_listener);
    for (vendor, names) in VENDORS {
        let listener = match google_listener.take_if(|_| *vendor == "Google Workspace") {
            Some(l) => l,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        };
        let server =
            MockServer::serve(listener, state.clone()).await.with_context(|| format!("starting the mock {vendor}"))?;
        for name in *names {
            vars.insert(name.to_string(), server.url());
        }
        servers.push((*vendor, server));
    }
    let mock = &servers[0].1;
    let slack_url = servers.iter().find(|(v, _)| *v == "Slack").map_or_else(|| mock.url(), |(_, s)| s.url());
    // The first suspend answers 503 and Google rate-limits the first token listing (the steps'
    // retries absorb both); the first deactivate answers 403 (the token lacks a permission):
    // that step has `on_failure: pause`, so a person decides.
    for (method, path, status) in
        [("POST", "/lifecycle/suspend", 503), ("GET", "/tokens", 403), ("POST", "/lifecycle/deactivate", 403)]
    {
        let fault = Fault { method: Some(method.into()), path_contains: path.into(), status, times: 1, delay_ms: 0 };
        mock.state.inject(fault);
    }

    let dir = pipelines_dir.unwrap_or_else(default_pipelines_dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await?);
    store.add_approver(ADMIN, "demo").await?;
    let sandbox = Arc::new(Sandbox::new(cache_dir)?);
    let load = LoadOptions {
        plugins_dir: PathBuf::from(crate::BUILTIN_PLUGINS_DIR),
        vars: vars.clone(),
        allow_cap: None,
        contracts: Default::default(),
    };
    let (plugins, warm) = warm_up(&sandbox, &dir.join("offboarding.yaml"), &load).await?;
    // Slack and Atlassian keep static secrets; the other five are minted from these keys and
    // client secrets (their static tokens are not even there).
    let mut secrets: Vec<(String, String)> =
        tokens.secrets().into_iter().filter(|(name, _)| !MINTED.contains(&name.as_str())).collect();
    secrets.extend(tenants.secrets.clone());
    let secrets = SecretSource::fixed(secrets);
    let url_of = |vendor: &str| servers.iter().find(|(v, _)| *v == vendor).map_or_else(String::new, |(_, s)| s.url());
    let credentials = Tenants::config(url_of)?;
    // The mock SaaS listens on loopback, which plugins may only reach with the operator's word.
    let network =
        crate::http::NetworkPolicy::with_private_hosts(["127.0.0.1"]).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let engine =
        Engine::new(store.clone(), sandbox, secrets, EngineConfig { network, credentials, ..EngineConfig::default() })?;
    let config = ServeConfig {
        signing_secret: Secret::new(SIGNING_SECRET),
        bot_token: Secret::new(BOT_TOKEN),
        api_token: None,
        slack: SlackApiConfig { base_url: format!("{slack_url}/slack/api"), ..SlackApiConfig::default() },
        channel: CHANNEL.into(),
        command: "/offboard".into(),
        pipelines_dir: dir.clone(),
        default_pipeline: "offboarding".into(),
        load,
        ack_budget: Duration::from_millis(2500),
        pause_reminder: Duration::from_secs(4 * 3600),
    };
    let state = AppState::new(config, engine.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = format!("http://{}", listener.local_addr()?);
    tokio::spawn(axum::serve(listener, slack::app(state)).into_future());

    outln!("offramp demo: the Slack conversation, against `offramp serve`'s routes on loopback\n");
    outln!("  offramp serve  {server}  (signing secret and bot token are demo values)");
    outln!("  mock Slack bot {slack_url}/slack/api  (channel #it-offboarding = {CHANNEL})");
    for (vendor, server) in &servers {
        outln!("  mock {:<17} {}", vendor, server.url());
    }
    outln!("                 (alice@example.com is active everywhere; dana@example.com is her manager)");
    outln!(
        "  network        allow_private: [127.0.0.1]  (the mocks are on loopback; plugins get no other private address)"
    );
    outln!("  pipelines      {}", dir.display());
    outln!(
        "  plugins        {plugins} components ready in {:.1} s (compiled on first use, then cached on disk)",
        warm.as_secs_f64()
    );
    outln!("  approvers      @{ADMIN}  (offramp approvers add {ADMIN})");
    outln!("  credentials    offramp credentials check (keys made for this demo; Slack and Atlassian stay static):");
    for r in engine.credentials().check(engine.http_client()).await {
        match &r.outcome {
            Ok(what) => outln!("                 ok    {:<20} {}: {what}", r.name, r.kind),
            Err(why) => bail!("credential {} failed its check: {why}", r.name),
        }
    }
    outln!(
        "  injected       first Okta suspend → 503 and first Google token listing → 403 rate limit (both retried);\n                 \
         first Okta deactivate → 403 (pauses for a person)\n"
    );

    let slack_side = FakeSlack {
        client: reqwest::Client::new(),
        server,
        response_url: format!("{slack_url}/slack/hooks/commands/T0MOCK/1/demo"),
    };
    let ws = mock.state.slack.clone();

    let command = "alice@example.com manager=dana@example.com github_login=alice-gh";
    outln!("@{ADMIN} types in #it-offboarding:  /offboard {command}");
    let (status, reply, took) = slack_side.command(ADMIN, command).await?;
    outln!("  → HTTP {status}, acknowledged in {} ms; only @{ADMIN} sees:", took.as_millis());
    show("offramp (only visible to you)", &reply);
    let request_id =
        button_value(&reply["blocks"], slack::blocks::START).context("the confirmation has no Start button")?;

    outln!("\n@{ADMIN} clicks [ Start ] and confirms \"Start offboarding?\"");
    let (status, _, took) = slack_side.click(ADMIN, slack::blocks::START, &request_id).await?;
    outln!("  → HTTP {status}, acknowledged in {} ms", took.as_millis());
    let replaced = wait_for("the confirmation to be replaced", async || ws.responses().into_iter().last()).await?;
    show("offramp (only visible to you; replaces the confirmation)", &replaced);

    let run_id =
        wait_for("the run to start", async || store.runs(1).await.ok()?.into_iter().next().map(|r| r.id)).await?;
    wait_for("the run to pause", async || (store.run(&run_id).await.ok()?.status == RunStatus::Paused).then_some(()))
        .await?;
    let paused = wait_for("the channel message to offer Retry", async || {
        ws.messages().into_iter().find(|m| m.thread_ts.is_none() && button_value(&m.blocks, "retry").is_some())
    })
    .await?;
    let error_reply = wait_for("the step error in the thread", async || {
        ws.messages().into_iter().find(|m| m.thread_ts.as_deref() == Some(&paused.ts))
    })
    .await?;
    outln!();
    show("#it-offboarding · offramp (one message, updated in place)", &json!({ "blocks": paused.blocks }));
    show("#it-offboarding · thread reply", &json!({ "text": error_reply.text }));

    let value = button_value(&paused.blocks, "retry").context("no Retry button")?;
    outln!("\n(the operator grants the token the permission) @{ADMIN} clicks [ Retry ]");
    let (status, _, took) = slack_side.click(ADMIN, "retry", &value).await?;
    outln!("  → HTTP {status}, acknowledged in {} ms", took.as_millis());
    let summary = wait_for("the run's summary", async || {
        ws.messages().into_iter().find(|m| m.thread_ts.as_deref() == Some(&paused.ts) && m.reply_broadcast)
    })
    .await?;
    let last = ws.messages().into_iter().find(|m| m.ts == paused.ts).context("the run message vanished")?;
    outln!();
    show(&format!("#it-offboarding · offramp (edited {} times)", last.edits), &json!({ "blocks": last.blocks }));
    show("#it-offboarding · thread reply, also sent to the channel", &json!({ "text": summary.text }));

    let channel_writes = ws.calls().iter().filter(|c| c.method.starts_with("chat.")).count();
    outln!(
        "\nSlack API calls: {channel_writes} (chat.postMessage / chat.update), at most one a second to the channel."
    );
    super::runs::print_run(store.as_ref(), &run_id, false, false).await?;

    report_services(&mock.state, &tokens);
    // Every token offramp minted, as the vendors saw it: none may be in what people see.
    let minted = minted_tokens(&mock.state, &tokens);
    let mut seen_by_people = String::new();
    for m in ws.messages() {
        seen_by_people.push_str(&format!("{} {}\n", m.text, m.blocks));
    }
    for r in ws.responses() {
        seen_by_people.push_str(&r.to_string());
    }
    for s in store.steps(&run_id).await? {
        seen_by_people.push_str(&serde_json::to_string(&s)?);
    }
    for e in store.events(&run_id).await? {
        seen_by_people.push_str(&serde_json::to_string(&e)?);
    }
    let leaked = minted.iter().filter(|t| seen_by_people.contains(t.as_str())).count();
    outln!(
        "\nTokens offramp minted: {} ({}); found in Slack messages, the results table or the event log: {leaked}",
        minted.len(),
        ["okta", "google", "microsoft", "github", "zoom"]
            .iter()
            .map(|v| format!("{v} {}", mock.state.oauth().mints(v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if leaked > 0 {
        bail!("a minted token reached what people see");
    }
    let status = store.run(&run_id).await?.status;
    Ok(if status == RunStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_FAILED) })
}

/// Compiles (or loads from the disk cache) every plugin the pipeline uses before the
/// conversation starts, so the first run of a fresh checkout doesn't stall mid-conversation:
/// the Python and JavaScript components carry their interpreters (~12–19 MB each).
async fn warm_up(sandbox: &Arc<Sandbox>, pipeline: &std::path::Path, load: &LoadOptions) -> Result<(usize, Duration)> {
    let plan = crate::pipeline::load_checked(pipeline, load, sandbox).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut paths: Vec<PathBuf> = plan.steps.iter().map(|s| s.plugin.clone()).collect();
    paths.sort();
    paths.dedup();
    let started = Instant::now();
    let tasks: Vec<_> = paths
        .into_iter()
        .map(|path| {
            let sandbox = sandbox.clone();
            tokio::task::spawn_blocking(move || {
                sandbox.plugin(&path).map(|_| ()).with_context(|| path.display().to_string())
            })
        })
        .collect();
    let n = tasks.len();
    for task in tasks {
        task.await.context("loading a plugin")??;
    }
    Ok((n, started.elapsed()))
}

/// The tokens the minted vendors' APIs saw.
fn minted_tokens(state: &MockState, tokens: &MockTokens) -> Vec<String> {
    let statics: Vec<String> = tokens.secrets().into_iter().map(|(_, v)| v).collect();
    let mut out: Vec<String> = state
        .requests()
        .into_iter()
        .filter(|r| Vendor::of_path(&r.path).is_some_and(|v| MINTED.contains(&v.secret_name())))
        .filter_map(|r| r.authorization)
        .filter_map(|a| a.split_once(' ').map(|(_, t)| t.to_string()))
        .filter(|t| t.len() > 8 && !statics.contains(t))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What each mock service saw, whether each got only its own credential, and where Alice ends up.
fn report_services(state: &MockState, tokens: &MockTokens) {
    outln!("\nWhat each service saw (credentials were added by the host; the plugins never had them):");
    for vendor in Vendor::ALL {
        let name = vendor.name();
        let seen: Vec<_> = state.requests().into_iter().filter(|r| Vendor::of_path(&r.path) == Some(vendor)).collect();
        // Static credentials: exactly the vendor's own; minted ones: a token its own endpoint
        // issued, which the vendor took (a 401 means it did not).
        let own = vendor.authorization(tokens);
        let statics: Vec<String> = Vendor::ALL.iter().map(|v| v.authorization(tokens)).collect();
        let own = seen
            .iter()
            .filter(|r| match r.authorization.as_deref() {
                Some(a) if a == own => true,
                Some(a) => MINTED.contains(&vendor.secret_name()) && !statics.iter().any(|s| s == a) && r.status != 401,
                None => false,
            })
            .count();
        let writes = seen.iter().filter(|r| r.method != "GET").count();
        let rejected = seen.iter().filter(|r| r.status >= 400).count();
        outln!(
            "  {name:<17} {:>3} requests ({writes} changes, {rejected} refused or injected failures), {own}/{} with its own credential",
            seen.len(),
            seen.len()
        );
    }
    let email = "alice@example.com";
    outln!("\nalice@example.com now:");
    if let Some(u) = state.okta.user(email) {
        outln!(
            "  Okta              {} ({} groups, {} apps, {} grants)",
            u.status,
            u.groups.len(),
            u.apps.len(),
            u.grants.len()
        );
    }
    if let Some(u) = state.google.user(email) {
        let transfers: Vec<String> = state.google.transfers().iter().map(|t| t.status.clone()).collect();
        outln!(
            "  Google Workspace  suspended: {}, {} groups, {} OAuth tokens; Drive + Calendar transfer to dana: {}",
            u.suspended,
            u.groups.len(),
            u.tokens.len(),
            transfers.join(", ")
        );
    }
    if let Some(u) = state.graph.user(email) {
        outln!("  Microsoft Graph   accountEnabled: {}, {} memberships left", u.account_enabled, u.member_of.len());
    }
    if let Some(u) = state.slack.scim_user_by_email(email) {
        outln!("  Slack             active: {}, {} sessions", u.active, u.sessions);
    }
    outln!(
        "  GitHub            member of acme: {}",
        state.github.member("alice-gh").map_or_else(|| "no".to_string(), |m| format!("yes ({})", m.state))
    );
    if let Some(u) = state.zoom.user(email) {
        outln!("  Zoom              {} (a Python plugin did this)", u.status);
    }
    if let Some(u) = state.atlassian.user(email) {
        outln!("  Atlassian         {} (a JavaScript plugin did this)", u.account_status);
    }
}
