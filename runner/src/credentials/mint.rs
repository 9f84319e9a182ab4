//! One token request per kind, and what the token endpoint's answer means: a token with its
//! lifetime, or the endpoint's own error with what to fix.

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::{ClientAuth, MintKind, Vendor};
use super::keys::{RsaKey, rsa_key};
use super::{CredentialError, Minter, Scheme, Token};
use crate::secrets::{Redactor, Secret};
use crate::text::truncate;

/// A token request's time limit.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A lifetime assumed when the endpoint does not say (refreshing early is harmless).
const UNSTATED_LIFETIME: Duration = Duration::from_secs(300);

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What was sent, to word the answer and keep the request's own secrets out of it.
struct Sent {
    url: url::Url,
    /// The secrets this request carried (client secret, assertion, proof).
    carried: Vec<String>,
}

impl Minter {
    /// Asks the token endpoint for a new token.
    pub(super) async fn mint(&self) -> Result<Token, CredentialError> {
        let mut nonce_retried = false;
        loop {
            let (request, sent) = self.request().await?;
            let resp = request.timeout(TOKEN_TIMEOUT).send().await.map_err(|e| self.unavailable(&e, &sent.url))?;
            let status = resp.status().as_u16();
            let retry_after =
                crate::http::limiter::retry_after(resp.headers()).map(|d| d.min(Duration::from_secs(15 * 60)));
            // RFC 9449 §8: the server may hand out a new nonce with any answer.
            let nonce = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_string);
            if let (Some(n), Some(_)) = (&nonce, &self.dpop)
                && let Ok(mut slot) = self.token_nonce.lock()
            {
                *slot = Some(n.clone());
            }
            let text = resp.text().await.map_err(|e| self.unavailable(&e, &sent.url))?;
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return self.token_from(&body, &sent);
            }
            // The server wants its nonce in the proof: once per mint.
            if nonce.is_some() && body["error"] == "use_dpop_nonce" && self.dpop.is_some() && !nonce_retried {
                nonce_retried = true;
                continue;
            }
            return Err(self.refused(status, &body, &text, &sent, retry_after));
        }
    }

    async fn request(&self) -> Result<(reqwest::RequestBuilder, Sent), CredentialError> {
        let now = jsonwebtoken::get_current_timestamp();
        // Client assertions start a little in the past: a server whose clock is behind ours
        // would refuse them as not yet valid.
        let issued = now.saturating_sub(30);
        let mut carried = Vec::new();
        let mut token_url = self.spec.token_url.clone();
        let google_key = match &self.spec.kind {
            MintKind::Google { key, .. } => Some(self.key(key)?),
            _ => None,
        };
        if let Some(k) = &google_key
            && !self.spec.explicit_token_url
            && let Some(uri) = k.token_uri.as_deref().and_then(|u| url::Url::parse(u).ok())
        {
            token_url = uri;
        }
        let client = self.client.for_url(&token_url).map_err(|reason| CredentialError::Config {
            name: self.name.clone(),
            reason: format!("token endpoint: {reason}"),
        })?;
        let builder = match &self.spec.kind {
            MintKind::Google { key, subject, scopes, client_email } => {
                let Some(k) = google_key else { return Err(self.key_error("the key was not read".into())) };
                let iss = client_email.clone().or(k.client_email.clone()).ok_or_else(|| CredentialError::Key {
                    name: self.name.clone(),
                    secret: key.clone(),
                    reason: "is a PEM key without the service account's email: set `client_email` in the credential's config, or store the JSON key file".into(),
                })?;
                let claims = json!({
                    "iss": iss, "sub": subject, "scope": scopes.join(" "),
                    "aud": token_url.as_str(), "iat": now, "exp": now + 3600,
                });
                let assertion = self.sign(&k, key, claims, None)?;
                carried.push(assertion.clone());
                client.post(token_url.clone()).form(&[("grant_type", JWT_BEARER), ("assertion", &assertion)])
            }
            MintKind::ClientCredentials { client_id, auth, scopes, dpop, .. } => {
                let mut form = vec![
                    ("grant_type".to_string(), "client_credentials".to_string()),
                    ("client_id".into(), client_id.clone()),
                    ("scope".into(), scopes.join(" ")),
                ];
                match auth {
                    ClientAuth::Secret(name) => {
                        let secret = self.secret(name)?;
                        carried.push(secret.expose().to_string());
                        form.push(("client_secret".into(), secret.expose().to_string()));
                    }
                    ClientAuth::Assertion { key, kid, x5t } => {
                        let k = self.key(key)?;
                        let claims = json!({
                            "iss": client_id, "sub": client_id, "aud": token_url.as_str(),
                            "jti": uuid::Uuid::new_v4().to_string(), "iat": issued, "nbf": issued, "exp": now + 300,
                        });
                        let assertion =
                            self.sign(&k, key, claims, Some((kid.clone().or(k.kid.clone()), x5t.clone())))?;
                        carried.push(assertion.clone());
                        form.push(("client_assertion_type".into(), ASSERTION_TYPE.into()));
                        form.push(("client_assertion".into(), assertion));
                    }
                }
                let mut b = client.post(token_url.clone()).form(&form);
                if *dpop && let Some(key) = &self.dpop {
                    let nonce = self.token_nonce.lock().ok().and_then(|n| n.clone());
                    let proof = key.proof("POST", &token_url, nonce.as_deref(), None).map_err(|e| self.key_error(e))?;
                    carried.push(proof.clone());
                    b = b.header("DPoP", proof);
                }
                b
            }
            MintKind::GithubApp { app_id, private_key } => {
                let k = self.key(private_key)?;
                // GitHub allows 10 minutes; a minute back for clock drift, as GitHub advises.
                let claims = json!({ "iat": now.saturating_sub(60), "exp": now + 540, "iss": app_id.to_string() });
                let jwt = self.sign(&k, private_key, claims, None)?;
                carried.push(jwt.clone());
                client
                    .post(token_url.clone())
                    .bearer_auth(jwt)
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28")
            }
            MintKind::Zoom { account_id, client_id, client_secret } => {
                let secret = self.secret(client_secret)?;
                carried.push(secret.expose().to_string());
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{}", secret.expose()));
                carried.push(basic);
                let mut url = token_url.clone();
                url.query_pairs_mut()
                    .append_pair("grant_type", "account_credentials")
                    .append_pair("account_id", account_id);
                client.post(url).basic_auth(client_id, Some(secret.expose()))
            }
        };
        Ok((builder, Sent { url: token_url, carried }))
    }

    fn secret(&self, name: &str) -> Result<Secret, CredentialError> {
        self.secrets.get(name).map_err(|e| CredentialError::Secret { name: self.name.clone(), reason: e.to_string() })
    }

    fn key(&self, name: &str) -> Result<RsaKey, CredentialError> {
        let value = self.secret(name)?;
        rsa_key(value.expose()).map_err(|reason| CredentialError::Key {
            name: self.name.clone(),
            secret: name.to_string(),
            reason: format!("does not hold a usable private key: {reason}"),
        })
    }

    fn key_error(&self, reason: String) -> CredentialError {
        CredentialError::Key { name: self.name.clone(), secret: "(DPoP key)".into(), reason }
    }

    fn sign(
        &self,
        k: &RsaKey,
        secret: &str,
        claims: Value,
        ids: Option<(Option<String>, Option<String>)>,
    ) -> Result<String, CredentialError> {
        let mut header = Header::new(Algorithm::RS256);
        match ids {
            Some((kid, x5t)) => {
                header.kid = kid;
                header.x5t = x5t;
            }
            None => header.kid = k.kid.clone(),
        }
        jsonwebtoken::encode(&header, &claims, &k.key).map_err(|e| CredentialError::Key {
            name: self.name.clone(),
            secret: secret.to_string(),
            reason: format!("cannot sign with it: {e}"),
        })
    }

    fn token_from(&self, body: &Value, sent: &Sent) -> Result<Token, CredentialError> {
        let value = body["access_token"].as_str().or_else(|| body["token"].as_str()).filter(|t| !t.trim().is_empty());
        let Some(value) = value else {
            // Usually not a token endpoint at all (an HTML page answering 200).
            return Err(CredentialError::Refused {
                name: self.name.clone(),
                endpoint: sent.url.to_string(),
                status: 200,
                error: "success without an access token".into(),
                hint: "check the token URL: it answered, but not as a token endpoint does".into(),
            });
        };
        let seconds = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
        let lifetime = match (seconds(&body["expires_in"]), body["expires_at"].as_str()) {
            (Some(s), _) => Duration::from_secs(s),
            (None, Some(at)) => time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| (t - time::OffsetDateTime::now_utc()).try_into().unwrap_or(Duration::ZERO))
                .unwrap_or(UNSTATED_LIFETIME),
            _ => UNSTATED_LIFETIME,
        };
        let scheme = if body["token_type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("dpop")) {
            Scheme::Dpop
        } else {
            Scheme::Bearer
        };
        if scheme == Scheme::Dpop && self.dpop.is_none() {
            return Err(CredentialError::Refused {
                name: self.name.clone(),
                endpoint: sent.url.to_string(),
                status: 200,
                error: "DPoP token".into(),
                hint: "the endpoint issued a DPoP-bound token but this credential has `dpop: false`: set `dpop: true`"
                    .into(),
            });
        }
        Ok(Token { value: Secret::new(value), scheme, lifetime, obtained: Instant::now() })
    }

    fn unavailable(&self, e: &reqwest::Error, url: &url::Url) -> CredentialError {
        let reason = match crate::http::cause(e) {
            // The address rules refused it: configuration, not an outage.
            Err(denied) => {
                return CredentialError::Config {
                    name: self.name.clone(),
                    reason: format!("token endpoint: {denied}"),
                };
            }
            Ok(_) if e.is_timeout() => "timed out".to_string(),
            Ok(cause) => cause,
        };
        CredentialError::Unavailable { name: self.name.clone(), endpoint: url.to_string(), reason, retry_after: None }
    }

    fn refused(
        &self,
        status: u16,
        body: &Value,
        text: &str,
        sent: &Sent,
        retry_after: Option<Duration>,
    ) -> CredentialError {
        // Scrubbed before it is cut: a cut through an echoed secret would leave its start.
        let scrub = Redactor::with_values(sent.carried.iter().cloned());
        let s = |v: &Value| v.as_str().map(|t| truncate(&scrub.text(t), 400));
        // OAuth's {error, error_description}, GitHub's {message}, Zoom's {reason, error}.
        let code = s(&body["error"]).unwrap_or_default();
        let said = s(&body["error_description"])
            .or_else(|| s(&body["message"]))
            .or_else(|| s(&body["reason"]))
            .map(|d| d.lines().next().unwrap_or_default().trim().to_string())
            .unwrap_or_else(|| truncate(&scrub.text(text.trim()), 200));
        let endpoint = sent.url.to_string();
        if status == 408 || status == 429 || status >= 500 {
            return CredentialError::Unavailable {
                name: self.name.clone(),
                endpoint,
                reason: format!("{status} {code} {said}").replace("  ", " ").trim().to_string(),
                retry_after,
            };
        }
        let error = match (code.is_empty(), said.is_empty()) {
            (false, false) => format!("{status} {code}: \"{said}\""),
            (false, true) => format!("{status} {code}"),
            (true, _) => format!("{status}: \"{said}\""),
        };
        CredentialError::Refused {
            name: self.name.clone(),
            endpoint,
            status,
            error,
            hint: self.hint(status, &code, &said),
        }
    }

    /// What to fix, by vendor and error.
    fn hint(&self, status: u16, code: &str, said: &str) -> String {
        let has = |s: &str| said.contains(s);
        match &self.spec.kind {
            MintKind::Google { key, scopes, .. } => match code {
                "unauthorized_client" => format!(
                    "in the Google Admin console (Security → API controls → Domain-wide delegation), authorize the service account's client ID for exactly these scopes: {}",
                    scopes.join(",")
                ),
                "invalid_grant" if has("Signature") || has("account not found") => format!(
                    "the key in {key} was deleted or belongs to another service account: create a new JSON key for the service account and store it in {key}"
                ),
                "invalid_grant" if has("email") || has("User ID") => {
                    "`subject` must be an existing, active admin user of the domain".into()
                }
                "invalid_grant" if has("iat") || has("exp") => "check this machine's clock (NTP)".into(),
                _ => "see README, Connecting your tenants → Google Workspace".into(),
            },
            MintKind::ClientCredentials { vendor: Vendor::Microsoft, auth, .. } => {
                if let (true, ClientAuth::Secret(s)) = (has("AADSTS7000215") || has("AADSTS7000222"), auth) {
                    format!("{s} must hold a current client secret's Value (not its Secret ID): create a new secret under the app's Certificates & secrets")
                } else if has("AADSTS700016") || has("AADSTS90002") {
                    "check `tenant` and `client_id` (Entra admin center → App registrations → the app's Overview)".into()
                } else if has("AADSTS700027") {
                    "upload the certificate to the app registration (Certificates & secrets) and check `certificate_thumbprint` and the key".into()
                } else if code == "invalid_scope" {
                    "app-only tokens take `scopes: [https://graph.microsoft.com/.default]`; the permissions themselves are granted as Application permissions with admin consent".into()
                } else {
                    "see README, Connecting your tenants → Microsoft".into()
                }
            }
            MintKind::ClientCredentials { vendor: Vendor::Okta, scopes, .. } => match code {
                "invalid_client" => "upload this key's public key to the API Services app (General → Client Credentials → Public keys) and check `client_id` and `key_id`".into(),
                "invalid_scope" => format!(
                    "grant these scopes to the app (Okta API Scopes tab): {}",
                    scopes.join(", ")
                ),
                "unauthorized_client" => "enable the Client Credentials grant for the app and use Public key / Private key client authentication".into(),
                "invalid_dpop_proof" | "use_dpop_nonce" => "the app requires DPoP: keep `dpop: true` (the default); if it persists, check this machine's clock".into(),
                _ if status == 400 && has("DPoP") => "set `dpop: true` for this credential (the app requires DPoP)".into(),
                _ => "see README, Connecting your tenants → Okta".into(),
            },
            MintKind::GithubApp { app_id, private_key } => match status {
                404 => "the app is not installed with this installation_id: the id is in the URL of the org's Settings → GitHub Apps → Configure".into(),
                401 if has("exp") || has("iat") => "check this machine's clock (NTP)".into(),
                401 => format!(
                    "check app_id ({app_id}) and that {private_key} holds a current private key of the app (the app's settings → Private keys)"
                ),
                403 => "the app lacks a permission or is suspended: check its Permissions and the installation".into(),
                _ => "see README, Connecting your tenants → GitHub".into(),
            },
            MintKind::Zoom { client_secret, .. } => match code {
                "invalid_client" => format!(
                    "check client_id and that {client_secret} holds the Server-to-Server OAuth app's client secret, and that the app is activated"
                ),
                "invalid_request" if has("account") => "check account_id (the app's App credentials page)".into(),
                _ => "see README, Connecting your tenants → Zoom".into(),
            },
        }
    }
}
