//! Which headers a plugin may set, and how many: hop-by-hop headers are the client's,
//! negotiation and credential headers are the host's on a request it injects into.

use reqwest::header::HeaderName;

use super::{HttpFailure, HttpLimits};

/// Header count and total size, checked before a request goes out.
pub(super) fn check_headers(headers: &[(String, String)], limits: &HttpLimits, what: &str) -> Result<(), HttpFailure> {
    if headers.len() > limits.max_headers as usize {
        return Err(HttpFailure::Invalid(format!(
            "the {what} has {} headers, over the limit of {} (`network.limits.max_headers`)",
            headers.len(),
            limits.max_headers
        )));
    }
    let bytes: u64 = headers.iter().map(|(n, v)| (n.len() + v.len()) as u64).sum();
    if bytes > limits.max_header_bytes {
        return Err(HttpFailure::Invalid(format!(
            "the {what}'s headers are {bytes} bytes, over the limit of {} (`network.limits.max_header_bytes`)",
            limits.max_header_bytes
        )));
    }
    Ok(())
}

pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "content-length"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
    )
}

/// Headers that choose how the answer is encoded or which part of it comes back; dropped from
/// plugin requests to hosts we inject into (the host negotiates there).
pub(super) fn is_negotiation_header(name: &HeaderName) -> bool {
    matches!(name.as_str(), "accept-encoding" | "range" | "if-range")
}

/// Headers that carry credentials; dropped from plugin requests to hosts we inject into.
pub(super) fn is_credential_header(name: &HeaderName) -> bool {
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "api-key" | "dpop")
}
