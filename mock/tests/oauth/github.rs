//! GitHub: an app JWT buys an installation access token.

use offramp_mock::MockServer;
use offramp_mock::oauth::{GitHubApp, OAuthConfig};
use serde_json::{Value, json};

use super::{SHORT_TTL, answer, client, get_with, keys, let_expire, now, rs256, sign, start, tokens};

const APP_ID: u64 = 912_345;
const INSTALLATION: u64 = 45_678_901;

fn config() -> OAuthConfig {
    OAuthConfig {
        github: Some(GitHubApp {
            app_id: APP_ID,
            installation_id: INSTALLATION,
            public_pem: keys().0.public_pem.clone(),
        }),
        ..OAuthConfig::default()
    }
}

fn app_jwt(private_pem: &str, iss: Value, iat: i64, exp: i64) -> String {
    sign(private_pem, rs256(), &json!({ "iss": iss, "iat": iat, "exp": exp }))
}

/// As GitHub's example makes it: issued a minute ago, expiring in 10 minutes.
fn good_jwt() -> String {
    app_jwt(&keys().0.private_pem, json!(APP_ID.to_string()), now() - 60, now() + 600)
}

async fn mint(server: &MockServer, installation: u64, jwt: &str) -> (u16, Value) {
    let url = format!("{}/app/installations/{installation}/access_tokens", server.url());
    let resp =
        client().post(url).bearer_auth(jwt).header("accept", "application/vnd.github+json").send().await.expect("POST");
    answer(resp).await
}

#[tokio::test]
async fn an_app_jwt_mints_an_installation_token_the_org_api_takes() {
    let server = start(config()).await;
    let (status, body) = mint(&server, INSTALLATION, &good_jwt()).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token");
    assert!(token.starts_with("ghs_") && token.len() == 40, "{token}");
    assert_eq!(body["permissions"], json!({ "members": "write", "organization_administration": "read" }));
    assert_eq!(body["repository_selection"], "all");
    let expires_at = body["expires_at"].as_str().expect("expires_at");
    assert!(expires_at.ends_with('Z') && expires_at.len() == 20, "{expires_at}");

    let org = format!("{}/orgs/acme", server.url());
    assert_eq!(get_with(&org, &format!("Bearer {token}")).await, 200);
    assert_eq!(get_with(&org, &format!("token {token}")).await, 200);
    assert_eq!(get_with(&org, &format!("Bearer {}", tokens().github)).await, 401);
    // The app JWT itself is no API credential.
    assert_eq!(get_with(&org, &format!("Bearer {}", good_jwt())).await, 401);

    // `iss` as a number works too.
    let jwt = app_jwt(&keys().0.private_pem, json!(APP_ID), now() - 30, now() + 300);
    assert_eq!(mint(&server, INSTALLATION, &jwt).await.0, 201);
    assert_eq!(server.state.oauth().mints("github"), 2);
}

#[tokio::test]
async fn bad_app_jwts_get_githubs_errors() {
    let server = start(config()).await;
    let expect = |(status, body): (u16, Value), want: u16, message: &str| {
        assert_eq!((status, body["message"].as_str()), (want, Some(message)), "{body}");
        assert!(body["documentation_url"].as_str().is_some_and(|d| d.starts_with("https://docs.github.com/rest")));
    };
    let iss = json!(APP_ID.to_string());
    expect(
        mint(&server, INSTALLATION, &app_jwt(&keys().1.private_pem, iss.clone(), now() - 60, now() + 540)).await,
        401,
        "A JSON web token could not be decoded",
    );
    expect(mint(&server, INSTALLATION, "ghs_notajwt").await, 401, "A JSON web token could not be decoded");
    expect(
        mint(&server, INSTALLATION, &app_jwt(&keys().0.private_pem, iss.clone(), now() - 700, now() - 100)).await,
        401,
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
    );
    expect(
        mint(&server, INSTALLATION, &app_jwt(&keys().0.private_pem, iss.clone(), now() - 60, now() + 3600)).await,
        401,
        "'Expiration time' claim ('exp') is too far in the future",
    );
    expect(
        mint(&server, INSTALLATION, &app_jwt(&keys().0.private_pem, json!("4242"), now() - 60, now() + 540)).await,
        401,
        "Integration not found",
    );
    expect(mint(&server, INSTALLATION + 1, &good_jwt()).await, 404, "Not Found");
    assert_eq!(server.state.oauth().mints("github"), 0);
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused_and_a_rotated_key_cannot_mint() {
    let server = start(OAuthConfig { token_ttl: SHORT_TTL, ..config() }).await;
    let org = format!("{}/orgs/acme", server.url());
    let token = mint(&server, INSTALLATION, &good_jwt()).await.1["token"].as_str().expect("token").to_string();
    assert_eq!(get_with(&org, &format!("Bearer {token}")).await, 200);
    server.state.oauth().revoke_tokens("github");
    let resp = client().get(&org).bearer_auth(&token).send().await.expect("GET");
    assert!(resp.headers().contains_key("x-ratelimit-remaining"));
    let (status, body) = answer(resp).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Bad credentials")));

    let token = mint(&server, INSTALLATION, &good_jwt()).await.1["token"].as_str().expect("token").to_string();
    let_expire().await;
    assert_eq!(get_with(&org, &format!("Bearer {token}")).await, 401);

    assert!(server.state.oauth().rotate_key("github", &keys().1.public_pem));
    assert_eq!(mint(&server, INSTALLATION, &good_jwt()).await.0, 401);
}
