//! Zoom's Server-to-Server OAuth: `POST /oauth/token?grant_type=account_credentials&account_id=…`
//! (the parameters in the query string, as Zoom documents them; a form body is read too, the
//! query winning) with `Authorization: Basic base64(client_id:client_secret)`.
//!
//! 200 `{"access_token", "token_type": "bearer", "expires_in", "scope": "user:read:admin
//! user:write:admin", "api_url": "http://{Host}"}`. Errors are Zoom's `{"reason", "error"}`,
//! all 400, in the order checked:
//! - no Basic credentials, unknown client, wrong secret (or Zoom not configured) → `invalid_client`
//!   "Invalid client_id or client_secret";
//! - `grant_type` not `account_credentials` → `unsupported_grant_type` "Unsupported grant type";
//! - `account_id` missing → `invalid_request` "Missing account_id"; another account → `invalid_request`
//!   "Invalid account_id" (the mock's wording).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::{Issuer, OAuth, form, host, no_store};

/// A Zoom OAuth error answer.
pub(super) fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    no_store(status, json!({ "reason": reason, "error": error }))
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

pub(super) async fn token(
    State(oauth): State<OAuth>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = form(&body);
    params.extend(form(query.unwrap_or_default().as_bytes()));
    let bad = StatusCode::BAD_REQUEST;
    let app = basic(&headers).and_then(|(id, secret)| {
        oauth.config_of(|c| c.zoom.clone().filter(|z| z.client_id == id && z.client_secret == secret))
    });
    let Some(app) = app else { return error(bad, "invalid_client", "Invalid client_id or client_secret") };
    if params.get("grant_type").map(String::as_str) != Some("account_credentials") {
        return error(bad, "unsupported_grant_type", "Unsupported grant type");
    }
    match params.get("account_id").filter(|a| !a.is_empty()) {
        None => return error(bad, "invalid_request", "Missing account_id"),
        Some(a) if *a != app.account_id => return error(bad, "invalid_request", "Invalid account_id"),
        Some(_) => {}
    }
    let scope = "user:read:admin user:write:admin";
    let token = format!("eyJzdiI6IjAwMDAwMSJ9.{}", super::random(4));
    let (token, expires_in) = oauth.issue(Issuer::Zoom, token, scope, None, None);
    no_store(
        StatusCode::OK,
        json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": scope,
            "api_url": format!("http://{}", host(&headers)),
        }),
    )
}
