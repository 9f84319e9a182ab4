//! Vendor credentials: a static secret, or a token the host mints itself — a Google service
//! account with domain-wide delegation, Microsoft client credentials (secret or certificate),
//! Okta `private_key_jwt` with DPoP, a GitHub App installation token, Zoom Server-to-Server
//! OAuth. Pipelines only name a credential and the host it goes to; the operator's config says
//! where it comes from ([`config`]); keys and client secrets come from the secrets file or the
//! environment.
//!
//! A minted token is cached until shortly before it expires and shared by every step and run
//! of the process; a 401 from the API refreshes it once (see [`crate::http::Gate`]). Plugins see
//! neither keys, tokens nor DPoP proofs: the gate injects them and scrubs them from whatever
//! comes back, as it does secrets.

mod check;
mod config;
mod dpop;
mod keys;
mod mint;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub use check::CheckReport;
pub use config::{CredentialsConfig, SourceConfig};
use config::{MintSpec, Source};
use dpop::DpopKey;

use crate::http::{GateClient, Injection};
use crate::pipeline::CredentialPlan;
use crate::secrets::{Secret, SecretSource};

/// Why a credential could not be had for a step. A person must act on every kind but
/// [`CredentialError::Unavailable`], which is retried like any transient failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error("credential {name}: {reason}")]
    Secret { name: String, reason: String },
    #[error("credential {name}: {reason}")]
    Config { name: String, reason: String },
    #[error("credential {name}: secret {secret} {reason}")]
    Key { name: String, secret: String, reason: String },
    #[error("cannot get a token for {name}: {endpoint} answered {error} — {hint}")]
    Refused { name: String, endpoint: String, status: u16, error: String, hint: String },
    #[error("cannot get a token for {name}: the token endpoint {endpoint} is unavailable ({reason})")]
    Unavailable { name: String, endpoint: String, reason: String, retry_after: Option<Duration> },
}

impl CredentialError {
    /// Whether trying again later may work (the token endpoint was down or throttled).
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialError::Unavailable { .. })
    }

    /// How long the token endpoint asked to be left alone (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CredentialError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How a token is presented: `Authorization: Bearer …`, or `Authorization: DPoP …` with a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// A minted token.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Secret,
    pub scheme: Scheme,
    pub lifetime: Duration,
    pub obtained: Instant,
}

impl Token {
    /// Good for a while yet: refreshed a fifth of its life (at most a minute) before it ends.
    pub(crate) fn fresh(&self) -> bool {
        let margin = (self.lifetime / 5).min(Duration::from_secs(60));
        self.obtained + self.lifetime.saturating_sub(margin) > Instant::now()
    }
}

/// Mints one credential and keeps its token.
pub(crate) struct Minter {
    name: String,
    spec: MintSpec,
    secrets: SecretSource,
    client: GateClient,
    dpop: Option<DpopKey>,
    /// The token endpoint's latest DPoP nonce.
    token_nonce: std::sync::Mutex<Option<String>>,
    /// The API's latest DPoP nonce (resource servers may ask for one too).
    api_nonce: std::sync::Mutex<Option<String>>,
    /// One mint at a time; everyone else waits for its outcome.
    cache: tokio::sync::Mutex<Slot>,
    /// Mint attempts finished (a waiter that sees this move shares that attempt's outcome).
    finished: AtomicU64,
    mints: AtomicU64,
}

#[derive(Default)]
struct Slot {
    token: Option<Token>,
    /// The last mint attempt's failure, and which attempt it was.
    failure: Option<(u64, CredentialError)>,
}

impl Minter {
    /// The cached token, or a new one. Callers that queued behind a mint that failed get that
    /// failure instead of each asking the endpoint again (an outage is not hammered).
    pub(crate) async fn token(&self) -> Result<Token, CredentialError> {
        let seen = self.finished.load(Ordering::Acquire);
        let mut slot = self.cache.lock().await;
        if let Some(t) = slot.token.as_ref().filter(|t| t.fresh()) {
            return Ok(t.clone());
        }
        if let Some((at, e)) = &slot.failure
            && *at >= seen
            && self.finished.load(Ordering::Acquire) > seen
        {
            return Err(e.clone());
        }
        let result = self.mint().await;
        let n = self.finished.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(t) => {
                self.mints.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: "offramp::credentials", credential = %self.name, lifetime_s = t.lifetime.as_secs(), "minted a token");
                slot.token = Some(t.clone());
                slot.failure = None;
                Ok(t)
            }
            Err(e) => {
                tracing::warn!(target: "offramp::credentials", credential = %self.name, "cannot mint: {e}");
                slot.failure = Some((n, e.clone()));
                Err(e)
            }
        }
    }

    /// After the API refused `stale` (401): a new token — unless another request already
    /// replaced it, then that one.
    pub(crate) async fn refresh(&self, stale: &Secret) -> Result<Token, CredentialError> {
        {
            let mut slot = self.cache.lock().await;
            match slot.token.as_ref() {
                Some(t) if t.value != *stale && t.fresh() => return Ok(t.clone()),
                Some(t) if t.value == *stale => slot.token = None,
                _ => {}
            }
        }
        self.token().await
    }

    /// The DPoP proof for one API request with `token` (none for a Bearer token).
    pub(crate) fn proof(&self, token: &Token, method: &str, url: &url::Url) -> Result<Option<String>, String> {
        match (&self.dpop, token.scheme) {
            (Some(key), Scheme::Dpop) => {
                let nonce = self.api_nonce.lock().ok().and_then(|n| n.clone());
                key.proof(method, url, nonce.as_deref(), Some(token.value.expose())).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The API asked for a DPoP nonce (`use_dpop_nonce`): use it from now on.
    pub(crate) fn set_api_nonce(&self, nonce: &str) {
        if let Ok(mut n) = self.api_nonce.lock() {
            *n = Some(nonce.to_string());
        }
    }

    /// Tokens minted so far.
    pub(crate) fn mints(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }
}

/// Every credential the process can inject: the operator's configured sources, and static
/// secrets for every other name.
pub struct Credentials {
    secrets: SecretSource,
    sources: BTreeMap<String, Source>,
    minters: BTreeMap<String, Arc<Minter>>,
    /// Secrets that hold a minted credential's key or client secret: never injected as such.
    key_material: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("configured", &self.sources.keys().collect::<Vec<_>>()).finish()
    }
}

impl Credentials {
    /// Checks the operator's `credentials:` (every problem at once, each naming its field).
    /// Keys are read when first used, so a broken key is reported by the step (and by
    /// `offramp credentials check`), not here.
    pub fn new(secrets: SecretSource, config: &CredentialsConfig, client: &GateClient) -> Result<Self, Vec<String>> {
        let sources = config::check(config)?;
        let mut minters = BTreeMap::new();
        for (name, source) in &sources {
            if let Source::Minted(spec) = source {
                let dpop = match &spec.kind {
                    config::MintKind::ClientCredentials { dpop: true, .. } => {
                        Some(DpopKey::generate().map_err(|e| vec![format!("credentials.{name}: {e}")])?)
                    }
                    _ => None,
                };
                minters.insert(
                    name.clone(),
                    Arc::new(Minter {
                        name: name.clone(),
                        spec: (**spec).clone(),
                        secrets: secrets.clone(),
                        client: client.clone(),
                        dpop,
                        token_nonce: Default::default(),
                        api_nonce: Default::default(),
                        cache: Default::default(),
                        finished: AtomicU64::new(0),
                        mints: AtomicU64::new(0),
                    }),
                );
            }
        }
        let key_material = minters
            .values()
            .flat_map(|m| m.spec.kind.secrets().into_iter().map(move |k| (k.to_string(), m.name.clone())))
            .flat_map(|(k, owner)| [(format!("{k}_FILE"), owner.clone()), (k, owner)])
            .collect();
        Ok(Credentials { secrets, sources, minters, key_material })
    }

    /// Static secrets only (no `credentials:` configured).
    pub fn static_only(secrets: SecretSource) -> Self {
        Credentials { secrets, sources: BTreeMap::new(), minters: BTreeMap::new(), key_material: BTreeMap::new() }
    }

    /// What to inject for one of a step's `credentials:` rules: the secret, or a token (minted
    /// now if the cached one is stale).
    pub(crate) async fn injection(&self, rule: &CredentialPlan) -> Result<Injection, CredentialError> {
        // A key or client secret goes to its token endpoint only, never to an API a step names.
        if let Some(owner) = self.key_material.get(&rule.secret) {
            return Err(CredentialError::Config {
                name: rule.secret.clone(),
                reason: format!(
                    "it holds the key or client secret of the minted credential {owner}, which offramp sends only to {owner}'s token endpoint; name `secret: {owner}` to have the token injected"
                ),
            });
        }
        match self.minters.get(&rule.secret) {
            Some(minter) => {
                let token = minter.token().await?;
                Ok(Injection::minted(rule.clone(), minter.clone(), token))
            }
            None => match self.secrets.get(&rule.secret) {
                Ok(value) => Ok(Injection::fixed(rule.clone(), value)),
                Err(e) => Err(CredentialError::Secret { name: rule.secret.clone(), reason: e.to_string() }),
            },
        }
    }

    /// Tokens minted so far for `name` (tests, `credentials check`).
    pub fn mints(&self, name: &str) -> u64 {
        self.minters.get(name).map_or(0, |m| m.mints())
    }

    /// The configured names, each with what it is.
    pub fn configured(&self) -> Vec<(String, String)> {
        self.sources
            .iter()
            .map(|(name, s)| {
                let what = match s {
                    Source::Static { .. } => "static secret".to_string(),
                    Source::Minted(spec) => spec.kind.describe(),
                };
                (name.clone(), what)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_shortly_before_it_ends() {
        let t = |lifetime: u64, age: u64| Token {
            value: Secret::new("t"),
            scheme: Scheme::Bearer,
            lifetime: Duration::from_secs(lifetime),
            obtained: Instant::now() - Duration::from_secs(age),
        };
        assert!(t(3600, 0).fresh());
        assert!(t(3600, 3500).fresh(), "an hour's token is kept until a minute before its end");
        assert!(!t(3600, 3541).fresh());
        assert!(t(10, 7).fresh(), "a 10 s token is kept 8 s");
        assert!(!t(10, 9).fresh());
    }
}
