//! The operator's network policy (the `network:` section of the server config), and the DNS
//! resolver that enforces its address rules on every connection the gate opens.
//!
//! ```yaml
//! network:
//!   # What any pipeline may grant its steps (absent: any public host).
//!   allow: [https://*.okta.com, https://slack.com, https://www.googleapis.com]
//!   # Hosts whose addresses may be loopback/private/link-local (an internal service).
//!   allow_private: [hr.corp.internal]
//!   limits: { max_requests: 100, max_request_bytes: 1MiB, max_response_bytes: 4MiB, request_timeout: 30s }
//!   # Vendor rate limits shared by every step and run (see limiter.rs).
//!   rate_limits: { "https://acme.okta.com": { per_minute: 600, concurrency: 20 } }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::HttpLimits;
use super::address::{self, Denied};
use crate::pipeline::Origin;

/// The `network:` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The cap over every step's `allow:`: `allow: [https://*.okta.com]`. Absent: no cap.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Hosts (names, `*.domain`, or addresses) that may resolve to non-public addresses:
    /// `allow_private: [hr.corp.internal, "10.1.2.3:8443"]`. A bare host opens every port of
    /// it; `host:port` opens only that port.
    #[serde(default)]
    pub allow_private: Vec<String>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Requests per minute and in flight to a host, from the whole process:
    /// `rate_limits: { "https://acme.okta.com": { per_minute: 600, concurrency: 20 } }`.
    /// The vendor's own rate-limit headers slow requests down further.
    #[serde(default)]
    pub rate_limits: std::collections::BTreeMap<String, super::limiter::RateLimitConfig>,
}

/// `limits:` as written; each absent field keeps its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests one step attempt may make: `max_requests: 100`.
    pub max_requests: Option<u32>,
    /// Largest request body: `max_request_bytes: 1MiB`.
    pub max_request_bytes: Option<String>,
    /// Largest response body: `max_response_bytes: 4MiB`.
    pub max_response_bytes: Option<String>,
    /// Longest single request (always within the step's `timeout:`): `request_timeout: 30s`.
    pub request_timeout: Option<String>,
    /// Longest URL: `max_url_bytes: 8KiB`.
    pub max_url_bytes: Option<String>,
    /// Most headers on a request or response: `max_headers: 100`.
    pub max_headers: Option<u32>,
    /// Largest total of header names and values: `max_header_bytes: 64KiB`.
    pub max_header_bytes: Option<String>,
    /// Request and response bodies one step attempt may move in all: `max_transfer_bytes: 32MiB`.
    pub max_transfer_bytes: Option<String>,
}

/// The operator's policy, checked.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    pub allow: Option<Vec<Origin>>,
    pub allow_private: Vec<PrivateHost>,
    pub limits: HttpLimits,
    /// `rate_limits:`, checked.
    pub rate_limits: Vec<(Origin, super::limiter::RateLimitConfig)>,
}

impl NetworkConfig {
    /// Checks every entry; all problems at once, each naming the entry.
    pub fn policy(&self) -> Result<NetworkPolicy, Vec<String>> {
        let mut errors = Vec::new();
        let allow = self.allow.as_ref().map(|list| {
            list.iter()
                .filter_map(|a| Origin::parse(a).map_err(|e| errors.push(format!("network.allow: {e}"))).ok())
                .collect()
        });
        let allow_private = self
            .allow_private
            .iter()
            .filter_map(|h| PrivateHost::parse(h).map_err(|e| errors.push(format!("network.allow_private: {e}"))).ok())
            .collect();
        let mut limits = HttpLimits::default();
        let l = &self.limits;
        if let Some(n) = l.max_requests {
            if n == 0 {
                errors.push("network.limits.max_requests: must be at least 1".into());
            }
            limits.max_requests = n;
        }
        if let Some(n) = l.max_headers {
            if n == 0 || n > 10_000 {
                errors.push("network.limits.max_headers: must be within 1..=10000".into());
            }
            limits.max_headers = n;
        }
        for (name, text, slot) in [
            ("max_request_bytes", &l.max_request_bytes, &mut limits.max_request_bytes),
            ("max_response_bytes", &l.max_response_bytes, &mut limits.max_response_bytes),
            ("max_url_bytes", &l.max_url_bytes, &mut limits.max_url_bytes),
            ("max_header_bytes", &l.max_header_bytes, &mut limits.max_header_bytes),
            ("max_transfer_bytes", &l.max_transfer_bytes, &mut limits.max_transfer_bytes),
        ] {
            if let Some(t) = text {
                match crate::pipeline::model::parse_bytes(t) {
                    Ok(n) if n > 0 => *slot = n,
                    Ok(_) => errors.push(format!("network.limits.{name}: must be more than 0")),
                    Err(e) => errors.push(format!("network.limits.{name}: {e}")),
                }
            }
        }
        if let Some(t) = &l.request_timeout {
            match crate::pipeline::model::parse_duration(t) {
                Ok(d) if d >= Duration::from_millis(100) => limits.max_request_timeout = d,
                Ok(_) => errors.push("network.limits.request_timeout: must be at least 100ms".into()),
                Err(e) => errors.push(format!("network.limits.request_timeout: {e}")),
            }
        }
        let mut rate_limits = Vec::new();
        for (host, config) in &self.rate_limits {
            match Origin::parse(host) {
                Ok(o) => rate_limits.push((o, *config)),
                Err(e) => errors.push(format!("network.rate_limits: {e}")),
            }
            if config.per_minute == Some(0) || config.concurrency == Some(0) {
                errors.push(format!("network.rate_limits.{host}: `per_minute` and `concurrency` must be at least 1"));
            }
        }
        if errors.is_empty() { Ok(NetworkPolicy { allow, allow_private, limits, rate_limits }) } else { Err(errors) }
    }
}

impl NetworkPolicy {
    /// The default policy, plus these hosts allowed non-public addresses (the demo's and the
    /// tests' mocks on loopback).
    pub fn with_private_hosts<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Result<NetworkPolicy, Vec<String>> {
        NetworkConfig { allow_private: hosts.into_iter().map(str::to_string).collect(), ..Default::default() }.policy()
    }

    /// Whether the operator lets `host` (a URL's host, lower-case; IPv6 in brackets) have a
    /// non-public address on `port` (`None`: whatever the port, for the resolver of requests
    /// to every port; only entries without a port count then).
    pub(crate) fn private_ok(&self, host: &str, port: Option<u16>) -> bool {
        self.allow_private.iter().any(|p| p.pattern.matches(host) && (p.port.is_none() || p.port == port))
    }

    /// Whether a `host:port` entry (not a bare host) lets this host have a private address on
    /// this port: requests that go through the gate's client for such entries.
    pub(crate) fn private_port_ok(&self, host: &str, port: u16) -> bool {
        self.allow_private.iter().any(|p| p.port == Some(port) && p.pattern.matches(host))
    }

    /// Why `ip`, the address of `host`, may not be connected to on `port`; `None` if it may.
    pub(crate) fn check_address(&self, host: &str, port: u16, ip: IpAddr) -> Option<String> {
        let why = address::classify(ip)?;
        if self.private_ok(host, Some(port)) {
            return None;
        }
        Some(denial(host, ip, why))
    }
}

fn denial(host: &str, ip: IpAddr, why: Denied) -> String {
    let shown = host.trim_start_matches('[').trim_end_matches(']');
    let literal = shown.parse::<IpAddr>().is_ok();
    let resolves = if literal { format!("{host} is") } else { format!("{host} resolves to {ip},") };
    format!(
        "{resolves} {why}; offramp only connects to public addresses unless the operator lists the host (or host:port) under `network.allow_private` or passes `--allow-private HOST`"
    )
}

/// An `allow_private` entry: a host pattern, and the one port it opens (none: every port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateHost {
    pub pattern: HostPattern,
    pub port: Option<u16>,
}

impl PrivateHost {
    /// `hr.corp.internal`, `*.corp.internal`, `10.1.2.3`, `[fd00::1]`, each optionally with
    /// `:PORT` (`hr.corp.internal:8443`, `[fd00::1]:8080`).
    pub fn parse(text: &str) -> Result<PrivateHost, String> {
        let t = text.trim();
        let split = if let Some(rest) = t.strip_prefix('[') {
            match rest.split_once(']') {
                Some((v6, "")) => Some((format!("[{v6}]"), None)),
                Some((v6, port)) => port.strip_prefix(':').map(|p| (format!("[{v6}]"), Some(p))),
                None => None,
            }
        } else if t.matches(':').count() == 1 {
            t.split_once(':').map(|(h, p)| (h.to_string(), Some(p)))
        } else {
            Some((t.to_string(), None))
        };
        let Some((host, port)) = split else {
            return Err(format!("`{t}` is not a host, host:port or [IPv6]:port"));
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("`{t}`: `{p}` is not a port (1-65535)")),
            },
        };
        Ok(PrivateHost { pattern: HostPattern::parse(&host)?, port })
    }
}

/// A host pattern: `hr.corp.internal`, `*.corp.internal`, `10.1.2.3`, `[fd00::1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The suffix, with its leading dot: `.corp.internal`.
    Subdomains(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim().to_ascii_lowercase();
        if t.contains("://") || t.contains('/') {
            return Err(format!("`{t}`: give a host name or address, optionally with `:PORT` (no scheme or path)"));
        }
        if let Some(ip) = address::numeric_host(&t) {
            return Ok(HostPattern::Exact(match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            }));
        }
        let (wild, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!("`{t}` is not a host name, `*.domain` or IP address"));
        }
        Ok(if wild { HostPattern::Subdomains(format!(".{name}")) } else { HostPattern::Exact(name.to_string()) })
    }

    fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
        }
    }
}

/// An address the policy refused, carried through reqwest's error chain to the gate.
#[derive(Debug)]
pub(crate) struct AddressDenied(pub(crate) String);

impl std::fmt::Display for AddressDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressDenied {}

/// The gate's DNS: resolves a name, then checks every address it got. If any is not allowed,
/// the request fails (a name that mixes public and private answers is an attack, not an
/// accident). reqwest connects only to the addresses returned here, so there is no second
/// lookup an attacker could answer differently (DNS rebinding).
pub(crate) struct CheckedResolver {
    pub(crate) policy: Arc<NetworkPolicy>,
    /// The resolver of the gate's client for `host:port` entries: the gate hands that client
    /// only requests to such a host on such a port, so those entries count here.
    pub(crate) ported: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let ported = self.ported;
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(AddressDenied(format!("{host} has no address"))) as _);
            }
            let ok = policy.private_ok(&host, None)
                || (ported && policy.allow_private.iter().any(|p| p.pattern.matches(&host)));
            for a in &addrs {
                if let Some(why) = address::classify(a.ip())
                    && !ok
                {
                    return Err(Box::new(AddressDenied(denial(&host, a.ip(), why))) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(private: &[&str]) -> NetworkPolicy {
        NetworkConfig { allow_private: private.iter().map(|s| s.to_string()).collect(), ..Default::default() }
            .policy()
            .unwrap()
    }

    #[test]
    fn private_addresses_need_the_operators_word() {
        let p = policy(&["127.0.0.2", "*.corp.internal", "[::1]"]);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(p.check_address("127.0.0.2", 80, "127.0.0.2".parse().unwrap()).is_none());
        assert!(p.check_address("hr.corp.internal", 80, "10.0.0.5".parse().unwrap()).is_none());
        assert!(p.check_address("[::1]", 80, "::1".parse().unwrap()).is_none());
        let why = p.check_address("127.0.0.1", 80, lo).unwrap();
        assert!(why.starts_with("127.0.0.1 is a loopback address;"), "{why}");
        let why = p.check_address("localhost", 80, lo).unwrap();
        assert!(why.starts_with("localhost resolves to 127.0.0.1, a loopback address"), "{why}");
        assert!(p.check_address("corp.internal", 80, "10.0.0.5".parse().unwrap()).is_some(), "not the apex");
        assert!(p.check_address("example.com", 80, "93.184.216.34".parse().unwrap()).is_none());
    }

    /// A bare host opens every port of it; `host:port` only that port.
    #[test]
    fn private_hosts_can_be_narrowed_to_a_port() {
        let p = policy(&["10.1.2.3:8443", "hr.corp.internal:443", "[fd00::1]:8080", "wiki.corp.internal"]);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(p.check_address("10.1.2.3", 8443, ip).is_none());
        let why = p.check_address("10.1.2.3", 22, ip).unwrap();
        assert!(why.contains("host:port") && why.contains("--allow-private"), "{why}");
        assert!(p.private_port_ok("hr.corp.internal", 443) && !p.private_port_ok("hr.corp.internal", 8080));
        assert!(!p.private_ok("hr.corp.internal", None), "the shared resolver does not open a ported host");
        assert!(p.private_ok("wiki.corp.internal", None) && p.private_ok("wiki.corp.internal", Some(1)));
        assert!(p.check_address("[fd00::1]", 8080, "fd00::1".parse().unwrap()).is_none());
        assert!(p.check_address("[fd00::1]", 8081, "fd00::1".parse().unwrap()).is_some());
        for bad in ["10.1.2.3:0", "10.1.2.3:http", "[fd00::1]x", "host:70000"] {
            assert!(PrivateHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_errors_are_all_reported() {
        let cfg = NetworkConfig {
            allow: Some(vec!["okta.com".into(), "https://*.okta.com".into()]),
            allow_private: vec!["http://10.0.0.1".into(), "bad host".into(), "0x7f000001".into()],
            limits: LimitsConfig {
                max_requests: Some(0),
                max_response_bytes: Some("lots".into()),
                request_timeout: Some("1ms".into()),
                ..Default::default()
            },
            rate_limits: Default::default(),
        };
        let errs = cfg.policy().unwrap_err();
        assert_eq!(errs.len(), 6, "{errs:#?}");
        let ok = NetworkConfig { allow_private: vec!["0x7f000001".into()], ..Default::default() }.policy().unwrap();
        assert_eq!(ok.allow_private, vec![PrivateHost { pattern: HostPattern::Exact("127.0.0.1".into()), port: None }]);
    }
}
