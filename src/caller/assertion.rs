//! Client assertions signed with an app registration's certificate (Entra's "certificate
//! credentials"): a JWT that proves possession of the certificate's private key.
//!
//! # Contract
//! - Header `alg` PS256, `typ` JWT, `x5t#S256` = base64url SHA-256 of the leaf certificate's DER.
//! - Claims `aud` = the token endpoint URL, `iss` = `sub` = the client id, a fresh random `jti`,
//!   `nbf` = `iat` = now, `exp` = now + [`ASSERTION_LIFETIME`] (Entra accepts at most 10 minutes).
//! - Only RSA keys (PKCS#8 or PKCS#1 PEM); the key must be the leaf certificate's, checked when
//!   the file is loaded, so a mismatched pair fails here and not as an opaque AADSTS error.
//! - The key never leaves this module and `Debug` shows only the thumbprint; the assertion is a
//!   credential and is only ever put in a request body.

use std::fmt;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{KeyPair as _, RSA_PSS_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

/// How long a signed assertion is valid (Entra's limit is 10 minutes).
pub const ASSERTION_LIFETIME: u64 = 600;

/// A certificate credential: the RSA key and the leaf's SHA-256 thumbprint.
pub struct Certificate {
    key: RsaKeyPair,
    x5t_s256: String,
}

impl Certificate {
    /// Reads a PEM bundle: one private key and the certificate chain, leaf first.
    pub fn from_pem(pem: &[u8]) -> Result<Certificate, String> {
        let leaf = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no CERTIFICATE block")?
            .map_err(|e| format!("certificate: {e}"))?;
        let key = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(k)) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            Ok(_) => return Err("the private key must be RSA (PKCS#8 or PKCS#1)".into()),
            Err(_) => return Err("no PRIVATE KEY block".into()),
        }
        .map_err(|e| format!("private key: not a usable RSA key ({e})"))?;
        // The RSAPublicKey DER sits verbatim inside the leaf's SubjectPublicKeyInfo.
        let public = key.public_key().as_ref();
        if !leaf.as_ref().windows(public.len()).any(|w| w == public) {
            return Err("the private key does not belong to the first (leaf) certificate".into());
        }
        Ok(Certificate {
            key,
            x5t_s256: URL_SAFE_NO_PAD.encode(digest(&SHA256, leaf.as_ref())),
        })
    }

    /// The `x5t#S256` header value.
    pub fn thumbprint(&self) -> &str {
        &self.x5t_s256
    }

    /// A fresh assertion for `client_id` at `token_endpoint`, valid from `now`.
    pub fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: u64,
    ) -> Result<String, String> {
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti).map_err(|_| "no randomness for jti")?;
        let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256});
        let claims = json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid_text(jti),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, &rng, input.as_bytes(), &mut sig)
            .map_err(|_| "signing the client assertion failed")?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("x5t#S256", &self.x5t_s256)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// 16 random bytes as a version-4 UUID string.
fn uuid_text(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = uuid_text([0xff; 16]);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    fn cert_and_key() -> (rcgen::KeyPair, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let cert = rcgen::CertificateParams::new(vec!["t".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (key, cert.pem())
    }

    #[test]
    fn signs_a_ps256_assertion_that_verifies_with_the_leaf_key() {
        let (key, cert) = cert_and_key();
        let c = Certificate::from_pem(format!("{}{cert}", key.serialize_pem()).as_bytes()).unwrap();
        let jwt = c
            .assertion("client", "https://login.example/t/oauth2/v2.0/token", 1000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["exp"], 1000 + ASSERTION_LIFETIME);
        assert_eq!(claims["iss"], "client");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            key.public_key_raw(),
        )
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("verifies");
        assert!(!format!("{c:?}").contains("PRIVATE"), "Debug is redacted");
    }

    #[test]
    fn a_key_that_is_not_the_leafs_is_refused() {
        let (_, cert) = cert_and_key();
        let (other, _) = cert_and_key();
        let err = Certificate::from_pem(format!("{}{cert}", other.serialize_pem()).as_bytes())
            .unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let err =
            Certificate::from_pem(format!("{}{cert}", ec.serialize_pem()).as_bytes()).unwrap_err();
        assert!(err.contains("RSA"), "{err}");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(Certificate::from_pem(b"nothing")
            .unwrap_err()
            .contains("CERTIFICATE"));
    }
}
