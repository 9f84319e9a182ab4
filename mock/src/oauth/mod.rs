//! OAuth token endpoints for five vendors, with each vendor's real request and error shapes, so
//! that a host can mint short-lived access tokens against the mock instead of being handed static
//! ones.
//!
//! Each vendor's module ([`google`], [`microsoft`], [`okta`], [`github`], [`zoom`]) lists what
//! its endpoint checks and answers, in order.
//!
//! | vendor | endpoint | client authentication | token |
//! | --- | --- | --- | --- |
//! | Google | `POST /token` | JWT bearer grant (RFC 7523): an RS256 assertion signed with the service account's key, `sub` = the admin to impersonate | `ya29.…`, `Bearer` |
//! | Microsoft | `POST /{tenant}/oauth2/v2.0/token` | `client_credentials` with `client_secret`, or an RS256 `client_assertion` whose header `x5t` names the certificate | `eyJ0eXAi.…`, `Bearer` |
//! | Okta | `POST /oauth2/v1/token` (the org authorization server) | `client_credentials` with an RS256 `client_assertion` (`private_key_jwt`), plus a DPoP proof when the app requires it | bound to the proof key (`DPoP`), or `Bearer` |
//! | GitHub | `POST /app/installations/{id}/access_tokens` | `Authorization: Bearer <app JWT>` (RS256, `iss` = app id) | `ghs_…` (201, `expires_at`) |
//! | Zoom | `POST /oauth/token?grant_type=account_credentials&account_id=…` | `Authorization: Basic base64(client_id:client_secret)` | `Bearer` |
//!
//! The routes are always there. A vendor left out of [`OAuthConfig`] answers its token endpoint
//! with its own "unknown client" error and its API keeps taking the static token of
//! [`MockTokens`](crate::MockTokens); a configured vendor's API takes only live tokens its token
//! endpoint issued (the static token is refused with the vendor's own 401).
//!
//! What the mock checks and what it leaves out:
//! - Times are the real clock: `iat`/`nbf` may be up to 60 s in the future (clock skew), `exp`
//!   must not have passed; each vendor's longest assertion lifetime is enforced (see its file).
//! - Audiences and DPoP `htu`: the mock cannot see the scheme it was reached with, so a URL claim
//!   matches when it is `http://` or `https://`, then the request's `Host` header (ASCII
//!   case-insensitive; `:80`/`:443` may be left out), then exactly the endpoint's path, with no
//!   query or fragment. The real vendors' own URLs (`https://oauth2.googleapis.com/token`, ...)
//!   are *not* accepted: a host must use the token URL it was configured with.
//! - Public keys in the configuration are PEM (SPKI `BEGIN PUBLIC KEY` or PKCS#1 `BEGIN RSA
//!   PUBLIC KEY`) or a JWK (JSON: `{"kty": "RSA", "n", "e", "kid"?, ...}`; private members are
//!   ignored, so Okta's private JWK works too; a JWK's `kid` must then match the assertion's).
//! - Scopes are checked when a token is minted (Google, Microsoft, Okta), not per API call,
//!   except that a Graph call needs a token minted for Graph (`https://graph.microsoft.com/.default`)
//!   and a Google Admin call needs a token minted with a `sub` (domain-wide delegation).
//! - Issued tokens live [`OAuthConfig::token_ttl`]; [`OAuth::revoke_tokens`] kills them early.

// Public for their docs (each vendor's checks and errors, in order); their items are internal.
pub mod github;
pub mod google;
mod keys;
pub mod microsoft;
pub mod okta;
pub mod zoom;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{Value, json};

pub use keys::RsaKeyPair;

/// Leeway for `iat`/`nbf` in the future and for `exp` just past, in seconds.
pub(crate) const SKEW: i64 = 60;

/// What each vendor's token endpoint accepts. Vendors left `None` keep static tokens only.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    pub google: Option<GoogleServiceAccount>,
    pub microsoft: Option<MicrosoftApp>,
    pub okta: Option<OktaServiceApp>,
    pub github: Option<GitHubApp>,
    pub zoom: Option<ZoomApp>,
    /// Lifetime of every issued access token (`expires_in`): 3600 s by default; tests use 2-3 s
    /// so the host's refresh is exercised.
    pub token_ttl: Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig { google: None, microsoft: None, okta: None, github: None, zoom: None, token_ttl: DEFAULT_TTL }
    }
}

/// The default [`OAuthConfig::token_ttl`], what the real vendors give (GitHub and Zoom too).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// A Google service account with domain-wide delegation.
#[derive(Clone, Debug)]
pub struct GoogleServiceAccount {
    /// The assertion's `iss`, e.g. `offramp@acme-it.iam.gserviceaccount.com`.
    pub client_email: String,
    /// The account key's public half (PEM or JWK).
    pub public_pem: String,
    /// Admins it may act as (the assertion's `sub`).
    pub subjects: Vec<String>,
    /// Scopes delegated to it in the Admin console (full URLs,
    /// `https://www.googleapis.com/auth/admin.directory.user`, ...).
    pub scopes: Vec<String>,
}

/// A Microsoft Entra app registration with application permissions on Graph.
#[derive(Clone, Debug)]
pub struct MicrosoftApp {
    /// The tenant id (GUID) or a verified domain, as it appears in the token URL.
    pub tenant: String,
    pub client_id: String,
    /// A client secret's value, if the app has one.
    pub client_secret: Option<String>,
    /// A certificate credential: its thumbprint as the Entra portal shows it (40 hex digits, any
    /// case) and its public key (PEM or JWK). See [`RsaKeyPair::certificate_thumbprint`].
    pub certificate: Option<(String, String)>,
}

/// An Okta API service app (client credentials with `private_key_jwt`).
#[derive(Clone, Debug)]
pub struct OktaServiceApp {
    pub client_id: String,
    /// The app's public key: PEM, or a JWK (public or Okta's private JWK; its `kid`, if any, must
    /// match the assertion header's).
    pub public_pem: String,
    /// Granted `okta.*` scopes.
    pub scopes: Vec<String>,
    /// "Require Demonstrating Proof of Possession (DPoP) header in token requests".
    pub require_dpop: bool,
}

/// A GitHub App installed on the organization.
#[derive(Clone, Debug)]
pub struct GitHubApp {
    pub app_id: u64,
    pub installation_id: u64,
    /// The app's public key (PEM or JWK).
    pub public_pem: String,
}

/// A Zoom Server-to-Server OAuth app.
#[derive(Clone, Debug)]
pub struct ZoomApp {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A vendor that mints tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Issuer {
    Google,
    Microsoft,
    Okta,
    GitHub,
    Zoom,
}

impl Issuer {
    fn parse(name: &str) -> Option<Issuer> {
        Some(match name.to_ascii_lowercase().as_str() {
            "google" => Issuer::Google,
            "microsoft" | "graph" => Issuer::Microsoft,
            "okta" => Issuer::Okta,
            "github" => Issuer::GitHub,
            "zoom" => Issuer::Zoom,
            _ => return None,
        })
    }
}

/// An access token the mock issued.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    issuer: Issuer,
    expires: Instant,
    /// The DPoP key thumbprint the token is bound to (Okta with DPoP).
    pub jkt: Option<String>,
    /// The scope it was minted for (space-separated).
    pub scope: String,
    /// Who it acts as (Google domain-wide delegation).
    pub subject: Option<String>,
}

/// What a vendor's API learns about the token it was given.
#[derive(Debug)]
pub(crate) enum TokenCheck {
    /// The vendor keeps its static token.
    NotConfigured,
    Live(Issued),
    Expired,
    /// Never issued, revoked, or issued by another vendor.
    Unknown,
}

#[derive(Default)]
struct Data {
    config: OAuthConfig,
    tokens: HashMap<String, Issued>,
    mints: HashMap<Issuer, u32>,
    /// DPoP nonces handed out, oldest first; the last is the current one.
    nonces: Vec<String>,
    nonce_answers: u32,
    /// Okta's Management API asks for its own DPoP nonce too (RFC 9449 §9), and how many
    /// times it answered `use_dpop_nonce`.
    api_nonce: Option<String>,
    api_nonce_answers: u32,
    /// DPoP proof and Okta assertion `jti`s seen, with when (pruned after 10 minutes).
    jtis: HashMap<String, Instant>,
}

/// The token endpoints' shared state: the configuration, the tokens issued, counters. A cheap
/// handle ([`MockState::oauth`](crate::MockState::oauth)); clones share it.
#[derive(Clone, Default)]
pub struct OAuth {
    data: Arc<Mutex<Data>>,
}

impl OAuth {
    /// Replaces the configuration (tokens already issued stay valid until they expire).
    pub fn configure(&self, config: OAuthConfig) {
        if let Ok(mut d) = self.data.lock() {
            d.config = config;
        }
    }

    /// The current configuration.
    pub fn config(&self) -> OAuthConfig {
        self.data.lock().map(|d| d.config.clone()).unwrap_or_default()
    }

    /// Changes the configuration in place.
    pub fn update(&self, f: impl FnOnce(&mut OAuthConfig)) {
        if let Ok(mut d) = self.data.lock() {
            f(&mut d.config);
        }
    }

    /// Successful token issues so far by `vendor` ("google", "microsoft", "okta", "github",
    /// "zoom"; 0 for anything else).
    pub fn mints(&self, vendor: &str) -> u32 {
        let Some(issuer) = Issuer::parse(vendor) else { return 0 };
        self.data.lock().map(|d| d.mints.get(&issuer).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Every token `vendor` issued so far stops working: the next API call with one is a 401
    /// (the vendor's "invalid token" answer), so the host has to mint a new one.
    pub fn revoke_tokens(&self, vendor: &str) {
        let Some(issuer) = Issuer::parse(vendor) else { return };
        if let Ok(mut d) = self.data.lock() {
            d.tokens.retain(|_, t| t.issuer != issuer);
        }
    }

    /// How many tokens `vendor` issued that are still live.
    pub fn live_tokens(&self, vendor: &str) -> usize {
        let Some(issuer) = Issuer::parse(vendor) else { return 0 };
        let now = Instant::now();
        self.data
            .lock()
            .map(|d| d.tokens.values().filter(|t| t.issuer == issuer && t.expires > now).count())
            .unwrap_or(0)
    }

    /// Registers a different public key for `vendor` (the host's key is then "revoked": its next
    /// mint fails with the vendor's bad-signature error): Google's service account key, Okta's
    /// app key, GitHub's app key, or Microsoft's certificate key (its thumbprint kept, so the
    /// assertion fails signature validation). `false` when the vendor has no key configured.
    /// Tokens already issued keep working: combine with [`OAuth::revoke_tokens`].
    pub fn rotate_key(&self, vendor: &str, public_pem: &str) -> bool {
        let Some(issuer) = Issuer::parse(vendor) else { return false };
        let Ok(mut d) = self.data.lock() else { return false };
        let c = &mut d.config;
        let slot = match issuer {
            Issuer::Google => c.google.as_mut().map(|g| &mut g.public_pem),
            Issuer::Okta => c.okta.as_mut().map(|o| &mut o.public_pem),
            Issuer::GitHub => c.github.as_mut().map(|g| &mut g.public_pem),
            Issuer::Microsoft => c.microsoft.as_mut().and_then(|m| m.certificate.as_mut()).map(|(_, k)| k),
            Issuer::Zoom => None,
        };
        match slot {
            Some(slot) => {
                *slot = public_pem.to_string();
                true
            }
            None => false,
        }
    }

    /// Sets a different client secret for "microsoft" or "zoom" (the host's secret is then
    /// "revoked"). `false` when the vendor is not configured.
    pub fn set_client_secret(&self, vendor: &str, secret: &str) -> bool {
        let Ok(mut d) = self.data.lock() else { return false };
        match Issuer::parse(vendor) {
            Some(Issuer::Microsoft) => {
                d.config.microsoft.as_mut().map(|m| m.client_secret = Some(secret.into())).is_some()
            }
            Some(Issuer::Zoom) => d.config.zoom.as_mut().map(|z| z.client_secret = secret.into()).is_some(),
            _ => false,
        }
    }

    /// Every DPoP nonce Okta's token endpoint handed out, oldest first; the last is the one it
    /// accepts now.
    pub fn dpop_nonces(&self) -> Vec<String> {
        self.data.lock().map(|d| d.nonces.clone()).unwrap_or_default()
    }

    /// How many times Okta's token endpoint answered `use_dpop_nonce`.
    pub fn use_dpop_nonce_answers(&self) -> u32 {
        self.data.lock().map(|d| d.nonce_answers).unwrap_or(0)
    }

    /// Makes Okta's Management API require a DPoP nonce of its own (a resource server may, RFC
    /// 9449 §9): a proof without the current one gets 401 `use_dpop_nonce` with `DPoP-Nonce`.
    /// Returns the nonce.
    pub fn require_api_nonce(&self) -> String {
        let nonce = new_nonce();
        if let Ok(mut d) = self.data.lock() {
            d.api_nonce = Some(nonce.clone());
        }
        nonce
    }

    /// How many times the Management API answered `use_dpop_nonce`.
    pub fn api_nonce_answers(&self) -> u32 {
        self.data.lock().map(|d| d.api_nonce_answers).unwrap_or(0)
    }

    /// The API's nonce, if it wants one; counts the answer when the proof lacked it.
    pub(crate) fn api_nonce_missing(&self, sent: Option<&str>) -> Option<String> {
        let mut d = self.data.lock().ok()?;
        let want = d.api_nonce.clone()?;
        if sent == Some(want.as_str()) {
            return None;
        }
        d.api_nonce_answers += 1;
        Some(want)
    }

    /// Makes Okta's current DPoP nonce stale (the next proof carrying it gets `use_dpop_nonce`
    /// with a new one) and returns the new one.
    pub fn rotate_dpop_nonce(&self) -> String {
        let nonce = new_nonce();
        if let Ok(mut d) = self.data.lock() {
            d.nonces.push(nonce.clone());
        }
        nonce
    }

    pub(crate) fn is_configured(&self, issuer: Issuer) -> bool {
        self.data
            .lock()
            .map(|d| {
                let c = &d.config;
                match issuer {
                    Issuer::Google => c.google.is_some(),
                    Issuer::Microsoft => c.microsoft.is_some(),
                    Issuer::Okta => c.okta.is_some(),
                    Issuer::GitHub => c.github.is_some(),
                    Issuer::Zoom => c.zoom.is_some(),
                }
            })
            .unwrap_or(false)
    }

    /// What `issuer`'s API should make of `token`.
    pub(crate) fn check(&self, issuer: Issuer, token: &str) -> TokenCheck {
        if !self.is_configured(issuer) {
            return TokenCheck::NotConfigured;
        }
        let Ok(d) = self.data.lock() else { return TokenCheck::Unknown };
        match d.tokens.get(token) {
            Some(t) if t.issuer != issuer => TokenCheck::Unknown,
            Some(t) if Instant::now() >= t.expires => TokenCheck::Expired,
            Some(t) => TokenCheck::Live(t.clone()),
            None => TokenCheck::Unknown,
        }
    }

    /// Issues a token and counts the mint; returns the token and its lifetime in seconds.
    fn issue(
        &self,
        issuer: Issuer,
        token: String,
        scope: &str,
        subject: Option<String>,
        jkt: Option<String>,
    ) -> (String, u64) {
        let Ok(mut d) = self.data.lock() else { return (token, 0) };
        let ttl = d.config.token_ttl;
        let now = Instant::now();
        // Forget tokens long expired (a long-running `offramp mock`); recently expired ones stay,
        // so that an API still says "expired" rather than "invalid".
        d.tokens.retain(|_, t| now.saturating_duration_since(t.expires) < Duration::from_secs(600));
        let issued = Issued { issuer, expires: now + ttl, jkt, scope: scope.to_string(), subject };
        d.tokens.insert(token.clone(), issued);
        *d.mints.entry(issuer).or_insert(0) += 1;
        (token, ttl.as_secs())
    }

    fn config_of<T>(&self, f: impl FnOnce(&OAuthConfig) -> Option<T>) -> Option<T> {
        self.data.lock().ok().and_then(|d| f(&d.config))
    }

    /// The current DPoP nonce (made on first use).
    fn current_nonce(&self) -> String {
        let Ok(mut d) = self.data.lock() else { return String::new() };
        if let Some(n) = d.nonces.last() {
            return n.clone();
        }
        let n = new_nonce();
        d.nonces.push(n.clone());
        n
    }

    fn count_nonce_answer(&self) {
        if let Ok(mut d) = self.data.lock() {
            d.nonce_answers += 1;
        }
    }

    /// Records a `jti`; `false` if it was seen before (a replay).
    fn first_use(&self, jti: &str) -> bool {
        let Ok(mut d) = self.data.lock() else { return false };
        let now = Instant::now();
        if d.jtis.len() > 10_000 {
            d.jtis.retain(|_, at| now.duration_since(*at) < Duration::from_secs(600));
        }
        d.jtis.insert(jti.to_string(), now).is_none()
    }
}

fn new_nonce() -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// The token endpoints (always routed; see the module docs).
pub(crate) fn router(oauth: OAuth) -> Router {
    Router::new()
        .route("/token", post(google::token))
        .route("/{tenant}/oauth2/v2.0/token", post(microsoft::token))
        .route("/oauth2/v1/token", post(okta::token))
        .route("/app/installations/{installation_id}/access_tokens", post(github::token))
        .route("/oauth/token", post(zoom::token))
        .with_state(oauth)
}

/// An injected failure on a token endpoint, in that endpoint's error shape (with `Retry-After:
/// 1` on a 429 or 503); `None` for any other path.
pub(crate) fn token_error_response(path: &str, status: StatusCode) -> Option<Response> {
    use crate::Vendor;
    let code = transient_code(status);
    let mut resp = match Vendor::of_token_path(path)? {
        Vendor::Graph => {
            microsoft::error(status, code, 50001, "The service is temporarily unavailable.", &HeaderMap::new())
        }
        Vendor::GitHub => crate::github::error_response(status),
        Vendor::Zoom => zoom::error(status, code, "Service unavailable"),
        _ => oauth_error(status, code, "The service is temporarily unavailable."),
    };
    if matches!(status.as_u16(), 429 | 503) {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    Some(resp)
}

fn transient_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 | 503 => "temporarily_unavailable",
        400..=499 => "invalid_request",
        _ => "server_error",
    }
}

/// `{"error", "error_description"}` (RFC 6749 §5.2), as Google and Okta send it.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(status, json!({ "error": error, "error_description": description }))
}

/// A JSON answer with the `Cache-Control: no-store` token endpoints send.
fn no_store(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    resp.headers_mut().insert("pragma", HeaderValue::from_static("no-cache"));
    resp
}

/// Seconds since the epoch, by the real clock.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A random token body: `n` times 32 hex digits.
fn random(n: usize) -> String {
    (0..n).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect()
}

/// The request's `Host` header (empty if none).
pub(crate) fn host(headers: &HeaderMap) -> String {
    headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Whether `url` names `path` on `host` (see the module docs: either scheme, no query).
pub(crate) fn same_url(url: &str, host: &str, path: &str) -> bool {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
        (r, ":80")
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, ":443")
    } else {
        return false;
    };
    if rest.contains(['?', '#']) || host.is_empty() {
        return false;
    }
    let (authority, url_path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let strip = |a: &str| a.strip_suffix(default_port).map(str::to_string).unwrap_or_else(|| a.to_string());
    strip(authority).eq_ignore_ascii_case(&strip(host)) && url_path == path
}

/// The request's form parameters (a body that is not a form counts as empty).
fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default().into_iter().collect()
}

/// A numeric claim (integer or float seconds).
pub(crate) fn num(claims: &Value, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

pub(crate) fn string<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// A configured public key: PEM (SPKI or PKCS#1) or a JWK, with the JWK's `kid`.
fn public_key(config: &str) -> Option<(DecodingKey, Option<String>)> {
    let trimmed = config.trim();
    if trimmed.starts_with('{') {
        let jwk: Jwk = serde_json::from_str(trimmed).ok()?;
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        return Some((key, jwk.common.key_id));
    }
    DecodingKey::from_rsa_pem(trimmed.as_bytes()).ok().map(|k| (k, None))
}

/// Why a JWT did not verify.
#[derive(Debug, PartialEq)]
pub(crate) enum JwtError {
    /// Not three base64url parts of JSON.
    Malformed,
    /// Signed with another key, with an algorithm not allowed, or the configured key is unusable.
    Signature,
}

/// The unverified header and claims of a JWT (to find which key should have signed it).
pub(crate) fn peek(token: &str) -> Result<(Header, Value), JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token).map_err(|_| JwtError::Malformed)?;
    if !claims.is_object() {
        return Err(JwtError::Malformed);
    }
    Ok((header, claims))
}

/// Verifies `token`'s signature with `key` under one of `algs`; claims are left to the caller.
pub(crate) fn verify(token: &str, key: &DecodingKey, algs: &[Algorithm]) -> Result<Value, JwtError> {
    let mut v = Validation::new(Algorithm::RS256);
    v.algorithms = algs.to_vec();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    match jsonwebtoken::decode::<Value>(token, key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken | K::InvalidClaimFormat(_) => {
                    Err(JwtError::Malformed)
                }
                _ => Err(JwtError::Signature),
            }
        }
    }
}

/// Verifies an RS256 assertion against a configured public key (PEM or JWK).
fn verify_rs256(token: &str, config_key: &str) -> Result<Value, JwtError> {
    let (key, _) = public_key(config_key).ok_or(JwtError::Signature)?;
    verify(token, &key, &[Algorithm::RS256])
}

/// The `iat`..`exp` checks the vendors share: `exp` present and not past, `iat` and `nbf` (when
/// present) not more than [`SKEW`] in the future, and `exp` at most `max_life` seconds after
/// `iat` (after now when there is no `iat`).
pub(crate) fn times_ok(claims: &Value, max_life: i64) -> bool {
    let now = now();
    let Some(exp) = num(claims, "exp") else { return false };
    let iat = num(claims, "iat");
    if iat.is_some_and(|iat| iat > now + SKEW) || num(claims, "nbf").is_some_and(|nbf| nbf > now + SKEW) {
        return false;
    }
    exp > now && exp - iat.unwrap_or(now) <= max_life
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_match_on_host_and_path_whatever_the_scheme() {
        assert!(same_url("http://127.0.0.1:4000/token", "127.0.0.1:4000", "/token"));
        assert!(same_url("https://127.0.0.1:4000/token", "127.0.0.1:4000", "/token"));
        assert!(same_url("http://Example.COM/token", "example.com:80", "/token"));
        assert!(!same_url("http://127.0.0.1:4000/token?x=1", "127.0.0.1:4000", "/token"));
        assert!(!same_url("http://127.0.0.1:4001/token", "127.0.0.1:4000", "/token"));
        assert!(!same_url("http://127.0.0.1:4000/token/", "127.0.0.1:4000", "/token"));
        assert!(!same_url("ftp://127.0.0.1:4000/token", "127.0.0.1:4000", "/token"));
        assert!(!same_url("https://oauth2.googleapis.com/token", "127.0.0.1:4000", "/token"));
    }
}
