//! The `credentials:` section of the operator's config: where each credential a pipeline names
//! comes from. Keys and client secrets are never written here, only the names of the secrets
//! (environment variables or secrets-file entries) that hold them.
//!
//! ```yaml
//! credentials:
//!   GOOGLE_ACCESS_TOKEN:                 # the name a pipeline's `credentials: [{ secret: … }]` uses
//!     kind: google_service_account
//!     key: GOOGLE_SERVICE_ACCOUNT_KEY    # secret holding the JSON key file
//!     subject: offboarding-admin@acme.com
//!     scopes: [https://www.googleapis.com/auth/admin.directory.user]
//!   OKTA_API_TOKEN:
//!     kind: okta
//!     org_url: https://acme.okta.com
//!     client_id: 0oa1b2c3d4e5f6g7h8i9
//!     private_key: OKTA_SERVICE_APP_KEY
//!     scopes: [okta.users.manage]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// `credentials:` as written: credential name → where it comes from. A name not listed is a
/// static secret of that name (the environment or the secrets file), as always.
pub type CredentialsConfig = BTreeMap<String, SourceConfig>;

/// One credential's source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The secret's value as is (what a name not listed gets too):
    /// `{ kind: static, check: https://slack.com/api/auth.test }`.
    Static {
        /// The harmless read `offramp credentials check` makes with it (none: only checks the
        /// secret is set).
        #[serde(default)]
        check: Option<String>,
        /// How it is sent on that read (default `Bearer {secret}`): `format: "SSWS {secret}"`.
        #[serde(default)]
        format: Option<String>,
    },
    /// Google Workspace: a service account with domain-wide delegation, acting as `subject`.
    GoogleServiceAccount {
        /// The secret holding the JSON key file (or a PEM key, then give `client_email`):
        /// `key: GOOGLE_SERVICE_ACCOUNT_KEY`.
        key: String,
        /// The admin the service account acts as: `subject: offboarding-admin@acme.com`.
        subject: String,
        /// `scopes: [https://www.googleapis.com/auth/admin.directory.user]`.
        scopes: Vec<String>,
        /// Default: the key file's `client_email`.
        #[serde(default)]
        client_email: Option<String>,
        /// Default: the key file's `token_uri`, else `https://oauth2.googleapis.com/token`.
        #[serde(default)]
        token_url: Option<String>,
        /// Default: `https://admin.googleapis.com/admin/directory/v1/users?customer=my_customer&maxResults=1`.
        #[serde(default)]
        check: Option<String>,
    },
    /// Microsoft Graph (Entra ID): app-only access with the client credentials grant, by a
    /// client secret or a certificate.
    Microsoft {
        /// `tenant: acme.onmicrosoft.com` (or the tenant id).
        tenant: String,
        /// The app registration's Application (client) ID.
        client_id: String,
        /// The secret holding a client secret's Value: `client_secret: GRAPH_CLIENT_SECRET`.
        #[serde(default)]
        client_secret: Option<String>,
        /// Or a certificate: the secret holding its private key (PEM)…
        #[serde(default)]
        private_key: Option<String>,
        /// …and its thumbprint as the Entra portal shows it: `certificate_thumbprint: 5D7E…`.
        #[serde(default)]
        certificate_thumbprint: Option<String>,
        /// Default `[https://graph.microsoft.com/.default]`.
        #[serde(default)]
        scopes: Option<Vec<String>>,
        /// Default `https://login.microsoftonline.com`.
        #[serde(default)]
        login_url: Option<String>,
        /// Default `https://graph.microsoft.com/v1.0/users?$top=1&$select=id`.
        #[serde(default)]
        check: Option<String>,
    },
    /// Okta: an API Services app, client credentials with `private_key_jwt`, DPoP by default.
    Okta {
        /// `org_url: https://acme.okta.com`
        org_url: String,
        client_id: String,
        /// The secret holding the private key: the JWK JSON Okta generated, or a PEM.
        private_key: String,
        /// The key's `kid` in Okta (default: the JWK's own `kid`).
        #[serde(default)]
        key_id: Option<String>,
        /// `scopes: [okta.users.read, okta.users.manage]`
        scopes: Vec<String>,
        /// Whether the app requires DPoP proofs (Okta's default for new apps): `dpop: true`.
        #[serde(default = "yes")]
        dpop: bool,
        /// Default `{org_url}/oauth2/v1/token`.
        #[serde(default)]
        token_url: Option<String>,
        /// Default `{org_url}/api/v1/users?limit=1`.
        #[serde(default)]
        check: Option<String>,
    },
    /// GitHub: a GitHub App's installation access token.
    GithubApp {
        app_id: u64,
        /// The installation on your organization (in its Configure page's URL).
        installation_id: u64,
        /// The secret holding the app's private key (the `.pem` GitHub generated).
        private_key: String,
        /// Default `https://api.github.com` (GitHub Enterprise Server: `https://HOST/api/v3`).
        #[serde(default)]
        api_url: Option<String>,
        /// Default `{api_url}/installation/repositories?per_page=1`.
        #[serde(default)]
        check: Option<String>,
    },
    /// Zoom: a Server-to-Server OAuth app (`account_credentials` grant).
    Zoom {
        account_id: String,
        client_id: String,
        /// The secret holding the client secret: `client_secret: ZOOM_CLIENT_SECRET`.
        client_secret: String,
        /// Default `https://zoom.us/oauth/token`.
        #[serde(default)]
        token_url: Option<String>,
        /// Default `https://api.zoom.us/v2/users?page_size=1`.
        #[serde(default)]
        check: Option<String>,
    },
}

fn yes() -> bool {
    true
}

/// A credential's source, checked: what the host does to get the value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Static { check: Option<url::Url>, format: String },
    Minted(Box<MintSpec>),
}

/// How to mint one credential.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MintSpec {
    pub kind: MintKind,
    pub token_url: url::Url,
    /// `token_url` was written in the config (a Google key file's `token_uri` yields to it).
    pub explicit_token_url: bool,
    pub check: url::Url,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MintKind {
    /// RFC 7523 JWT bearer grant, signed with a Google service account key.
    Google {
        key: String,
        subject: String,
        scopes: Vec<String>,
        client_email: Option<String>,
    },
    /// Client credentials: Microsoft (secret or certificate assertion) and Okta (key assertion).
    ClientCredentials {
        vendor: Vendor,
        client_id: String,
        auth: ClientAuth,
        scopes: Vec<String>,
        dpop: bool,
    },
    GithubApp {
        app_id: u64,
        private_key: String,
    },
    Zoom {
        account_id: String,
        client_id: String,
        client_secret: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vendor {
    Microsoft,
    Okta,
}

/// How a client proves itself at the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClientAuth {
    /// `client_secret` in the form body (the secret's name).
    Secret(String),
    /// `private_key_jwt`: an RS256 assertion with this key (the secret's name), `kid` and/or
    /// `x5t` (base64url of the certificate's SHA-1 thumbprint).
    Assertion { key: String, kid: Option<String>, x5t: Option<String> },
}

impl MintKind {
    /// What it is, for people: `Google service account`, `Okta private_key_jwt + DPoP`...
    pub(crate) fn describe(&self) -> String {
        match self {
            MintKind::Google { subject, .. } => format!("Google service account acting as {subject}"),
            MintKind::ClientCredentials { vendor: Vendor::Microsoft, auth: ClientAuth::Secret(_), .. } => {
                "Microsoft client credentials (client secret)".into()
            }
            MintKind::ClientCredentials { vendor: Vendor::Microsoft, .. } => {
                "Microsoft client credentials (certificate)".into()
            }
            MintKind::ClientCredentials { vendor: Vendor::Okta, dpop, .. } => {
                format!("Okta private_key_jwt{}", if *dpop { " + DPoP" } else { "" })
            }
            MintKind::GithubApp { app_id, .. } => format!("GitHub App {app_id} installation token"),
            MintKind::Zoom { .. } => "Zoom Server-to-Server OAuth".into(),
        }
    }

    /// The secrets it reads (keys and client secrets).
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            MintKind::Google { key, .. } => vec![key],
            MintKind::ClientCredentials { auth: ClientAuth::Secret(s), .. } => vec![s],
            MintKind::ClientCredentials { auth: ClientAuth::Assertion { key, .. }, .. } => vec![key],
            MintKind::GithubApp { private_key, .. } => vec![private_key],
            MintKind::Zoom { client_secret, .. } => vec![client_secret],
        }
    }
}

/// Whether `name` can name a secret (upper-case letters, digits and `_`, not starting with a
/// digit), as a pipeline's `secret:` must.
pub(crate) fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Checks every entry; all problems at once, each naming the entry and field.
pub(crate) fn check(config: &CredentialsConfig) -> Result<BTreeMap<String, Source>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (name, source) in config {
        if !is_secret_name(name) {
            errors.push(format!(
                "credentials.{name}: a credential's name is what pipelines write as `secret:` — upper-case letters, digits and `_` (e.g. `{}`)",
                name.to_ascii_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            ));
        }
        let mut mine = Vec::new();
        let mut err = |field: &str, msg: String| mine.push(format!("credentials.{name}.{field}: {msg}"));
        let checked = match source {
            SourceConfig::Static { check, format } => {
                let check = check.as_deref().and_then(|c| parse_url(c).map_err(|e| err("check", e)).ok());
                let format = format.clone().unwrap_or_else(|| "Bearer {secret}".into());
                if !format.contains("{secret}") {
                    err("format", "must contain `{secret}` where the secret goes".into());
                }
                Some(Source::Static { check, format })
            }
            other => mint_spec(other, &mut err).map(|s| Source::Minted(Box::new(s))),
        };
        if let Some(s) = checked {
            out.insert(name.clone(), s);
        }
        errors.extend(mine);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn mint_spec(source: &SourceConfig, err: &mut dyn FnMut(&str, String)) -> Option<MintSpec> {
    fn secret_in(err: &mut dyn FnMut(&str, String), field: &str, value: &str) -> String {
        if !is_secret_name(value) {
            err(
                field,
                format!(
                    "`{value}` is not a secret's name: give the NAME of an environment variable or secrets-file entry holding it (upper-case letters, digits, `_`), never the value itself"
                ),
            );
        }
        value.to_string()
    }
    macro_rules! secret {
        ($field:expr, $value:expr) => {
            secret_in(err, $field, $value)
        };
    }
    let explicit = match source {
        SourceConfig::GoogleServiceAccount { token_url, .. } => token_url.is_some(),
        _ => true,
    };
    // A base URL already reported: the URLs made from it are not reported again.
    let mut bad_base = false;
    let (kind, token_url, check) = match source {
        SourceConfig::Static { .. } => return None,
        SourceConfig::GoogleServiceAccount { key, subject, scopes, client_email, token_url, check } => {
            let key = secret!("key", key);
            if !subject.contains('@') {
                err("subject", format!("`{subject}` is not an email: give the admin user the service account acts as"));
            }
            if scopes.is_empty() {
                err("scopes", "give at least one scope (see README, Connecting your tenants)".into());
            }
            let kind = MintKind::Google {
                key,
                subject: subject.clone(),
                scopes: scopes.clone(),
                client_email: client_email.clone(),
            };
            // The key file's token_uri is read when the key is; this is the fallback.
            let token = token_url.clone().unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
            let check = check.clone().unwrap_or_else(|| {
                "https://admin.googleapis.com/admin/directory/v1/users?customer=my_customer&maxResults=1".into()
            });
            (kind, token, check)
        }
        SourceConfig::Microsoft {
            tenant,
            client_id,
            client_secret,
            private_key,
            certificate_thumbprint,
            scopes,
            login_url,
            check,
        } => {
            let auth = match (client_secret, private_key, certificate_thumbprint) {
                (Some(s), None, None) => ClientAuth::Secret(secret!("client_secret", s)),
                (None, Some(k), Some(t)) => {
                    let x5t = thumbprint(t).map_err(|e| err("certificate_thumbprint", e)).ok();
                    ClientAuth::Assertion { key: secret!("private_key", k), kid: None, x5t }
                }
                (None, Some(_), None) => {
                    err(
                        "certificate_thumbprint",
                        "a certificate needs its thumbprint (Entra portal → the app → Certificates & secrets)".into(),
                    );
                    return None;
                }
                _ => {
                    err(
                        "client_secret",
                        "give either `client_secret` or `private_key` with `certificate_thumbprint`".into(),
                    );
                    return None;
                }
            };
            let base = login_url.clone().unwrap_or_else(|| "https://login.microsoftonline.com".into());
            let kind = MintKind::ClientCredentials {
                vendor: Vendor::Microsoft,
                client_id: client_id.clone(),
                auth,
                scopes: scopes.clone().unwrap_or_else(|| vec!["https://graph.microsoft.com/.default".into()]),
                dpop: false,
            };
            let token = format!("{}/{tenant}/oauth2/v2.0/token", base.trim_end_matches('/'));
            let check =
                check.clone().unwrap_or_else(|| "https://graph.microsoft.com/v1.0/users?$top=1&$select=id".into());
            (kind, token, check)
        }
        SourceConfig::Okta { org_url, client_id, private_key, key_id, scopes, dpop, token_url, check } => {
            if let Err(e) = parse_url(org_url) {
                err("org_url", format!("{e}; write your Okta org's URL, e.g. https://acme.okta.com"));
                bad_base = true;
            }
            if scopes.is_empty() {
                err("scopes", "give the okta.* scopes granted to the app, e.g. [okta.users.manage]".into());
            }
            let kind = MintKind::ClientCredentials {
                vendor: Vendor::Okta,
                client_id: client_id.clone(),
                auth: ClientAuth::Assertion {
                    key: secret!("private_key", private_key),
                    kid: key_id.clone(),
                    x5t: None,
                },
                scopes: scopes.clone(),
                dpop: *dpop,
            };
            let org = org_url.trim_end_matches('/');
            let token = token_url.clone().unwrap_or_else(|| format!("{org}/oauth2/v1/token"));
            let check = check.clone().unwrap_or_else(|| format!("{org}/api/v1/users?limit=1"));
            (kind, token, check)
        }
        SourceConfig::GithubApp { app_id, installation_id, private_key, api_url, check } => {
            let kind = MintKind::GithubApp { app_id: *app_id, private_key: secret!("private_key", private_key) };
            let api = api_url.clone().unwrap_or_else(|| "https://api.github.com".into());
            let api = api.trim_end_matches('/');
            let token = format!("{api}/app/installations/{installation_id}/access_tokens");
            let check = check.clone().unwrap_or_else(|| format!("{api}/installation/repositories?per_page=1"));
            (kind, token, check)
        }
        SourceConfig::Zoom { account_id, client_id, client_secret, token_url, check } => {
            let kind = MintKind::Zoom {
                account_id: account_id.clone(),
                client_id: client_id.clone(),
                client_secret: secret!("client_secret", client_secret),
            };
            let token = token_url.clone().unwrap_or_else(|| "https://zoom.us/oauth/token".into());
            let check = check.clone().unwrap_or_else(|| "https://api.zoom.us/v2/users?page_size=1".into());
            (kind, token, check)
        }
    };
    if bad_base {
        return None;
    }
    // A URL derived from another field is reported at the field the user wrote.
    let (token_field, check_field) = match source {
        SourceConfig::Okta { token_url, check, .. } => (
            if token_url.is_some() { "token_url" } else { "org_url" },
            if check.is_some() { "check" } else { "org_url" },
        ),
        SourceConfig::GithubApp { check, .. } => ("api_url", if check.is_some() { "check" } else { "api_url" }),
        SourceConfig::Microsoft { .. } => ("login_url", "check"),
        _ => ("token_url", "check"),
    };
    let token_url = parse_url(&token_url).map_err(|e| err(token_field, e)).ok();
    let check = match parse_url(&check) {
        Ok(u) => Some(u),
        Err(_) if token_url.is_none() && check_field == token_field => None,
        Err(e) => {
            err(check_field, e);
            None
        }
    };
    Some(MintSpec { kind, token_url: token_url?, explicit_token_url: explicit, check: check? })
}

fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("`{text}`: only https:// (or http:// for a local test server)"));
    }
    Ok(url)
}

/// The certificate's SHA-1 thumbprint (hex, as the Entra portal shows it, `:` allowed) as a
/// JWT `x5t`: base64url of the 20 bytes.
fn thumbprint(text: &str) -> Result<String, String> {
    use base64::Engine as _;
    let hexed: String = text.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    let bytes = hex::decode(&hexed).map_err(|_| format!("`{text}` is not a hex thumbprint"))?;
    if bytes.len() != 20 {
        return Err(format!("`{text}` is {} bytes; a SHA-1 thumbprint is 20 (40 hex digits)", bytes.len()));
    }
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<CredentialsConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_parses_and_checks() {
        let cfg = parse(
            r#"
GOOGLE_ACCESS_TOKEN: { kind: google_service_account, key: GOOGLE_KEY, subject: admin@acme.com, scopes: [s1] }
GRAPH_ACCESS_TOKEN: { kind: microsoft, tenant: acme.onmicrosoft.com, client_id: c1, client_secret: GRAPH_SECRET }
GRAPH_CERT: { kind: microsoft, tenant: t, client_id: c1, private_key: GRAPH_KEY, certificate_thumbprint: "5D:7E:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11" }
OKTA_API_TOKEN: { kind: okta, org_url: "https://acme.okta.com/", client_id: 0oa1, private_key: OKTA_KEY, scopes: [okta.users.read] }
GITHUB_TOKEN: { kind: github_app, app_id: 12, installation_id: 34, private_key: GH_KEY }
ZOOM_ACCESS_TOKEN: { kind: zoom, account_id: a, client_id: c, client_secret: ZOOM_SECRET }
SLACK_ADMIN_TOKEN: { kind: static }
"#,
        )
        .unwrap();
        let sources = check(&cfg).unwrap();
        assert_eq!(sources.len(), 7);
        let Source::Minted(okta) = &sources["OKTA_API_TOKEN"] else { panic!() };
        assert_eq!(okta.token_url.as_str(), "https://acme.okta.com/oauth2/v1/token");
        assert_eq!(okta.check.as_str(), "https://acme.okta.com/api/v1/users?limit=1");
        assert!(matches!(okta.kind, MintKind::ClientCredentials { dpop: true, .. }));
        let Source::Minted(gh) = &sources["GITHUB_TOKEN"] else { panic!() };
        assert_eq!(gh.token_url.as_str(), "https://api.github.com/app/installations/34/access_tokens");
        let Source::Minted(cert) = &sources["GRAPH_CERT"] else { panic!() };
        let MintKind::ClientCredentials { auth: ClientAuth::Assertion { x5t: Some(x5t), .. }, .. } = &cert.kind else {
            panic!()
        };
        assert_eq!(x5t, "XX4AESIzRFVmd4iZqrvM3e7_ABE");
    }

    #[test]
    fn mistakes_are_all_reported_with_their_field() {
        assert!(parse("X: { kind: okta, org: y }").unwrap_err().contains("unknown field"), "deny_unknown_fields");
        assert!(parse("X: { kind: gogle }").is_err());
        let cfg = parse(
            r#"
lower_name: { kind: static, format: "Bearer x" }
G: { kind: google_service_account, key: "-----BEGIN PRIVATE KEY-----", subject: admin, scopes: [] }
M: { kind: microsoft, tenant: t, client_id: c }
M2: { kind: microsoft, tenant: t, client_id: c, private_key: K, certificate_thumbprint: abc }
Z: { kind: zoom, account_id: a, client_id: c, client_secret: S, token_url: "ftp://x" }
"#,
        )
        .unwrap();
        let errors = check(&cfg).unwrap_err();
        let text = errors.join("\n");
        for want in [
            "credentials.lower_name: a credential's name",
            "credentials.lower_name.format: must contain `{secret}`",
            "credentials.G.key: `-----BEGIN PRIVATE KEY-----` is not a secret's name",
            "credentials.G.subject:",
            "credentials.G.scopes:",
            "credentials.M.client_secret: give either",
            "credentials.M2.certificate_thumbprint: `abc` is not a hex thumbprint",
            "credentials.Z.token_url: `ftp://x`",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(errors.len(), 8, "{text}");
    }
}
