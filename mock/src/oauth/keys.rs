//! RSA key pairs for tests and the demo, in the formats the vendors hand them out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::der::Decode;
use rsa::pkcs1::{EncodeRsaPrivateKey, RsaPrivateKeyRef};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;
use sha1::Digest;

/// An RSA key pair for tests and the demo (2048 bits).
#[derive(Clone)]
pub struct RsaKeyPair {
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), what `jsonwebtoken::EncodingKey::from_rsa_pem` reads.
    pub private_pem: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`), what the mock's vendor configurations take.
    pub public_pem: String,
}

impl std::fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKeyPair").field("public_pem", &self.public_pem).finish_non_exhaustive()
    }
}

impl RsaKeyPair {
    /// A fresh 2048-bit key pair (exponent 65537) from the operating system's RNG.
    pub fn generate() -> Result<RsaKeyPair, String> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| format!("RSA key generation: {e}"))?;
        let private_pem =
            key.to_pkcs8_pem(LineEnding::LF).map_err(|e| format!("encoding the private key: {e}"))?.to_string();
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("encoding the public key: {e}"))?;
        Ok(RsaKeyPair { private_pem, public_pem })
    }

    /// Google's JSON key file for a service account, as the Cloud console downloads it:
    /// `{"type": "service_account", "project_id", "private_key_id": key_id, "private_key": PEM,
    /// "client_email", "client_id", "auth_uri", "token_uri", ...}`. The project is the part of
    /// `client_email` between `@` and `.iam.gserviceaccount.com` (or `mock-project`).
    pub fn google_key_file(&self, client_email: &str, key_id: &str, token_uri: &str) -> String {
        let project = client_email
            .split_once('@')
            .and_then(|(_, domain)| domain.strip_suffix(".iam.gserviceaccount.com"))
            .unwrap_or("mock-project");
        // A stable 21-digit numeric id, like Google's.
        let digest = sha2::Sha256::digest(client_email.as_bytes());
        let mut n = u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        n %= 10_000_000_000_000_000_000;
        let client_id = format!("1{n:020}");
        json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": self.private_pem,
            "client_email": client_email,
            "client_id": client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                client_email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// The private key as Okta's Admin Console hands it out when it generates a key for a
    /// service app: a JWK `{"kty": "RSA", "kid", "alg": "RS256", "use": "sig", "n", "e", "d",
    /// "p", "q", "dp", "dq", "qi"}`, base64url without padding. Empty (`""`) if the PEM is not an
    /// RSA PKCS#8 key.
    pub fn okta_jwk(&self, key_id: &str) -> String {
        self.jwk_json(key_id).unwrap_or_default()
    }

    fn jwk_json(&self, key_id: &str) -> Option<String> {
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::PrivateKey::from_pkcs8_pem(&self.private_pem).ok()?;
        let der = key.to_pkcs1_der().ok()?;
        let k = RsaPrivateKeyRef::from_der(der.as_bytes()).ok()?;
        let b = |u: rsa::pkcs1::UintRef<'_>| URL_SAFE_NO_PAD.encode(u.as_bytes());
        Some(
            json!({
                "kty": "RSA",
                "kid": key_id,
                "alg": "RS256",
                "use": "sig",
                "n": b(k.modulus),
                "e": b(k.public_exponent),
                "d": b(k.private_exponent),
                "p": b(k.prime1),
                "q": b(k.prime2),
                "dp": b(k.exponent1),
                "dq": b(k.exponent2),
                "qi": b(k.coefficient),
            })
            .to_string(),
        )
    }

    /// A stand-in for the thumbprint of a certificate holding this key, as the Entra portal
    /// shows one (40 upper-case hex digits): the SHA-1 of the public key's DER. The mock has no
    /// certificates; [`MicrosoftApp::certificate`](super::MicrosoftApp::certificate) takes any
    /// 40-hex-digit thumbprint, this is just a convenient one.
    pub fn certificate_thumbprint(&self) -> String {
        let der = spki_der(&self.public_pem).unwrap_or_default();
        hex::encode_upper(sha1::Sha1::digest(&der))
    }
}

/// The DER inside a PEM block.
fn spki_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()
}
