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

    /// Looks a secret up; missing or empty is an error (fail closed).
    pub fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let found = self
            .fixed
            .get(name)
            .or_else(|| self.file.get(name))
            .cloned()
            .or_else(|| self.use_env.then(|| std::env::var(name).ok().map(Secret::new)).flatten());
        match found {
            None => Err(SecretError::Missing(name.to_string())),
            Some(s) if s.expose().trim().is_empty() => Err(SecretError::Empty(name.to_string())),
            Some(s) => Ok(s),
        }
    }
}

/// Replaces every occurrence of the given secrets in text with `[REDACTED]`.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        // Longest first, so a secret that contains another is scrubbed whole.
        let mut secrets: Vec<Secret> = secrets.into_iter().filter(|s| s.expose().len() >= 4).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), "[REDACTED]");
            }
        }
        out
    }

    pub fn bytes(&self, b: &[u8]) -> Vec<u8> {
        let mut out = b.to_vec();
        for secret in &self.secrets {
            let needle = secret.expose().as_bytes();
            if out.windows(needle.len()).any(|w| w == needle) {
                let mut replaced = Vec::with_capacity(out.len());
                let mut i = 0;
                while i < out.len() {
                    if out[i..].starts_with(needle) {
                        replaced.extend_from_slice(b"[REDACTED]");
                        i += needle.len();
                    } else {
                        replaced.push(out[i]);
                        i += 1;
                    }
                }
                out = replaced;
            }
        }
        out
    }
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

    #[test]
    fn missing_and_empty_secrets_fail_closed() {
        let src = SecretSource::fixed([("EMPTY".to_string(), " ".to_string())]);
        assert!(matches!(src.get("NOPE"), Err(SecretError::Missing(_))));
        assert!(matches!(src.get("EMPTY"), Err(SecretError::Empty(_))));
    }
}
