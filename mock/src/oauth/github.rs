//! GitHub's installation access tokens: `POST /app/installations/{installation_id}/access_tokens`
//! with `Authorization: Bearer <app JWT>`: RS256, `iss` = the app id (a number or a string),
//! `iat` (GitHub advises 60 s in the past; up to 60 s in the future is taken as skew, more than
//! 10 minutes in the past is refused), `exp` not passed and at most 10 minutes (+ 60 s skew) from
//! now, as in GitHub's example (`iat` = now − 60, `exp` = now + 600).
//!
//! 201 `{"token": "ghs_…", "expires_at": RFC 3339 UTC, "permissions": {"members": "write",
//! "organization_administration": "read"}, "repository_selection": "all"}`. Errors are GitHub's
//! `{"message", "documentation_url": "https://docs.github.com/rest", "status"}`, in the order
//! checked:
//! - no `Authorization` → 401 "Requires authentication"; not a JWT (e.g. a `ghs_` token), or
//!   signed with another key → 401 "A JSON web token could not be decoded";
//! - `iss` not the configured app (or GitHub not configured) → 401 "Integration not found" (the
//!   mock's choice: GitHub says this for an app id it does not know);
//! - `exp` missing or passed → 401 "'Expiration time' claim ('exp') must be a numeric value
//!   representing the future time at which the assertion expires"; `iat` missing or in the
//!   future → 401 "'Issued at' claim ('iat') must be an Integer representing the time that the
//!   assertion was issued"; `exp` more than 11 minutes away, or `iat` more than 10 minutes ago →
//!   401 "'Expiration time' claim ('exp') is too far in the future";
//! - another installation → 404 "Not Found".

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Issuer, OAuth, SKEW, now, num, peek, verify_rs256};

fn message(status: StatusCode, message: &str, docs: &str) -> Response {
    let body = json!({ "message": message, "documentation_url": docs, "status": status.as_u16().to_string() });
    let mut resp = (status, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert("x-github-api-version-selected", HeaderValue::from_static("2022-11-28"));
    h.insert("x-github-media-type", HeaderValue::from_static("github.v3; format=json"));
    resp
}

fn unauthorized(text: &str) -> Response {
    message(StatusCode::UNAUTHORIZED, text, "https://docs.github.com/rest")
}

pub(super) async fn token(
    State(oauth): State<OAuth>,
    Path(installation_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return unauthorized("Requires authentication");
    };
    let jwt = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")).unwrap_or("").trim();
    let Ok((_, unverified)) = peek(jwt) else { return unauthorized("A JSON web token could not be decoded") };
    let iss = match unverified.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    };
    let Some(app) = oauth.config_of(|c| c.github.clone().filter(|g| Some(g.app_id) == iss)) else {
        return unauthorized("Integration not found");
    };
    let Ok(claims) = verify_rs256(jwt, &app.public_pem) else {
        return unauthorized("A JSON web token could not be decoded");
    };
    let now = now();
    let exp = num(&claims, "exp");
    let iat = num(&claims, "iat");
    if exp.is_none_or(|exp| exp <= now) {
        return unauthorized(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    }
    let Some(iat) = iat.filter(|iat| *iat <= now + SKEW) else {
        return unauthorized(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    };
    // GitHub's own example backdates `iat` by 60 s and sets `exp` 10 minutes from now: the limit
    // is on `exp` against the clock (plus skew), not against `iat`.
    if iat < now - 600 || exp.is_some_and(|exp| exp - now > 600 + SKEW) {
        return unauthorized("'Expiration time' claim ('exp') is too far in the future");
    }
    if installation_id.parse::<u64>().ok() != Some(app.installation_id) {
        return message(
            StatusCode::NOT_FOUND,
            "Not Found",
            "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
        );
    }
    let token = format!("ghs_{}", &super::random(2)[..36]);
    let (token, expires_in) = oauth.issue(Issuer::GitHub, token, "", None, None);
    let expires_at = (time::OffsetDateTime::now_utc() + time::Duration::seconds(expires_in as i64))
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .unwrap_or_default();
    let body = json!({
        "token": token,
        "expires_at": expires_at,
        "permissions": { "members": "write", "organization_administration": "read" },
        "repository_selection": "all",
    });
    let mut resp =
        (StatusCode::CREATED, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response();
    resp.headers_mut().insert("x-github-api-version-selected", HeaderValue::from_static("2022-11-28"));
    resp
}
