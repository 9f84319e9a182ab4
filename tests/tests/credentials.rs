//! Host-minted vendor credentials against the mock's token endpoints, per kind: Google service
//! account (JWT bearer, key file), Microsoft client credentials (secret and certificate),
//! Okta private_key_jwt with DPoP (Okta's JWK), GitHub App (PEM), Zoom Server-to-Server.
//!
//! Each test gets its own engine (so its own token cache) and its own mock.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Harness, loopback, sandbox, tokens};
use offramp::engine::EngineConfig;
use offramp::secrets::SecretSource;
use offramp::store::{RunStatus, StepStatus};
use offramp_mock::oauth::{
    GitHubApp, GoogleServiceAccount, MicrosoftApp, OAuthConfig, OktaServiceApp, RsaKeyPair, ZoomApp,
};
use offramp_mock::{Fault, MockServer, MockState};
use serde_json::json;

struct Keys {
    google: RsaKeyPair,
    okta: RsaKeyPair,
    github: RsaKeyPair,
    graph: RsaKeyPair,
    /// A key no vendor knows: what a rotated (revoked) key looks like from the host's side.
    stranger: RsaKeyPair,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let k = || RsaKeyPair::generate().expect("an RSA key");
        Keys { google: k(), okta: k(), github: k(), graph: k(), stranger: k() }
    })
}

const SA_EMAIL: &str = "offramp@acme-it.iam.gserviceaccount.com";
const ADMIN: &str = "admin@example.com";
const GOOGLE_SCOPES: &[&str] =
    &["https://www.googleapis.com/auth/admin.directory.user", "https://www.googleapis.com/auth/admin.datatransfer"];
const GRAPH_CLIENT_SECRET: &str = "graph~client~secret~value~0123456789";
const ZOOM_CLIENT_SECRET: &str = "zoom-client-secret-abcdef0123456789";
const TENANT: &str = "acme.onmicrosoft.com";

/// What each vendor's token endpoint accepts.
fn oauth_config(ttl: Duration) -> OAuthConfig {
    let k = keys();
    OAuthConfig {
        google: Some(GoogleServiceAccount {
            client_email: SA_EMAIL.into(),
            public_pem: k.google.public_pem.clone(),
            subjects: vec![ADMIN.into()],
            scopes: GOOGLE_SCOPES.iter().map(|s| s.to_string()).collect(),
        }),
        microsoft: Some(MicrosoftApp {
            tenant: TENANT.into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: Some(GRAPH_CLIENT_SECRET.into()),
            certificate: Some((k.graph.certificate_thumbprint(), k.graph.public_pem.clone())),
        }),
        okta: Some(OktaServiceApp {
            client_id: "0oa1offramp".into(),
            public_pem: k.okta.public_pem.clone(),
            scopes: vec!["okta.users.read".into(), "okta.users.manage".into()],
            require_dpop: true,
        }),
        github: Some(GitHubApp { app_id: 123456, installation_id: 7890123, public_pem: k.github.public_pem.clone() }),
        zoom: Some(ZoomApp {
            account_id: "AcmeAccount1".into(),
            client_id: "zoomClient1".into(),
            client_secret: ZOOM_CLIENT_SECRET.into(),
        }),
        token_ttl: ttl,
    }
}

/// The operator's `credentials:` for the mock at `url`, as a config file would say it.
fn credentials_config(url: &str) -> offramp::credentials::CredentialsConfig {
    let k = keys();
    serde_json::from_value(json!({
        "GOOGLE_ACCESS_TOKEN": {
            "kind": "google_service_account", "key": "GOOGLE_SERVICE_ACCOUNT_KEY", "subject": ADMIN,
            "scopes": GOOGLE_SCOPES, "check": format!("{url}/admin/directory/v1/users/alice@example.com"),
        },
        "GRAPH_ACCESS_TOKEN": {
            "kind": "microsoft", "tenant": TENANT, "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": "GRAPH_CLIENT_SECRET", "login_url": url,
            "check": format!("{url}/v1.0/users/alice@example.com"),
        },
        "GRAPH_CERT_TOKEN": {
            "kind": "microsoft", "tenant": TENANT, "client_id": "11111111-2222-3333-4444-555555555555",
            "private_key": "GRAPH_CERTIFICATE_KEY", "certificate_thumbprint": k.graph.certificate_thumbprint(),
            "login_url": url, "check": format!("{url}/v1.0/users/alice@example.com"),
        },
        "OKTA_API_TOKEN": {
            "kind": "okta", "org_url": url, "client_id": "0oa1offramp", "private_key": "OKTA_SERVICE_APP_KEY",
            "scopes": ["okta.users.read", "okta.users.manage"],
            "check": format!("{url}/api/v1/users/alice@example.com"),
        },
        "GITHUB_TOKEN": {
            "kind": "github_app", "app_id": 123456, "installation_id": 7890123,
            "private_key": "GITHUB_APP_PRIVATE_KEY", "api_url": url, "check": format!("{url}/orgs/acme"),
        },
        "ZOOM_ACCESS_TOKEN": {
            "kind": "zoom", "account_id": "AcmeAccount1", "client_id": "zoomClient1",
            "client_secret": "ZOOM_CLIENT_SECRET", "token_url": format!("{url}/oauth/token"),
            "check": format!("{url}/v2/users/alice@example.com"),
        },
    }))
    .expect("a valid credentials: section")
}

/// Keys and client secrets, as the secrets file would hold them: Google's JSON key file (its
/// token_uri names the mock), Okta's generated JWK, GitHub's PEM, a certificate's PEM key.
fn secrets(url: &str) -> SecretSource {
    let k = keys();
    let mut all = tokens().secrets();
    all.extend([
        (
            "GOOGLE_SERVICE_ACCOUNT_KEY".to_string(),
            k.google.google_key_file(SA_EMAIL, "kid-google-1", &format!("{url}/token")),
        ),
        ("OKTA_SERVICE_APP_KEY".to_string(), k.okta.okta_jwk("kid-okta-1")),
        ("GITHUB_APP_PRIVATE_KEY".to_string(), k.github.private_pem.clone()),
        ("GRAPH_CERTIFICATE_KEY".to_string(), k.graph.private_pem.clone()),
        ("GRAPH_CLIENT_SECRET".to_string(), GRAPH_CLIENT_SECRET.to_string()),
        ("ZOOM_CLIENT_SECRET".to_string(), ZOOM_CLIENT_SECRET.to_string()),
    ]);
    // The static tokens are still there: a minted credential must not fall back to them.
    SecretSource::fixed(all)
}

async fn tenant(ttl: Duration) -> Harness {
    let _ = sandbox();
    let state = MockState::sample(&tokens()).with_oauth(oauth_config(ttl));
    let mock = MockServer::start_with(state).await.expect("mock starts");
    let url = mock.url();
    let config = EngineConfig { network: loopback(), credentials: credentials_config(&url), ..EngineConfig::default() };
    Harness::assemble(mock, secrets(&url), config).await
}

/// One read-only step per kind (Zoom's plugin has one action, a deactivation).
const EVERY_KIND: &str = r#"
version: 1
name: minted
inputs: { email: { type: email, required: true } }
vars: { okta_url: x, google_url: x, graph_url: x, github_url: x, github_org: x, zoom_url: x }
steps:
  - id: okta
    uses: okta
    with: { action: lookup, org_url: "{{ vars.okta_url }}", user: "{{ inputs.email }}" }
    allow: ["{{ vars.okta_url }}"]
    credentials: [{ host: "{{ vars.okta_url }}", secret: OKTA_API_TOKEN, format: "SSWS {secret}" }]
  - id: google
    uses: google
    with: { action: lookup, api_url: "{{ vars.google_url }}", user: "{{ inputs.email }}" }
    allow: ["{{ vars.google_url }}"]
    credentials: [{ host: "{{ vars.google_url }}", secret: GOOGLE_ACCESS_TOKEN }]
  - id: graph
    uses: graph
    with: { action: lookup, api_url: "{{ vars.graph_url }}", user: "{{ inputs.email }}" }
    allow: ["{{ vars.graph_url }}"]
    credentials: [{ host: "{{ vars.graph_url }}", secret: GRAPH_ACCESS_TOKEN }]
  - id: graph_cert
    uses: graph
    with: { action: lookup, api_url: "{{ vars.graph_url }}", user: "{{ inputs.email }}" }
    allow: ["{{ vars.graph_url }}"]
    credentials: [{ host: "{{ vars.graph_url }}", secret: GRAPH_CERT_TOKEN }]
  - id: github
    uses: github
    with: { action: lookup, api_url: "{{ vars.github_url }}", org: "{{ vars.github_org }}", username: alice-gh }
    allow: ["{{ vars.github_url }}"]
    credentials: [{ host: "{{ vars.github_url }}", secret: GITHUB_TOKEN }]
  - id: zoom
    uses: zoom
    with: { email: "{{ inputs.email }}", api_url: "{{ vars.zoom_url }}" }
    allow: ["{{ vars.zoom_url }}"]
    credentials: [{ host: "{{ vars.zoom_url }}", secret: ZOOM_ACCESS_TOKEN }]
"#;

const VENDORS: [&str; 5] = ["okta", "google", "microsoft", "github", "zoom"];

async fn run_every_kind(h: &Harness) -> String {
    let (id, status) = h.run(EVERY_KIND, &[("email", "alice@example.com")]).await;
    let steps = h.steps(&id).await;
    assert_eq!(
        status,
        RunStatus::Succeeded,
        "{:#?}",
        steps.values().map(|s| (&s.step_id, &s.error)).collect::<Vec<_>>()
    );
    id
}

/// The tokens the mock saw, taken from the `Authorization` headers it logged.
fn tokens_seen(mock: &MockServer) -> Vec<String> {
    let mut out: Vec<String> = mock
        .state
        .requests()
        .into_iter()
        .filter_map(|r| r.authorization)
        .filter_map(|a| a.split_once(' ').map(|(_, t)| t.to_string()))
        .filter(|t| !tokens().secrets().iter().any(|(_, v)| v == t) && t.len() > 8)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn every_kind_mints_once_and_the_token_is_shared_by_steps_and_runs() {
    let h = tenant(Duration::from_secs(3600)).await;
    run_every_kind(&h).await;
    run_every_kind(&h).await;
    let oauth = h.mock.state.oauth();
    for v in ["okta", "google", "github", "zoom"] {
        assert_eq!(oauth.mints(v), 1, "{v}: one token for two runs");
    }
    assert_eq!(oauth.mints("microsoft"), 2, "the client-secret and the certificate credential each mint once");
    assert_eq!(oauth.use_dpop_nonce_answers(), 1, "Okta asked for its DPoP nonce once, and got it");
    let seen = h.mock.state.requests();
    let okta_api: Vec<_> = seen.iter().filter(|r| r.path.starts_with("/api/v1/")).collect();
    assert!(!okta_api.is_empty());
    for r in okta_api {
        assert!(r.authorization.as_deref().is_some_and(|a| a.starts_with("DPoP ")), "{r:?}");
        assert_eq!(r.status, 200, "each proof (its own jti, htm, htu, ath) was accepted: {r:?}");
    }
    for r in seen
        .iter()
        .filter(|r| r.path.starts_with("/admin/") || r.path.starts_with("/v1.0/") || r.path.starts_with("/orgs/"))
    {
        assert!(r.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer ")), "{r:?}");
        assert!(r.status < 400, "{r:?}");
    }
    assert_eq!(h.engine.credentials().mints("OKTA_API_TOKEN"), 1);
}

#[tokio::test]
async fn tokens_are_minted_again_when_they_expire() {
    let h = tenant(Duration::from_secs(2)).await;
    run_every_kind(&h).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    run_every_kind(&h).await;
    let oauth = h.mock.state.oauth();
    for v in ["okta", "google", "github", "zoom"] {
        assert_eq!(oauth.mints(v), 2, "{v}: the first token expired before the second run");
    }
    // Nothing was refused for an expired token: the host renewed it before it ran out.
    let refused: Vec<_> = h.mock.state.requests().into_iter().filter(|r| r.status == 401).collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

#[tokio::test]
async fn a_token_the_api_refuses_is_refreshed_once_and_the_request_sent_again() {
    let h = tenant(Duration::from_secs(3600)).await;
    run_every_kind(&h).await;
    for v in VENDORS {
        h.mock.state.oauth().revoke_tokens(v);
    }
    let id = run_every_kind(&h).await;
    let oauth = h.mock.state.oauth();
    for v in ["okta", "google", "github", "zoom"] {
        assert_eq!(oauth.mints(v), 2, "{v}");
    }
    // The refresh happened inside the request: one attempt per step, a 401 then a success.
    for (step, s) in h.steps(&id).await {
        assert_eq!(s.attempts, 1, "{step}");
        let requests = s.requests.as_array().cloned().unwrap_or_default();
        assert!(requests.iter().all(|r| r["outcome"] != "401"), "{step}: {requests:?}");
    }
    let statuses: Vec<u16> = h.mock.state.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 6, "one refused request per step: {statuses:?}");
    // The step's record says so: the refused request went again with a new token.
    for (step, s) in h.steps(&id).await {
        let requests = s.requests.as_array().cloned().unwrap_or_default();
        assert!(
            requests.iter().any(|r| r["outcome"].as_str().is_some_and(|o| o.ends_with("(after a token refresh)"))),
            "{step}: {requests:?}"
        );
    }
}

/// Steps that need the same credential at once wait for one mint, even a slow one.
#[tokio::test]
async fn steps_waiting_for_the_same_token_share_one_mint() {
    let h = tenant(Duration::from_secs(3600)).await;
    h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/oauth2/v1/token".into(),
        status: 0,
        times: 1,
        delay_ms: 700,
    });
    let mut yaml = String::from("version: 1\nname: four\nvars: { okta_url: x }\nsteps:\n");
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - id: s{i}\n    uses: okta\n    with: {{ action: lookup, org_url: \"{{{{ vars.okta_url }}}}\", user: alice@example.com }}\n    allow: [\"{{{{ vars.okta_url }}}}\"]\n    credentials: [{{ host: \"{{{{ vars.okta_url }}}}\", secret: OKTA_API_TOKEN }}]\n"
        ));
    }
    let (_, status) = h.run(&yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(h.mock.state.oauth().mints("okta"), 1, "four steps at once, one mint");
}

/// An API that keeps answering 401 (say, a permission the app lacks) gets one refresh, not a
/// mint per request: the step fails with the API's answer.
#[tokio::test]
async fn a_401_that_persists_costs_one_refresh() {
    let h = tenant(Duration::from_secs(3600)).await;
    h.mock.state.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/api/v1/users/".into(),
        status: 401,
        times: 50,
        delay_ms: 0,
    });
    let yaml = EVERY_KIND.replace(
        "    credentials: [{ host: \"{{ vars.okta_url }}\", secret: OKTA_API_TOKEN, format: \"SSWS {secret}\" }]",
        "    credentials: [{ host: \"{{ vars.okta_url }}\", secret: OKTA_API_TOKEN }]\n    retry: { attempts: 1 }",
    );
    let one = single_step(&h.plan(&yaml), "okta");
    let (id, status) = h.run_plan(&one, &[("email", "alice@example.com")]).await;
    assert_ne!(status, RunStatus::Succeeded);
    assert_eq!(h.mock.state.oauth().mints("okta"), 2, "the first token and one refresh");
    let seen = h.mock.state.requests().into_iter().filter(|r| r.path.starts_with("/api/v1/users/")).count();
    assert_eq!(seen, 2, "the request and its one resend");
    let error = h.steps(&id).await["okta"].error.clone().unwrap_or_default();
    assert!(error.contains("401"), "{error}");
}

/// A plugin that carries on after its request was refused still fails the step when the token
/// could not be refreshed: the token endpoint's error stands.
#[tokio::test]
async fn a_failed_refresh_fails_the_step_even_if_the_plugin_carries_on() {
    let h = tenant(Duration::from_secs(3600)).await;
    let yaml = r#"
version: 1
name: tolerant
vars: { okta_url: x }
steps:
  - id: carry_on
    uses: testkit
    with: { mode: http, tolerate: true, request: { url: "{{ vars.okta_url }}/api/v1/users/alice@example.com" } }
    allow: ["{{ vars.okta_url }}"]
    credentials: [{ host: "{{ vars.okta_url }}", secret: OKTA_API_TOKEN }]
"#;
    let (_, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Succeeded, "a working token");
    let oauth = h.mock.state.oauth();
    oauth.revoke_tokens("okta");
    assert!(oauth.rotate_key("okta", &keys().stranger.public_pem));
    let (id, status) = h.run(yaml, &[]).await;
    assert_eq!(status, RunStatus::Paused);
    let s = &h.steps(&id).await["carry_on"];
    let error = s.error.clone().unwrap_or_default();
    assert!(error.contains("cannot get a token for OKTA_API_TOKEN") && error.contains("invalid_client"), "{error}");
    assert!(s.output.is_none(), "the plugin's output is not kept: {:?}", s.output);
}

/// A key or client secret goes only to its token endpoint: a step naming it as a secret gets
/// nothing injected and fails with why.
#[tokio::test]
async fn a_minted_credentials_key_is_never_injected_as_a_secret() {
    let h = tenant(Duration::from_secs(3600)).await;
    for secret in ["OKTA_SERVICE_APP_KEY", "ZOOM_CLIENT_SECRET", "GITHUB_APP_PRIVATE_KEY_FILE"] {
        let yaml = format!(
            r#"
version: 1
name: exfiltrate
vars: {{ okta_url: x }}
steps:
  - id: send
    uses: http
    with: {{ url: "{{{{ vars.okta_url }}}}/__echo/loot" }}
    allow: ["{{{{ vars.okta_url }}}}"]
    credentials: [{{ host: "{{{{ vars.okta_url }}}}", secret: {secret} }}]
"#
        );
        let (id, status) = h.run(&yaml, &[]).await;
        assert_eq!(status, RunStatus::Paused, "{secret}");
        let error = h.steps(&id).await["send"].error.clone().unwrap_or_default();
        assert!(error.contains("holds the key or client secret of the minted credential"), "{secret}: {error}");
    }
    assert!(h.mock.state.requests().iter().all(|r| !r.path.contains("/__echo/loot")), "nothing was sent");
}

/// What a step says when its vendor no longer takes the key or secret: the token endpoint's
/// own error and what to fix, and the run pauses for a person.
#[tokio::test]
async fn a_revoked_key_fails_the_step_with_the_token_endpoints_error() {
    let h = tenant(Duration::from_secs(3600)).await;
    let k = keys();
    let oauth = h.mock.state.oauth();
    assert!(oauth.rotate_key("google", &k.stranger.public_pem));
    assert!(oauth.set_client_secret("microsoft", "a-newer-secret"));
    assert!(oauth.rotate_key("okta", &k.stranger.public_pem));
    assert!(oauth.rotate_key("github", &k.stranger.public_pem));
    assert!(oauth.set_client_secret("zoom", "a-newer-zoom-secret"));
    let plan = h.plan(EVERY_KIND);
    let expected: BTreeMap<&str, &[&str]> = [
        ("okta", &["invalid_client", "The client_assertion signature is invalid.", "upload this key's public key"][..]),
        ("google", &["invalid_grant", "Invalid JWT Signature.", "create a new JSON key"][..]),
        ("graph", &["invalid_client", "AADSTS7000215", "Value (not its Secret ID)"][..]),
        ("github", &["401", "A JSON web token could not be decoded", "GITHUB_APP_PRIVATE_KEY"][..]),
        ("zoom", &["invalid_client", "Invalid client_id or client_secret", "ZOOM_CLIENT_SECRET"][..]),
    ]
    .into_iter()
    .collect();
    for (step, wants) in expected {
        let one = single_step(&plan, step);
        let (id, status) = h.run_plan(&one, &[("email", "alice@example.com")]).await;
        assert_eq!(status, RunStatus::Paused, "{step}");
        let s = &h.steps(&id).await[step];
        assert_eq!(s.status, StepStatus::Paused);
        let error = s.error.clone().unwrap_or_default();
        for want in wants {
            assert!(error.contains(want), "{step}: {want:?} not in {error}");
        }
        assert!(error.starts_with("cannot get a token for "), "{error}");
        assert_eq!(s.attempts, 0, "{step}: the plugin never ran, and a refused key is not retried");
    }
    // The vendors' APIs never saw a request: the step stopped at the token endpoint.
    let api: Vec<_> = h.mock.state.requests().into_iter().filter(|r| !is_token_endpoint(&r.path)).collect();
    assert!(api.is_empty(), "{api:#?}");
}

/// A key revoked while a token is still cached: the API refuses the token, the refresh fails,
/// and the step says why in the token endpoint's words — not the API's bare 401.
#[tokio::test]
async fn a_failed_refresh_reports_the_token_endpoint_not_the_401() {
    let h = tenant(Duration::from_secs(3600)).await;
    run_every_kind(&h).await;
    let oauth = h.mock.state.oauth();
    oauth.revoke_tokens("okta");
    assert!(oauth.rotate_key("okta", &keys().stranger.public_pem));
    let one = single_step(&h.plan(EVERY_KIND), "okta");
    let (id, status) = h.run_plan(&one, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Paused);
    let error = h.steps(&id).await["okta"].error.clone().unwrap_or_default();
    assert!(error.contains("invalid_client") && error.contains("client_assertion signature"), "{error}");
}

/// Okta's API may ask for a DPoP nonce of its own (RFC 9449 §9): the host answers once with a
/// new proof carrying it, and keeps using it; the step never sees the 401.
#[tokio::test]
async fn the_apis_dpop_nonce_is_answered_and_kept() {
    let h = tenant(Duration::from_secs(3600)).await;
    h.mock.state.oauth().require_api_nonce();
    let yaml = EVERY_KIND.replace(
        "    credentials: [{ host: \"{{ vars.okta_url }}\", secret: OKTA_API_TOKEN, format: \"SSWS {secret}\" }]",
        "    credentials: [{ host: \"{{ vars.okta_url }}\", secret: OKTA_API_TOKEN }]\n    retry: { attempts: 1 }",
    );
    let one = single_step(&h.plan(&yaml), "okta");
    for _ in 0..2 {
        let (id, status) = h.run_plan(&one, &[("email", "alice@example.com")]).await;
        assert_eq!(status, RunStatus::Succeeded, "{:?}", h.steps(&id).await["okta"].error);
        assert_eq!(h.steps(&id).await["okta"].attempts, 1);
    }
    assert_eq!(h.mock.state.oauth().api_nonce_answers(), 1, "asked once; the nonce was kept for the next run");
}

/// Google refuses a scope that was not delegated with `unauthorized_client`, and the step says
/// which scopes to authorize where.
#[tokio::test]
async fn a_scope_not_delegated_says_where_to_authorize_it() {
    let h = tenant(Duration::from_secs(3600)).await;
    h.mock.state.oauth().update(|c| {
        if let Some(g) = c.google.as_mut() {
            g.scopes.truncate(1);
        }
    });
    let one = single_step(&h.plan(EVERY_KIND), "google");
    let (id, _) = h.run_plan(&one, &[("email", "alice@example.com")]).await;
    let error = h.steps(&id).await["google"].error.clone().unwrap_or_default();
    assert!(error.contains("401 unauthorized_client"), "{error}");
    assert!(error.contains("Domain-wide delegation") && error.contains("admin.datatransfer"), "{error}");
}

#[tokio::test]
async fn a_token_endpoint_outage_is_retried_like_any_transient_failure() {
    let h = tenant(Duration::from_secs(3600)).await;
    h.mock.state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/oauth2/v1/token".into(),
        status: 503,
        times: 1,
        delay_ms: 0,
    });
    let yaml = EVERY_KIND.replace(
        "    credentials: [{ host: \"{{ vars.okta_url }}\", secret: OKTA_API_TOKEN, format: \"SSWS {secret}\" }]",
        "    credentials: [{ host: \"{{ vars.okta_url }}\", secret: OKTA_API_TOKEN }]\n    retry: { attempts: 3, backoff: { initial: 10ms } }",
    );
    let one = single_step(&h.plan(&yaml), "okta");
    let (id, status) = h.run_plan(&one, &[("email", "alice@example.com")]).await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(h.steps(&id).await["okta"].attempts, 2);
    let events = h.store().events(&id).await.expect("events");
    let failed = events.iter().find(|e| e.kind == "attempt_failed").expect("the first attempt failed");
    let said = failed.detail["error"].as_str().unwrap_or_default();
    assert!(said.contains("token endpoint") && said.contains("unavailable") && said.contains("503"), "{said}");
}

/// The minted tokens (and DPoP proofs) never reach what a plugin or a person sees: an echo of
/// the request comes back scrubbed, and no token is in the step outputs, the database file or
/// the logs.
#[tokio::test]
async fn minted_tokens_never_leave_the_host() {
    let logs = capture_logs();
    let h = tenant(Duration::from_secs(3600)).await;
    let echo = r#"
version: 1
name: echo
vars: { okta_url: x, google_url: x }
steps:
  - id: okta_echo
    uses: http
    with: { url: "{{ vars.okta_url }}/__echo/whoami" }
    allow: ["{{ vars.okta_url }}"]
    credentials: [{ host: "{{ vars.okta_url }}", secret: OKTA_API_TOKEN }]
  - id: google_echo
    uses: http
    with: { url: "{{ vars.google_url }}/__echo/whoami?x=1" }
    allow: ["{{ vars.google_url }}"]
    credentials: [{ host: "{{ vars.google_url }}", secret: GOOGLE_ACCESS_TOKEN }]
"#;
    run_every_kind(&h).await;
    let (id, status) = h.run(echo, &[]).await;
    assert_eq!(status, RunStatus::Succeeded);
    let steps = h.steps(&id).await;
    let okta = steps["okta_echo"].output.clone().unwrap_or_default().to_string();
    assert!(okta.contains("[REDACTED]"), "the echoed Authorization and DPoP headers: {okta}");
    assert!(!okta.contains("eyJ") && !okta.contains("DPoP ey"), "no proof or token text: {okta}");
    let seen = tokens_seen(&h.mock);
    assert!(seen.len() >= 5, "a token per vendor: {seen:?}");
    for t in &seen {
        for (step, s) in &steps {
            let all = format!("{:?} {:?} {:?} {}", s.output, s.error, s.log, s.requests);
            assert!(!all.contains(t.as_str()), "{step}'s record holds a token");
        }
    }
    // The database as stored on disk (with its write-ahead log).
    let mut db = Vec::new();
    for entry in std::fs::read_dir(h.dir.path()).expect("temp dir") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().contains("offramp.db") {
            db.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    assert!(db.len() > 4096);
    for t in &seen {
        assert!(!db.windows(t.len()).any(|w| w == t.as_bytes()), "the database file holds a minted token");
    }
    let text = logs.lock().map(|l| String::from_utf8_lossy(&l).to_string()).unwrap_or_default();
    assert!(text.contains("minted a token"), "the logs were captured");
    for t in &seen {
        assert!(!text.contains(t.as_str()), "the logs hold a minted token");
    }
}

#[tokio::test]
async fn credentials_check_mints_and_reads_once_per_credential() {
    let h = tenant(Duration::from_secs(3600)).await;
    let reports = h.engine.credentials().check(h.engine.http_client()).await;
    assert_eq!(reports.len(), 6);
    for r in &reports {
        let what = r.outcome.clone().unwrap_or_else(|e| panic!("{}: {e}", r.name));
        assert!(what.contains("token minted") && what.ends_with("→ 200"), "{}: {what}", r.name);
    }
    assert!(reports.iter().any(|r| r.kind == "Okta private_key_jwt + DPoP"));
    // A revoked key: that credential fails, with the token endpoint's error; the others pass.
    let h = tenant(Duration::from_secs(3600)).await;
    assert!(h.mock.state.oauth().rotate_key("github", &keys().stranger.public_pem));
    let reports = h.engine.credentials().check(h.engine.http_client()).await;
    let failed: Vec<_> = reports.iter().filter(|r| !r.ok()).collect();
    assert_eq!(failed.len(), 1, "{reports:#?}");
    assert_eq!(failed[0].name, "GITHUB_TOKEN");
    assert!(failed[0].outcome.clone().unwrap_err().contains("A JSON web token could not be decoded"));
}

fn is_token_endpoint(path: &str) -> bool {
    path == "/token"
        || path.ends_with("/oauth2/v2.0/token")
        || path == "/oauth2/v1/token"
        || path == "/oauth/token"
        || path.ends_with("/access_tokens")
}

/// The plan with only `step` in it.
fn single_step(plan: &offramp::pipeline::Plan, step: &str) -> offramp::pipeline::Plan {
    let mut one = plan.clone();
    one.steps.retain(|s| s.id == step);
    one
}

/// Every log line of this test binary, at every level, into a buffer.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Buf(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
    .clone()
}

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
