//! Google: the JWT bearer grant of a service account with domain-wide delegation.

use offramp_mock::MockServer;
use offramp_mock::oauth::{GoogleServiceAccount, OAuthConfig};
use serde_json::{Value, json};

use super::{SHORT_TTL, get_with, keys, let_expire, now, post_form, rs256, sign, start, tokens};

const EMAIL: &str = "offramp@acme-it.iam.gserviceaccount.com";
const ADMIN: &str = "dana@example.com";
const USER_SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.user";
const TRANSFER_SCOPE: &str = "https://www.googleapis.com/auth/admin.datatransfer";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn config() -> OAuthConfig {
    OAuthConfig {
        google: Some(GoogleServiceAccount {
            client_email: EMAIL.into(),
            public_pem: keys().0.public_pem.clone(),
            subjects: vec![ADMIN.into()],
            scopes: vec![USER_SCOPE.into(), TRANSFER_SCOPE.into()],
        }),
        ..OAuthConfig::default()
    }
}

fn claims(server: &MockServer) -> Value {
    let now = now();
    json!({
        "iss": EMAIL,
        "sub": ADMIN,
        "scope": format!("{USER_SCOPE} {TRANSFER_SCOPE}"),
        "aud": format!("{}/token", server.url()),
        "iat": now,
        "exp": now + 3600,
    })
}

async fn mint_with(server: &MockServer, private_pem: &str, claims: &Value) -> (u16, Value) {
    let mut header = rs256();
    header.kid = Some("kid-1".into());
    let assertion = sign(private_pem, header, claims);
    post_form(&format!("{}/token", server.url()), &[("grant_type", GRANT), ("assertion", &assertion)]).await
}

fn alice(server: &MockServer) -> String {
    format!("{}/admin/directory/v1/users/alice@example.com", server.url())
}

#[tokio::test]
async fn a_service_account_mints_a_token_the_admin_api_takes() {
    let server = start(config()).await;
    let (status, body) = mint_with(&server, &keys().0.private_pem, &claims(&server)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("access_token");
    assert!(token.starts_with("ya29."), "{token}");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    assert_eq!(
        get_with(&format!("{}/admin/datatransfer/v1/applications", server.url()), &format!("Bearer {token}")).await,
        200
    );
    // The static token is refused once Google OAuth is configured.
    assert_eq!(get_with(&alice(&server), &format!("Bearer {}", tokens().google)).await, 401);
    assert_eq!(server.state.oauth().mints("google"), 1);

    // An https audience names the same endpoint (the mock cannot see the scheme).
    let mut https = claims(&server);
    https["aud"] = json!(format!("https://{}/token", server.addr));
    assert_eq!(mint_with(&server, &keys().0.private_pem, &https).await.0, 200);
}

#[tokio::test]
async fn wrong_keys_and_claims_get_googles_errors() {
    let server = start(config()).await;
    let good = claims(&server);
    let key = &keys().0.private_pem;
    let expect = |(status, body): (u16, Value), want_status: u16, error: &str, description: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].as_str().is_some_and(|d| d.starts_with(description)), "{body}");
    };
    expect(mint_with(&server, &keys().1.private_pem, &good).await, 400, "invalid_grant", "Invalid JWT Signature.");

    let mut c = good.clone();
    c["iss"] = json!("stranger@other.iam.gserviceaccount.com");
    expect(mint_with(&server, key, &c).await, 400, "invalid_grant", "Invalid grant: account not found");

    let mut c = good.clone();
    c["sub"] = json!("alice@example.com");
    expect(mint_with(&server, key, &c).await, 400, "invalid_grant", "Invalid email or User ID");

    let mut c = good.clone();
    c["exp"] = json!(now() + 7200);
    expect(mint_with(&server, key, &c).await, 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token");
    let mut c = good.clone();
    c["iat"] = json!(now() - 4000);
    c["exp"] = json!(now() - 400);
    expect(mint_with(&server, key, &c).await, 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token");

    let mut c = good.clone();
    c["aud"] = json!("https://oauth2.googleapis.com/token");
    expect(mint_with(&server, key, &c).await, 400, "invalid_grant", "Invalid JWT: Failed audience check.");

    let mut c = good.clone();
    c["scope"] = json!(format!("{USER_SCOPE} https://www.googleapis.com/auth/admin.directory.group"));
    expect(
        mint_with(&server, key, &c).await,
        401,
        "unauthorized_client",
        "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
    );

    let (status, body) =
        post_form(&format!("{}/token", server.url()), &[("grant_type", "client_credentials"), ("assertion", "x")])
            .await;
    expect((status, body), 400, "unsupported_grant_type", "Invalid grant_type: client_credentials");
    assert_eq!(server.state.oauth().mints("google"), 0);
}

#[tokio::test]
async fn without_delegation_the_token_is_minted_but_the_admin_api_refuses_it() {
    let server = start(config()).await;
    let mut c = claims(&server);
    c.as_object_mut().map(|o| o.remove("sub"));
    let (status, body) = mint_with(&server, &keys().0.private_pem, &c).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 403);
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused_and_a_rotated_key_cannot_mint() {
    let server = start(OAuthConfig { token_ttl: SHORT_TTL, ..config() }).await;
    let key = &keys().0.private_pem;
    let mint =
        || async { mint_with(&server, key, &claims(&server)).await.1["access_token"].as_str().map(str::to_string) };

    let token = mint().await.expect("token");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    server.state.oauth().revoke_tokens("google");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 401);

    let token = mint().await.expect("a new token");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    let_expire().await;
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 401);
    assert_eq!(server.state.oauth().mints("google"), 2);

    assert!(server.state.oauth().rotate_key("google", &keys().1.public_pem));
    let (status, body) = mint_with(&server, key, &claims(&server)).await;
    assert_eq!((status, body["error_description"].as_str()), (400, Some("Invalid JWT Signature.")));
}
