//! Microsoft Entra's v2.0 token endpoint (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`)
//! for the client credentials grant: `POST /{tenant}/oauth2/v2.0/token`, form `client_id`,
//! `scope` (`https://graph.microsoft.com/.default`), `grant_type=client_credentials`, and either
//! `client_secret`, or `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//! with `client_assertion`: an RS256 JWT whose header's `x5t` is the base64url of the
//! certificate's SHA-1 thumbprint (the portal's hex, decoded), claims `aud` = the token URL
//! (`http(s)://{Host}/{tenant}/oauth2/v2.0/token`), `iss` = `sub` = `client_id`, `jti`, `exp`
//! (at most an hour after `nbf`/`iat`/now; Entra itself wants 10 minutes).
//!
//! 200 `{"token_type": "Bearer", "expires_in", "ext_expires_in", "access_token": "eyJ0eXAi.…"}`.
//! Errors are Entra's `{"error", "error_description": "AADSTSn: … Trace ID … Correlation ID …
//! Timestamp …", "error_codes": [n], "timestamp", "trace_id", "correlation_id", "error_uri"}`
//! (the correlation id echoes `client-request-id` when sent). In the order checked:
//! - tenant unknown (or Microsoft not configured) → 400 `invalid_request` AADSTS90002;
//! - `grant_type` missing → 400 `invalid_request` AADSTS900144; not `client_credentials` → 400
//!   `unsupported_grant_type` AADSTS70003;
//! - `client_id` missing → 400 `invalid_request` AADSTS900144; unknown → 400
//!   `unauthorized_client` AADSTS700016;
//! - neither secret nor assertion → 401 `invalid_client` AADSTS7000218;
//! - wrong secret (or the app has none) → 401 `invalid_client` AADSTS7000215;
//! - assertion: wrong `client_assertion_type` or not a JWT → 400 `invalid_request` AADSTS50027;
//!   `x5t` missing or not the certificate's (or the app has no certificate) → 401
//!   `invalid_client` AADSTS700027 "The certificate with identifier used to sign the client
//!   assertion is not registered on application."; bad signature → 401 `invalid_client`
//!   AADSTS700027 "Client assertion failed signature validation."; `iss`/`sub` not the client →
//!   401 `invalid_client` AADSTS700021; `aud` wrong → 401 `invalid_client` AADSTS700023; times →
//!   401 `invalid_client` AADSTS700024;
//! - `scope` missing → 400 `invalid_request` AADSTS900144; not ending in `/.default` → 400
//!   `invalid_scope` AADSTS1002012.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::{
    Issuer, JwtError, MicrosoftApp, OAuth, form, host, no_store, peek, same_url, string, times_ok, verify_rs256,
};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra error answer.
pub(super) fn error(status: StatusCode, error: &str, code: u32, message: &str, req: &HeaderMap) -> Response {
    let trace_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = req
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    let timestamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"))
        .unwrap_or_default();
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    no_store(status, body)
}

pub(super) async fn token(
    State(oauth): State<OAuth>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fail = |status: StatusCode, err: &str, code: u32, message: &str| error(status, err, code, message, &headers);
    let form = form(&body);
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let Some(app) = oauth.config_of(|c| c.microsoft.clone().filter(|m| m.tenant.eq_ignore_ascii_case(&tenant))) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    };
    match param("grant_type") {
        None => return missing(&headers, "grant_type"),
        Some("client_credentials") => {}
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
    }
    let Some(client_id) = param("client_id") else { return missing(&headers, "client_id") };
    if !app.client_id.eq_ignore_ascii_case(client_id) {
        return fail(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }
    if let Some(secret) = param("client_secret") {
        if app.client_secret.as_deref() != Some(secret) {
            return fail(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    app.client_id
                ),
            );
        }
    } else if let Some(assertion) = param("client_assertion") {
        let path = format!("/{tenant}/oauth2/v2.0/token");
        if let Some(resp) =
            check_assertion(&app, param("client_assertion_type"), assertion, &host(&headers), &path, &headers)
        {
            return resp;
        }
    } else {
        return fail(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let Some(scope) = param("scope") else { return missing(&headers, "scope") };
    if scope.split_whitespace().count() != 1 || !scope.ends_with("/.default") {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    let token = format!("eyJ0eXAi.{}", super::random(4));
    let (token, expires_in) = oauth.issue(Issuer::Microsoft, token, scope, None, None);
    no_store(
        StatusCode::OK,
        json!({ "token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token }),
    )
}

fn missing(headers: &HeaderMap, name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
        headers,
    )
}

/// Checks a certificate credential's client assertion: `None` when it is good, else the answer.
fn check_assertion(
    app: &MicrosoftApp,
    assertion_type: Option<&str>,
    assertion: &str,
    host: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let fail =
        |status: StatusCode, err: &str, code: u32, message: &str| Some(error(status, err, code, message, headers));
    let unauthorized = StatusCode::UNAUTHORIZED;
    if assertion_type != Some(ASSERTION_TYPE) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed. The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
        );
    }
    let Ok((header, _)) = peek(assertion) else {
        return fail(StatusCode::BAD_REQUEST, "invalid_request", 50027, "JWT token is invalid or malformed.");
    };
    let registered = app.certificate.as_ref().and_then(|(thumbprint, key)| {
        let x5t = URL_SAFE_NO_PAD.encode(hex::decode(thumbprint.trim()).ok()?);
        Some((x5t, key))
    });
    let Some((_, key)) = registered.filter(|(x5t, _)| header.x5t.as_deref() == Some(x5t.as_str())) else {
        return fail(
            unauthorized,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        );
    };
    let claims = match verify_rs256(assertion, key) {
        Ok(c) => c,
        Err(JwtError::Malformed) => {
            return fail(StatusCode::BAD_REQUEST, "invalid_request", 50027, "JWT token is invalid or malformed.");
        }
        Err(JwtError::Signature) => {
            return fail(unauthorized, "invalid_client", 700027, "Client assertion failed signature validation.");
        }
    };
    let is_client = |name: &str| string(&claims, name).is_some_and(|v| v.eq_ignore_ascii_case(&app.client_id));
    if !is_client("iss") || !is_client("sub") {
        return fail(
            unauthorized,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        );
    }
    if !string(&claims, "aud").is_some_and(|aud| same_url(aud, host, path)) {
        return fail(
            unauthorized,
            "invalid_client",
            700023,
            &format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials . The expected audience is http://{host}{path}."
            ),
        );
    }
    if !times_ok(&claims, 3600) {
        return fail(
            unauthorized,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        );
    }
    None
}
