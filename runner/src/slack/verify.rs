//! Is this request really from Slack? `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`
//! with the app's signing secret, compared in constant time over the raw bytes before anything
//! parses them, with a timestamp no more than five minutes away.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secrets::Secret;

/// How far a request's timestamp may be from our clock, either way.
pub(crate) const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request was refused. Callers answer 401 without saying which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    MissingHeader,
    #[error("X-Slack-Signature or X-Slack-Request-Timestamp is given more than once")]
    DuplicateHeader,
    #[error("the timestamp is not a number")]
    BadTimestamp,
    #[error("the timestamp is more than five minutes away")]
    Stale,
    #[error("the signature is not `v0=` and 64 lower-case hex digits")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks Slack signatures with the signing secret.
#[derive(Clone)]
pub(crate) struct Verifier {
    secret: Secret,
}

impl Verifier {
    pub(crate) fn new(secret: Secret) -> Self {
        Verifier { secret }
    }

    /// Verifies a request. On success returns the signature (lower-case hex), which
    /// identifies this exact request for replay protection.
    pub(crate) fn verify(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<String, VerifyError> {
        // Exactly one of each, as Slack sends them: with two, which one was signed is a guess.
        for name in ["x-slack-request-timestamp", "x-slack-signature"] {
            if headers.get_all(name).iter().count() > 1 {
                return Err(VerifyError::DuplicateHeader);
            }
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let (Some(ts), Some(sig)) = (header("x-slack-request-timestamp"), header("x-slack-signature")) else {
            return Err(VerifyError::MissingHeader);
        };
        let ts_num: i64 = ts.parse().map_err(|_| VerifyError::BadTimestamp)?;
        if now_secs.abs_diff(ts_num) > MAX_SKEW_SECS.unsigned_abs() {
            return Err(VerifyError::Stale);
        }
        let hex_part = sig.strip_prefix("v0=").ok_or(VerifyError::Malformed)?;
        // Slack signs in lower-case hex, and its SDKs compare the strings: so do we.
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(VerifyError::Malformed);
        }
        let given = hex::decode(hex_part).map_err(|_| VerifyError::Malformed)?;
        let expected = self.mac(ts, body);
        if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
            Ok(hex::encode(given))
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn mac(&self, ts: &str, body: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(b"v0:");
        mac.update(ts.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The `X-Slack-Signature` value Slack would send.
    pub(crate) fn sign(&self, ts: i64, body: &[u8]) -> String {
        format!("v0={}", hex::encode(self.mac(&ts.to_string(), body)))
    }
}

/// The signatures this process has seen lately (within the skew window, both ways, and a
/// minute more): a replay to the same process is refused here, before any database work.
/// Only verified requests are remembered, so only Slack can fill it.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    seen: std::sync::Mutex<ReplaySet>,
}

#[derive(Default)]
struct ReplaySet {
    at: std::collections::HashMap<String, i64>,
    /// When the set was last swept of signatures too old to be replayed.
    swept: i64,
}

/// How long a signature must be remembered: a request is accepted up to `MAX_SKEW_SECS` either
/// side of our clock.
pub(crate) const REPLAY_WINDOW_SECS: i64 = 2 * MAX_SKEW_SECS + 60;

impl ReplayGuard {
    /// Whether `signature` is new to this process (and remembers it).
    pub(crate) fn first(&self, signature: &str, now_secs: i64) -> bool {
        let Ok(mut s) = self.seen.lock() else { return false };
        if now_secs - s.swept >= 60 {
            s.at.retain(|_, at| now_secs - *at < REPLAY_WINDOW_SECS);
            s.swept = now_secs;
        }
        if s.at.get(signature).is_some_and(|at| now_secs - *at < REPLAY_WINDOW_SECS) {
            return false;
        }
        s.at.insert(signature.to_string(), now_secs);
        true
    }
}

/// Now, in unix seconds.
pub(crate) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h.insert("x-slack-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn the_replay_guard_refuses_a_signature_within_its_window_and_forgets_it_after() {
        let g = ReplayGuard::default();
        assert!(g.first("a", 1000));
        assert!(!g.first("a", 1000 + REPLAY_WINDOW_SECS - 1));
        assert!(g.first("b", 1000));
        // Past the window it is new again (its timestamp is out of the skew window by now)...
        assert!(g.first("a", 1000 + REPLAY_WINDOW_SECS));
        // ...and swept (at most a minute late) once it can no longer be replayed.
        assert!(g.first("c", 1000 + 2 * REPLAY_WINDOW_SECS));
        assert_eq!(g.seen.lock().unwrap().at.len(), 1, "only `c` is left");
    }

    /// The worked example from Slack's "Verifying requests from Slack" page.
    #[test]
    fn slack_documentation_example() {
        let v = Verifier::new(Secret::new("8f742231b10e8888abcd99yyyzzz85a5"));
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(v.sign(1531420618, body), sig);
        assert!(v.verify(&headers("1531420618", sig), body, 1531420618 + 10).is_ok());
        assert_eq!(v.verify(&headers("1531420618", sig), body, 1531420618 + 301), Err(VerifyError::Stale));
        assert_eq!(v.verify(&headers("1531420618", sig), body, 1531420618 - 301), Err(VerifyError::Stale));
        let mut tampered = body.to_vec();
        tampered[6] ^= 1;
        assert_eq!(v.verify(&headers("1531420618", sig), &tampered, 1531420618), Err(VerifyError::Mismatch));
        assert_eq!(v.verify(&headers("1531420618", &sig[3..]), body, 1531420618), Err(VerifyError::Malformed));
        assert_eq!(
            v.verify(&headers("1531420618", &format!("{}zz", &sig[..sig.len() - 2])), body, 1531420618),
            Err(VerifyError::Malformed)
        );
        assert_eq!(v.verify(&headers("soon", sig), body, 1531420618), Err(VerifyError::BadTimestamp));
        assert_eq!(v.verify(&headers(&i64::MIN.to_string(), sig), body, 1531420618), Err(VerifyError::Stale));
        assert_eq!(v.verify(&HeaderMap::new(), body, 1531420618), Err(VerifyError::MissingHeader));
        // The right signature in upper-case hex: refused, as Bolt and slack_sdk refuse it.
        let upper = format!("v0={}", sig[3..].to_uppercase());
        assert_eq!(v.verify(&headers("1531420618", &upper), body, 1531420618), Err(VerifyError::Malformed));
        // Either header twice, even with the right value first: refused.
        for name in ["x-slack-signature", "x-slack-request-timestamp"] {
            let mut h = headers("1531420618", sig);
            let again = h.get(name).unwrap().clone();
            h.append(name, again);
            assert_eq!(v.verify(&h, body, 1531420618), Err(VerifyError::DuplicateHeader), "{name}");
        }
    }
}
