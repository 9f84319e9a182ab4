//! DPoP (RFC 9449): a key the host holds for each DPoP credential, and a proof JWT made by the
//! host for each request — the token request and every API call — for its exact method and URL.

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::Digest as _;

/// An ES256 key pair, made when the process starts; a token minted with it is bound to it.
pub(crate) struct DpopKey {
    key: EncodingKey,
    jwk: Jwk,
}

#[derive(Serialize)]
struct Proof<'a> {
    jti: String,
    htm: &'a str,
    htu: String,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

impl DpopKey {
    pub(crate) fn generate() -> Result<DpopKey, String> {
        use p256::elliptic_curve::Generate as _;
        use p256::pkcs8::EncodePrivateKey as _;
        let secret = p256::SecretKey::generate();
        let der = secret.to_pkcs8_der().map_err(|e| format!("cannot encode the DPoP key: {e}"))?;
        let key = EncodingKey::from_ec_der(der.as_bytes());
        let jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| format!("DPoP key: {e}"))?;
        Ok(DpopKey { key, jwk })
    }

    /// A proof for `method url`; with the access token's hash (`ath`) on API calls, and the
    /// server's nonce when it asked for one.
    pub(crate) fn proof(
        &self,
        method: &str,
        url: &url::Url,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let claims = Proof {
            jti: uuid::Uuid::new_v4().to_string(),
            htm: method,
            htu: htu(url),
            iat: jsonwebtoken::get_current_timestamp(),
            nonce,
            ath: access_token
                .map(|t| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(t.as_bytes()))),
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| format!("cannot sign a DPoP proof: {e}"))
    }
}

/// The `htu` of a request: its URL without query and fragment.
fn htu(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_names_the_request_and_verifies_with_its_own_key() {
        let key = DpopKey::generate().unwrap();
        let url = url::Url::parse("https://acme.okta.com/api/v1/users/00u1?limit=1#x").unwrap();
        let proof = key.proof("DELETE", &url, Some("n-1"), Some("tok")).unwrap();
        let header = jsonwebtoken::decode_header(&proof).unwrap();
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        let jwk = header.jwk.unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&proof, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &v)
                .unwrap();
        let c = data.claims;
        assert_eq!(c["htm"], "DELETE");
        assert_eq!(c["htu"], "https://acme.okta.com/api/v1/users/00u1");
        assert_eq!(c["nonce"], "n-1");
        // ath = base64url(sha256("tok"))
        assert_eq!(c["ath"], "GnZ0607njffhrEOak8P6jjyUV4TU3sn9jjARc4svHWI");
        let other = key.proof("DELETE", &url, None, None).unwrap();
        let c2 = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(&other).unwrap();
        assert_ne!(c["jti"], c2["jti"], "a fresh jti per proof");
        assert!(c2.get("nonce").is_none() && c2.get("ath").is_none());
    }
}
