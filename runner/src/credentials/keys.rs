//! Private keys as vendors hand them out: a PEM file (PKCS#8 or PKCS#1), Google's JSON key file,
//! or the JWK JSON Okta's admin console generates. Errors never repeat the key.

use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use serde::Deserialize;

/// An RSA signing key and what came with it.
pub(crate) struct RsaKey {
    pub key: EncodingKey,
    /// The key's id as the vendor knows it (JWK `kid`, Google's `private_key_id`).
    pub kid: Option<String>,
    /// From a Google key file: the service account and its token endpoint.
    pub client_email: Option<String>,
    pub token_uri: Option<String>,
}

/// Reads an RSA private key from a secret's value.
pub(crate) fn rsa_key(text: &str) -> Result<RsaKey, String> {
    let t = text.trim();
    if t.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(t)
            .map_err(|e| format!("it looks like JSON but does not parse ({})", json_error_kind(&e)))?;
        if let Some(pem) = json.get("private_key").and_then(|v| v.as_str()) {
            // Google's service account key file.
            let key = from_pem(pem)?;
            let field = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
            return Ok(RsaKey {
                key,
                kid: field("private_key_id"),
                client_email: field("client_email"),
                token_uri: field("token_uri"),
            });
        }
        let jwk = match json.get("keys").and_then(|k| k.as_array()) {
            // A JWK set: the first private key in it.
            Some(keys) => {
                keys.iter().find(|k| k.get("d").is_some()).cloned().ok_or("the JWK set holds no private key")?
            }
            None => json,
        };
        let jwk: PrivateJwk = serde_json::from_value(jwk).map_err(|e| {
            format!("it is JSON but neither a Google key file nor an RSA private JWK ({})", first_words(&e.to_string()))
        })?;
        return jwk.into_key();
    }
    if t.contains("-----BEGIN") || t.contains("\\n") {
        return Ok(RsaKey { key: from_pem(t)?, kid: None, client_email: None, token_uri: None });
    }
    Err("it is neither a PEM private key (-----BEGIN PRIVATE KEY-----), a Google JSON key file nor a JWK".into())
}

fn from_pem(pem: &str) -> Result<EncodingKey, String> {
    // A key pasted on one line keeps its line breaks as `\n`.
    let pem = pem.replace("\\n", "\n");
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        return Err("the PEM key is encrypted; store it decrypted (`openssl pkcs8 -in key.pem -nocrypt`)".into());
    }
    if !pem.contains("PRIVATE KEY") {
        return Err("the PEM block is not a private key (a certificate or public key was given?)".into());
    }
    let key = EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("the PEM is not an RSA private key ({})", first_words(&e.to_string())))?;
    check_signs(&key)?;
    Ok(key)
}

/// Signs a throwaway message, so a key that parses but cannot sign fails at load, not mid-run.
fn check_signs(key: &EncodingKey) -> Result<(), String> {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &serde_json::json!({}), key)
        .map(|_| ())
        .map_err(|e| format!("the key cannot sign RS256 ({})", first_words(&e.to_string())))
}

fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "it ends early",
        serde_json::error::Category::Syntax => "a syntax error",
        _ => "unreadable",
    }
}

/// Only the start of a parser's message: enough to act on, never the input.
fn first_words(s: &str) -> String {
    s.chars().take(80).collect()
}

#[derive(Deserialize)]
struct PrivateJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    n: String,
    e: String,
    d: String,
    p: String,
    q: String,
    dp: String,
    dq: String,
    qi: String,
}

impl PrivateJwk {
    fn into_key(self) -> Result<RsaKey, String> {
        if self.kty != "RSA" {
            return Err(format!("the JWK is `{}`; offramp signs with RSA keys (RS256)", self.kty));
        }
        let b = |field: &str, v: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| format!("the JWK's `{field}` is not base64url"))
        };
        let (n, e, d, p, q) =
            (b("n", &self.n)?, b("e", &self.e)?, b("d", &self.d)?, b("p", &self.p)?, b("q", &self.q)?);
        let (dp, dq, qi) = (b("dp", &self.dp)?, b("dq", &self.dq)?, b("qi", &self.qi)?);
        fn uint(v: &[u8]) -> Result<pkcs1::UintRef<'_>, String> {
            pkcs1::UintRef::new(v).map_err(|_| "the JWK has a malformed number".to_string())
        }
        let der = pkcs1::RsaPrivateKey {
            modulus: uint(&n)?,
            public_exponent: uint(&e)?,
            private_exponent: uint(&d)?,
            prime1: uint(&p)?,
            prime2: uint(&q)?,
            exponent1: uint(&dp)?,
            exponent2: uint(&dq)?,
            coefficient: uint(&qi)?,
            other_prime_infos: None,
        };
        let der = pkcs1::der::Encode::to_der(&der).map_err(|_| "the JWK cannot be encoded as a key".to_string())?;
        let key = EncodingKey::from_rsa_der(&der);
        check_signs(&key)?;
        Ok(RsaKey { key, kid: self.kid, client_email: None, token_uri: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_key_says_what_it_expected_without_echoing() {
        for bad in
            ["hunter2-secret", "{\"kty\":\"EC\"}", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"]
        {
            let err = rsa_key(bad).err().unwrap();
            assert!(!err.contains("hunter2") && !err.contains("MIIB"), "{err}");
        }
        let err =
            rsa_key("-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----").err().unwrap();
        assert!(err.contains("encrypted"), "{err}");
    }
}
