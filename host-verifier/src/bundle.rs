//! The evidence bundle: one JSON document that carries everything a relying party needs to
//! appraise an svsm-vhsm guest — CPU (SNP report and certificates), vTPM (quote, PCR values,
//! event log) and SVSM (the services manifest binding them) — bound to one nonce.
//!
//! Format (`"format": "svsm-vhsm-evidence-bundle"`, `"version": 1`), binary fields in standard
//! base64, PCR values in lowercase hex:
//!
//! | field | content |
//! |---|---|
//! | `nonce` | the verifier's nonce (the quote's qualifyingData; REPORT_DATA = SHA-512(nonce ‖ manifest)) |
//! | `snp_report` | the 1184-byte ATTESTATION_REPORT (requested at VMPL0 by the SVSM) |
//! | `certificates` | the extended-report certificate table (GHCB §4.1.8.1), possibly empty |
//! | `manifest` | the vTPM service manifest version 2 (`svsm_abi::attest::VtpmManifestV2`) |
//! | `quote.attest` | the TPMS_ATTEST bytes of TPM2_Quote by the manifest's AK |
//! | `quote.signature` | the marshalled TPMT_SIGNATURE |
//! | `pcrs.sha256` | the 24 SHA-256 PCR values the quote covers, index order |
//! | `event_log` | the TCG crypto-agile event log (`svsm_abi::eventlog`) |
//! | `extra_evidence` | optional `[{kind, data}]` whose SHA-384 the manifest lists (e.g. GPU) |
//!
//! Everything in a bundle is untrusted until appraised; decoding only checks the shape.

use serde::{Deserialize, Serialize};

/// The `format` value.
pub const BUNDLE_FORMAT: &str = "svsm-vhsm-evidence-bundle";
/// The `version` value.
pub const BUNDLE_VERSION: u32 = 1;
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
    #[error("not an svsm-vhsm evidence bundle version {BUNDLE_VERSION} (format {format:?}, version {version})")]
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
    /// Extra evidence.
    #[serde(default)]
    pub extra_evidence: Vec<ExtraJson>,
}

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
    /// The vTPM manifest version 1.
    pub manifest: Vec<u8>,
    /// TPMS_ATTEST.
    pub quote_attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub quote_signature: Vec<u8>,
    /// The 24 SHA-256 PCR values.
    pub pcrs_sha256: Vec<[u8; 32]>,
    /// The event log.
    pub event_log: Vec<u8>,
    /// Extra evidence (kind, data).
    pub extra_evidence: Vec<(u16, Vec<u8>)>,
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
        if j.format != BUNDLE_FORMAT || j.version != BUNDLE_VERSION {
            return Err(BundleError::Format {
                format: j.format,
                version: j.version,
            });
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
            extra_evidence: j
                .extra_evidence
                .iter()
                .map(|e| Ok((e.kind, b64("extra_evidence.data", &e.data)?)))
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
            extra_evidence: self
                .extra_evidence
                .iter()
                .map(|(kind, d)| ExtraJson {
                    kind: *kind,
                    data: enc(d),
                })
                .collect(),
        };
        Ok(serde_json::to_string_pretty(&j)?)
    }
}
