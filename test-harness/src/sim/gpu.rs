//! A simulated NVIDIA Hopper GPU in confidential-computing mode, for tests and benchmarks that
//! need GPU evidence made for a nonce of their choosing (a real GPU's key is NVIDIA's).
//!
//! Its report is NVIDIA's real H100 report (`vectors/nvidia/hopperAttestationReport.txt`: real
//! measurement blocks and opaque data) with the requester nonce replaced and the SPDM 1.1
//! signature (ECDSA P-384 over SHA-384 of request ‖ response-without-signature) made again with
//! a TEST device key. The device certificate carries the report's FWID in a TCG DICE TcbInfo
//! extension in the DiceTcbInfo `fwids [6]` form (the real NVIDIA certificates use another
//! form, so both forms are exercised), and chains to a TEST root that every name marks as not
//! NVIDIA's: no verifier pinning NVIDIA's Device Identity CA accepts it.

use der::asn1::{BitString, ObjectIdentifier, OctetString, UtcTime};
use der::{Decode, Encode, Sequence};
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{DerSignature, Signature, SigningKey};
use p384::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha384};
use std::str::FromStr;
use std::time::Duration;
use svsm_abi::gpu::{gpu_nonce, GpuEvidence, GPU_NONCE_LEN};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use zerocopy::IntoBytes;

/// NVIDIA's real H100 report, the template.
const TEMPLATE_HEX: &str = include_str!("../../../vectors/nvidia/hopperAttestationReport.txt");
/// Where the requester nonce sits in the GET_MEASUREMENTS request (after version, code,
/// param1, param2).
const NONCE_OFFSET: usize = 4;
/// ECDSA P-384 r ‖ s at the end of the response.
const SIGNATURE_LEN: usize = 96;
/// NVIDIA's opaque-data TLV type of the FWID.
const OPAQUE_FWID: u16 = 20;
const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const TCG_DICE_TCB_INFO: &str = "2.23.133.5.4.1";
const SHA384_OID: &str = "2.16.840.1.101.3.4.2.2";

/// Why the simulated GPU could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimGpuError {
    /// The template is not the expected report.
    #[error("GPU report template: {0}")]
    Template(&'static str),
    /// DER encoding failed.
    #[error("der: {0}")]
    Der(#[from] der::Error),
    /// Key handling failed.
    #[error("key: {0}")]
    Key(String),
}

/// A simulated Hopper GPU: a TEST root, a device certificate and key, and the report template.
pub struct SimGpu {
    root_der: Vec<u8>,
    leaf_der: Vec<u8>,
    device_key: SigningKey,
    template: Vec<u8>,
}

#[derive(Sequence)]
struct Fwid {
    hash_alg: ObjectIdentifier,
    digest: OctetString,
}

fn key_from_seed(seed: &[u8], label: &[u8]) -> Result<SigningKey, SimGpuError> {
    // Any 48-byte value below the group order works; SHA-384 output is, with overwhelming
    // probability, and a counter retries otherwise.
    for counter in 0u8..=255 {
        let d = Sha384::new()
            .chain_update(label)
            .chain_update(seed)
            .chain_update([counter])
            .finalize();
        if let Ok(k) = SigningKey::from_slice(&d) {
            return Ok(k);
        }
    }
    Err(SimGpuError::Key("no scalar".into()))
}

fn name(cn: &str) -> Result<Name, SimGpuError> {
    Ok(Name::from_str(&format!(
        "CN={cn},O=svsm-vhsm TEST (not NVIDIA),C=US"
    ))?)
}

fn spki(key: &SigningKey) -> Result<SubjectPublicKeyInfoOwned, SimGpuError> {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| SimGpuError::Key(e.to_string()))?;
    Ok(SubjectPublicKeyInfoOwned::from_der(der.as_bytes())?)
}

fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Result<Extension, SimGpuError> {
    Ok(Extension {
        extn_id: ObjectIdentifier::new(oid).map_err(|e| SimGpuError::Key(e.to_string()))?,
        critical,
        extn_value: OctetString::new(value)?,
    })
}

/// A DER TLV with a short or long-form length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// DiceTcbInfo { vendor [0] "svsm-vhsm TEST", fwids [6] { FWID { sha384, fwid } } }.
fn tcb_info(fwid: &[u8]) -> Result<Vec<u8>, SimGpuError> {
    let fwid = Fwid {
        hash_alg: ObjectIdentifier::new(SHA384_OID).map_err(|e| SimGpuError::Key(e.to_string()))?,
        digest: OctetString::new(fwid)?,
    }
    .to_der()?;
    let mut body = tlv(0x80, b"svsm-vhsm TEST");
    body.extend(tlv(0xA6, &fwid));
    Ok(tlv(0x30, &body))
}

fn sign_cert(
    issuer_key: &SigningKey,
    issuer: Name,
    subject: Name,
    serial: u32,
    subject_key: &SigningKey,
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, SimGpuError> {
    let algorithm = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new(ECDSA_WITH_SHA384)
            .map_err(|e| SimGpuError::Key(e.to_string()))?,
        parameters: None,
    };
    // A fixed, wide window (2020-01-01 .. 2049-12-31): tests choose their own "now".
    let validity = Validity {
        not_before: Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(
            1_577_836_800,
        ))?),
        not_after: Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(
            2_524_521_600,
        ))?),
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::from(serial),
        signature: algorithm.clone(),
        issuer,
        validity,
        subject,
        subject_public_key_info: spki(subject_key)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature: DerSignature = issuer_key.sign(&tbs.to_der()?);
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.as_bytes())?,
    }
    .to_der()?)
}

/// The FWID TLV's value in the template's opaque data.
fn template_fwid(report: &[u8]) -> Result<Vec<u8>, SimGpuError> {
    let parsed = host_verifier::gpu::spdm::GpuReport::parse(report)
        .map_err(|_| SimGpuError::Template("does not parse"))?;
    let fields = parsed
        .opaque_fields()
        .map_err(|_| SimGpuError::Template("opaque data"))?;
    fields
        .into_iter()
        .find(|(t, _)| *t == OPAQUE_FWID)
        .map(|(_, v)| v.to_vec())
        .ok_or(SimGpuError::Template("no FWID"))
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl SimGpu {
    /// A GPU whose keys derive from `seed` (the same seed gives the same certificates' keys).
    pub fn new(seed: &[u8]) -> Result<SimGpu, SimGpuError> {
        let template =
            hex::decode(TEMPLATE_HEX.trim()).map_err(|_| SimGpuError::Template("not hex"))?;
        let fwid = template_fwid(&template)?;
        let root_key = key_from_seed(seed, b"sim-gpu root")?;
        let device_key = key_from_seed(seed, b"sim-gpu device")?;
        let root_name = name("NVIDIA-TEST Device Identity CA")?;
        let ca = BasicConstraints {
            ca: true,
            path_len_constraint: None,
        };
        let root_der = sign_cert(
            &root_key,
            root_name.clone(),
            root_name.clone(),
            1,
            &root_key,
            vec![
                ext("2.5.29.19", true, ca.to_der()?)?,
                ext(
                    "2.5.29.15",
                    true,
                    KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign).to_der()?,
                )?,
            ],
        )?;
        let leaf_der = sign_cert(
            &root_key,
            root_name,
            name("GH100-TEST device")?,
            2,
            &device_key,
            vec![
                ext(
                    "2.5.29.15",
                    true,
                    KeyUsage(KeyUsages::DigitalSignature.into()).to_der()?,
                )?,
                ext(TCG_DICE_TCB_INFO, false, tcb_info(&fwid)?)?,
            ],
        )?;
        Ok(SimGpu {
            root_der,
            leaf_der,
            device_key,
            template,
        })
    }

    /// The TEST root, PEM (what a verifier of this GPU's evidence must pin).
    pub fn root_pem(&self) -> String {
        pem(&self.root_der)
    }

    /// The device chain, PEM, leaf first (as NVIDIA's tools hand it over).
    pub fn chain_pem(&self) -> String {
        pem(&self.leaf_der) + &pem(&self.root_der)
    }

    /// A report (request ‖ response) for this requester nonce, freshly signed.
    pub fn report(&self, nonce: &[u8; GPU_NONCE_LEN]) -> Vec<u8> {
        let mut report = self.template.clone();
        if let Some(slot) = report.get_mut(NONCE_OFFSET..NONCE_OFFSET + GPU_NONCE_LEN) {
            slot.copy_from_slice(nonce);
        }
        let signed = report.len().saturating_sub(SIGNATURE_LEN);
        let signature: Signature = self.device_key.sign(&report[..signed]);
        report[signed..].copy_from_slice(&signature.to_bytes());
        report
    }

    /// The extra evidence (kind 1) a guest presents with the attestation whose relying party
    /// issued `rp_nonce`: a [`GpuEvidence`] container with a report for the derived nonce.
    pub fn evidence(&self, rp_nonce: &[u8]) -> Vec<u8> {
        self.container(&self.report(&gpu_nonce(rp_nonce)))
    }

    /// A container of `report` and this GPU's chain.
    pub fn container(&self, report: &[u8]) -> Vec<u8> {
        let chain = self.chain_pem();
        let mut out = GpuEvidence::header(report, chain.as_bytes())
            .map(|h| h.as_bytes().to_vec())
            .unwrap_or_default();
        out.extend_from_slice(report);
        out.extend_from_slice(chain.as_bytes());
        out
    }
}
