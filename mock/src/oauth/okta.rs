//! Okta's org authorization server (`https://{org}.okta.com/oauth2/v1/token`) for an API service
//! app, and the DPoP checks of the Management API.
//!
//! # Token endpoint
//! `POST /oauth2/v1/token`, form `grant_type=client_credentials`, `scope` (space-separated
//! `okta.*`), `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion` (RS256, header `kid` required, claims `iss` = `sub` = the client id, `aud` =
//! the token URL `http(s)://{Host}/oauth2/v1/token`, `exp` at most an hour after `iat`, `jti`
//! optional but single-use), `client_id` optional (else the assertion's `iss`).
//!
//! With `require_dpop`, a `DPoP` header (RFC 9449): header `{"typ": "dpop+jwt", "alg": "ES256"
//! (or RS256), "jwk": public key}`, claims `htm` = `POST`, `htu` = the token URL, `iat` within
//! 60 s of now, `jti` (single-use), `nonce` = the server's current nonce. Without DPoP required a
//! `DPoP` header is ignored and the token is a `Bearer` one.
//!
//! 200 `{"token_type": "DPoP" | "Bearer", "expires_in", "access_token", "scope"}`; a DPoP token
//! is bound to the SHA-256 JWK thumbprint (`jkt`) of the proof key. Errors `{"error",
//! "error_description"}`, in the order checked:
//! - `grant_type` → 400 `unsupported_grant_type`;
//! - no `client_assertion` → 401 `invalid_client` "Client authentication failed. Either the
//!   client or the client credentials are invalid."; wrong `client_assertion_type` → 401
//!   `invalid_client` "The client_assertion_type is invalid."; not a JWT → 401 `invalid_client`
//!   "The client_assertion token is malformed.";
//! - client unknown (or Okta not configured) → 401 `invalid_client` "Invalid value for 'client_id' parameter.";
//! - DPoP: no header → 400 `invalid_dpop_proof` "The DPoP proof JWT header is missing."; a bad
//!   proof → 400 `invalid_dpop_proof` with the reason; no nonce or not the current one → 400
//!   `use_dpop_nonce` "Authorization server requires nonce in DPoP proof." with `DPoP-Nonce`;
//! - assertion: `kid` missing (or not the configured JWK's) → 401 `invalid_client` "The
//!   client_assertion JWT kid is invalid."; bad signature → 401 `invalid_client` "The
//!   client_assertion signature is invalid."; `iss`/`sub` → 401 `invalid_client` "The 'iss' and
//!   'sub' claims of the client_assertion must be the client_id."; `aud` → 401 `invalid_client`
//!   "The audience claim for client_assertion must be the endpoint invoking the
//!   client_assertion."; `exp` missing or passed, or `iat` in the future → 401 `invalid_client`
//!   "The client_assertion token is expired."; more than an hour → 401 `invalid_client` "The
//!   client_assertion token has an expiration too far in the future.";
//! - scopes: none → 400 `invalid_scope` "The authorization server resource does not have any
//!   configured default scopes, 'scope' must be provided."; a scope not `okta.*` → 400
//!   `invalid_scope` "The requested scope is invalid, unknown, or malformed."; `okta.*` scopes not
//!   granted → 400 `invalid_scope` "The following scopes are not allowed: {them}";
//! - replays: the proof's `jti` seen before → 400 `invalid_dpop_proof` "The DPoP proof JWT has
//!   already been used."; the assertion's → 401 `invalid_client` "The client_assertion token has
//!   already been used." (both are recorded only when a token is issued, so the nonce dance may
//!   resend the same assertion).
//!
//! # Management API (`/api/v1/...`), with Okta OAuth configured
//! Only `Authorization: DPoP <token>` with a `DPoP` proof for this request (`htm` = the method,
//! `htu` = `http(s)://{Host}{path}` without the query, `iat` within 60 s, a `jti` never seen,
//! `ath` = base64url(SHA-256(token)), the key the token is bound to), or `Bearer <token>` for a
//! token minted without DPoP. Anything else (SSWS included) is 401 `E0000011` "Invalid token
//! provided" with `WWW-Authenticate: DPoP error="invalid_dpop_proof", error_description="…"` (or
//! `error="invalid_token"` for a missing, unknown, expired or revoked token; `Bearer` instead of
//! `DPoP` for an app without DPoP). Nonces are not required on API calls (Okta does not).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{Value, json};
use sha2::Digest;

use super::{
    Issuer, JwtError, OAuth, SKEW, TokenCheck, form, host, no_store, now, num, oauth_error, peek, public_key, same_url,
    string, verify,
};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_PATH: &str = "/oauth2/v1/token";

fn invalid_client(description: &str) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

fn invalid_proof(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
}

/// A verified DPoP proof.
struct Proof {
    jkt: String,
    claims: Value,
}

/// Verifies a DPoP proof's form, signature, `htm`, `htu`, `iat` and `jti` (not its nonce, `ath`
/// or replay); the error is the reason, for `error_description`.
fn verify_proof(proof: &str, method: &str, host: &str, path: &str) -> Result<Proof, String> {
    let malformed = || "The DPoP proof JWT is malformed.".to_string();
    let header: Value = proof
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err("The DPoP proof JWT 'typ' header must be 'dpop+jwt'.".into());
    }
    let jwk_value = header.get("jwk").filter(|j| j.is_object() && j.get("d").is_none());
    let jwk: Jwk = jwk_value
        .and_then(|j| serde_json::from_value(j.clone()).ok())
        .ok_or("The DPoP proof JWT 'jwk' header must be a public key.")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .map_err(|_| "The DPoP proof JWT 'jwk' header is not a supported key.")?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("RS256") => Algorithm::RS256,
        _ => return Err("The DPoP proof JWT 'alg' header must be ES256 or RS256.".into()),
    };
    let claims = match verify(proof, &key, &[alg]) {
        Ok(c) => c,
        Err(JwtError::Malformed) => return Err(malformed()),
        Err(JwtError::Signature) => return Err("The DPoP proof JWT signature is invalid.".into()),
    };
    if string(&claims, "htm") != Some(method) {
        return Err(format!("The DPoP proof JWT 'htm' claim must be the request method {method}."));
    }
    if !string(&claims, "htu").is_some_and(|htu| same_url(htu, host, path)) {
        return Err(format!("The DPoP proof JWT 'htu' claim must be the request URL http://{host}{path}."));
    }
    if num(&claims, "iat").is_none_or(|iat| (iat - now()).abs() > SKEW) {
        return Err("The DPoP proof JWT 'iat' claim must be within 60 seconds of the current time.".into());
    }
    if string(&claims, "jti").is_none_or(str::is_empty) {
        return Err("The DPoP proof JWT must have a 'jti' claim.".into());
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| "The DPoP proof JWT 'jwk' header is not a supported key.")?;
    Ok(Proof { jkt, claims })
}

/// The single `DPoP` header, if exactly one was sent.
fn dpop_header(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut all = headers.get_all("dpop").iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Err(()));
    }
    Some(first.to_str().map_err(|_| ()))
}

pub(super) async fn token(State(oauth): State<OAuth>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if param("grant_type") != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server. Configured grant types: [client_credentials].",
        );
    }
    let Some(assertion) = param("client_assertion") else {
        return invalid_client(
            "Client authentication failed. Either the client or the client credentials are invalid.",
        );
    };
    if param("client_assertion_type") != Some(ASSERTION_TYPE) {
        return invalid_client("The client_assertion_type is invalid.");
    }
    let Ok((header, unverified)) = peek(assertion) else {
        return invalid_client("The client_assertion token is malformed.");
    };
    let client_id = param("client_id").or_else(|| string(&unverified, "iss")).unwrap_or("").to_string();
    let Some(app) = oauth.config_of(|c| c.okta.clone().filter(|o| o.client_id == client_id)) else {
        return invalid_client("Invalid value for 'client_id' parameter.");
    };
    let host = host(&headers);

    let proof = if app.require_dpop {
        let proof = match dpop_header(&headers) {
            None => return invalid_proof("The DPoP proof JWT header is missing."),
            Some(Err(())) => return invalid_proof("Exactly one DPoP proof JWT header is allowed."),
            Some(Ok(p)) => p,
        };
        let proof = match verify_proof(proof, "POST", &host, TOKEN_PATH) {
            Ok(p) => p,
            Err(why) => return invalid_proof(&why),
        };
        let current = oauth.current_nonce();
        if string(&proof.claims, "nonce") != Some(current.as_str()) {
            oauth.count_nonce_answer();
            let mut resp = oauth_error(
                StatusCode::BAD_REQUEST,
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof.",
            );
            if let Ok(v) = HeaderValue::from_str(&current) {
                resp.headers_mut().insert("dpop-nonce", v);
            }
            return resp;
        }
        Some(proof)
    } else {
        None
    };

    let Some((key, kid)) = public_key(&app.public_pem) else {
        return invalid_client("The client_assertion signature is invalid.");
    };
    match (&header.kid, &kid) {
        (None, _) => return invalid_client("The client_assertion JWT kid is invalid."),
        (Some(sent), Some(registered)) if sent != registered => {
            return invalid_client("The client_assertion JWT kid is invalid.");
        }
        _ => {}
    }
    let claims = match verify(assertion, &key, &[Algorithm::RS256]) {
        Ok(c) => c,
        Err(JwtError::Malformed) => return invalid_client("The client_assertion token is malformed."),
        Err(JwtError::Signature) => return invalid_client("The client_assertion signature is invalid."),
    };
    if string(&claims, "iss") != Some(client_id.as_str()) || string(&claims, "sub") != Some(client_id.as_str()) {
        return invalid_client("The 'iss' and 'sub' claims of the client_assertion must be the client_id.");
    }
    if !string(&claims, "aud").is_some_and(|aud| same_url(aud, &host, TOKEN_PATH)) {
        return invalid_client(
            "The audience claim for client_assertion must be the endpoint invoking the client_assertion.",
        );
    }
    let now = now();
    let exp = num(&claims, "exp");
    let iat = num(&claims, "iat");
    if exp.is_none_or(|exp| exp <= now) || iat.is_some_and(|iat| iat > now + SKEW) {
        return invalid_client("The client_assertion token is expired.");
    }
    if exp.is_some_and(|exp| exp - iat.unwrap_or(now) > 3600) {
        return invalid_client("The client_assertion token has an expiration too far in the future.");
    }

    let requested: Vec<&str> = param("scope").unwrap_or("").split_whitespace().collect();
    if requested.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The authorization server resource does not have any configured default scopes, 'scope' must be provided.",
        );
    }
    if requested.iter().any(|s| !s.starts_with("okta.")) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The requested scope is invalid, unknown, or malformed.",
        );
    }
    let refused: Vec<&str> = requested.iter().copied().filter(|s| !app.scopes.iter().any(|g| g == s)).collect();
    if !refused.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("The following scopes are not allowed: {}", refused.join(" ")),
        );
    }

    if let Some(proof) = &proof
        && !oauth.first_use(&format!("dpop:{}", string(&proof.claims, "jti").unwrap_or("")))
    {
        return invalid_proof("The DPoP proof JWT has already been used.");
    }
    if let Some(jti) = string(&claims, "jti")
        && !oauth.first_use(&format!("assertion:{client_id}:{jti}"))
    {
        return invalid_client("The client_assertion token has already been used.");
    }

    let scope = requested.join(" ");
    let jkt = proof.map(|p| p.jkt);
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    let token = format!("eyJraWQiOiJtb2NrIn0.{}", super::random(4));
    let (token, expires_in) = oauth.issue(Issuer::Okta, token, &scope, None, jkt);
    no_store(
        StatusCode::OK,
        json!({ "token_type": token_type, "expires_in": expires_in, "access_token": token, "scope": scope }),
    )
}

/// Why the Management API refuses a request: for `WWW-Authenticate: {scheme} error="{error}",
/// error_description="{description}"`.
#[derive(Debug)]
pub(crate) struct Denied {
    pub scheme: &'static str,
    pub error: &'static str,
    pub description: String,
    /// For `use_dpop_nonce`: the nonce to send back in `DPoP-Nonce`.
    pub nonce: Option<String>,
}

/// Checks a Management API request's OAuth credentials; `None` when Okta OAuth is not configured
/// (the static SSWS token applies). `path` is the full request path (not the nested one).
pub(crate) fn check_api(oauth: &OAuth, method: &str, path: &str, headers: &HeaderMap) -> Option<Result<(), Denied>> {
    let require_dpop = oauth.config_of(|c| c.okta.as_ref().map(|o| o.require_dpop))?;
    let scheme = if require_dpop { "DPoP" } else { "Bearer" };
    let deny = |scheme: &'static str, error: &'static str, why: &str| {
        Some(Err(Denied { scheme, error, description: why.to_string(), nonce: None }))
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let (sent_scheme, token) = match auth.split_once(' ') {
        Some((s, t)) if s.eq_ignore_ascii_case("dpop") => ("DPoP", t.trim()),
        Some((s, t)) if s.eq_ignore_ascii_case("bearer") => ("Bearer", t.trim()),
        _ => return deny(scheme, "invalid_token", "The access token is missing: this org takes OAuth access tokens."),
    };
    let issued = match oauth.check(Issuer::Okta, token) {
        TokenCheck::NotConfigured => return None,
        TokenCheck::Live(t) => t,
        TokenCheck::Expired => return deny(scheme, "invalid_token", "The access token is expired."),
        TokenCheck::Unknown => return deny(scheme, "invalid_token", "The access token is invalid."),
    };
    let Some(jkt) = issued.jkt else {
        if sent_scheme != "Bearer" {
            return deny("Bearer", "invalid_token", "The access token is not DPoP-bound: send it as a Bearer token.");
        }
        return Some(Ok(()));
    };
    if sent_scheme != "DPoP" {
        return deny(
            "DPoP",
            "invalid_token",
            "The access token is DPoP-bound: send it with the DPoP scheme and a DPoP proof.",
        );
    }
    let proof = match dpop_header(headers) {
        None => return deny("DPoP", "invalid_dpop_proof", "The DPoP proof JWT header is missing."),
        Some(Err(())) => return deny("DPoP", "invalid_dpop_proof", "Exactly one DPoP proof JWT header is allowed."),
        Some(Ok(p)) => p,
    };
    let proof = match verify_proof(proof, method, &super::host(headers), path) {
        Ok(p) => p,
        Err(why) => return deny("DPoP", "invalid_dpop_proof", &why),
    };
    let ath = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()));
    if string(&proof.claims, "ath") != Some(ath.as_str()) {
        return deny(
            "DPoP",
            "invalid_dpop_proof",
            "The DPoP proof JWT 'ath' claim must be the hash of the access token.",
        );
    }
    if proof.jkt != jkt {
        return deny(
            "DPoP",
            "invalid_dpop_proof",
            "The DPoP proof JWT key is not the key the access token is bound to.",
        );
    }
    if let Some(nonce) = oauth.api_nonce_missing(string(&proof.claims, "nonce")) {
        return Some(Err(Denied {
            scheme: "DPoP",
            error: "use_dpop_nonce",
            description: "Resource server requires nonce in DPoP proof".into(),
            nonce: Some(nonce),
        }));
    }
    if !oauth.first_use(&format!("dpop:{}", string(&proof.claims, "jti").unwrap_or(""))) {
        return deny("DPoP", "invalid_dpop_proof", "The DPoP proof JWT has already been used.");
    }
    Some(Ok(()))
}
