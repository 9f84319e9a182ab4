//! Microsoft Entra: client credentials with a secret or a certificate.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use offramp_mock::MockServer;
use offramp_mock::oauth::{MicrosoftApp, OAuthConfig};
use serde_json::{Value, json};

use super::{SHORT_TTL, get_with, jti, keys, let_expire, now, post_form, rs256, sign, start, tokens};

const TENANT: &str = "7f3c2a1e-5b4d-4c6e-9f8a-0b1c2d3e4f50";
const CLIENT: &str = "b1e2c3d4-0000-4a5b-8c9d-112233445566";
const SECRET: &str = "Xy8Q~secret.value";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn config() -> OAuthConfig {
    OAuthConfig {
        microsoft: Some(MicrosoftApp {
            tenant: TENANT.into(),
            client_id: CLIENT.into(),
            client_secret: Some(SECRET.into()),
            certificate: Some((keys().0.certificate_thumbprint(), keys().0.public_pem.clone())),
        }),
        ..OAuthConfig::default()
    }
}

fn token_url(server: &MockServer) -> String {
    format!("{}/{TENANT}/oauth2/v2.0/token", server.url())
}

async fn with_secret(server: &MockServer, secret: &str, scope: &str) -> (u16, Value) {
    post_form(
        &token_url(server),
        &[("client_id", CLIENT), ("scope", scope), ("client_secret", secret), ("grant_type", "client_credentials")],
    )
    .await
}

fn assertion(server: &MockServer, private_pem: &str, thumbprint: &str) -> String {
    let mut header = rs256();
    header.x5t = Some(URL_SAFE_NO_PAD.encode(hex::decode(thumbprint).expect("hex")));
    let now = now();
    let claims = json!({
        "aud": token_url(server), "iss": CLIENT, "sub": CLIENT, "jti": jti(),
        "nbf": now, "iat": now, "exp": now + 600,
    });
    sign(private_pem, header, &claims)
}

async fn with_assertion(server: &MockServer, assertion: &str) -> (u16, Value) {
    post_form(
        &token_url(server),
        &[
            ("client_id", CLIENT),
            ("scope", GRAPH),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

fn alice(server: &MockServer) -> String {
    format!("{}/v1.0/users/alice@example.com", server.url())
}

fn expect_aadsts((status, body): (u16, Value), want_status: u16, error: &str, code: u64, message: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.starts_with(&format!("AADSTS{code}: {message}")), "{description}");
    assert!(description.contains("\r\nTrace ID: ") && description.contains("\r\nCorrelation ID: "), "{description}");
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string() && body["timestamp"].is_string());
}

#[tokio::test]
async fn a_secret_and_a_certificate_each_mint_a_token_graph_takes() {
    let server = start(config()).await;
    let (status, body) = with_secret(&server, SECRET, GRAPH).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_u64()), (Some("Bearer"), Some(3600)));
    assert_eq!(body["ext_expires_in"], 3600);
    let token = body["access_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("eyJ0eXAi."), "{token}");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    assert_eq!(get_with(&alice(&server), &format!("Bearer {}", tokens().graph)).await, 401);

    let thumbprint = keys().0.certificate_thumbprint();
    let (status, body) = with_assertion(&server, &assertion(&server, &keys().0.private_pem, &thumbprint)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    assert_eq!(server.state.oauth().mints("microsoft"), 2);
}

#[tokio::test]
async fn wrong_credentials_get_entras_errors() {
    let server = start(config()).await;
    expect_aadsts(
        with_secret(&server, "wrong", GRAPH).await,
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided.",
    );

    let good = keys().0.certificate_thumbprint();
    let stranger = keys().1.certificate_thumbprint();
    expect_aadsts(
        with_assertion(&server, &assertion(&server, &keys().1.private_pem, &stranger)).await,
        401,
        "invalid_client",
        700027,
        "The certificate with identifier used to sign the client assertion is not registered on application.",
    );
    expect_aadsts(
        with_assertion(&server, &assertion(&server, &keys().1.private_pem, &good)).await,
        401,
        "invalid_client",
        700027,
        "Client assertion failed signature validation.",
    );

    let (status, body) = post_form(
        &token_url(&server),
        &[
            ("client_id", "00000000-dead-beef-0000-000000000000"),
            ("scope", GRAPH),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    expect_aadsts(
        (status, body),
        400,
        "unauthorized_client",
        700016,
        "Application with identifier '00000000-dead-beef-0000-000000000000' was not found in the directory",
    );

    let (status, body) = post_form(
        &format!("{}/contoso.onmicrosoft.com/oauth2/v2.0/token", server.url()),
        &[("client_id", CLIENT), ("scope", GRAPH), ("client_secret", SECRET), ("grant_type", "client_credentials")],
    )
    .await;
    expect_aadsts((status, body), 400, "invalid_request", 90002, "Tenant 'contoso.onmicrosoft.com' not found.");

    expect_aadsts(
        with_secret(&server, SECRET, "https://graph.microsoft.com/User.ReadWrite.All").await,
        400,
        "invalid_scope",
        1002012,
        "The provided value for scope https://graph.microsoft.com/User.ReadWrite.All is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
    );
    assert_eq!(server.state.oauth().mints("microsoft"), 0);
}

#[tokio::test]
async fn graph_refuses_tokens_for_other_resources_expired_revoked_and_rotated_ones() {
    let server = start(OAuthConfig { token_ttl: SHORT_TTL, ..config() }).await;
    let (_, body) = with_secret(&server, SECRET, "api://offramp-other/.default").await;
    let other = body["access_token"].as_str().expect("token").to_string();
    assert_eq!(get_with(&alice(&server), &format!("Bearer {other}")).await, 401);

    let mint = || async { with_secret(&server, SECRET, GRAPH).await.1["access_token"].as_str().map(str::to_string) };
    let token = mint().await.expect("token");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    server.state.oauth().revoke_tokens("microsoft");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 401);

    let token = mint().await.expect("a new token");
    let_expire().await;
    let resp = super::client().get(alice(&server)).bearer_auth(&token).send().await.expect("GET");
    let (status, body) = super::answer(resp).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("InvalidAuthenticationToken")), "{body}");

    assert!(server.state.oauth().set_client_secret("microsoft", "a-new-secret"));
    expect_aadsts(
        with_secret(&server, SECRET, GRAPH).await,
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided.",
    );
    assert!(server.state.oauth().rotate_key("microsoft", &keys().1.public_pem));
    let thumbprint = keys().0.certificate_thumbprint();
    expect_aadsts(
        with_assertion(&server, &assertion(&server, &keys().0.private_pem, &thumbprint)).await,
        401,
        "invalid_client",
        700027,
        "Client assertion failed signature validation.",
    );
}
