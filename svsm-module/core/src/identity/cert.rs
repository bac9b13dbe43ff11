//! X.509 certificates of the vTPM's identity, built with the RustCrypto `x509-cert` types and
//! signed with the EK CA's P-384 key (ECDSA-SHA384, RFC 6979 deterministic nonces, so the same
//! inputs give the same bytes). Profiles (docs/identity.md):
//! - the EK CA: self-signed, CA:TRUE pathlen 0, keyCertSign, and the SNP report that binds the
//!   CA key in a RATS CMW extension (`svsm_abi::identity::CMW_EXTENSION_OID`);
//! - an EK: TCG EK Credential Profile 2.x §3.2: empty subject, critical subjectAltName with the
//!   TPM manufacturer, model and version, CA:FALSE, keyEncipherment (RSA) or keyAgreement
//!   (ECC), extended key usage tcg-kp-EKCertificate, the TPM specification in
//!   subjectDirectoryAttributes, authorityKeyIdentifier.
//!
//! The module has no trusted clock: validity is fixed (notBefore 2024-01-01, notAfter
//! 9999-12-31 23:59:59, RFC 5280 §4.1.2.5's "no well-defined expiration").

use super::IdentityError;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use der::asn1::{
    Any, BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString, PrintableStringRef,
    SetOfVec, UintRef, UtcTime, Utf8StringRef,
};
use der::{DateTime, Encode, Sequence};
use p384::ecdsa::signature::Signer;
use sha2::{Digest, Sha256};
use svsm_abi::identity::{snp_report_cmw, tcg_oid, CMW_EXTENSION_OID};
use x509_cert::attr::{Attribute, AttributeTypeAndValue};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const SUBJECT_DIRECTORY_ATTRIBUTES: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.9");

/// An EK's public key as the certificate carries it.
#[derive(Clone, Copy, Debug)]
pub enum EkKey<'a> {
    /// RSA: the modulus (exponent 65537, the template's 0).
    Rsa {
        /// Big-endian modulus.
        modulus: &'a [u8],
    },
    /// ECC NIST P-256: the affine coordinates.
    P256 {
        /// X.
        x: &'a [u8],
        /// Y.
        y: &'a [u8],
    },
    /// ECC NIST P-384: the affine coordinates.
    P384 {
        /// X.
        x: &'a [u8],
        /// Y.
        y: &'a [u8],
    },
}

/// What the TPM says about itself (TPM_PT_* fixed properties), for the EK certificates'
/// subjectAltName and tpmSpecification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TpmFacts {
    /// TPM_PT_MANUFACTURER.
    pub manufacturer: u32,
    /// TPM_PT_VENDOR_STRING_1..4, trailing NULs and spaces removed.
    pub model: String,
    /// TPM_PT_FIRMWARE_VERSION_1.
    pub firmware_version: u32,
    /// TPM_PT_LEVEL.
    pub level: u32,
    /// TPM_PT_REVISION (e.g. 164 for 1.64).
    pub revision: u32,
}

/// `RSAPublicKey` (RFC 8017 §A.1.1).
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// `ECDSA-Sig-Value` (RFC 5480 / SEC1).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// TCG `TPMSpecification` (EK Credential Profile Annex A).
#[derive(Sequence)]
struct TpmSpecification<'a> {
    family: Utf8StringRef<'a>,
    level: u32,
    revision: u32,
}

fn enc(_: der::Error) -> IdentityError {
    IdentityError::Encoding
}

fn oid(s: &str) -> Result<ObjectIdentifier, IdentityError> {
    ObjectIdentifier::new(s).map_err(|_| IdentityError::Encoding)
}

fn extension<T: Encode>(
    id: ObjectIdentifier,
    critical: bool,
    value: &T,
) -> Result<Extension, IdentityError> {
    Ok(Extension {
        extn_id: id,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(enc)?).map_err(enc)?,
    })
}

fn attribute(id: ObjectIdentifier, value: Any) -> Result<RelativeDistinguishedName, IdentityError> {
    let set = SetOfVec::try_from(vec![AttributeTypeAndValue { oid: id, value }]).map_err(enc)?;
    Ok(RelativeDistinguishedName(set))
}

fn utf8(s: &str) -> Result<Any, IdentityError> {
    Any::encode_from(&Utf8StringRef::new(s).map_err(enc)?).map_err(enc)
}

/// The EK CA's name: CN, O and a serialNumber unique to the key (hex of the first 8 bytes of
/// SHA-256 of its public key), so chains of different launches never share an issuer name.
pub fn ca_name(ca_public: &[u8; 97]) -> Result<Name, IdentityError> {
    let id = hex8(ca_public);
    let serial = Any::encode_from(&PrintableStringRef::new(&id).map_err(enc)?).map_err(enc)?;
    Ok(RdnSequence(vec![
        attribute(O, utf8("svsm-vhsm")?)?,
        attribute(CN, utf8("svsm-vhsm vTPM EK CA")?)?,
        attribute(SERIAL_NUMBER, serial)?,
    ]))
}

fn hex8(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest
        .iter()
        .take(8)
        .fold(String::new(), |s, b| s + &format!("{b:02x}"))
}

/// Key identifier of a public key: the leftmost 160 bits of its SHA-256 (RFC 7093 §2, method 1).
fn key_id(public: &[u8]) -> Result<OctetString, IdentityError> {
    let digest = Sha256::digest(public);
    OctetString::new(digest.get(..20).unwrap_or(&[])).map_err(enc)
}

/// A positive serial number of 16 bytes from SHA-256 of `seed` (top bit cleared).
fn serial(seed: &[&[u8]]) -> Result<SerialNumber, IdentityError> {
    let mut h = Sha256::new();
    for part in seed {
        h.update(part);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(h.finalize().get(..16).unwrap_or(&[0; 16]));
    bytes[0] = (bytes[0] & 0x7F) | 0x40;
    SerialNumber::new(&bytes).map_err(enc)
}

fn validity() -> Result<Validity, IdentityError> {
    let not_before = DateTime::new(2024, 1, 1, 0, 0, 0).map_err(enc)?;
    let not_after = DateTime::new(9999, 12, 31, 23, 59, 59).map_err(enc)?;
    Ok(Validity {
        not_before: Time::UtcTime(UtcTime::from_date_time(not_before).map_err(enc)?),
        not_after: Time::GeneralTime(GeneralizedTime::from_date_time(not_after)),
    })
}

fn ecdsa_sha384() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA384,
        parameters: None,
    }
}

fn ec_spki(
    curve: ObjectIdentifier,
    x: &[u8],
    y: &[u8],
) -> Result<SubjectPublicKeyInfoOwned, IdentityError> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&curve).map_err(enc)?),
        },
        subject_public_key: BitString::from_bytes(&point).map_err(enc)?,
    })
}

fn spki(key: EkKey<'_>) -> Result<SubjectPublicKeyInfoOwned, IdentityError> {
    match key {
        EkKey::Rsa { modulus } => {
            let rsa = RsaPublicKey {
                modulus: UintRef::new(modulus).map_err(enc)?,
                public_exponent: UintRef::new(&[0x01, 0x00, 0x01]).map_err(enc)?,
            };
            Ok(SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: RSA_ENCRYPTION,
                    parameters: Some(Any::encode_from(&Null).map_err(enc)?),
                },
                subject_public_key: BitString::from_bytes(&rsa.to_der().map_err(enc)?)
                    .map_err(enc)?,
            })
        }
        EkKey::P256 { x, y } => ec_spki(SECP256R1, x, y),
        EkKey::P384 { x, y } => ec_spki(SECP384R1, x, y),
    }
}

/// Signs `tbs` with the CA key and assembles the certificate's DER.
fn sign(tbs: TbsCertificate, ca: &p384::ecdsa::SigningKey) -> Result<Vec<u8>, IdentityError> {
    let tbs_der = tbs.to_der().map_err(enc)?;
    let signature: p384::ecdsa::Signature = ca.sign(&tbs_der);
    let (r, s) = signature.split_bytes();
    let value = EcdsaSigValue {
        r: UintRef::new(&r).map_err(enc)?,
        s: UintRef::new(&s).map_err(enc)?,
    };
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha384(),
        signature: BitString::from_bytes(&value.to_der().map_err(enc)?).map_err(enc)?,
    };
    certificate.to_der().map_err(enc)
}

/// The EK CA's self-signed certificate, carrying `report` (the raw SNP report that binds the
/// CA key) in svsm-vhsm's extension when there is one.
pub fn ca_certificate(
    ca: &p384::ecdsa::SigningKey,
    ca_public: &[u8; 97],
    report: Option<&[u8; 1184]>,
) -> Result<Vec<u8>, IdentityError> {
    let name = ca_name(ca_public)?;
    let (x, y) = ca_public
        .get(1..49)
        .zip(ca_public.get(49..97))
        .ok_or(IdentityError::Encoding)?;
    let mut extensions = vec![
        extension(
            BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
        )?,
        extension(
            KEY_USAGE,
            true,
            &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        )?,
        extension(
            SUBJECT_KEY_ID,
            false,
            &SubjectKeyIdentifier(key_id(ca_public)?),
        )?,
    ];
    if let Some(report) = report {
        let record = snp_report_cmw(report);
        extensions.push(extension(
            oid(CMW_EXTENSION_OID)?,
            false,
            &OctetString::new(record.as_slice()).map_err(enc)?,
        )?);
    }
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial(&[b"ek-ca", ca_public])?,
        signature: ecdsa_sha384(),
        issuer: name.clone(),
        validity: validity()?,
        subject: name,
        subject_public_key_info: ec_spki(SECP384R1, x, y)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign(tbs, ca)
}

/// An EK certificate (TCG EK Credential Profile) for `key`, issued by the CA.
pub fn ek_certificate(
    ca: &p384::ecdsa::SigningKey,
    ca_public: &[u8; 97],
    key: EkKey<'_>,
    ek_public_area: &[u8],
    facts: &TpmFacts,
) -> Result<Vec<u8>, IdentityError> {
    let subject_alt_name = SubjectAltName(vec![GeneralName::DirectoryName(RdnSequence(vec![
        attribute(
            oid(tcg_oid::TPM_MANUFACTURER)?,
            utf8(&format!("id:{:08X}", facts.manufacturer))?,
        )?,
        attribute(oid(tcg_oid::TPM_MODEL)?, utf8(&facts.model)?)?,
        attribute(
            oid(tcg_oid::TPM_VERSION)?,
            utf8(&format!("id:{:08X}", facts.firmware_version))?,
        )?,
    ]))]);
    let usage = match key {
        EkKey::Rsa { .. } => KeyUsages::KeyEncipherment,
        EkKey::P256 { .. } | EkKey::P384 { .. } => KeyUsages::KeyAgreement,
    };
    let specification = TpmSpecification {
        family: Utf8StringRef::new("2.0").map_err(enc)?,
        level: facts.level,
        revision: facts.revision,
    };
    let spec_value = Any::encode_from(&specification).map_err(enc)?;
    // RFC 5280's SubjectDirectoryAttributes: SEQUENCE OF Attribute (type + SET OF values;
    // x509-cert's type of that name holds single values, so the sequence is built here).
    let directory = vec![Attribute {
        oid: oid(tcg_oid::TPM_SPECIFICATION)?,
        values: SetOfVec::try_from(vec![spec_value]).map_err(enc)?,
    }];
    let extensions = vec![
        extension(
            BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        )?,
        extension(KEY_USAGE, true, &KeyUsage(usage.into()))?,
        extension(
            EXT_KEY_USAGE,
            false,
            &ExtendedKeyUsage(vec![oid(tcg_oid::EK_CERTIFICATE)?]),
        )?,
        // Critical: the subject is empty (RFC 5280 §4.2.1.6).
        extension(SUBJECT_ALT_NAME, true, &subject_alt_name)?,
        extension(SUBJECT_DIRECTORY_ATTRIBUTES, false, &directory)?,
        extension(
            AUTHORITY_KEY_ID,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(key_id(ca_public)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial(&[b"ek", ca_public, ek_public_area])?,
        signature: ecdsa_sha384(),
        issuer: ca_name(ca_public)?,
        validity: validity()?,
        subject: RdnSequence(Vec::new()),
        subject_public_key_info: spki(key)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign(tbs, ca)
}
