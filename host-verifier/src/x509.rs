//! X.509 plumbing for the AMD chain: the signed TBS bytes exactly as received (never
//! re-encoded), RSASSA-PSS parameter checks, names, validity and CA constraints.

use crate::check::{CertRole, Failure};
use der::asn1::{Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Header, Reader, SliceReader, Tag};
use rsa::signature::Verifier as _;
use sha2::Sha384;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::name::Name;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;
use x509_cert::Certificate;

pub(crate) const OID_RSASSA_PSS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Why certificate bytes could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertDecodeError {
    /// Not PEM (`-----BEGIN CERTIFICATE-----`) and not DER.
    #[error("not a PEM or DER X.509 certificate: {0}")]
    Encoding(String),
    /// The DER does not parse as a certificate.
    #[error("X.509 DER does not parse: {0}")]
    Der(String),
    /// The bytes hold no certificate.
    #[error("no certificate in the input")]
    Empty,
}

/// A certificate with the byte range of its TBS and its validity in Unix seconds.
#[derive(Clone, Debug)]
pub(crate) struct ParsedCert {
    pub der: Vec<u8>,
    pub tbs: Range<usize>,
    pub cert: Certificate,
    pub not_before: u64,
    pub not_after: u64,
    pub subject_cn: String,
    pub issuer_cn: String,
}

impl ParsedCert {
    pub fn from_der(der: &[u8]) -> Result<Self, CertDecodeError> {
        let cert = Certificate::from_der(der).map_err(|e| CertDecodeError::Der(e.to_string()))?;
        let tbs = tbs_range(der).map_err(|e| CertDecodeError::Der(e.to_string()))?;
        let validity = &cert.tbs_certificate.validity;
        Ok(ParsedCert {
            der: der.to_vec(),
            tbs,
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            subject_cn: common_name(&cert.tbs_certificate.subject),
            issuer_cn: common_name(&cert.tbs_certificate.issuer),
            cert,
        })
    }

    /// The TBS bytes exactly as signed.
    pub fn tbs_bytes(&self) -> &[u8] {
        self.der.get(self.tbs.clone()).unwrap_or(&[])
    }

    pub fn serial_hex(&self) -> String {
        hex::encode(self.cert.tbs_certificate.serial_number.as_bytes())
    }

    /// Validity at `at`.
    pub fn check_validity(&self, role: CertRole, at: SystemTime) -> Result<(), Failure> {
        let now = unix_secs(at);
        if now < self.not_before {
            return Err(Failure::NotYetValid {
                role,
                not_before: rfc3339(self.not_before),
                at: rfc3339(now),
            });
        }
        if now > self.not_after {
            return Err(Failure::Expired {
                role,
                not_after: rfc3339(self.not_after),
                at: rfc3339(now),
            });
        }
        Ok(())
    }

    /// BasicConstraints cA=TRUE and KeyUsage keyCertSign.
    pub fn check_ca(&self, role: CertRole) -> Result<(), Failure> {
        let exts = self
            .cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or(&[]);
        let bc = exts
            .iter()
            .find(|e| e.extn_id == OID_BASIC_CONSTRAINTS)
            .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok());
        if !bc.is_some_and(|bc| bc.ca) {
            return Err(Failure::NotCa {
                role,
                detail: "BasicConstraints cA is not TRUE",
            });
        }
        let ku = exts
            .iter()
            .find(|e| e.extn_id == OID_KEY_USAGE)
            .and_then(|e| KeyUsage::from_der(e.extn_value.as_bytes()).ok());
        if !ku.is_some_and(|ku| ku.key_cert_sign()) {
            return Err(Failure::NotCa {
                role,
                detail: "KeyUsage lacks keyCertSign",
            });
        }
        Ok(())
    }

    pub fn subject_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject
            .to_der()
            .unwrap_or_default()
    }

    pub fn issuer_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .issuer
            .to_der()
            .unwrap_or_default()
    }
}

/// The byte range of the first element (TBSCertificate / TBSCertList) of a signed SEQUENCE.
pub(crate) fn tbs_range(der: &[u8]) -> der::Result<Range<usize>> {
    let mut reader = SliceReader::new(der)?;
    let outer = Header::decode(&mut reader)?;
    outer.tag.assert_eq(Tag::Sequence)?;
    let start = usize::try_from(reader.position())?;
    let inner = Header::decode(&mut reader)?;
    inner.tag.assert_eq(Tag::Sequence)?;
    let body = usize::try_from(reader.position())?;
    let len = usize::try_from(inner.length)?;
    let end = body.checked_add(len).ok_or(der::ErrorKind::Overflow)?;
    if end > der.len() {
        return Err(der::ErrorKind::Incomplete {
            expected_len: inner.length,
            actual_len: reader.remaining_len(),
        }
        .into());
    }
    Ok(start..end)
}

/// The first CN of a name, or the whole name when it has none.
pub(crate) fn common_name(name: &Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_CN {
                if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                    return s.as_str().to_owned();
                }
                if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                    return s.as_str().to_owned();
                }
                if let Ok(s) = atv.value.decode_as::<Ia5StringRef<'_>>() {
                    return s.as_str().to_owned();
                }
            }
        }
    }
    name.to_string()
}

/// Checks an RSASSA-PSS AlgorithmIdentifier: SHA-384, MGF1 with SHA-384, salt 48, trailer 1.
pub(crate) fn check_pss_params(
    alg: &AlgorithmIdentifierOwned,
    role: CertRole,
) -> Result<(), Failure> {
    let bad = |detail: String| Failure::SignatureAlgorithm { role, detail };
    if alg.oid != OID_RSASSA_PSS {
        return Err(bad(format!("algorithm {} is not RSASSA-PSS", alg.oid)));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| bad("RSASSA-PSS parameters absent".into()))?;
    let params_der = params.to_der().map_err(|e| bad(e.to_string()))?;
    let p = rsa::pkcs1::RsaPssParams::try_from(params_der.as_slice())
        .map_err(|e| bad(format!("parameters do not parse: {e}")))?;
    if p.hash.oid != OID_SHA384 {
        return Err(bad(format!("hash {}", p.hash.oid)));
    }
    if p.mask_gen.oid != OID_MGF1 {
        return Err(bad(format!("mask generation {}", p.mask_gen.oid)));
    }
    match p.mask_gen.parameters {
        Some(h) if h.oid == OID_SHA384 => {}
        other => {
            return Err(bad(format!(
                "MGF1 hash {}",
                other.map_or("absent (SHA-1)".to_string(), |h| h.oid.to_string())
            )))
        }
    }
    if p.salt_len != 48 {
        return Err(bad(format!("salt length {}", p.salt_len)));
    }
    if p.trailer_field != rsa::pkcs1::TrailerField::BC {
        return Err(bad("trailer field is not 1".into()));
    }
    Ok(())
}

/// An RSA key that verifies RSASSA-PSS SHA-384 certificate signatures.
#[derive(Clone, Debug)]
pub(crate) struct RsaPssKey(rsa::pss::VerifyingKey<Sha384>);

impl RsaPssKey {
    pub fn from_cert(cert: &ParsedCert, role: CertRole) -> Result<Self, Failure> {
        let spki = cert
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| Failure::PublicKey {
                role,
                detail: e.to_string(),
            })?;
        use rsa::pkcs8::DecodePublicKey;
        let key =
            rsa::RsaPublicKey::from_public_key_der(&spki).map_err(|e| Failure::PublicKey {
                role,
                detail: format!("not an RSA key: {e}"),
            })?;
        Ok(RsaPssKey(rsa::pss::VerifyingKey::new(key)))
    }

    /// Verifies that this key signed `child` (RSASSA-PSS SHA-384, salt 48), over its TBS bytes
    /// as received, and that the inner and outer signature algorithms agree.
    pub fn verify_cert(
        &self,
        child: &ParsedCert,
        role: CertRole,
        issuer: CertRole,
    ) -> Result<(), Failure> {
        let c = &child.cert;
        check_pss_params(&c.signature_algorithm, role)?;
        if c.tbs_certificate.signature != c.signature_algorithm {
            return Err(Failure::SignatureAlgorithm {
                role,
                detail: "TBS signature algorithm differs from the outer one".into(),
            });
        }
        self.verify_raw(child.tbs_bytes(), c.signature.as_bytes(), role, issuer)
    }

    pub fn verify_raw(
        &self,
        message: &[u8],
        signature: Option<&[u8]>,
        role: CertRole,
        issuer: CertRole,
    ) -> Result<(), Failure> {
        let fail = |detail: String| Failure::CertSignature {
            role,
            issuer,
            detail,
        };
        let sig = signature.ok_or_else(|| fail("signature BIT STRING has unused bits".into()))?;
        let sig = rsa::pss::Signature::try_from(sig).map_err(|e| fail(e.to_string()))?;
        self.0
            .verify(message, &sig)
            .map_err(|_| fail("RSA-PSS verification failed".into()))
    }
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 (UTC) text for Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("@{secs}"))
}

pub(crate) fn time_secs(t: &Time) -> u64 {
    t.to_unix_duration().as_secs()
}

/// ecdsa-with-SHA384.
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// The certificate's key as an ECDSA P-384 key, if it is one.
pub(crate) fn p384_key(cert: &ParsedCert) -> Option<p384::ecdsa::VerifyingKey> {
    let point = cert
        .cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()?;
    p384::ecdsa::VerifyingKey::from_sec1_bytes(point).ok()
}

/// ECDSA P-384 over SHA-384 of `message`, with the crate's interleaved one-shot evaluation
/// ([`crate::ecdsa`], cross-checked there against `p384`'s verifier).
pub(crate) fn verify_p384_sha384(
    key: &p384::ecdsa::VerifyingKey,
    message: &[u8],
    sig: &p384::ecdsa::Signature,
) -> bool {
    use sha2::Digest;
    let z: [u8; 48] = Sha384::digest(message).into();
    let (r, s): ([u8; 48], [u8; 48]) = (sig.r().to_bytes().into(), sig.s().to_bytes().into());
    crate::ecdsa::verify_prehash(key.as_affine(), &z, &r, &s).is_ok()
}

/// True when `cert` is signed ecdsa-with-SHA384 (outer and TBS algorithms equal) by `key`.
pub(crate) fn signed_p384(cert: &ParsedCert, key: &p384::ecdsa::VerifyingKey) -> bool {
    let c = &cert.cert;
    if c.signature_algorithm.oid != ECDSA_WITH_SHA384
        || c.tbs_certificate.signature != c.signature_algorithm
    {
        return false;
    }
    c.signature
        .as_bytes()
        .and_then(|sig| p384::ecdsa::Signature::from_der(sig).ok())
        .is_some_and(|sig| verify_p384_sha384(key, cert.tbs_bytes(), &sig))
}
