//! The evidence bundle: one JSON document that carries everything a relying party needs to
//! appraise an svsm-vhsm guest — CPU (SNP report and certificates), vTPM (quote, PCR values,
//! the logs that explain them) and SVSM (the services manifest binding them) — bound to one
//! nonce. The guest tools write it (`svsm-attest bundle`), `host-verifier bundle verify` reads
//! it; this crate owns only the shape. Everything in a bundle is untrusted until appraised:
//! decoding checks sizes and encodings, never meaning.
//!
//! Format (`"format": "svsm-vhsm-evidence-bundle"`, `"version": 2`; version 1 is accepted and
//! is version 2 without the two optional logs), binary fields in standard base64, PCR values in
//! lowercase hex:
//!
//! | field | content |
//! |---|---|
//! | `nonce` | the verifier's nonce (the quote's qualifyingData; REPORT_DATA = SHA-512(nonce ‖ manifest)) |
//! | `snp_report` | the 1184-byte ATTESTATION_REPORT (requested at VMPL0 by the SVSM) |
//! | `certificates` | the extended-report certificate table (GHCB §4.1.8.1), possibly empty |
//! | `manifest` | the vTPM service manifest (`svsm_abi::attest::VtpmManifest`, version 0x56480003) |
//! | `quote.attest` | the TPMS_ATTEST bytes of TPM2_Quote by the manifest's AK |
//! | `quote.signature` | the marshalled TPMT_SIGNATURE |
//! | `pcrs.sha256` | the 24 SHA-256 PCR values the quote covers, index order |
//! | `event_log` | the SVSM's own TCG crypto-agile log (`svsm_abi::eventlog`), SHA-384 in the manifest |
//! | `firmware_log` | optional (v2): the guest firmware's TCG crypto-agile log, as Linux exposes it in `binary_bios_measurements`; replayed after `event_log` |
//! | `ima_log` | optional (v2): Linux IMA's `binary_runtime_measurements` (PCR 10), whole or from entry `ima_offset` |
//! | `ima_offset` | optional (v2, only with `ima_log`): the index of `ima_log`'s first entry in the kernel's list (default 0); a verifier that kept a position appraises only what is new (continuous attestation) |
//! | `extra_evidence` | optional `[{kind, data}]` whose SHA-384 the manifest lists (e.g. GPU) |
//! | `ek_certificates` | optional (v2) `[{index, der}]`: the vTPM's EK certificates and their CA's, as read from the TCG NV indices (`svsm_abi::identity`; docs/identity.md) |

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// The `format` value.
pub const BUNDLE_FORMAT: &str = "svsm-vhsm-evidence-bundle";
/// The `version` written.
pub const BUNDLE_VERSION: u32 = 2;
/// The oldest `version` read (no `firmware_log`, no `ima_log`).
pub const BUNDLE_VERSION_MIN: u32 = 1;
/// Largest bundle accepted for decoding (the event log bound dominates).
pub const MAX_BUNDLE: usize = 8 * 1024 * 1024;

/// Why a bundle could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Larger than [`MAX_BUNDLE`].
    #[error("evidence bundle of {0} bytes exceeds the {MAX_BUNDLE}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the bundle's shape.
    #[error("evidence bundle is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// Another format or version.
    #[error("not an svsm-vhsm evidence bundle version {BUNDLE_VERSION_MIN}..={BUNDLE_VERSION} (format {format:?}, version {version})")]
    Format {
        /// The format field.
        format: String,
        /// The version field.
        version: u32,
    },
    /// A base64 or hex field does not decode.
    #[error("evidence bundle field {0} is not valid base64/hex")]
    Encoding(&'static str),
    /// A field has the wrong size.
    #[error("evidence bundle field {0} has the wrong size")]
    Size(&'static str),
    /// A field that describes a log the bundle does not carry.
    #[error("evidence bundle field {0} is present without ima_log")]
    WithoutLog(&'static str),
    /// A version-1 bundle carries a field version 2 introduced.
    #[error("evidence bundle version 1 cannot carry {0} (a version-2 field)")]
    FieldOfNewerVersion(&'static str),
}

/// The JSON form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleJson {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// [`BUNDLE_VERSION`].
    pub version: u32,
    /// Base64.
    pub nonce: String,
    /// Base64.
    pub snp_report: String,
    /// Base64.
    pub certificates: String,
    /// Base64.
    pub manifest: String,
    /// The quote.
    pub quote: QuoteJson,
    /// PCR values.
    pub pcrs: PcrsJson,
    /// Base64.
    pub event_log: String,
    /// Base64; absent when the bundle has no firmware log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_log: Option<String>,
    /// Base64; absent when the bundle has no IMA log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_log: Option<String>,
    /// Index of `ima_log`'s first entry; absent means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_offset: Option<u64>,
    /// Extra evidence.
    #[serde(default)]
    pub extra_evidence: Vec<ExtraJson>,
    /// EK certificates (NV index, DER); absent when none were read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ek_certificates: Vec<EkCertJson>,
}

/// One EK certificate, JSON form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EkCertJson {
    /// The TCG NV index it was read from.
    pub index: u32,
    /// Base64 DER.
    pub der: String,
}

/// Most EK certificates a bundle carries (the CA's and three EKs').
pub const MAX_EK_CERTIFICATES: usize = 4;

/// The quote, JSON form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuoteJson {
    /// Base64 TPMS_ATTEST.
    pub attest: String,
    /// Base64 TPMT_SIGNATURE.
    pub signature: String,
}

/// PCR values, JSON form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PcrsJson {
    /// 24 lowercase hex SHA-256 values.
    pub sha256: Vec<String>,
}

/// One piece of extra evidence, JSON form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtraJson {
    /// Kind (1 = GPU attestation report).
    pub kind: u16,
    /// Base64 data.
    pub data: String,
}

/// A decoded bundle (shapes checked, nothing appraised).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The nonce.
    pub nonce: Vec<u8>,
    /// The SNP report.
    pub snp_report: Vec<u8>,
    /// The certificate table.
    pub certificates: Vec<u8>,
    /// The vTPM manifest.
    pub manifest: Vec<u8>,
    /// TPMS_ATTEST.
    pub quote_attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub quote_signature: Vec<u8>,
    /// The 24 SHA-256 PCR values.
    pub pcrs_sha256: Vec<[u8; 32]>,
    /// The SVSM's event log.
    pub event_log: Vec<u8>,
    /// The guest firmware's event log (replayed after the SVSM's), if supplied.
    pub firmware_log: Option<Vec<u8>>,
    /// The IMA runtime measurement log, if supplied.
    pub ima_log: Option<Vec<u8>>,
    /// Index of `ima_log`'s first entry in the kernel's list (0: the whole list).
    pub ima_offset: u64,
    /// Extra evidence (kind, data).
    pub extra_evidence: Vec<(u16, Vec<u8>)>,
    /// The vTPM's EK certificates (NV index, DER), if read.
    pub ek_certificates: Vec<(u32, Vec<u8>)>,
}

fn b64(field: &'static str, s: &str) -> Result<Vec<u8>, BundleError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| BundleError::Encoding(field))
}

fn enc(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Bundle {
    /// Decodes a bundle from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE {
            return Err(BundleError::TooLarge(bytes.len()));
        }
        let j: BundleJson = serde_json::from_slice(bytes)?;
        Bundle::from_parsed(j)
    }

    /// Decodes a bundle already parsed as JSON (for example a field of a larger request).
    pub fn from_parsed(j: BundleJson) -> Result<Bundle, BundleError> {
        if j.format != BUNDLE_FORMAT || !(BUNDLE_VERSION_MIN..=BUNDLE_VERSION).contains(&j.version)
        {
            return Err(BundleError::Format {
                format: j.format,
                version: j.version,
            });
        }
        if j.version < 2 {
            if j.firmware_log.is_some() {
                return Err(BundleError::FieldOfNewerVersion("firmware_log"));
            }
            if j.ima_log.is_some() {
                return Err(BundleError::FieldOfNewerVersion("ima_log"));
            }
            if !j.ek_certificates.is_empty() {
                return Err(BundleError::FieldOfNewerVersion("ek_certificates"));
            }
        }
        if j.ek_certificates.len() > MAX_EK_CERTIFICATES {
            return Err(BundleError::Size("ek_certificates"));
        }
        if j.ima_offset.is_some() && j.ima_log.is_none() {
            return Err(BundleError::WithoutLog("ima_offset"));
        }
        if j.pcrs.sha256.len() != 24 {
            return Err(BundleError::Size("pcrs.sha256"));
        }
        let pcrs_sha256 = j
            .pcrs
            .sha256
            .iter()
            .map(|h| {
                let v = hex::decode(h).map_err(|_| BundleError::Encoding("pcrs.sha256"))?;
                <[u8; 32]>::try_from(v.as_slice()).map_err(|_| BundleError::Size("pcrs.sha256"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Bundle {
            nonce: b64("nonce", &j.nonce)?,
            snp_report: b64("snp_report", &j.snp_report)?,
            certificates: b64("certificates", &j.certificates)?,
            manifest: b64("manifest", &j.manifest)?,
            quote_attest: b64("quote.attest", &j.quote.attest)?,
            quote_signature: b64("quote.signature", &j.quote.signature)?,
            pcrs_sha256,
            event_log: b64("event_log", &j.event_log)?,
            firmware_log: j
                .firmware_log
                .as_deref()
                .map(|s| b64("firmware_log", s))
                .transpose()?,
            ima_log: j
                .ima_log
                .as_deref()
                .map(|s| b64("ima_log", s))
                .transpose()?,
            ima_offset: j.ima_offset.unwrap_or(0),
            extra_evidence: j
                .extra_evidence
                .iter()
                .map(|e| Ok((e.kind, b64("extra_evidence.data", &e.data)?)))
                .collect::<Result<_, BundleError>>()?,
            ek_certificates: j
                .ek_certificates
                .iter()
                .map(|c| Ok((c.index, b64("ek_certificates.der", &c.der)?)))
                .collect::<Result<_, BundleError>>()?,
        })
    }

    /// Encodes the bundle as JSON.
    pub fn to_json(&self) -> Result<String, BundleError> {
        let j = BundleJson {
            format: BUNDLE_FORMAT.to_owned(),
            version: BUNDLE_VERSION,
            nonce: enc(&self.nonce),
            snp_report: enc(&self.snp_report),
            certificates: enc(&self.certificates),
            manifest: enc(&self.manifest),
            quote: QuoteJson {
                attest: enc(&self.quote_attest),
                signature: enc(&self.quote_signature),
            },
            pcrs: PcrsJson {
                sha256: self.pcrs_sha256.iter().map(hex::encode).collect(),
            },
            event_log: enc(&self.event_log),
            firmware_log: self.firmware_log.as_deref().map(enc),
            ima_log: self.ima_log.as_deref().map(enc),
            ima_offset: (self.ima_log.is_some() && self.ima_offset != 0).then_some(self.ima_offset),
            extra_evidence: self
                .extra_evidence
                .iter()
                .map(|(kind, d)| ExtraJson {
                    kind: *kind,
                    data: enc(d),
                })
                .collect(),
            ek_certificates: self
                .ek_certificates
                .iter()
                .map(|(index, der)| EkCertJson {
                    index: *index,
                    der: enc(der),
                })
                .collect(),
        };
        Ok(serde_json::to_string_pretty(&j)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        Bundle {
            nonce: vec![1; 32],
            snp_report: vec![2; 1184],
            certificates: vec![],
            manifest: vec![3; 200],
            quote_attest: vec![4; 100],
            quote_signature: vec![5; 72],
            pcrs_sha256: vec![[6; 32]; 24],
            event_log: vec![7; 60],
            firmware_log: Some(vec![8; 90]),
            ima_log: Some(vec![9; 120]),
            ima_offset: 0,
            extra_evidence: vec![(1, vec![10; 5])],
            ek_certificates: vec![(0x01C0_0002, vec![11; 700])],
        }
    }

    #[test]
    fn round_trips_with_and_without_the_optional_logs() {
        let b = sample();
        let json = b.to_json().expect("encodes");
        assert_eq!(Bundle::from_json(json.as_bytes()).expect("decodes"), b);
        let bare = Bundle {
            firmware_log: None,
            ima_log: None,
            ima_offset: 0,
            ..sample()
        };
        let json = bare.to_json().expect("encodes");
        assert!(!json.contains("firmware_log") && !json.contains("ima_log"));
        assert_eq!(Bundle::from_json(json.as_bytes()).expect("decodes"), bare);
    }

    #[test]
    fn an_ima_offset_travels_with_its_log_only() {
        let b = Bundle {
            ima_offset: 1234,
            ..sample()
        };
        let json = b.to_json().expect("encodes");
        assert!(json.contains("\"ima_offset\": 1234"), "{json}");
        assert_eq!(Bundle::from_json(json.as_bytes()).expect("decodes"), b);
        // Offset 0 is not written.
        assert!(!sample().to_json().expect("encodes").contains("ima_offset"));
        let orphan = b
            .to_json()
            .expect("encodes")
            .replace("\"ima_log\"", "\"unused\"");
        let mut v: serde_json::Value = serde_json::from_str(&orphan).expect("json");
        v.as_object_mut().expect("object").remove("unused");
        assert!(matches!(
            Bundle::from_json(v.to_string().as_bytes()),
            Err(BundleError::WithoutLog("ima_offset"))
        ));
    }

    #[test]
    fn version_1_is_read_but_cannot_carry_version_2_fields() {
        let bare = Bundle {
            firmware_log: None,
            ima_log: None,
            ima_offset: 0,
            ek_certificates: vec![],
            ..sample()
        };
        let v1 = bare
            .to_json()
            .expect("encodes")
            .replace("\"version\": 2", "\"version\": 1");
        assert_eq!(Bundle::from_json(v1.as_bytes()).expect("v1 decodes"), bare);
        let v1_with_log = sample()
            .to_json()
            .expect("encodes")
            .replace("\"version\": 2", "\"version\": 1");
        assert!(matches!(
            Bundle::from_json(v1_with_log.as_bytes()),
            Err(BundleError::FieldOfNewerVersion("firmware_log"))
        ));
        let v1_with_certs = Bundle {
            ek_certificates: vec![(0x01C0_0002, vec![1; 10])],
            ..bare.clone()
        }
        .to_json()
        .expect("encodes")
        .replace("\"version\": 2", "\"version\": 1");
        assert!(matches!(
            Bundle::from_json(v1_with_certs.as_bytes()),
            Err(BundleError::FieldOfNewerVersion("ek_certificates"))
        ));
        let too_many = Bundle {
            ek_certificates: vec![(0x01C0_0002, vec![1; 10]); MAX_EK_CERTIFICATES + 1],
            ..bare.clone()
        }
        .to_json()
        .expect("encodes");
        assert!(matches!(
            Bundle::from_json(too_many.as_bytes()),
            Err(BundleError::Size("ek_certificates"))
        ));
        let v3 = bare
            .to_json()
            .expect("encodes")
            .replace("\"version\": 2", "\"version\": 3");
        assert!(matches!(
            Bundle::from_json(v3.as_bytes()),
            Err(BundleError::Format { version: 3, .. })
        ));
    }

    #[test]
    fn malformed_fields_are_typed_errors() {
        let json = sample().to_json().expect("encodes");
        let bad = json.replacen(&enc(&[9; 120]), "!!not base64!!", 1);
        assert!(matches!(
            Bundle::from_json(bad.as_bytes()),
            Err(BundleError::Encoding("ima_log"))
        ));
        assert!(matches!(
            Bundle::from_json(b"{}"),
            Err(BundleError::Json(_))
        ));
        let big = vec![b' '; MAX_BUNDLE + 1];
        assert!(matches!(
            Bundle::from_json(&big),
            Err(BundleError::TooLarge(_))
        ));
    }
}
