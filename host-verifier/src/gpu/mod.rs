//! NVIDIA Hopper GPU evidence, appraised offline (docs/gpu.md): the SPDM 1.1 measurements
//! report ([`spdm`]) and the GPU's device certificate chain, pinned to NVIDIA's Device Identity
//! CA (compiled in, like AMD's roots). Every check is named ([`GpuCheckId`]) and every failure
//! typed ([`GpuFailure`]). Trusts only the pinned root and the caller's nonce and reference
//! values.

pub mod spdm;

use crate::x509::{p384_key, signed_p384, verify_p384_sha384, ParsedCert};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode, Reader, Tagged};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spdm::{GpuClaims, GpuReport, SpdmError, MEASUREMENT_LEN, NONCE_LEN};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// NVIDIA Device Identity CA, the root every Hopper device chain ends in.
pub const NVIDIA_DEVICE_ROOT_PEM: &[u8] =
    include_bytes!("../../certs/nvidia-device-identity-ca.pem");
/// Most certificates a device chain may have.
pub const MAX_CHAIN: usize = 8;
/// tcg-dice-TcbInfo.
const TCG_DICE_TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1");

/// Every check of a GPU appraisal, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum GpuCheckId {
    /// The report parses (SPDM 1.1 request + signed MEASUREMENTS response).
    Report,
    /// The chain (leaf first) ends in the pinned NVIDIA Device Identity CA.
    ChainRoot,
    /// Each certificate is signed (ECDSA P-384, SHA-384) by the next.
    Chain,
    /// Every certificate is valid at the appraisal time.
    ChainValidity,
    /// The leaf's TCG DICE TcbInfo FWID equals the report's FWID.
    Fwid,
    /// The signature over request ‖ response verifies with the leaf's key.
    Signature,
    /// The requester nonce is the one the relying party expects.
    Nonce,
    /// Every measurement is one of the reference values for its index.
    Measurements,
}

impl GpuCheckId {
    /// Every check, in report order.
    pub const ALL: [GpuCheckId; 8] = [
        GpuCheckId::Report,
        GpuCheckId::ChainRoot,
        GpuCheckId::Chain,
        GpuCheckId::ChainValidity,
        GpuCheckId::Fwid,
        GpuCheckId::Signature,
        GpuCheckId::Nonce,
        GpuCheckId::Measurements,
    ];

    /// The stable name used in output.
    pub const fn name(self) -> &'static str {
        match self {
            GpuCheckId::Report => "gpu.report",
            GpuCheckId::ChainRoot => "gpu.chain_root",
            GpuCheckId::Chain => "gpu.chain",
            GpuCheckId::ChainValidity => "gpu.cert_validity",
            GpuCheckId::Fwid => "gpu.fwid",
            GpuCheckId::Signature => "gpu.signature",
            GpuCheckId::Nonce => "gpu.nonce",
            GpuCheckId::Measurements => "gpu.measurements",
        }
    }
}

/// Why a GPU check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuFailure {
    /// The report does not parse.
    #[error("{0}")]
    Report(SpdmError),
    /// The chain file holds no certificate, too many, or one that does not parse.
    #[error("certificate chain: {0}")]
    ChainFile(String),
    /// The chain is only the root: no device (signing) certificate.
    #[error("the chain holds only the root: there is no device certificate to verify with")]
    NoDeviceCertificate,
    /// The chain does not end in the pinned root.
    #[error("the chain does not end in a pinned root (the NVIDIA Device Identity CA unless the caller named others)")]
    NotPinnedRoot,
    /// A certificate is not signed by the next one.
    #[error(
        "certificate {position} ({subject}) is not signed (ECDSA P-384/SHA-384) by the next one"
    )]
    ChainBroken {
        /// Its position, 0 = leaf.
        position: usize,
        /// Its subject.
        subject: String,
    },
    /// A certificate is outside its validity at the appraisal time.
    #[error("certificate {position} ({subject}) is not valid at the appraisal time")]
    Expired {
        /// Its position.
        position: usize,
        /// Its subject.
        subject: String,
    },
    /// The leaf has no TCG DICE TcbInfo FWID.
    #[error("the leaf certificate carries no TCG DICE TcbInfo FWID (is the signing certificate missing?)")]
    NoLeafFwid,
    /// The report carries no FWID.
    #[error("the report's opaque data carries no FWID")]
    NoReportFwid,
    /// The FWIDs differ.
    #[error("the report's FWID {report} is not the leaf certificate's {leaf}")]
    FwidMismatch {
        /// The report's, hex.
        report: String,
        /// The leaf's, hex.
        leaf: String,
    },
    /// The signature does not verify.
    #[error("the report's signature does not verify with the leaf certificate's key")]
    BadSignature,
    /// The nonce is not the expected one.
    #[error("the report's nonce {found} is not the expected {expected}")]
    NonceMismatch {
        /// Found, hex.
        found: String,
        /// Expected, hex.
        expected: String,
    },
    /// Measurements outside the reference values.
    #[error("measurement(s) not in the reference values: index {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))]
    NotReference(Vec<u8>),
    /// A check that needs an earlier one that failed.
    #[error("not checked: {} failed", .0.name())]
    Prerequisite(GpuCheckId),
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuCheck {
    /// Which.
    pub id: GpuCheckId,
    /// Passed (with what was compared), failed, or not applicable (`Ok(None)`).
    pub result: Result<Option<String>, GpuFailure>,
}

/// Reference values: the allowed SHA-384 values per measurement index. An index not listed
/// is not checked; a value listed for an index the report lacks fails.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuReferenceValues {
    /// Index → allowed values, hex.
    pub measurements: BTreeMap<u8, Vec<String>>,
}

/// What a relying party expects.
#[derive(Clone, Debug, Default)]
pub struct GpuExpectations {
    /// The nonce it derived for this attestation (`None`: reported, not checked).
    pub nonce: Option<[u8; NONCE_LEN]>,
    /// Reference values (`None`: measurements reported, not checked).
    pub reference: Option<GpuReferenceValues>,
}

/// A GPU appraisal: every check and the decoded claims.
#[derive(Clone, Debug)]
pub struct GpuAppraisal {
    /// Each check in [`GpuCheckId::ALL`] order.
    pub checks: Vec<GpuCheck>,
    /// The claims, when the report parsed.
    pub claims: Option<GpuClaims>,
}

impl GpuAppraisal {
    /// True when no check failed.
    pub fn affirming(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
    }

    /// The failure of `id`, if it failed.
    pub fn failure(&self, id: GpuCheckId) -> Option<&GpuFailure> {
        self.checks
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.result.as_ref().err())
    }
}

#[derive(der::Sequence)]
struct Fwid {
    hash_alg: ObjectIdentifier,
    digest: OctetString,
}

/// The FWID digests of a TCG DICE TcbInfo extension value (2.23.133.5.4.1): those of the
/// DiceTcbInfo `fwids [6]` list, and any element that is itself an FWID (`SEQUENCE { hashAlg,
/// digest }`), which is how NVIDIA's device certificates carry it (`SEQUENCE { INTEGER,
/// SubjectPublicKeyInfo, FWID }`, checked on vectors/nvidia/hopper_signing_cert.pem).
pub fn tcb_info_fwids(value: &[u8]) -> Option<Vec<Vec<u8>>> {
    let fields: Vec<der::asn1::Any> = Vec::from_der(value).ok()?;
    let mut out = Vec::new();
    for field in &fields {
        let tag = field.tag();
        if tag.is_context_specific() && tag.number() == der::TagNumber::N6 {
            let mut reader = der::SliceReader::new(field.value()).ok()?;
            while !reader.is_finished() {
                out.push(Fwid::decode(&mut reader).ok()?.digest.as_bytes().to_vec());
            }
        } else if tag == der::Tag::Sequence {
            if let Ok(fwid) = field.decode_as::<Fwid>() {
                out.push(fwid.digest.as_bytes().to_vec());
            }
        }
    }
    Some(out)
}

fn subject(cert: &ParsedCert) -> String {
    crate::x509::common_name(&cert.cert.tbs_certificate.subject)
}

/// `cert` names `issuer` as its issuer and is signed (ECDSA P-384/SHA-384) by its key.
fn signed_by(cert: &ParsedCert, issuer: &ParsedCert) -> bool {
    cert.issuer_der() == issuer.subject_der()
        && p384_key(issuer).is_some_and(|key| signed_p384(cert, &key))
}

/// Most verified chains a [`GpuVerifier`] keeps (then it forgets them all and starts over).
pub const MAX_CACHED_CHAINS: usize = 256;

/// A chain checked against the roots: the certificates and the two time-independent results.
struct CheckedChain {
    certs: Vec<ParsedCert>,
    root: Result<Option<String>, GpuFailure>,
    signatures: Result<Option<String>, GpuFailure>,
}

/// The roots a GPU device chain must end in, and the chains already checked against them
/// (keyed by SHA-256 of the chain file, so a fleet of identical GPUs costs one chain check per
/// chain, not per report). Validity is checked at every appraisal, never cached.
pub struct GpuVerifier {
    roots: Vec<Vec<u8>>,
    cache: Option<Mutex<HashMap<[u8; 32], Arc<CheckedChain>>>>,
}

impl std::fmt::Debug for GpuVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuVerifier")
            .field("roots", &self.roots.len())
            .field("caching", &self.cache.is_some())
            .finish()
    }
}

impl GpuVerifier {
    /// The pinned NVIDIA Device Identity CA, with a chain cache.
    pub fn nvidia() -> Self {
        let roots = crate::vek::pem_certs(NVIDIA_DEVICE_ROOT_PEM).unwrap_or_default();
        GpuVerifier {
            roots,
            cache: Some(Mutex::new(HashMap::new())),
        }
    }

    /// The process-wide verifier with the pinned NVIDIA root (what a bundle appraisal uses
    /// unless its caller names other roots).
    pub fn shared_nvidia() -> &'static GpuVerifier {
        static SHARED: OnceLock<GpuVerifier> = OnceLock::new();
        SHARED.get_or_init(GpuVerifier::nvidia)
    }

    /// Other roots instead of NVIDIA's (PEM, one or more certificates), e.g. the simulated
    /// GPU's TEST root; with a chain cache. A chain must end in one of them byte for byte, and
    /// that last certificate must verify its own signature (`gpu.chain`).
    pub fn with_roots_pem(pem: &[u8]) -> Result<Self, GpuFailure> {
        let roots = crate::vek::pem_certs(pem).map_err(|e| GpuFailure::ChainFile(e.to_string()))?;
        if roots.is_empty() {
            return Err(GpuFailure::ChainFile(
                "the roots file holds no certificate".into(),
            ));
        }
        Ok(GpuVerifier {
            roots,
            cache: Some(Mutex::new(HashMap::new())),
        })
    }

    /// The same roots without a cache: every appraisal checks its chain from scratch.
    pub fn uncached(mut self) -> Self {
        self.cache = None;
        self
    }

    fn check_chain(&self, chain_pem: &[u8]) -> Result<Arc<CheckedChain>, GpuFailure> {
        let key: [u8; 32] = Sha256::digest(chain_pem).into();
        if let Some(cache) = &self.cache {
            let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(&key) {
                return Ok(Arc::clone(hit));
            }
        }
        let checked = Arc::new(self.check_chain_uncached(chain_pem)?);
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED_CHAINS {
                cache.clear();
            }
            cache.insert(key, Arc::clone(&checked));
        }
        Ok(checked)
    }

    fn check_chain_uncached(&self, chain_pem: &[u8]) -> Result<CheckedChain, GpuFailure> {
        let ders =
            crate::vek::pem_certs(chain_pem).map_err(|e| GpuFailure::ChainFile(e.to_string()))?;
        if ders.is_empty() || ders.len() > MAX_CHAIN {
            return Err(GpuFailure::ChainFile(format!(
                "{} certificates",
                ders.len()
            )));
        }
        let certs = ders
            .iter()
            .map(|d| ParsedCert::from_der(d).map_err(|e| GpuFailure::ChainFile(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let root = (|| {
            let last = certs.last().ok_or(GpuFailure::NotPinnedRoot)?;
            let last_der = last
                .cert
                .to_der()
                .map_err(|e| GpuFailure::ChainFile(e.to_string()))?;
            if !self.roots.contains(&last_der) {
                return Err(GpuFailure::NotPinnedRoot);
            }
            if certs.len() < 2 {
                return Err(GpuFailure::NoDeviceCertificate);
            }
            Ok(Some(format!(
                "{} certificates ending in {}",
                certs.len(),
                subject(last)
            )))
        })();
        let signatures = if root.is_ok() {
            let broken = certs.windows(2).position(|w| match w {
                [cert, issuer] => !signed_by(cert, issuer),
                _ => true,
            });
            let self_signed = certs.last().is_some_and(|r| signed_by(r, r));
            match (broken, self_signed) {
                (Some(position), _) => Err(GpuFailure::ChainBroken {
                    position,
                    subject: certs.get(position).map(subject).unwrap_or_default(),
                }),
                (None, false) => Err(GpuFailure::ChainBroken {
                    position: certs.len().saturating_sub(1),
                    subject: certs.last().map(subject).unwrap_or_default(),
                }),
                (None, true) => Ok(Some(format!(
                    "each certificate signed by the next, up to {}",
                    certs.last().map(subject).unwrap_or_default()
                ))),
            }
        } else {
            Err(GpuFailure::Prerequisite(GpuCheckId::ChainRoot))
        };
        Ok(CheckedChain {
            certs,
            root,
            signatures,
        })
    }
}

/// Appraises a GPU report (`request ‖ response`, raw bytes) with its device chain (PEM, leaf
/// first) at `at`, against the pinned NVIDIA root, without a cache.
pub fn appraise(
    report: &[u8],
    chain_pem: &[u8],
    expect: &GpuExpectations,
    at: SystemTime,
) -> GpuAppraisal {
    GpuVerifier::nvidia()
        .uncached()
        .appraise(report, chain_pem, expect, at)
}

impl GpuVerifier {
    /// Appraises a GPU report (`request ‖ response`, raw bytes) with its device chain (PEM,
    /// leaf first) at `at`.
    pub fn appraise(
        &self,
        report: &[u8],
        chain_pem: &[u8],
        expect: &GpuExpectations,
        at: SystemTime,
    ) -> GpuAppraisal {
        let mut checks = Vec::new();
        let mut push = |id, result| checks.push(GpuCheck { id, result });
        let parsed = GpuReport::parse(report);
        let claims = parsed.as_ref().ok().and_then(|r| r.claims().ok());
        push(
            GpuCheckId::Report,
            match &parsed {
                Err(e) => Err(GpuFailure::Report(e.clone())),
                Ok(r) => match r.claims() {
                    Err(e) => Err(GpuFailure::Report(e)),
                    Ok(_) => Ok(Some(format!(
                        "SPDM 1.1 MEASUREMENTS, {} blocks, {} bytes of opaque data",
                        r.blocks.len(),
                        r.opaque.len()
                    ))),
                },
            },
        );
        let chain = self.check_chain(chain_pem);
        let (root_check, signatures) = match &chain {
            Ok(c) => (c.root.clone(), c.signatures.clone()),
            Err(e) => (
                Err(e.clone()),
                Err(GpuFailure::Prerequisite(GpuCheckId::ChainRoot)),
            ),
        };
        let chain_ok = signatures.is_ok();
        push(GpuCheckId::ChainRoot, root_check);
        push(GpuCheckId::Chain, signatures);
        let certs = chain.as_ref().map(|c| c.certs.as_slice()).unwrap_or(&[]);
        finish(checks, claims, parsed, certs, chain_ok, expect, at)
    }
}

fn finish(
    mut checks: Vec<GpuCheck>,
    claims: Option<GpuClaims>,
    parsed: Result<GpuReport<'_>, SpdmError>,
    certs: &[ParsedCert],
    chain_ok: bool,
    expect: &GpuExpectations,
    at: SystemTime,
) -> GpuAppraisal {
    let mut push = |id, result| checks.push(GpuCheck { id, result });
    let validity = if chain_ok {
        let now = crate::x509::unix_secs(at);
        match certs.iter().position(|c| {
            let v = &c.cert.tbs_certificate.validity;
            now < crate::x509::time_secs(&v.not_before)
                || now > crate::x509::time_secs(&v.not_after)
        }) {
            Some(position) => Err(GpuFailure::Expired {
                position,
                subject: certs.get(position).map(subject).unwrap_or_default(),
            }),
            None => Ok(Some(format!(
                "all {} valid at {}",
                certs.len(),
                crate::x509::rfc3339(now)
            ))),
        }
    } else {
        Err(GpuFailure::Prerequisite(GpuCheckId::Chain))
    };
    let validity_ok = validity.is_ok();
    push(GpuCheckId::ChainValidity, validity);

    let leaf = certs.first().filter(|_| chain_ok);
    let fwid = match (leaf, &parsed) {
        (Some(leaf), Ok(r)) => {
            let leaf_fwids = leaf
                .cert
                .tbs_certificate
                .extensions
                .as_ref()
                .and_then(|e| e.iter().find(|x| x.extn_id == TCG_DICE_TCB_INFO))
                .and_then(|x| tcb_info_fwids(x.extn_value.as_bytes()));
            match (leaf_fwids.as_ref().and_then(|f| f.last()), r.fwid()) {
                (None, _) => Err(GpuFailure::NoLeafFwid),
                (_, Ok(None)) | (_, Err(_)) => Err(GpuFailure::NoReportFwid),
                (Some(l), Ok(Some(f))) if l.as_slice() == f => {
                    Ok(Some(format!("FWID {}", hex::encode(f))))
                }
                (Some(l), Ok(Some(f))) => Err(GpuFailure::FwidMismatch {
                    report: hex::encode(f),
                    leaf: hex::encode(l),
                }),
            }
        }
        (None, _) => Err(GpuFailure::Prerequisite(GpuCheckId::Chain)),
        (_, Err(_)) => Err(GpuFailure::Prerequisite(GpuCheckId::Report)),
    };
    push(GpuCheckId::Fwid, fwid);

    let signature = match (leaf, &parsed) {
        (Some(leaf), Ok(r)) => {
            let sig = p384::ecdsa::Signature::from_slice(r.signature).ok();
            let ok = p384_key(leaf)
                .zip(sig)
                .is_some_and(|(k, s)| verify_p384_sha384(&k, r.transcript, &s));
            if ok {
                Ok(Some(format!(
                    "ECDSA P-384 over SHA-384 of the {}-byte transcript, by {}",
                    r.transcript.len(),
                    subject(leaf)
                )))
            } else {
                Err(GpuFailure::BadSignature)
            }
        }
        (None, _) => Err(GpuFailure::Prerequisite(GpuCheckId::Chain)),
        (_, Err(_)) => Err(GpuFailure::Prerequisite(GpuCheckId::Report)),
    };
    let signed = signature.is_ok() && validity_ok;
    push(GpuCheckId::Signature, signature);

    let nonce = match (&parsed, expect.nonce) {
        (Err(_), _) => Err(GpuFailure::Prerequisite(GpuCheckId::Report)),
        (Ok(_), None) => Ok(None),
        (Ok(r), Some(n)) if r.nonce == n => Ok(Some(format!("nonce {}", hex::encode(n)))),
        (Ok(r), Some(n)) => Err(GpuFailure::NonceMismatch {
            found: hex::encode(r.nonce),
            expected: hex::encode(n),
        }),
    };
    push(GpuCheckId::Nonce, nonce);

    let measurements = match (&parsed, &expect.reference) {
        (Err(_), _) => Err(GpuFailure::Prerequisite(GpuCheckId::Report)),
        (Ok(_), None) => Ok(None),
        (Ok(_), Some(_)) if !signed => Err(GpuFailure::Prerequisite(GpuCheckId::Signature)),
        (Ok(r), Some(reference)) => {
            let values: BTreeMap<u8, &[u8]> = r.blocks.iter().map(|b| (b.index, b.value)).collect();
            let bad: BTreeSet<u8> = reference
                .measurements
                .iter()
                .filter(|(index, allowed)| {
                    let found = values.get(index).filter(|v| v.len() == MEASUREMENT_LEN);
                    !found.is_some_and(|v| {
                        allowed
                            .iter()
                            .any(|a| hex::decode(a).is_ok_and(|a| a == **v))
                    })
                })
                .map(|(i, _)| *i)
                .collect();
            if bad.is_empty() {
                Ok(Some(format!(
                    "{} indices match the reference values",
                    reference.measurements.len()
                )))
            } else {
                Err(GpuFailure::NotReference(bad.into_iter().collect()))
            }
        }
    };
    push(GpuCheckId::Measurements, measurements);
    GpuAppraisal { checks, claims }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_root_parses_and_is_self_signed() {
        let v = GpuVerifier::nvidia();
        assert_eq!(v.roots.len(), 1);
        let root = ParsedCert::from_der(&v.roots[0]).unwrap();
        assert!(signed_by(&root, &root));
    }
}
