//! `offramp credentials check`: for each configured credential, get it (minting it when it is
//! minted) and make one harmless read of its vendor's API with it, through the same gate plugin
//! traffic takes.

use std::time::Duration;

use super::Credentials;
use super::config::Source;
use crate::http::{Gate, GateClient, OutgoingRequest};
use crate::pipeline::{CredentialPlan, Grant, Origin};
use crate::text::truncate;

/// One credential's check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub name: String,
    /// `Okta private_key_jwt + DPoP`, `static secret`...
    pub kind: String,
    /// What was checked and how it went, or why it failed.
    pub outcome: Result<String, String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

impl Credentials {
    /// Checks every configured credential, in name order.
    pub async fn check(&self, client: &GateClient) -> Vec<CheckReport> {
        let mut out = Vec::new();
        for (name, kind) in self.configured() {
            let outcome = self.check_one(&name, client).await;
            out.push(CheckReport { name, kind, outcome });
        }
        out
    }

    async fn check_one(&self, name: &str, client: &GateClient) -> Result<String, String> {
        let (url, format) = match self.sources.get(name) {
            Some(Source::Static { check: None, .. }) => {
                return self
                    .secrets
                    .get(name)
                    .map(|_| "set (no `check:` URL to try it on)".into())
                    .map_err(|e| e.to_string());
            }
            Some(Source::Static { check: Some(url), format }) => (url.clone(), format.clone()),
            Some(Source::Minted(spec)) => (spec.check.clone(), "Bearer {secret}".to_string()),
            None => return Err("not configured".into()),
        };
        let origin = Origin::parse(&url.origin().ascii_serialization()).map_err(|e| format!("check URL: {e}"))?;
        let rule =
            CredentialPlan { origin: origin.clone(), secret: name.to_string(), header: "Authorization".into(), format };
        let injection = self.injection(&rule).await.map_err(|e| e.to_string())?;
        let minted = self.minters.get(name).map(|m| m.mints() > 0).unwrap_or(false);
        let gate = Gate::new(
            client,
            vec![Grant::origin(origin)],
            vec![injection],
            false,
            tokio::time::Instant::now() + CHECK_TIMEOUT,
        );
        let req = OutgoingRequest {
            method: "GET".into(),
            url: url.to_string(),
            headers: vec![("accept".into(), "application/json".into())],
            body: None,
            body_charged: false,
        };
        let shown = format!("GET {}{}", url.origin().ascii_serialization(), url.path());
        match gate.send(req).await {
            Ok(resp) if (200..300).contains(&resp.status) => {
                Ok(format!("{}{shown} → {}", if minted { "token minted; " } else { "" }, resp.status))
            }
            Ok(resp) => {
                let body = String::from_utf8_lossy(&resp.body);
                Err(format!("{shown} → {}: {}", resp.status, truncate(body.trim(), 300)))
            }
            Err(e) => Err(match gate.credential_failure() {
                Some(c) => c.to_string(),
                None => format!("{shown}: {e}"),
            }),
        }
    }
}
