//! Zoom: Server-to-Server OAuth (`account_credentials`).

use offramp_mock::MockServer;
use offramp_mock::oauth::{OAuthConfig, ZoomApp};
use serde_json::Value;

use super::{SHORT_TTL, answer, client, get_with, let_expire, start, tokens};

const ACCOUNT: &str = "q6gBJVO5TzexKYTb_I2rpg";
const CLIENT: &str = "zoomClientId123";
const SECRET: &str = "zoomClientSecret456";

fn config() -> OAuthConfig {
    OAuthConfig {
        zoom: Some(ZoomApp { account_id: ACCOUNT.into(), client_id: CLIENT.into(), client_secret: SECRET.into() }),
        ..OAuthConfig::default()
    }
}

async fn mint(server: &MockServer, secret: &str, query: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/oauth/token?{query}", server.url()))
        .basic_auth(CLIENT, Some(secret))
        .send()
        .await
        .expect("POST");
    answer(resp).await
}

fn good_query() -> String {
    format!("grant_type=account_credentials&account_id={ACCOUNT}")
}

fn alice(server: &MockServer) -> String {
    format!("{}/v2/users/alice@example.com", server.url())
}

#[tokio::test]
async fn account_credentials_mint_a_token_the_users_api_takes() {
    let server = start(config()).await;
    let (status, body) = mint(&server, SECRET, &good_query()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "user:read:admin user:write:admin");
    assert_eq!(body["api_url"], server.url());
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    assert_eq!(get_with(&alice(&server), &format!("Bearer {}", tokens().zoom)).await, 401);

    // The parameters in a form body work too.
    let resp = client()
        .post(format!("{}/oauth/token", server.url()))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("grant_type", "account_credentials"), ("account_id", ACCOUNT)])
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(server.state.oauth().mints("zoom"), 2);
}

#[tokio::test]
async fn wrong_credentials_get_zooms_errors() {
    let server = start(config()).await;
    let expect = |(status, body): (u16, Value), error: &str, reason: &str| {
        assert_eq!(
            (status, body["error"].as_str(), body["reason"].as_str()),
            (400, Some(error), Some(reason)),
            "{body}"
        );
    };
    expect(mint(&server, "wrong", &good_query()).await, "invalid_client", "Invalid client_id or client_secret");
    expect(
        mint(&server, SECRET, "grant_type=account_credentials&account_id=someoneelse").await,
        "invalid_request",
        "Invalid account_id",
    );
    expect(
        mint(&server, SECRET, &format!("grant_type=client_credentials&account_id={ACCOUNT}")).await,
        "unsupported_grant_type",
        "Unsupported grant type",
    );
    let resp = client().post(format!("{}/oauth/token?{}", server.url(), good_query())).send().await.expect("POST");
    expect(answer(resp).await, "invalid_client", "Invalid client_id or client_secret");
    assert_eq!(server.state.oauth().mints("zoom"), 0);
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused_and_a_new_secret_locks_the_old_out() {
    let server = start(OAuthConfig { token_ttl: SHORT_TTL, ..config() }).await;
    let token = mint(&server, SECRET, &good_query()).await.1["access_token"].as_str().expect("token").to_string();
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 200);
    server.state.oauth().revoke_tokens("zoom");
    let resp = client().get(alice(&server)).bearer_auth(&token).send().await.expect("GET");
    let (status, body) = answer(resp).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(124)), "{body}");

    let token = mint(&server, SECRET, &good_query()).await.1["access_token"].as_str().expect("token").to_string();
    let_expire().await;
    assert_eq!(get_with(&alice(&server), &format!("Bearer {token}")).await, 401);

    assert!(server.state.oauth().set_client_secret("zoom", "rotated"));
    assert_eq!(mint(&server, SECRET, &good_query()).await.0, 400);
    assert_eq!(mint(&server, "rotated", &good_query()).await.0, 200);
}
