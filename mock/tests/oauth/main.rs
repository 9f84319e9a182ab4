//! The mock's OAuth token endpoints against real HTTP: for each vendor a mint works and the API
//! takes the token, the static token is refused, an expired or revoked token is refused, and a
//! wrong key or secret gets the vendor's documented error.

mod github;
mod google;
mod microsoft;
mod okta;
mod zoom;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offramp_mock::oauth::{OAuthConfig, RsaKeyPair};
use offramp_mock::{Fault, MockServer, MockState, MockTokens, Vendor};
use serde_json::Value;

/// The seed of the static tokens ([`MockTokens::from_seed`]).
pub const SEED: &str = "static-seed";

/// Two key pairs, made once for every test of this binary (the host's, and a stranger's).
pub fn keys() -> &'static (RsaKeyPair, RsaKeyPair) {
    static KEYS: OnceLock<(RsaKeyPair, RsaKeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| (RsaKeyPair::generate().expect("key A"), RsaKeyPair::generate().expect("key B")))
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

pub fn tokens() -> MockTokens {
    MockTokens::from_seed(SEED)
}

pub async fn start(config: OAuthConfig) -> MockServer {
    MockServer::start_with(MockState::sample(&tokens()).with_oauth(config)).await.expect("mock server")
}

/// A short token lifetime, so that expiry is seen without a long wait.
pub const SHORT_TTL: Duration = Duration::from_secs(2);

/// Waits until a token issued with [`SHORT_TTL`] is expired.
pub async fn let_expire() {
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(150)).await;
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// An RS256 JWT signed with `private_pem`.
pub fn sign(private_pem: &str, header: Header, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

pub fn rs256() -> Header {
    Header::new(Algorithm::RS256)
}

/// Status and JSON body (Null if the body is not JSON).
pub async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    answer(client().post(url).form(form).send().await.expect("POST")).await
}

pub async fn get_with(url: &str, authorization: &str) -> u16 {
    client().get(url).header("authorization", authorization).send().await.expect("GET").status().as_u16()
}

pub fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[test]
fn rsa_key_generation_is_quick_in_a_debug_build() {
    let started = Instant::now();
    let key = RsaKeyPair::generate().expect("key");
    let took = started.elapsed();
    eprintln!("RSA-2048 key generation took {took:?}");
    assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", key.private_pem);
    assert!(key.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{}", key.public_pem);
    // Well under a second on an idle machine; generous here for a loaded CI runner.
    assert!(took < Duration::from_secs(5), "RSA key generation took {took:?}");
}

#[test]
fn key_formats_are_the_vendors() {
    let (a, _) = keys();
    let file: Value = serde_json::from_str(&a.google_key_file(
        "offramp@acme-it.iam.gserviceaccount.com",
        "kid-1",
        "http://127.0.0.1:1/token",
    ))
    .expect("key file JSON");
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["project_id"], "acme-it");
    assert_eq!(file["private_key_id"], "kid-1");
    assert_eq!(file["private_key"], a.private_pem.as_str());
    assert_eq!(file["client_email"], "offramp@acme-it.iam.gserviceaccount.com");
    assert_eq!(file["token_uri"], "http://127.0.0.1:1/token");
    assert_eq!(file["client_id"].as_str().map(str::len), Some(21));

    let jwk: Value = serde_json::from_str(&a.okta_jwk("okta-kid")).expect("JWK JSON");
    for member in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
        let v = jwk[member].as_str().unwrap_or_else(|| panic!("{member} missing: {jwk}"));
        assert!(!v.contains(['=', '+', '/']), "{member} is not base64url without padding: {v}");
    }
    assert_eq!(
        (jwk["kty"].as_str(), jwk["kid"].as_str(), jwk["alg"].as_str()),
        (Some("RSA"), Some("okta-kid"), Some("RS256"))
    );
    assert_eq!(jwk["e"], "AQAB");
    // The JWK's public half is the PEM's key: a JWT signed with the PEM verifies with the JWK.
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).expect("a JWK");
    let token = sign(&a.private_pem, rs256(), &serde_json::json!({ "exp": now() + 60 }));
    let key = jsonwebtoken::DecodingKey::from_jwk(&parsed).expect("decoding key");
    jsonwebtoken::decode::<Value>(&token, &key, &jsonwebtoken::Validation::new(Algorithm::RS256)).expect("verifies");

    let thumbprint = a.certificate_thumbprint();
    assert_eq!(thumbprint.len(), 40);
    assert!(thumbprint.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
}

#[tokio::test]
async fn unconfigured_vendors_keep_their_static_tokens_and_refuse_mints() {
    let server = start(OAuthConfig::default()).await;
    let url = server.url();
    let t = tokens();
    assert_eq!(
        get_with(&format!("{url}/admin/directory/v1/users/alice@example.com"), &format!("Bearer {}", t.google)).await,
        200
    );
    assert_eq!(get_with(&format!("{url}/api/v1/users/alice@example.com"), &format!("SSWS {}", t.okta)).await, 200);
    assert_eq!(get_with(&format!("{url}/v1.0/users/alice@example.com"), &format!("Bearer {}", t.graph)).await, 200);
    assert_eq!(get_with(&format!("{url}/orgs/acme"), &format!("Bearer {}", t.github)).await, 200);
    assert_eq!(get_with(&format!("{url}/v2/users/alice@example.com"), &format!("Bearer {}", t.zoom)).await, 200);

    let (status, body) = post_form(
        &format!("{url}/token"),
        &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", "a.b.c")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = post_form(
        &format!("{url}/oauth2/v1/token"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "0oanobody"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &sign(&keys().0.private_pem, rs256(), &serde_json::json!({ "iss": "0oanobody" }))),
        ],
    )
    .await;
    assert_eq!((status, body["error_description"].as_str()), (401, Some("Invalid value for 'client_id' parameter.")));
    let (status, body) = post_form(
        &format!("{url}/contoso.onmicrosoft.com/oauth2/v2.0/token"),
        &[("grant_type", "client_credentials"), ("client_id", "x"), ("client_secret", "y")],
    )
    .await;
    assert_eq!((status, body["error_codes"][0].as_u64()), (400, Some(90002)), "{body}");
    for vendor in ["google", "microsoft", "okta", "github", "zoom"] {
        assert_eq!(server.state.oauth().mints(vendor), 0);
    }
}

#[tokio::test]
async fn an_injected_failure_on_a_token_endpoint_has_the_endpoints_shape() {
    let server = start(OAuthConfig::default()).await;
    server.state.inject(Fault {
        method: None,
        path_contains: "/oauth2/v1/token".into(),
        status: 503,
        times: 1,
        delay_ms: 0,
    });
    let resp = client().post(format!("{}/oauth2/v1/token", server.url())).send().await.expect("POST");
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let (status, body) = answer(resp).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    // The fault was used up: the endpoint answers for itself again.
    let (status, body) = post_form(&format!("{}/oauth2/v1/token", server.url()), &[("grant_type", "password")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")), "{body}");
}

#[test]
fn token_endpoints_are_named_by_their_vendor_not_as_api_paths() {
    let cases = [
        ("/token", Some(Vendor::Google)),
        ("/contoso.onmicrosoft.com/oauth2/v2.0/token", Some(Vendor::Graph)),
        ("/oauth2/v1/token", Some(Vendor::Okta)),
        ("/app/installations/42/access_tokens", Some(Vendor::GitHub)),
        ("/oauth/token", Some(Vendor::Zoom)),
        ("/oauth2/v1/authorize", None),
        ("/app/installations//access_tokens", None),
    ];
    for (path, vendor) in cases {
        assert_eq!(Vendor::of_token_path(path), vendor, "{path}");
        assert_eq!(Vendor::of_path(path), None, "{path}");
    }
    assert_eq!(Vendor::of_token_path("/api/v1/users/x"), None);
}
