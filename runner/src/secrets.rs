//! Secrets: read from the environment or from a secrets file the operator names, held in a
//! type that never prints, and scrubbed from anything a plugin hands back.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A secret value. `Debug` and `Display` print `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that puts it on the wire.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{0}` is not set: export it as an environment variable or add it to the secrets file")]
    Missing(String),
    #[error("secret `{0}` is empty")]
    Empty(String),
    #[error("cannot read secrets file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Where secret values come from.
#[derive(Clone, Default)]
pub struct SecretSource {
    /// Values from the secrets file (`NAME=value` lines), which win over the environment.
    file: BTreeMap<String, Secret>,
    /// Whether to consult the process environment.
    use_env: bool,
    /// Fixed values (tests and the demo).
    fixed: BTreeMap<String, Secret>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("file_keys", &self.file.keys().collect::<Vec<_>>())
            .field("use_env", &self.use_env)
            .finish()
    }
}

impl SecretSource {
    /// Secrets from the process environment.
    pub fn from_env() -> Self {
        SecretSource { use_env: true, ..Default::default() }
    }

    /// Secrets from a file of `NAME=value` lines (`#` comments, blank lines allowed), then the
    /// environment. The file should be readable by the service user only.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let err = |reason: String| SecretError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut file = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Never echo the line: it holds a secret.
            let (k, v) = line.split_once('=').ok_or_else(|| err(format!("line {}: expected NAME=value", i + 1)))?;
            file.insert(k.trim().to_string(), Secret::new(v.trim()));
        }
        Ok(SecretSource { file, use_env: true, fixed: BTreeMap::new() })
    }

    /// Fixed values only (no environment).
    pub fn fixed(values: impl IntoIterator<Item = (String, String)>) -> Self {
        SecretSource { fixed: values.into_iter().map(|(k, v)| (k, Secret::new(v))).collect(), ..Default::default() }
    }

    /// Looks a secret up; missing or empty is an error (fail closed). A secret may also be
    /// kept in a file of its own, named by `NAME_FILE` (a multi-line PEM key or a JSON key
    /// file, as Docker and systemd hand secrets over): `GOOGLE_KEY_FILE=/etc/offramp/google.json`.
    pub fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let lookup = |n: &str| {
            self.fixed
                .get(n)
                .or_else(|| self.file.get(n))
                .cloned()
                .or_else(|| self.use_env.then(|| std::env::var(n).ok().map(Secret::new)).flatten())
        };
        let found = match lookup(name) {
            Some(v) => Some(v),
            None => match lookup(&format!("{name}_FILE")) {
                Some(path) => {
                    let path = path.expose().trim().to_string();
                    let text = std::fs::read_to_string(&path).map_err(|e| SecretError::File {
                        path: format!("{path} (from {name}_FILE)"),
                        reason: e.to_string(),
                    })?;
                    Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
                }
                None => None,
            },
        };
        match found {
            None => Err(SecretError::Missing(name.to_string())),
            Some(s) if s.expose().trim().is_empty() => Err(SecretError::Empty(name.to_string())),
            Some(s) => Ok(s),
        }
    }
}

/// Scrubs secrets out of what a plugin could see or leave behind: every occurrence of a secret,
/// or of the header value it was formatted into, is replaced with `[REDACTED]` — written as is,
/// and in the encodings an API may echo it in: JSON string escapes (`\/`, `\u002b`), percent
/// encoding (and `+` for spaces), HTML entities, hex, and base64 / base64url at any alignment
/// (a secret inside a longer base64 text, such as an echoed `Authorization` header, is found
/// too). Matching ignores ASCII case: an upper-cased or lower-cased echo is caught as well.
///
/// What it cannot catch is a transformation it does not know (an API that reverses, splits or
/// encrypts what it echoes): the allow-list is the boundary there, see the README.
#[derive(Clone, Default)]
pub struct Redactor {
    /// `None` when there is nothing to scrub.
    matcher: Option<Arc<aho_corasick::AhoCorasick>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("patterns", &self.matcher.as_ref().map_or(0, |m| m.patterns_len())).finish()
    }
}

/// Shorter secrets are not scrubbed (they would match everywhere).
const MIN_SECRET_LEN: usize = 4;
/// Shorter encoded forms are not scrubbed (a base64 slice of a short secret is a few letters).
const MIN_PATTERN_LEN: usize = 6;

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self::with_values(secrets.into_iter().map(|s| s.expose().to_string()))
    }

    /// Scrubs each value (a secret, or a header value a secret was formatted into) and its
    /// encodings.
    pub(crate) fn with_values(values: impl IntoIterator<Item = String>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values {
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            patterns.push(value.as_bytes().to_vec());
            patterns.extend(encodings(value.as_bytes()).into_iter().filter(|p| p.len() >= MIN_PATTERN_LEN));
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Redactor { matcher: None };
        }
        let matcher = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()
            .map(Arc::new);
        Redactor { matcher }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Whether `b` holds a secret in any of the forms scrubbed.
    pub fn finds(&self, b: &[u8]) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(b))
    }

    pub fn text(&self, s: &str) -> String {
        match &self.matcher {
            Some(m) if m.is_match(s) => {
                let replace: Vec<&str> = vec!["[REDACTED]"; m.patterns_len()];
                m.replace_all(s, &replace)
            }
            _ => s.to_string(),
        }
    }

    pub fn bytes(&self, b: &[u8]) -> Vec<u8> {
        match &self.matcher {
            Some(m) if m.is_match(b) => {
                let replace: Vec<&[u8]> = vec![b"[REDACTED]"; m.patterns_len()];
                m.replace_all_bytes(b, &replace)
            }
            _ => b.to_vec(),
        }
    }
}

/// The forms a value takes when an API echoes it through a common encoding.
fn encodings(v: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    // JSON string escapes: as serde writes them, with `/` escaped too (PHP, some Java), and
    // every non-alphanumeric character as `\u00XX` (HTML-safe encoders).
    if let Ok(s) = std::str::from_utf8(v) {
        let json = serde_json::to_string(s).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        out.push(json.replace('/', "\\/").into_bytes());
        out.push(json.into_bytes());
        let mut all = String::new();
        for c in s.chars() {
            if c.is_ascii_alphanumeric() {
                all.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    all.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out.push(all.into_bytes());
        // HTML/XML entities.
        let html = s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        out.push(html.replace('\'', "&#39;").into_bytes());
        out.push(html.replace('\'', "&#x27;").into_bytes());
    }
    // Percent-encoding: RFC 3986 (unreserved kept), form encoding (space as `+`), every byte.
    let mut rfc = String::new();
    let mut form = String::new();
    let mut every = String::new();
    for &b in v {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved {
            rfc.push(b as char);
            form.push(b as char);
        } else {
            rfc.push_str(&format!("%{b:02X}"));
            form.push_str(&if b == b' ' { "+".to_string() } else { format!("%{b:02X}") });
        }
        every.push_str(&format!("%{b:02X}"));
    }
    out.extend([rfc.into_bytes(), form.into_bytes(), every.into_bytes()]);
    // Hex (either case: matching ignores case).
    out.push(hex::encode(v).into_bytes());
    // Base64 and base64url at each of the three alignments the value can have inside a longer
    // text: only the characters that depend on the value's bytes alone.
    for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
        for k in 0..3usize {
            let mut buf = vec![0u8; k];
            buf.extend_from_slice(v);
            let enc = engine.encode(&buf);
            let start = (8 * k).div_ceil(6);
            let end = 8 * (k + v.len()) / 6;
            if let Some(slice) = enc.as_bytes().get(start..end) {
                out.push(slice.to_vec());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_are_scrubbed() {
        let s = Secret::new("s3cr3t-token");
        assert_eq!(format!("{s} {s:?}"), "[REDACTED] [REDACTED]");
        let r = Redactor::new([s]);
        assert_eq!(r.text("auth: SSWS s3cr3t-token!"), "auth: SSWS [REDACTED]!");
        assert_eq!(r.bytes(b"xs3cr3t-tokenx"), b"x[REDACTED]x".to_vec());
    }

    /// A secret with `/` and `+`, as base64 tokens have, found in every encoding an API might
    /// echo it in, at every alignment inside longer text.
    #[test]
    fn encoded_secrets_are_scrubbed() {
        use base64::Engine as _;
        let secret = "00aB+cd/Ef9Gh+ij/Kl";
        let header = format!("SSWS {secret}");
        let r = Redactor::with_values([secret.to_string(), header.clone()]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut cases: Vec<(String, String)> = vec![
            ("literal".into(), secret.into()),
            ("upper".into(), secret.to_uppercase()),
            ("json".into(), serde_json::to_string(secret).unwrap()),
            ("json slash".into(), secret.replace('/', "\\/")),
            ("json unicode".into(), secret.replace('+', "\\u002B").replace('/', "\\u002f")),
            ("percent".into(), secret.replace('+', "%2B").replace('/', "%2F")),
            ("percent lower".into(), secret.replace('+', "%2b").replace('/', "%2f")),
            ("percent all".into(), secret.bytes().map(|b| format!("%{b:02x}")).collect()),
            ("hex".into(), hex::encode(secret)),
            ("HEX".into(), hex::encode_upper(secret)),
            ("form header".into(), format!("SSWS+{}", secret.replace('+', "%2B").replace('/', "%2F"))),
        ];
        for prefix in ["", "a", "ab", "abc", "Authorization: "] {
            let text = format!("{prefix}{header}\r\n");
            cases.push((format!("base64 after {prefix:?}"), b64.encode(&text)));
            cases.push((format!("base64url after {prefix:?}"), b64url.encode(&text)));
        }
        for (what, encoded) in cases {
            let echoed = format!("{{\"echo\":\"{encoded}\"}}");
            let out = r.text(&echoed);
            assert!(out.contains("[REDACTED]"), "{what}: {echoed} -> {out}");
            assert!(r.finds(echoed.as_bytes()), "{what}");
            let bytes = r.bytes(echoed.as_bytes());
            assert!(bytes.windows(10).any(|w| w == b"[REDACTED]"), "{what}");
        }
        // Ordinary text is left alone.
        let plain = "{\"id\":\"00u1abcd\",\"status\":\"ACTIVE\"}";
        assert_eq!(r.text(plain), plain);
        assert!(!r.finds(plain.as_bytes()));
    }

    /// `NAME_FILE` names a file holding the secret (a multi-line key).
    #[test]
    fn a_secret_can_live_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n").unwrap();
        let src = SecretSource::fixed([
            ("KEY_FILE".to_string(), path.display().to_string()),
            ("GONE_FILE".to_string(), "/nonexistent/offramp-key".to_string()),
        ]);
        assert_eq!(src.get("KEY").unwrap().expose(), "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----");
        let err = src.get("GONE").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/offramp-key (from GONE_FILE)"), "{err}");
    }

    #[test]
    fn missing_and_empty_secrets_fail_closed() {
        let src = SecretSource::fixed([("EMPTY".to_string(), " ".to_string())]);
        assert!(matches!(src.get("NOPE"), Err(SecretError::Missing(_))));
        assert!(matches!(src.get("EMPTY"), Err(SecretError::Empty(_))));
    }
}
