//! `scheme://host[:port]`, the unit of `allow:`, `credentials:` and the operator's network
//! policy; `*.example.com` stands for every subdomain of example.com.

use serde::{Deserialize, Serialize};

/// `scheme://host:port`. `host` is lower-case; a wildcard host is stored as `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Stands in for `*` while the URL parser reads a wildcard origin.
const WILDCARD_LABEL: &str = "offramp-wildcard-label";

impl Origin {
    /// Parses `https://example.okta.com`, `http://127.0.0.1:8080`, `https://*.okta.com`; no
    /// path, user or query. Numeric host spellings are normalised (`http://2130706433` is
    /// `http://127.0.0.1`), so what is checked is what is connected to.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let t = text.trim();
        if !t.contains("://") {
            return Err(format!("malformed host `{t}`: write it with its scheme, e.g. `https://{t}`"));
        }
        let wildcard = t.split_once("://").is_some_and(|(_, rest)| rest.starts_with("*."));
        let parsed_text =
            if wildcard { t.replacen("://*.", &format!("://{WILDCARD_LABEL}."), 1) } else { t.to_string() };
        let url = url::Url::parse(&parsed_text).map_err(|e| format!("malformed host `{t}`: {e}"))?;
        let scheme = url.scheme().to_string();
        if scheme != "https" && scheme != "http" {
            return Err(format!("malformed host `{t}`: only http and https are allowed"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("malformed host `{t}`: no user or password in hosts; use `credentials:`"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("malformed host `{t}`: give only scheme, host and port (no path, query or fragment)"));
        }
        let mut host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("malformed host `{t}`: no host name"))?
            .to_ascii_lowercase();
        if host.contains('*') {
            return Err(format!(
                "malformed host `{t}`: `*` may only stand for the leftmost labels, as in `https://*.example.com`"
            ));
        }
        if wildcard {
            let Some(domain) = host.strip_prefix(&format!("{WILDCARD_LABEL}.")) else {
                return Err(format!("malformed host `{t}`: a wildcard needs a domain name after `*.`"));
            };
            if !domain.contains('.') || domain.parse::<std::net::Ipv4Addr>().is_ok() {
                return Err(format!(
                    "malformed host `{t}`: `*.{domain}` is too broad; name the organisation's domain, e.g. `*.example.com`"
                ));
            }
            host = format!("*.{domain}");
        }
        let port = url.port_or_known_default().ok_or_else(|| format!("malformed host `{t}`: no port"))?;
        Ok(Origin { scheme, host, port })
    }

    /// Whether this is a `*.example.com` pattern.
    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// Whether a request URL goes to this origin (for a wildcard: to a subdomain, at any depth,
    /// of its domain; not the domain itself).
    pub fn matches(&self, url: &url::Url) -> bool {
        url.scheme() == self.scheme
            && url.port_or_known_default() == Some(self.port)
            && match url.host() {
                Some(url::Host::Domain(d)) => self.host_matches(&d.to_ascii_lowercase()),
                // Both sides are the URL parser's canonical spelling.
                Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Some(self.host.as_str()) == url.host_str(),
                None => false,
            }
    }

    fn host_matches(&self, host: &str) -> bool {
        match self.host.strip_prefix('*') {
            Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            None => self.host == host,
        }
    }

    /// Whether everything `other` allows, this allows too (the operator's cap over a step's
    /// `allow:` entry).
    pub fn covers(&self, other: &Origin) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        match (self.host.strip_prefix('*'), other.host.strip_prefix('*')) {
            (None, None) => self.host == other.host,
            (None, Some(_)) => false,
            (Some(_), None) => self.host_matches(&other.host),
            (Some(mine), Some(theirs)) => theirs.ends_with(mine),
        }
    }
}

/// One `allow:` entry after validation: an origin, optionally narrowed to some methods and
/// path prefixes (empty: any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(flatten)]
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl Grant {
    /// The whole origin, any method and path.
    pub fn origin(origin: Origin) -> Grant {
        Grant { origin, methods: Vec::new(), paths: Vec::new() }
    }

    /// Whether this grant lets `method` (upper-case) reach `url`.
    pub fn permits(&self, method: &str, url: &url::Url) -> bool {
        self.origin.matches(url)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| path_within(url.path(), p)))
    }
}

/// `/orgs/acme/` covers `/orgs/acme/members`; `/orgs/acme` covers itself and `/orgs/acme/…`
/// but not `/orgs/acme-evil`. Paths are compared after the URL parser resolved `.`, `..` and
/// their percent-encoded forms.
fn path_within(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin)?;
        if !self.methods.is_empty() {
            write!(f, " {}", self.methods.join("|"))?;
        }
        if !self.paths.is_empty() {
            write!(f, " {}", self.paths.join(" "))?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let w = o("https://*.okta.com");
        assert_eq!(w.host, "*.okta.com");
        assert!(w.matches(&url("https://acme.okta.com/api")));
        assert!(w.matches(&url("https://a.b.OKTA.com/")));
        assert!(!w.matches(&url("https://okta.com/")), "not the apex");
        assert!(!w.matches(&url("https://evilokta.com/")));
        assert!(!w.matches(&url("https://acme.okta.com.evil.net/")));
        assert!(!w.matches(&url("http://acme.okta.com/")), "scheme");
        assert!(!w.matches(&url("https://acme.okta.com:8443/")), "port");
    }

    #[test]
    fn numeric_spellings_are_normalised() {
        assert_eq!(o("http://2130706433:8080").host, "127.0.0.1");
        assert_eq!(o("http://0x7f000001").host, "127.0.0.1");
        assert!(o("http://127.0.0.1:9").matches(&url("http://0x7f000001:9/")));
        assert!(o("http://[::1]:9").matches(&url("http://[0:0::1]:9/")));
        assert!(o("http://[::ffff:127.0.0.1]:9").matches(&url("http://[::ffff:7f00:1]:9/")));
    }

    #[test]
    fn bad_wildcards_say_how_to_write_them() {
        for bad in ["https://*.com", "https://*", "https://a.*.com", "https://*okta.com", "https://*.1.2.3"] {
            let err = Origin::parse(bad).unwrap_err();
            assert!(err.contains("malformed host"), "{bad}: {err}");
        }
    }

    #[test]
    fn grants_narrow_methods_and_paths() {
        let g = Grant {
            origin: o("https://api.github.com"),
            methods: vec!["GET".into(), "DELETE".into()],
            paths: vec!["/orgs/acme/members/".into(), "/user".into()],
        };
        assert!(g.permits("DELETE", &url("https://api.github.com/orgs/acme/members/alice")));
        assert!(g.permits("GET", &url("https://api.github.com/user")));
        assert!(g.permits("GET", &url("https://api.github.com/user/keys")));
        assert!(!g.permits("GET", &url("https://api.github.com/users")), "prefix is per segment");
        assert!(!g.permits("POST", &url("https://api.github.com/user")));
        assert!(!g.permits("GET", &url("https://api.github.com/orgs/acme/members/../../other/members/x")));
        assert!(!g.permits("GET", &url("https://api.github.com/orgs/acme/members/%2e%2e/%2e%2e/x")));
        assert!(Grant::origin(o("https://api.github.com")).permits("PATCH", &url("https://api.github.com/x")));
    }

    #[test]
    fn covering() {
        let cap = o("https://*.okta.com");
        assert!(cap.covers(&o("https://acme.okta.com")));
        assert!(cap.covers(&o("https://*.eu.okta.com")));
        assert!(cap.covers(&o("https://*.okta.com")));
        assert!(!cap.covers(&o("https://okta.com")));
        assert!(!cap.covers(&o("https://acme.okta.com:444")));
        assert!(!o("https://acme.okta.com").covers(&o("https://*.okta.com")));
        assert!(o("https://acme.okta.com").covers(&o("https://acme.okta.com:443")));
    }
}
