//! The vTPM's EK certificates (docs/identity.md): the EK CA's self-signed certificate and the
//! EK certificates it issued, as a guest reads them from the TCG NV indices. Checked against
//! the attested vTPM manifest (the CA key it names, the EK it names), or, for a verifier that
//! holds only certificates, against the SNP report the CA certificate carries (a RATS CMW
//! extension), whose REPORT_DATA must bind the CA key. Every certificate is untrusted input:
//! bounded, parsed with `x509-cert`, each failure a typed reason.

use crate::x509::ParsedCert;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use p384::ecdsa::signature::Verifier as _;
use serde::Serialize;
use svsm_abi::identity::{
    tcg_oid, CMW_EXTENSION_OID, CMW_INDICATOR_EVIDENCE, EK_CA_CERT_INDEX, EK_CERT_ECC_P256_INDEX,
    EK_CERT_ECC_P384_INDEX, EK_CERT_RSA_2048_INDEX, MAX_EK_CERT_SIZE, SNP_REPORT_MEDIA_TYPE,
};
use svsm_abi::snp::REPORT_SIZE;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

/// Why the EK certificates do not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EkCertError {
    /// A certificate is larger than an NV index holds.
    #[error("certificate of NV index {index:#010x} is {size} bytes (at most {MAX_EK_CERT_SIZE})")]
    TooLarge {
        /// The index.
        index: u32,
        /// Its size.
        size: usize,
    },
    /// A certificate does not parse.
    #[error("certificate of NV index {index:#010x} does not parse: {detail}")]
    Decode {
        /// The index.
        index: u32,
        /// The parser's complaint.
        detail: String,
    },
    /// An index that is not one of the vTPM's identity indices.
    #[error("NV index {0:#010x} is not an EK certificate index of the vTPM")]
    UnknownIndex(u32),
    /// The CA certificate (NV index 0x01C00100) is missing.
    #[error("no EK CA certificate (NV index 0x01c00100) was supplied")]
    NoCaCertificate,
    /// The manifest names no EK CA, but certificates were supplied.
    #[error("the attested manifest names no EK CA: the vTPM did not issue EK certificates")]
    NoManifestCa,
    /// The CA certificate's key is not the one the attested manifest names.
    #[error("the EK CA certificate's key {found} is not the manifest's EK CA key {expected}")]
    CaKeyMismatch {
        /// The certificate's key, hex.
        found: String,
        /// The manifest's, hex.
        expected: String,
    },
    /// The CA certificate is not a self-signed P-384 CA certificate.
    #[error("the EK CA certificate is not a self-signed P-384 CA: {0}")]
    NotCa(&'static str),
    /// A certificate's signature does not verify with the CA key.
    #[error(
        "the signature of NV index {0:#010x}'s certificate does not verify with the EK CA key"
    )]
    Signature(u32),
    /// A certificate's issuer is not the CA's subject.
    #[error("NV index {0:#010x}'s certificate names another issuer than the EK CA")]
    Issuer(u32),
    /// An EK certificate lacks the EK certificate extended key usage, or is a CA.
    #[error("NV index {0:#010x}'s certificate is not an EK certificate (tcg-kp-EKCertificate, CA:FALSE)")]
    NotEkCertificate(u32),
    /// An EK certificate's key is not of the index's type.
    #[error("NV index {index:#010x}'s certificate holds {found}, the index is for {expected}")]
    KeyType {
        /// The index.
        index: u32,
        /// What it holds.
        found: &'static str,
        /// What the index is for.
        expected: &'static str,
    },
    /// The RSA EK certificate's key is not the manifest's EK.
    #[error("the RSA EK certificate's modulus is not the attested manifest's EK")]
    EkMismatch,
    /// The manifest's EK is not an RSA 2048 TPMT_PUBLIC of template L-1.
    #[error("the manifest's EK is not an RSA 2048 EK of template L-1")]
    ManifestEk,
    /// The CA certificate carries no CMW extension with an SNP report.
    #[error("the EK CA certificate carries no SNP report (CMW extension 1.3.6.1.5.5.7.1.35)")]
    NoReport,
    /// The CMW extension is not the record docs/identity.md defines.
    #[error("the EK CA certificate's CMW extension is malformed: {0}")]
    Cmw(&'static str),
    /// REPORT_DATA of the embedded report does not bind the CA key.
    #[error(
        "the embedded SNP report's REPORT_DATA is {found}, not SHA-512(label ‖ CA key) {expected}"
    )]
    ReportData {
        /// REPORT_DATA, hex.
        found: String,
        /// The expected binding, hex.
        expected: String,
    },
}

/// One checked certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EkCertSummary {
    /// Its NV index.
    pub index: u32,
    /// Which key it holds.
    pub key: &'static str,
    /// Its serial number, hex.
    pub serial: String,
}

/// The checked set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EkCertificates {
    /// The EK CA's public key (SEC1), hex.
    pub ca_public: String,
    /// The EK certificates, in index order.
    pub certificates: Vec<EkCertSummary>,
}

/// The key type an identity index holds.
fn index_key(index: u32) -> Option<&'static str> {
    match index {
        EK_CERT_RSA_2048_INDEX => Some("RSA 2048"),
        EK_CERT_ECC_P256_INDEX => Some("ECC NIST P-256"),
        EK_CERT_ECC_P384_INDEX => Some("ECC NIST P-384"),
        EK_CA_CERT_INDEX => Some("ECC NIST P-384 (EK CA)"),
        _ => None,
    }
}

fn parse(index: u32, der: &[u8]) -> Result<ParsedCert, EkCertError> {
    if der.len() > MAX_EK_CERT_SIZE {
        return Err(EkCertError::TooLarge {
            index,
            size: der.len(),
        });
    }
    ParsedCert::from_der(der).map_err(|e| EkCertError::Decode {
        index,
        detail: e.to_string(),
    })
}

/// The key type of a certificate's SubjectPublicKeyInfo.
fn key_type(cert: &ParsedCert) -> &'static str {
    let spki = &cert.cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid == RSA_ENCRYPTION {
        return "RSA 2048";
    }
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return "another algorithm";
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    match curve {
        Some(SECP256R1) => "ECC NIST P-256",
        Some(SECP384R1) => "ECC NIST P-384",
        _ => "another curve",
    }
}

fn extension(cert: &ParsedCert, id: ObjectIdentifier) -> Option<&[u8]> {
    cert.cert
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == id)
        .map(|e| e.extn_value.as_bytes())
}

fn is_ca(cert: &ParsedCert) -> bool {
    extension(cert, BASIC_CONSTRAINTS)
        .and_then(|v| x509_cert::ext::pkix::BasicConstraints::from_der(v).ok())
        .is_some_and(|b| b.ca)
}

/// Verifies `cert`'s ECDSA P-384 / SHA-384 signature with `key`.
fn signed_by(cert: &ParsedCert, key: &p384::ecdsa::VerifyingKey) -> bool {
    crate::x509::signed_p384(cert, key)
}

/// The CA certificate's key, checked to be a self-signed P-384 CA.
fn ca_key(ca: &ParsedCert) -> Result<([u8; 97], p384::ecdsa::VerifyingKey), EkCertError> {
    if key_type(ca) != "ECC NIST P-384" {
        return Err(EkCertError::NotCa("its key is not ECC NIST P-384"));
    }
    let point = ca
        .cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or(EkCertError::NotCa("its key BIT STRING has unused bits"))?;
    let sec1: [u8; 97] = point
        .try_into()
        .map_err(|_| EkCertError::NotCa("its key is not an uncompressed point"))?;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
        .map_err(|_| EkCertError::NotCa("its key is not a point on P-384"))?;
    if !is_ca(ca) {
        return Err(EkCertError::NotCa("basicConstraints CA:TRUE is missing"));
    }
    if ca.subject_der() != ca.issuer_der() || !signed_by(ca, &key) {
        return Err(EkCertError::NotCa("it is not signed by its own key"));
    }
    Ok((sec1, key))
}

/// Most results [`verify_cached`] keeps (then it forgets them all and starts over).
pub const MAX_CACHED_SETS: usize = 256;

/// [`verify`], remembered per process: the result is a pure function of the certificates, the
/// manifest's CA key and EK (no clock is involved), so a relying party that sees the same
/// instance's certificates every round checks their signatures once.
pub fn verify_cached(
    certs: &[(u32, Vec<u8>)],
    manifest_ca: Option<&[u8; 97]>,
    manifest_ek: Option<&[u8]>,
) -> Result<EkCertificates, EkCertError> {
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<[u8; 32], Result<EkCertificates, EkCertError>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut h = Sha256::new();
    for (index, der) in certs {
        h.update(index.to_le_bytes());
        h.update((der.len() as u64).to_le_bytes());
        h.update(der);
    }
    match manifest_ca {
        Some(ca) => h.update([&[1u8][..], &ca[..]].concat()),
        None => h.update([0u8]),
    }
    match manifest_ek {
        Some(ek) => {
            h.update([1u8]);
            h.update((ek.len() as u64).to_le_bytes());
            h.update(ek);
        }
        None => h.update([0u8]),
    }
    let key: [u8; 32] = h.finalize().into();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return hit.clone();
    }
    let result = verify(certs, manifest_ca, manifest_ek);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED_SETS {
        cache.clear();
    }
    cache.insert(key, result.clone());
    result
}

/// Checks the EK certificates `(NV index, DER)` against the attested manifest: the CA
/// certificate's key is `manifest_ca`, it is a self-signed P-384 CA, every EK certificate is
/// an EK certificate of the index's key type, issued and signed by it, and the RSA EK
/// certificate holds the manifest's EK (`manifest_ek`, a TPMT_PUBLIC of template L-1; `None`
/// when the caller has no EK to compare, e.g. a verifier holding only certificates).
pub fn verify(
    certs: &[(u32, Vec<u8>)],
    manifest_ca: Option<&[u8; 97]>,
    manifest_ek: Option<&[u8]>,
) -> Result<EkCertificates, EkCertError> {
    let manifest_ca = manifest_ca.ok_or(EkCertError::NoManifestCa)?;
    let ca_der = certs
        .iter()
        .find(|(i, _)| *i == EK_CA_CERT_INDEX)
        .ok_or(EkCertError::NoCaCertificate)?;
    let ca = parse(EK_CA_CERT_INDEX, &ca_der.1)?;
    let (ca_public, key) = ca_key(&ca)?;
    if &ca_public != manifest_ca {
        return Err(EkCertError::CaKeyMismatch {
            found: hex::encode(ca_public),
            expected: hex::encode(manifest_ca),
        });
    }
    let template = svsm_tpm2::templates::KeyTemplate::ek_rsa_l1();
    let manifest_modulus = match manifest_ek {
        Some(ek) if template.matches(ek) => Some(
            ek.get(ek.len().saturating_sub(256)..)
                .ok_or(EkCertError::ManifestEk)?,
        ),
        Some(_) => return Err(EkCertError::ManifestEk),
        None => None,
    };
    let ek_usage = ObjectIdentifier::new_unwrap(tcg_oid::EK_CERTIFICATE);

    let mut summary = Vec::new();
    let mut sorted: Vec<&(u32, Vec<u8>)> = certs.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    for (index, der) in sorted {
        let index = *index;
        let expected = index_key(index).ok_or(EkCertError::UnknownIndex(index))?;
        if index == EK_CA_CERT_INDEX {
            continue;
        }
        let cert = parse(index, der)?;
        if cert.issuer_der() != ca.subject_der() {
            return Err(EkCertError::Issuer(index));
        }
        if !signed_by(&cert, &key) {
            return Err(EkCertError::Signature(index));
        }
        let eku = extension(&cert, EXT_KEY_USAGE)
            .and_then(|v| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(v).ok());
        if !eku.is_some_and(|u| u.0.contains(&ek_usage)) || is_ca(&cert) {
            return Err(EkCertError::NotEkCertificate(index));
        }
        let found = key_type(&cert);
        if found != expected {
            return Err(EkCertError::KeyType {
                index,
                found,
                expected,
            });
        }
        if let (EK_CERT_RSA_2048_INDEX, Some(manifest_modulus)) = (index, manifest_modulus) {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            let spki = cert
                .cert
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(|e| EkCertError::Decode {
                    index,
                    detail: e.to_string(),
                })?;
            let rsa =
                rsa::RsaPublicKey::from_public_key_der(&spki).map_err(|e| EkCertError::Decode {
                    index,
                    detail: e.to_string(),
                })?;
            if rsa.n().to_bytes_be() != manifest_modulus || rsa.e() != &rsa::BigUint::from(65537u32)
            {
                return Err(EkCertError::EkMismatch);
            }
        }
        summary.push(EkCertSummary {
            index,
            key: found,
            serial: cert.serial_hex(),
        });
    }
    Ok(EkCertificates {
        ca_public: hex::encode(ca_public),
        certificates: summary,
    })
}

/// The NV index a certificate belongs at, from its key (for certificates that arrive as files):
/// a CA certificate goes to 0x01C00100, an EK certificate to its key type's index.
pub fn index_for(der: &[u8]) -> Result<u32, EkCertError> {
    let cert = parse(0, der)?;
    if is_ca(&cert) {
        return Ok(EK_CA_CERT_INDEX);
    }
    match key_type(&cert) {
        "RSA 2048" => Ok(EK_CERT_RSA_2048_INDEX),
        "ECC NIST P-256" => Ok(EK_CERT_ECC_P256_INDEX),
        "ECC NIST P-384" => Ok(EK_CERT_ECC_P384_INDEX),
        found => Err(EkCertError::KeyType {
            index: 0,
            found,
            expected: "RSA 2048, ECC NIST P-256 or ECC NIST P-384",
        }),
    }
}

pub use svsm_abi::identity::ek_ca_report_data as ca_report_data;

/// For a verifier holding only certificates: the SNP report the CA certificate carries (its
/// REPORT_DATA checked to bind the CA key) and the CA key. The report itself must then be
/// appraised like any SNP report (VCEK chain, policy).
pub fn ca_report(ca_der: &[u8]) -> Result<([u8; REPORT_SIZE], [u8; 97]), EkCertError> {
    let ca = parse(EK_CA_CERT_INDEX, ca_der)?;
    let (ca_public, _) = ca_key(&ca)?;
    let value = extension(&ca, ObjectIdentifier::new_unwrap(CMW_EXTENSION_OID))
        .ok_or(EkCertError::NoReport)?;
    let record = der::asn1::OctetStringRef::from_der(value)
        .map_err(|_| EkCertError::Cmw("not an OCTET STRING (the cbor choice)"))?;
    let cmw: ciborium::Value =
        ciborium::from_reader(record.as_bytes()).map_err(|_| EkCertError::Cmw("not CBOR"))?;
    let items = cmw.as_array().ok_or(EkCertError::Cmw("not a CBOR array"))?;
    let [media, bytes, indicator] = items.as_slice() else {
        return Err(EkCertError::Cmw("not a 3-element record"));
    };
    if media.as_text() != Some(SNP_REPORT_MEDIA_TYPE) {
        return Err(EkCertError::Cmw("media type is not the SNP report's"));
    }
    if indicator.as_integer() != Some(CMW_INDICATOR_EVIDENCE.into()) {
        return Err(EkCertError::Cmw("indicator is not evidence (4)"));
    }
    let report: [u8; REPORT_SIZE] = bytes
        .as_bytes()
        .and_then(|b| b.as_slice().try_into().ok())
        .ok_or(EkCertError::Cmw("the report is not 1184 bytes"))?;
    let expected = ca_report_data(&ca_public);
    let found = svsm_abi::snp::AttestationReport::parse(&report)
        .map(|r| r.raw().report_data)
        .map_err(|_| EkCertError::Cmw("the report does not parse"))?;
    if found != expected {
        return Err(EkCertError::ReportData {
            found: hex::encode(found),
            expected: hex::encode(expected),
        });
    }
    Ok((report, ca_public))
}

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Why an AK certificate does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkCertError {
    /// A certificate does not parse.
    #[error("the {which} certificate does not parse: {detail}")]
    Decode {
        /// "AK" or "AK CA".
        which: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The CA certificate is not a self-signed P-256 CA.
    #[error("the AK CA certificate is not a self-signed ECC P-256 CA: {0}")]
    NotCa(&'static str),
    /// The AK certificate is not issued and signed by the CA.
    #[error("the AK certificate is not issued and signed (ECDSA-SHA256) by the AK CA")]
    NotIssued,
    /// The AK certificate lacks tcg-kp-AIKCertificate or is a CA.
    #[error("the certificate is not an AK certificate (tcg-kp-AIKCertificate, CA:FALSE)")]
    NotAkCertificate,
    /// The AK certificate's key is not the given AK.
    #[error("the AK certificate's key is not the given AK")]
    KeyMismatch,
    /// The given AK is not an ECC P-256 restricted signing key.
    #[error("the given AK: {0}")]
    AkPublic(String),
}

fn p256_signed_by(cert: &ParsedCert, key: &p256::ecdsa::VerifyingKey) -> bool {
    let c = &cert.cert;
    if c.signature_algorithm.oid != ECDSA_WITH_SHA256
        || c.tbs_certificate.signature != c.signature_algorithm
    {
        return false;
    }
    let Some(sig) = c.signature.as_bytes() else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
        return false;
    };
    key.verify(cert.tbs_bytes(), &sig).is_ok()
}

fn p256_key(cert: &ParsedCert) -> Option<p256::ecdsa::VerifyingKey> {
    if key_type(cert) != "ECC NIST P-256" {
        return None;
    }
    let point = cert
        .cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(point).ok()
}

/// Checks an AK certificate against the broker's AK CA certificate: a self-signed P-256 CA,
/// the AK certificate issued and signed by it, tcg-kp-AIKCertificate and CA:FALSE, and (when
/// given) its key equal to `ak_public` (the AK's TPMT_PUBLIC). Returns the AK certificate's
/// serial number, hex.
pub fn verify_ak_certificate(
    cert_der: &[u8],
    ca_der: &[u8],
    ak_public: Option<&[u8]>,
) -> Result<String, AkCertError> {
    let decode = |which: &'static str, der: &[u8]| {
        ParsedCert::from_der(der).map_err(|e| AkCertError::Decode {
            which,
            detail: e.to_string(),
        })
    };
    let ca = decode("AK CA", ca_der)?;
    let cert = decode("AK", cert_der)?;
    let ca_key = p256_key(&ca).ok_or(AkCertError::NotCa("its key is not ECC NIST P-256"))?;
    if !is_ca(&ca) {
        return Err(AkCertError::NotCa("basicConstraints CA:TRUE is missing"));
    }
    if ca.subject_der() != ca.issuer_der() || !p256_signed_by(&ca, &ca_key) {
        return Err(AkCertError::NotCa("it is not signed by its own key"));
    }
    if cert.issuer_der() != ca.subject_der() || !p256_signed_by(&cert, &ca_key) {
        return Err(AkCertError::NotIssued);
    }
    let aik = ObjectIdentifier::new_unwrap(tcg_oid::AK_CERTIFICATE);
    let eku = extension(&cert, EXT_KEY_USAGE)
        .and_then(|v| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(v).ok());
    if !eku.is_some_and(|u| u.0.contains(&aik)) || is_ca(&cert) {
        return Err(AkCertError::NotAkCertificate);
    }
    if let Some(public) = ak_public {
        let ak = crate::bundle_verify::tpm::AkPublic::parse(public)
            .map_err(|e| AkCertError::AkPublic(e.to_string()))?;
        let key = p256_key(&cert).ok_or(AkCertError::KeyMismatch)?;
        if key != ak.key {
            return Err(AkCertError::KeyMismatch);
        }
    }
    Ok(cert.serial_hex())
}
