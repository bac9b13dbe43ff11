//! The runtime-claims JSON of an HCL report (its variable data): a JWK set whose key `HCLAkPub`
//! is the vTPM attestation key, the VM configuration and the guest's user data.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `kid` of the attestation key.
pub const AK_KID: &str = "HCLAkPub";
/// The smallest AK modulus accepted, in bits.
pub const MIN_AK_BITS: usize = 2048;

/// Why the variable data is not runtime claims this verifier reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// Not UTF-8 JSON of the expected shape (an object with a `keys` array of JWKs).
    #[error("runtime claims are not the expected JSON: {0}")]
    Json(String),
}

/// Why no usable attestation key comes out of the runtime claims.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkError {
    /// No JWK has kid "HCLAkPub".
    #[error("no JWK with kid \"HCLAkPub\" in the runtime claims")]
    Missing,
    /// More than one JWK has kid "HCLAkPub".
    #[error("{0} JWKs have kid \"HCLAkPub\"; exactly one is required")]
    Duplicate(usize),
    /// The AK is not an RSA key.
    #[error("HCLAkPub kty is {0:?}, expected \"RSA\"")]
    NotRsa(String),
    /// `n` or `e` is absent.
    #[error("HCLAkPub has no {0:?} member")]
    MissingComponent(&'static str),
    /// `n` or `e` is not unpadded base64url.
    #[error("HCLAkPub {component:?} is not unpadded base64url: {detail}")]
    Base64 {
        /// "n" or "e".
        component: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The RSA library rejects the key (exponent, modulus size).
    #[error("HCLAkPub is not a usable RSA public key: {0}")]
    Key(String),
    /// The modulus is too small.
    #[error("HCLAkPub modulus is {0} bits; at least 2048 required")]
    TooSmall(usize),
}

/// One JWK of the `keys` array (members other than these are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Jwk {
    /// Key id ("HCLAkPub", "HCLEkPub").
    pub kid: String,
    /// Key type ("RSA").
    pub kty: String,
    /// Key operations, when present (not enforced: older samples say "encrypt" for the AK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// RSA public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
}

/// The runtime claims, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct RuntimeClaims {
    /// The JWK set.
    pub keys: Vec<Jwk>,
    /// `vm-configuration` (console-enabled, secure-boot, tpm-enabled, vmUniqueId, ...).
    #[serde(
        rename = "vm-configuration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vm_configuration: Option<Map<String, Value>>,
    /// `user-data`: hex of the 64 bytes the guest wrote to NV index 0x01400002.
    #[serde(rename = "user-data", default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// The attestation key and what the output says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationKey {
    /// The RSA public key.
    pub key: RsaPublicKey,
    /// Modulus size in bits.
    pub bits: usize,
    /// Public exponent.
    pub exponent: u64,
}

/// `TPMA_OBJECT` of the paravisor's AK template: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, noDA, restricted, sign.
pub const AK_TEMPLATE_ATTRIBUTES: u32 = 0x0005_0472;

impl AttestationKey {
    /// The AK's `TPMT_PUBLIC` (TPM 2.0 Part 2, marshalled, no TPM2B size) as the paravisor's
    /// vTPM holds it. Azure publishes only the JWK, so the rest is the paravisor's fixed AK
    /// template (OpenHCL's `ak_pub_template`, a primary of the endorsement hierarchy): type
    /// RSA, nameAlg SHA-256, attributes [`AK_TEMPLATE_ATTRIBUTES`], empty authPolicy, no
    /// symmetric algorithm, scheme RSASSA with SHA-256, keyBits, exponent 0 (the TPM's encoding
    /// of 65537) and the modulus. The quotes of every Azure vector name exactly this key. An
    /// exponent no TPM can hold (more than 32 bits) gives a structure no TPM quote names.
    pub fn tpmt_public(&self) -> Vec<u8> {
        use crate::bundle_verify::tpm::{TPM_ALG_NULL, TPM_ALG_RSA, TPM_ALG_SHA256};
        let modulus = self.key.n().to_bytes_be();
        let exponent = match self.exponent {
            65_537 => 0,
            e => u32::try_from(e).unwrap_or(u32::MAX),
        };
        let mut out = Vec::with_capacity(24 + modulus.len());
        out.extend_from_slice(&TPM_ALG_RSA.to_be_bytes());
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        out.extend_from_slice(&AK_TEMPLATE_ATTRIBUTES.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // authPolicy: empty
        out.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // symmetric
        out.extend_from_slice(&crate::azure::quote::TPM_ALG_RSASSA.to_be_bytes());
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        out.extend_from_slice(&u16::try_from(self.bits).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&exponent.to_be_bytes());
        out.extend_from_slice(
            &u16::try_from(modulus.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&modulus);
        out
    }
}

fn b64(component: &'static str, s: &str) -> Result<Vec<u8>, AkError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|e| AkError::Base64 {
        component,
        detail: e.to_string(),
    })
}

impl RuntimeClaims {
    /// Parses the variable data of an HCL report (byte-exact, as hashed).
    pub fn parse(var_data: &[u8]) -> Result<Self, ClaimsError> {
        serde_json::from_slice(var_data).map_err(|e| ClaimsError::Json(e.to_string()))
    }

    /// The attestation key: the one JWK with kid "HCLAkPub", RSA, at least 2048 bits.
    pub fn attestation_key(&self) -> Result<AttestationKey, AkError> {
        let mut aks = self.keys.iter().filter(|k| k.kid == AK_KID);
        let jwk = aks.next().ok_or(AkError::Missing)?;
        let more = aks.count();
        if more > 0 {
            return Err(AkError::Duplicate(more + 1));
        }
        if jwk.kty != "RSA" {
            return Err(AkError::NotRsa(jwk.kty.clone()));
        }
        let n = jwk.n.as_deref().ok_or(AkError::MissingComponent("n"))?;
        let e = jwk.e.as_deref().ok_or(AkError::MissingComponent("e"))?;
        let n = BigUint::from_bytes_be(&b64("n", n)?);
        let e = BigUint::from_bytes_be(&b64("e", e)?);
        let key = RsaPublicKey::new(n, e).map_err(|e| AkError::Key(e.to_string()))?;
        let bits = key.n().bits();
        if bits < MIN_AK_BITS {
            return Err(AkError::TooSmall(bits));
        }
        let exponent = key
            .e()
            .to_bytes_be()
            .iter()
            .fold(0u64, |acc, &b| acc.wrapping_shl(8) | u64::from(b));
        Ok(AttestationKey {
            key,
            bits,
            exponent,
        })
    }

    /// The `user-data` bytes (hex in the JSON). `Ok(None)` when absent.
    pub fn user_data_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        self.user_data
            .as_deref()
            .map(|h| hex::decode(h).map_err(|e| e.to_string()))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(keys: &str) -> RuntimeClaims {
        RuntimeClaims::parse(format!(r#"{{"keys":{keys}}}"#).as_bytes()).unwrap()
    }

    #[test]
    fn ak_errors() {
        assert_eq!(claims("[]").attestation_key(), Err(AkError::Missing));
        let two = r#"[{"kid":"HCLAkPub","kty":"RSA"},{"kid":"HCLAkPub","kty":"RSA"}]"#;
        assert_eq!(claims(two).attestation_key(), Err(AkError::Duplicate(2)));
        let ec = r#"[{"kid":"HCLAkPub","kty":"EC"}]"#;
        assert_eq!(
            claims(ec).attestation_key(),
            Err(AkError::NotRsa("EC".into()))
        );
        let no_n = r#"[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB"}]"#;
        assert_eq!(
            claims(no_n).attestation_key(),
            Err(AkError::MissingComponent("n"))
        );
        let padded = r#"[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"AQ=="}]"#;
        assert!(matches!(
            claims(padded).attestation_key(),
            Err(AkError::Base64 { component: "n", .. })
        ));
        // A 1024-bit modulus (top bit set): too small.
        let small = format!(
            r#"[{{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"{}"}}]"#,
            URL_SAFE_NO_PAD.encode([0xC1u8; 128])
        );
        assert_eq!(
            claims(&small).attestation_key(),
            Err(AkError::TooSmall(1024))
        );
        // Exponent 1 is rejected by the RSA library.
        let e1 = format!(
            r#"[{{"kid":"HCLAkPub","kty":"RSA","e":"AQ","n":"{}"}}]"#,
            URL_SAFE_NO_PAD.encode([0xC1u8; 256])
        );
        assert!(matches!(
            claims(&e1).attestation_key(),
            Err(AkError::Key(_))
        ));
    }

    #[test]
    fn json_errors() {
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            b"{\"keys\":{}}",
            b"{\"keys\":[]}x",
            b"{\"keys\":[],\"keys\":[]}",
            b"\xff",
        ] {
            assert!(
                matches!(RuntimeClaims::parse(bad), Err(ClaimsError::Json(_))),
                "{bad:?}"
            );
        }
    }
}
