//! Okta: client credentials with `private_key_jwt`, DPoP at the token endpoint (the nonce dance)
//! and on every Management API call.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offramp_mock::MockServer;
use offramp_mock::oauth::{OAuthConfig, OktaServiceApp};
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sha2::Digest;

use super::{SHORT_TTL, answer, client, jti, keys, let_expire, now, rs256, sign, start, tokens};

const CLIENT: &str = "0oa8offramp1234567";
const KID: &str = "okta-key-1";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPES: &str = "okta.users.manage okta.users.read";

fn config(require_dpop: bool) -> OAuthConfig {
    OAuthConfig {
        okta: Some(OktaServiceApp {
            client_id: CLIENT.into(),
            // Okta's private JWK as the admin console hands it out (its kid is then checked).
            public_pem: keys().0.okta_jwk(KID),
            scopes: vec!["okta.users.manage".into(), "okta.users.read".into(), "okta.groups.manage".into()],
            require_dpop,
        }),
        ..OAuthConfig::default()
    }
}

/// A P-256 key for DPoP proofs.
struct DpopKey {
    key: EncodingKey,
    jwk: Jwk,
}

impl DpopKey {
    fn generate() -> DpopKey {
        let secret = p256::SecretKey::try_generate().expect("P-256 key");
        let der = secret.to_pkcs8_der().expect("PKCS#8");
        let key = EncodingKey::from_ec_der(der.as_bytes());
        let jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("JWK");
        DpopKey { key, jwk }
    }

    /// A proof; `claims` adds to (or overrides) `htm`, `htu`, `iat`, `jti`.
    fn proof(&self, htm: &str, htu: &str, extra: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let mut claims = json!({ "htm": htm, "htu": htu, "iat": now(), "jti": jti() });
        if let (Some(c), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign proof")
    }
}

fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
}

fn token_url(server: &MockServer) -> String {
    format!("{}/oauth2/v1/token", server.url())
}

fn assertion(server: &MockServer, private_pem: &str, client_id: &str) -> String {
    let mut header = rs256();
    header.kid = Some(KID.into());
    let now = now();
    let claims = json!({
        "aud": token_url(server), "iss": client_id, "sub": client_id, "jti": jti(), "iat": now, "exp": now + 300,
    });
    sign(private_pem, header, &claims)
}

/// POSTs to the token endpoint with this assertion, scopes and (optional) proof.
async fn token_request(server: &MockServer, assertion: &str, scope: &str, proof: Option<&str>) -> reqwest::Response {
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    let mut req = client().post(token_url(server)).form(&form);
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    req.send().await.expect("POST token")
}

/// The whole dance: a proof without a nonce, then with the nonce the server gave. The token.
async fn mint_dpop(server: &MockServer, dpop: &DpopKey) -> String {
    let assertion = assertion(server, &keys().0.private_pem, CLIENT);
    let first =
        token_request(server, &assertion, SCOPES, Some(&dpop.proof("POST", &token_url(server), json!({})))).await;
    let nonce = first.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (status, body) = answer(first).await;
    let proof = match nonce {
        Some(nonce) if status == 400 && body["error"] == "use_dpop_nonce" => {
            dpop.proof("POST", &token_url(server), json!({ "nonce": nonce }))
        }
        _ => panic!("expected use_dpop_nonce first: {status} {body}"),
    };
    let (status, body) = answer(token_request(server, &assertion, SCOPES, Some(&proof)).await).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

/// An API call with a DPoP-bound token and a proof; the status and the `WWW-Authenticate` header.
async fn call(server: &MockServer, path_and_query: &str, token: &str, proof: Option<&str>) -> (u16, String) {
    let mut req =
        client().get(format!("{}{path_and_query}", server.url())).header("authorization", format!("DPoP {token}"));
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    let resp = req.send().await.expect("GET");
    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (status, body) = answer(resp).await;
    if status == 401 {
        assert_eq!(body["errorCode"], "E0000011", "{body}");
    }
    (status, challenge)
}

fn alice_url(server: &MockServer) -> String {
    format!("{}/api/v1/users/alice@example.com", server.url())
}

#[tokio::test]
async fn the_nonce_dance_then_api_calls_with_proofs() {
    let server = start(config(true)).await;
    let dpop = DpopKey::generate();
    let assertion = assertion(&server, &keys().0.private_pem, CLIENT);

    let resp =
        token_request(&server, &assertion, SCOPES, Some(&dpop.proof("POST", &token_url(&server), json!({})))).await;
    let nonce = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_string).expect("DPoP-Nonce");
    let (status, body) = answer(resp).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof." })
    );
    assert_eq!(server.state.oauth().use_dpop_nonce_answers(), 1);
    assert_eq!(server.state.oauth().dpop_nonces(), vec![nonce.clone()]);

    // The same assertion again, now with the nonce.
    let proof = dpop.proof("POST", &token_url(&server), json!({ "nonce": nonce }));
    let (status, body) = answer(token_request(&server, &assertion, SCOPES, Some(&proof)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["token_type"].as_str(), body["scope"].as_str()), (Some("DPoP"), Some(SCOPES)));
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(server.state.oauth().mints("okta"), 1);

    // An API call: htu is the full path without the query.
    let proof = dpop.proof("GET", &alice_url(&server), json!({ "ath": ath(token) }));
    assert_eq!(call(&server, "/api/v1/users/alice@example.com?expand=x", token, Some(&proof)).await.0, 200);
    let url = format!("{}/api/v1/users/alice@example.com/lifecycle/suspend", server.url());
    let proof = dpop.proof("POST", &url, json!({ "ath": ath(token) }));
    let resp = client().post(&url).header("authorization", format!("DPoP {token}")).header("dpop", proof).send().await;
    assert_eq!(resp.expect("POST").status().as_u16(), 200);
    assert_eq!(server.state.okta.user("alice@example.com").map(|u| u.status), Some("SUSPENDED".into()));

    // The assertion and the proof cannot be used twice.
    let (status, body) =
        answer(token_request(&server, &assertion, SCOPES, Some(&proof_with_nonce(&server, &dpop))).await).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (401, Some("The client_assertion token has already been used."))
    );
}

fn proof_with_nonce(server: &MockServer, dpop: &DpopKey) -> String {
    let nonce = server.state.oauth().dpop_nonces().pop().expect("a nonce");
    dpop.proof("POST", &token_url(server), json!({ "nonce": nonce }))
}

#[tokio::test]
async fn the_api_refuses_proofs_that_do_not_fit_the_request() {
    let server = start(config(true)).await;
    let dpop = DpopKey::generate();
    let token = mint_dpop(&server, &dpop).await;
    let alice = alice_url(&server);
    let path = "/api/v1/users/alice@example.com";
    let refused = |(status, challenge): (u16, String), error: &str| {
        assert_eq!(status, 401, "{challenge}");
        assert!(challenge.starts_with(&format!("DPoP error=\"{error}\", error_description=\"")), "{challenge}");
    };

    let wrong_htu =
        dpop.proof("GET", &format!("{}/api/v1/users/bob@example.com", server.url()), json!({ "ath": ath(&token) }));
    refused(call(&server, path, &token, Some(&wrong_htu)).await, "invalid_dpop_proof");
    let wrong_htm = dpop.proof("DELETE", &alice, json!({ "ath": ath(&token) }));
    refused(call(&server, path, &token, Some(&wrong_htm)).await, "invalid_dpop_proof");
    let no_ath = dpop.proof("GET", &alice, json!({}));
    refused(call(&server, path, &token, Some(&no_ath)).await, "invalid_dpop_proof");
    let stale = dpop.proof("GET", &alice, json!({ "ath": ath(&token), "iat": now() - 300 }));
    refused(call(&server, path, &token, Some(&stale)).await, "invalid_dpop_proof");
    let other_key = DpopKey::generate().proof("GET", &alice, json!({ "ath": ath(&token) }));
    refused(call(&server, path, &token, Some(&other_key)).await, "invalid_dpop_proof");
    refused(call(&server, path, &token, None).await, "invalid_dpop_proof");

    let good = dpop.proof("GET", &alice, json!({ "ath": ath(&token) }));
    assert_eq!(call(&server, path, &token, Some(&good)).await.0, 200);
    // Replayed: the same proof (same jti) a second time.
    refused(call(&server, path, &token, Some(&good)).await, "invalid_dpop_proof");

    // The DPoP-bound token as a Bearer token, and the static SSWS token.
    let resp = client().get(&alice).bearer_auth(&token).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(super::get_with(&alice, &format!("SSWS {}", tokens().okta)).await, 401);
}

#[tokio::test]
async fn wrong_keys_clients_scopes_and_proofs_get_oktas_errors() {
    let server = start(config(true)).await;
    let dpop = DpopKey::generate();
    let _ = mint_dpop(&server, &dpop).await; // the server has a nonce now
    let expect = |(status, body): (u16, Value), want: u16, error: &str, description: &str| {
        assert_eq!(
            (status, body["error"].as_str(), body["error_description"].as_str()),
            (want, Some(error), Some(description)),
            "{body}"
        );
    };
    let key = &keys().0.private_pem;

    let a = assertion(&server, key, CLIENT);
    expect(
        answer(token_request(&server, &a, SCOPES, None).await).await,
        400,
        "invalid_dpop_proof",
        "The DPoP proof JWT header is missing.",
    );
    let bad_htu = dpop.proof("POST", &format!("{}/oauth2/default/v1/token", server.url()), json!({}));
    let (status, body) = answer(token_request(&server, &a, SCOPES, Some(&bad_htu)).await).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{body}");

    let stranger = assertion(&server, &keys().1.private_pem, CLIENT);
    let p = proof_with_nonce(&server, &dpop);
    expect(
        answer(token_request(&server, &stranger, SCOPES, Some(&p)).await).await,
        401,
        "invalid_client",
        "The client_assertion signature is invalid.",
    );

    let unknown = assertion(&server, key, "0oaunknown");
    let p = proof_with_nonce(&server, &dpop);
    expect(
        answer(token_request(&server, &unknown, SCOPES, Some(&p)).await).await,
        401,
        "invalid_client",
        "Invalid value for 'client_id' parameter.",
    );

    let p = proof_with_nonce(&server, &dpop);
    expect(
        answer(
            token_request(&server, &assertion(&server, key, CLIENT), "okta.users.read okta.apps.manage", Some(&p))
                .await,
        )
        .await,
        400,
        "invalid_scope",
        "The following scopes are not allowed: okta.apps.manage",
    );
    let p = proof_with_nonce(&server, &dpop);
    expect(
        answer(token_request(&server, &assertion(&server, key, CLIENT), "openid okta.users.read", Some(&p)).await)
            .await,
        400,
        "invalid_scope",
        "The requested scope is invalid, unknown, or malformed.",
    );

    // A stale nonce: use_dpop_nonce again, with the new one.
    let old = proof_with_nonce(&server, &dpop);
    let new_nonce = server.state.oauth().rotate_dpop_nonce();
    let resp = token_request(&server, &assertion(&server, key, CLIENT), SCOPES, Some(&old)).await;
    assert_eq!(resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()), Some(new_nonce.as_str()));
    expect(answer(resp).await, 400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof.");
    assert_eq!(server.state.oauth().mints("okta"), 1);

    // A rotated app key: the host's key is refused.
    assert!(server.state.oauth().rotate_key("okta", &keys().1.public_pem));
    let p = proof_with_nonce(&server, &dpop);
    expect(
        answer(token_request(&server, &assertion(&server, key, CLIENT), SCOPES, Some(&p)).await).await,
        401,
        "invalid_client",
        "The client_assertion signature is invalid.",
    );
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused() {
    let server = start(OAuthConfig { token_ttl: SHORT_TTL, ..config(true) }).await;
    let dpop = DpopKey::generate();
    let alice = alice_url(&server);
    let path = "/api/v1/users/alice@example.com";
    let proof = |token: &str| dpop.proof("GET", &alice, json!({ "ath": ath(token) }));

    let token = mint_dpop(&server, &dpop).await;
    assert_eq!(call(&server, path, &token, Some(&proof(&token))).await.0, 200);
    server.state.oauth().revoke_tokens("okta");
    let (status, challenge) = call(&server, path, &token, Some(&proof(&token))).await;
    assert_eq!(status, 401);
    assert!(challenge.starts_with("DPoP error=\"invalid_token\""), "{challenge}");

    let token = mint_dpop(&server, &dpop).await;
    assert_eq!(call(&server, path, &token, Some(&proof(&token))).await.0, 200);
    let_expire().await;
    let (status, challenge) = call(&server, path, &token, Some(&proof(&token))).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("expired"), "{challenge}");
    assert_eq!(server.state.oauth().mints("okta"), 2);
}

#[tokio::test]
async fn an_app_without_dpop_gets_bearer_tokens() {
    let mut config = config(false);
    // A PEM public key works as well as a JWK (no kid to match then).
    if let Some(okta) = config.okta.as_mut() {
        okta.public_pem = keys().0.public_pem.clone();
    }
    let server = start(config).await;
    let (status, body) = answer(
        token_request(&server, &assertion(&server, &keys().0.private_pem, CLIENT), "okta.users.read", None).await,
    )
    .await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")), "{body}");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(super::get_with(&alice_url(&server), &format!("Bearer {token}")).await, 200);
    let resp =
        client().get(alice_url(&server)).header("authorization", format!("DPoP {token}")).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(super::get_with(&alice_url(&server), &format!("SSWS {}", tokens().okta)).await, 401);
    assert_eq!(server.state.oauth().use_dpop_nonce_answers(), 0);
}
