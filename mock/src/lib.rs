//! A mock SaaS on loopback for offramp's tests and demo: a router per vendor that copies the
//! real API's shapes (status codes, error bodies, rate-limit headers), a request log, and
//! failure injection. Its own crate, not a module of offramp's library: offramp links it only
//! through its `mock` cargo feature (`offramp demo`, `offramp mock`); the tests take it as a
//! dev-dependency.
//!
//! Every vendor keeps its real path layout, so a plugin's base URL is the only thing a test
//! changes: `/api/v1/...` (Okta), `/admin/directory/v1/...` and `/admin/datatransfer/v1/...`
//! (Google Workspace), `/v1.0/...` (Microsoft Graph), `/scim/v2/...` and `/slack/api/{method}`
//! (Slack SCIM and Web API; `/slack/hooks/...` for response_url), `/orgs/...` (GitHub),
//! `/v2/users/...` (Zoom), `/users/.../manage/...` (Atlassian). Plus `/__echo/...` (returns
//! the request it got, like httpbin's `/anything`), `/__mock/requests` (the log),
//! `/__mock/faults` (POST a [`Fault`]). With the cargo feature `hostile` (the adversarial tests
//! only), also `/__mock/redirect?to=URL` (a 302 anywhere) and `/__mock/big` (8 MiB).
//!
//! Each vendor checks its own credential (see [`MockTokens`]), so a token sent to the wrong
//! vendor is refused the way the real API would refuse it. Each vendor's router holds only its
//! own state (`okta::Directory`, `slack::Workspace`, ...); [`MockState`] bundles them with the
//! request log and the faults, which the server-wide layer keeps.
//!
//! Five vendors also have their OAuth token endpoint, at its real path (see [`oauth`]):
//! `POST /token` (Google: a service account's JWT bearer grant), `POST
//! /{tenant}/oauth2/v2.0/token` (Microsoft Entra: client credentials with a secret or a
//! certificate's assertion), `POST /oauth2/v1/token` (Okta: client credentials with
//! `private_key_jwt`, DPoP), `POST /app/installations/{id}/access_tokens` (GitHub: an app JWT buys
//! an installation token), `POST /oauth/token` (Zoom: Server-to-Server `account_credentials`).
//! They are always routed; a vendor configured with [`MockState::with_oauth`] then takes only the
//! live tokens its endpoint issued, and refuses its static token. Token endpoint requests go
//! through the log and the fault injection like any other (an injected failure answers in the
//! endpoint's error shape).

pub mod atlassian;
pub mod github;
pub mod google;
pub mod graph;
#[cfg(feature = "hostile")]
mod hostile;
pub mod oauth;
pub mod okta;
pub mod slack;
pub mod zoom;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One request the mock received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The `Authorization` header as received (tests check injection with it).
    pub authorization: Option<String>,
    /// The `Host` header as received: which of several mock servers sharing one state got it.
    #[serde(default)]
    pub host: Option<String>,
    /// The answer's status; 0 while unanswered, or if the client went away first.
    pub status: u16,
}

/// A failure to inject: the next `times` requests whose method and path match get `status`
/// (or, with `status: 0`, a `delay_ms` pause before the normal answer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    /// A substring of the path, e.g. `/lifecycle/suspend`.
    pub path_contains: String,
    /// 429, 500, 503... or 0 for "answer normally after `delay_ms`".
    pub status: u16,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

/// The credential each mock vendor expects, and the secret name pipelines inject it from.
#[derive(Debug, Clone, PartialEq)]
pub struct MockTokens {
    /// `Authorization: SSWS {okta}` — secret `OKTA_API_TOKEN`.
    pub okta: String,
    /// `Authorization: Bearer {google}` — secret `GOOGLE_ACCESS_TOKEN`.
    pub google: String,
    /// `Authorization: Bearer {graph}` — secret `GRAPH_ACCESS_TOKEN`.
    pub graph: String,
    /// `Authorization: Bearer {slack}` (an org admin's user token, for SCIM and `admin.*`) —
    /// secret `SLACK_ADMIN_TOKEN`.
    pub slack: String,
    /// `Authorization: Bearer {github}` — secret `GITHUB_TOKEN`.
    pub github: String,
    /// `Authorization: Bearer {zoom}` — secret `ZOOM_ACCESS_TOKEN`.
    pub zoom: String,
    /// `Authorization: Bearer {atlassian}` — secret `ATLASSIAN_API_KEY`.
    pub atlassian: String,
}

impl MockTokens {
    /// Distinct made-up tokens derived from `seed` (the Okta token is `seed` itself).
    pub fn from_seed(seed: &str) -> MockTokens {
        MockTokens {
            okta: seed.to_string(),
            google: format!("ya29.{seed}"),
            graph: format!("eyJ0eXAi.{seed}"),
            slack: format!("xoxp-{seed}"),
            github: format!("ghp_{seed}"),
            zoom: format!("zoom.{seed}"),
            atlassian: format!("atl.{seed}"),
        }
    }

    /// `(secret name, value)` pairs, as a pipeline's `credentials:` name them.
    pub fn secrets(&self) -> Vec<(String, String)> {
        [
            ("OKTA_API_TOKEN", &self.okta),
            ("GOOGLE_ACCESS_TOKEN", &self.google),
            ("GRAPH_ACCESS_TOKEN", &self.graph),
            ("SLACK_ADMIN_TOKEN", &self.slack),
            ("GITHUB_TOKEN", &self.github),
            ("ZOOM_ACCESS_TOKEN", &self.zoom),
            ("ATLASSIAN_API_KEY", &self.atlassian),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }
}

/// Shared state of the mock.
#[derive(Clone, Default)]
pub struct MockState {
    pub okta: okta::Directory,
    pub slack: slack::Workspace,
    pub google: google::Workspace,
    pub graph: graph::Tenant,
    pub github: github::Org,
    pub zoom: zoom::Account,
    pub atlassian: atlassian::Directory,
    /// The token endpoints' configuration and the tokens they issued (see [`MockState::with_oauth`]).
    oauth: oauth::OAuth,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl MockState {
    /// Every vendor's sample data, each expecting its token from [`MockTokens::from_seed`]`(seed)`
    /// (so Okta's API token is `seed`).
    pub fn okta(seed: &str) -> MockState {
        Self::sample(&MockTokens::from_seed(seed))
    }

    /// Every vendor's sample data (the same people everywhere: alice@example.com is active,
    /// bob@example.com already suspended, dana@example.com is Alice's manager), with these tokens.
    pub fn sample(tokens: &MockTokens) -> MockState {
        MockState {
            okta: okta::Directory::sample(&tokens.okta),
            slack: slack::Workspace::default().with_admin_token(&tokens.slack),
            google: google::Workspace::sample(&tokens.google),
            graph: graph::Tenant::sample(&tokens.graph),
            github: github::Org::sample(&tokens.github),
            zoom: zoom::Account::sample(&tokens.zoom),
            atlassian: atlassian::Directory::sample(&tokens.atlassian),
            ..Default::default()
        }
    }

    /// Makes each vendor configured in `config` take only access tokens its token endpoint
    /// issued (the static token of [`MockTokens`] is then refused with that vendor's own 401);
    /// the others keep their static tokens. See [`oauth`].
    pub fn with_oauth(self, config: oauth::OAuthConfig) -> MockState {
        self.oauth.configure(config);
        self
    }

    /// The token endpoints' state, shared by every clone of this state (and the servers running
    /// it): counters, revocation, key rotation, DPoP nonces.
    pub fn oauth(&self) -> &oauth::OAuth {
        &self.oauth
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn inject(&self, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.push(fault);
        }
    }

    /// Takes the first matching fault (decrementing its count).
    fn take_fault(&self, method: &Method, path: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().ok()?;
        let idx = faults.iter().position(|f| {
            path.contains(&f.path_contains)
                && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
        })?;
        let fault = faults[idx].clone();
        if faults[idx].times <= 1 {
            faults.remove(idx);
        } else {
            faults[idx].times -= 1;
        }
        Some(fault)
    }
}

/// A running mock server.
pub struct MockServer {
    pub addr: SocketAddr,
    pub state: MockState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockServer {
    /// Starts on `127.0.0.1:0` with the sample directory and the given Okta API token.
    pub async fn start(okta_token: &str) -> std::io::Result<MockServer> {
        Self::start_with(MockState::okta(okta_token)).await
    }

    /// Starts on `127.0.0.1:0` with the given state (e.g. a Slack workspace with its own token).
    pub async fn start_with(state: MockState) -> std::io::Result<MockServer> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), state).await
    }

    /// Starts on `ip`, on a free port (the sandbox tests put the SaaS on 127.0.0.2 and the
    /// service plugins must not reach on 127.0.0.1).
    pub async fn start_on(ip: std::net::IpAddr, state: MockState) -> std::io::Result<MockServer> {
        Self::listen(SocketAddr::new(ip, 0), state).await
    }

    /// Starts on `addr` (`offramp mock --listen`).
    pub async fn listen(addr: SocketAddr, state: MockState) -> std::io::Result<MockServer> {
        Self::serve(tokio::net::TcpListener::bind(addr).await?, state).await
    }

    /// Serves on a listener bound beforehand (when its URL must be known before the state is
    /// made: a Google key file names its token endpoint).
    pub async fn serve(listener: tokio::net::TcpListener, state: MockState) -> std::io::Result<MockServer> {
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = app(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(MockServer { addr, state, shutdown: Some(tx) })
    }

    /// `http://IP:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The mock's router: each vendor's router with its own state, the mock's own routes, and the
/// layer that logs every request and injects faults.
pub fn app(state: MockState) -> Router {
    let own = Router::new()
        .route("/__mock/requests", get(requests))
        .route("/__mock/faults", post(add_fault))
        .with_state(state.clone());
    let oauth = &state.oauth;
    let app = Router::new()
        .nest("/api/v1", okta::router(state.okta.clone(), oauth.clone()))
        .nest("/slack", slack::router(state.slack.clone()))
        .merge(slack::scim_router(state.slack.clone()))
        .merge(google::router(state.google.clone(), oauth.clone()))
        .merge(graph::router(state.graph.clone(), oauth.clone()))
        .merge(github::router(state.github.clone(), oauth.clone()))
        .merge(zoom::router(state.zoom.clone(), oauth.clone()))
        .merge(atlassian::router(state.atlassian.clone()))
        .merge(oauth::router(oauth.clone()))
        .route("/__echo", any(echo))
        .route("/__echo/{*rest}", any(echo))
        .merge(own);
    #[cfg(feature = "hostile")]
    let app = app.merge(hostile::router());
    app.layer(middleware::from_fn_with_state(state, log_and_inject))
}

async fn log_and_inject(State(state): State<MockState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let host = req.headers().get("host").and_then(|v| v.to_str().ok()).map(str::to_string);
    // Logged on receipt (status 0 until answered): a request whose client went away before the
    // answer (a killed process) is in the log too.
    let logged = (!path.starts_with("/__mock"))
        .then(|| {
            let mut log = state.log.lock().ok()?;
            log.push(LoggedRequest {
                method: method.to_string(),
                path: path.clone(),
                query,
                authorization,
                host,
                status: 0,
            });
            Some(log.len() - 1)
        })
        .flatten();
    let fault = if path.starts_with("/__mock") { None } else { state.take_fault(&method, &path) };
    let response = match fault {
        Some(f) if f.status == 0 => {
            tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
            next.run(req).await
        }
        Some(f) => {
            if f.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
            }
            let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(method) = path.strip_prefix("/slack/api/") {
                state.slack.record(method, &json!({ "injected_status": f.status }), None);
            }
            vendor_error(&path, status)
        }
        None => next.run(req).await,
    };
    if let Some(i) = logged
        && let Ok(mut log) = state.log.lock()
        && let Some(entry) = log.get_mut(i)
    {
        entry.status = response.status().as_u16();
    }
    response
}

/// A vendor the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Okta,
    Google,
    Graph,
    Slack,
    GitHub,
    Zoom,
    Atlassian,
}

impl Vendor {
    pub const ALL: [Vendor; 7] =
        [Vendor::Okta, Vendor::Google, Vendor::Graph, Vendor::Slack, Vendor::GitHub, Vendor::Zoom, Vendor::Atlassian];

    /// The vendor whose real API has `path` (not the bot's `/slack/...` Web API and hooks,
    /// which stand in for Slack itself, not for a vendor the plugins offboard from).
    pub fn of_path(path: &str) -> Option<Vendor> {
        Some(if path.starts_with("/api/v1/") {
            Vendor::Okta
        } else if path.starts_with("/admin/directory/") || path.starts_with("/admin/datatransfer/") {
            Vendor::Google
        } else if path.starts_with("/v1.0/") {
            Vendor::Graph
        } else if path.starts_with("/scim/") || path.starts_with("/api/") {
            Vendor::Slack
        } else if path.starts_with("/orgs/") {
            Vendor::GitHub
        } else if path.starts_with("/v2/") {
            Vendor::Zoom
        } else if path.starts_with("/users/") || path.starts_with("/admin/v1/") {
            Vendor::Atlassian
        } else {
            return None;
        })
    }

    /// The secret a pipeline injects this vendor's credential from: `OKTA_API_TOKEN`...
    pub fn secret_name(self) -> &'static str {
        match self {
            Vendor::Okta => "OKTA_API_TOKEN",
            Vendor::Google => "GOOGLE_ACCESS_TOKEN",
            Vendor::Graph => "GRAPH_ACCESS_TOKEN",
            Vendor::Slack => "SLACK_ADMIN_TOKEN",
            Vendor::GitHub => "GITHUB_TOKEN",
            Vendor::Zoom => "ZOOM_ACCESS_TOKEN",
            Vendor::Atlassian => "ATLASSIAN_API_KEY",
        }
    }

    /// The vendor whose OAuth token endpoint (see [`oauth`]) has `path`: `/token` (Google),
    /// `/{tenant}/oauth2/v2.0/token` (Microsoft, as [`Vendor::Graph`]), `/oauth2/v1/token` (Okta),
    /// `/app/installations/{id}/access_tokens` (GitHub), `/oauth/token` (Zoom). [`Vendor::of_path`]
    /// answers `None` for these: they are no vendor API a plugin calls.
    pub fn of_token_path(path: &str) -> Option<Vendor> {
        let segments: Vec<&str> = path.split('/').collect();
        Some(match segments.as_slice() {
            ["", "token"] => Vendor::Google,
            ["", "oauth2", "v1", "token"] => Vendor::Okta,
            ["", tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty() => Vendor::Graph,
            ["", "app", "installations", id, "access_tokens"] if !id.is_empty() => Vendor::GitHub,
            ["", "oauth", "token"] => Vendor::Zoom,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Okta => "Okta",
            Vendor::Google => "Google Workspace",
            Vendor::Graph => "Microsoft Graph",
            Vendor::Slack => "Slack",
            Vendor::GitHub => "GitHub",
            Vendor::Zoom => "Zoom",
            Vendor::Atlassian => "Atlassian",
        }
    }

    /// The `Authorization` header this vendor's mock accepts.
    pub fn authorization(self, tokens: &MockTokens) -> String {
        match self {
            Vendor::Okta => format!("SSWS {}", tokens.okta),
            Vendor::Google => format!("Bearer {}", tokens.google),
            Vendor::Graph => format!("Bearer {}", tokens.graph),
            Vendor::Slack => format!("Bearer {}", tokens.slack),
            Vendor::GitHub => format!("Bearer {}", tokens.github),
            Vendor::Zoom => format!("Bearer {}", tokens.zoom),
            Vendor::Atlassian => format!("Bearer {}", tokens.atlassian),
        }
    }
}

/// An injected failure, in the body and headers the vendor owning `path` would send.
fn vendor_error(path: &str, status: StatusCode) -> Response {
    if let Some(resp) = oauth::token_error_response(path, status) {
        return resp;
    }
    if path.starts_with("/slack/api/") {
        return slack::error_response(status);
    }
    match Vendor::of_path(path) {
        Some(Vendor::Slack) if path.starts_with("/scim/") => slack::scim_error_response(status),
        Some(Vendor::Slack) => slack::error_response(status),
        Some(Vendor::Google) => google::error_response(status),
        Some(Vendor::Graph) => graph::error_response(status),
        Some(Vendor::GitHub) => github::error_response(status),
        Some(Vendor::Zoom) => zoom::error_response(status),
        Some(Vendor::Atlassian) => atlassian::error_response(status),
        Some(Vendor::Okta) | None => okta::error_response(status),
    }
}

/// Answers with the request it got; `?delay_ms=N` answers N ms later (at most 10 s): a slow API.
async fn echo(method: Method, headers: HeaderMap, uri: axum::http::Uri, body: Bytes) -> impl IntoResponse {
    let delay = uri.query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("delay_ms="));
    if let Some(ms) = delay.and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
    }
    let headers: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(k, v)| (k.as_str().to_string(), json!(String::from_utf8_lossy(v.as_bytes())))).collect();
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn requests(State(state): State<MockState>) -> impl IntoResponse {
    axum::Json(state.requests())
}

async fn add_fault(State(state): State<MockState>, axum::Json(fault): axum::Json<Fault>) -> impl IntoResponse {
    state.inject(fault);
    StatusCode::NO_CONTENT
}
