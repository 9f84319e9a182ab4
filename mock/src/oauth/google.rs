//! Google's token endpoint (`https://oauth2.googleapis.com/token`) for a service account with
//! domain-wide delegation: `POST /token`, form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//! and `assertion` = an RS256 JWT (`kid` = the key file's `private_key_id`, not checked) with
//! `iss` = `client_email`, `sub` = the admin to act as, `scope` (space-separated), `aud` = the
//! token URL (`http(s)://{Host}/token`), `iat`, `exp` (at most an hour after `iat`).
//!
//! 200 `{"access_token": "ya29.…", "expires_in", "token_type": "Bearer"}`. Errors, in the order
//! checked (400 `{"error", "error_description"}` unless noted):
//! - wrong `grant_type` → `unsupported_grant_type` "Invalid grant_type: {it}";
//! - no `assertion` → `invalid_request` "Missing required parameter: assertion";
//! - not a JWT, or signed with another key → `invalid_grant` "Invalid JWT Signature.";
//! - `iss` unknown (or Google not configured) → `invalid_grant` "Invalid grant: account not found";
//! - `aud` not the token URL → `invalid_grant` "Invalid JWT: Failed audience check. The right
//!   audience is {url}";
//! - `iat`/`exp` missing, expired, in the future or more than an hour apart → `invalid_grant`
//!   "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. …";
//! - `sub` not one of the delegated admins → `invalid_grant` "Invalid email or User ID";
//! - no `scope` → `invalid_scope` "Empty or missing scope not allowed.";
//! - a scope not delegated → 401 `unauthorized_client` "Client is unauthorized to retrieve access
//!   tokens using this method, or client not authorized for any of the scopes requested.".
//!
//! Without `sub` the token acts as the service account itself: minted, but the Admin APIs refuse
//! it (403, as Google does without delegation).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{
    Issuer, JwtError, OAuth, form, host, no_store, oauth_error, peek, same_url, string, times_ok, verify_rs256,
};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

pub(super) async fn token(State(oauth): State<OAuth>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type != GRANT {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant_type}"),
        );
    }
    let Some(assertion) = form.get("assertion").filter(|a| !a.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: assertion");
    };
    let Ok((_, unverified)) = peek(assertion) else { return invalid_grant("Invalid JWT Signature.") };
    let iss = string(&unverified, "iss").unwrap_or("");
    let Some(account) = oauth.config_of(|c| c.google.clone().filter(|g| g.client_email == iss)) else {
        return invalid_grant("Invalid grant: account not found");
    };
    let claims = match verify_rs256(assertion, &account.public_pem) {
        Ok(c) => c,
        Err(JwtError::Malformed | JwtError::Signature) => return invalid_grant("Invalid JWT Signature."),
    };
    let host = host(&headers);
    if !string(&claims, "aud").is_some_and(|aud| same_url(aud, &host, "/token")) {
        return invalid_grant(&format!(
            "Invalid JWT: Failed audience check. The right audience is http://{host}/token"
        ));
    }
    if claims.get("iat").is_none() || !times_ok(&claims, 3600) {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let subject = string(&claims, "sub").map(str::to_string);
    if let Some(sub) = &subject
        && !account.subjects.iter().any(|s| s.eq_ignore_ascii_case(sub))
    {
        return invalid_grant("Invalid email or User ID");
    }
    let scope = string(&claims, "scope").unwrap_or("").trim().to_string();
    if scope.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "Empty or missing scope not allowed.");
    }
    if scope.split_whitespace().any(|s| !account.scopes.iter().any(|a| a == s)) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    let token = format!("ya29.c.{}", super::random(4));
    let (token, expires_in) = oauth.issue(Issuer::Google, token, &scope, subject, None);
    no_store(StatusCode::OK, json!({ "access_token": token, "expires_in": expires_in, "token_type": "Bearer" }))
}
