//! GPU evidence as it travels with an attestation (docs/gpu.md): the container that holds one
//! GPU's attestation report and certificate chain as a piece of *extra evidence* of kind
//! [`EXTRA_KIND_GPU`] (its SHA-384 is what the requesting VMPL registers with the vault and
//! what the vTPM manifest lists), and the derivation of the GPU's SPDM nonce from the relying
//! party's nonce. The guest side builds both, the verifier checks both; neither the SVSM module
//! nor this crate interprets the report itself (SPDM parsing is the verifier's,
//! `host_verifier::gpu::spdm`).
//!
//! The container is svsm-vhsm's own format, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic [`GPU_EVIDENCE_MAGIC`] 0x56484701 (on the wire `01 47 48 56`) |
//! | 4 | 4 | report length R (1..=[`MAX_GPU_REPORT`]) |
//! | 8 | 4 | chain length C (1..=[`MAX_GPU_CHAIN`]) |
//! | 12 | R | the report: SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response, raw |
//! | 12 + R | C | the device certificate chain, PEM text, leaf first |
//!
//! and nothing after it.

use crate::assert_layout;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Extra-evidence kind of a GPU attestation report in a [`GpuEvidence`] container.
pub const EXTRA_KIND_GPU: u16 = 1;
/// The container's magic: "VH" (svsm-vhsm), 'G' (GPU), version 1.
pub const GPU_EVIDENCE_MAGIC: u32 = 0x5648_4701;
/// Largest report a container holds (a Hopper report is about 4 KiB).
pub const MAX_GPU_REPORT: usize = 64 * 1024;
/// Largest chain a container holds (a Hopper chain of five PEM certificates is about 4 KiB).
pub const MAX_GPU_CHAIN: usize = 64 * 1024;
/// Length of the SPDM requester nonce.
pub const GPU_NONCE_LEN: usize = 32;
/// Domain label of the GPU nonce derivation.
pub const GPU_NONCE_LABEL: &[u8] = b"svsm-vhsm gpu-nonce v1";

/// The container's fixed header, 12 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GpuEvidenceHeader {
    /// [`GPU_EVIDENCE_MAGIC`].
    pub magic: U32,
    /// Length of the report that follows.
    pub report_len: U32,
    /// Length of the chain that follows the report.
    pub chain_len: U32,
}
assert_layout!(
    GpuEvidenceHeader,
    size = 12,
    magic = 0,
    report_len = 4,
    chain_len = 8
);

/// Length of [`GpuEvidenceHeader`].
pub const GPU_EVIDENCE_HEADER_LEN: usize = core::mem::size_of::<GpuEvidenceHeader>();

/// Why a GPU evidence container does not parse or cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuEvidenceError {
    /// Shorter than the header.
    #[error("GPU evidence is {0} bytes, shorter than its 12-byte header")]
    Truncated(usize),
    /// Not a version-1 container.
    #[error("GPU evidence magic is {0:#010x}, expected {GPU_EVIDENCE_MAGIC:#010x}")]
    Magic(u32),
    /// The report is empty or larger than [`MAX_GPU_REPORT`].
    #[error("GPU report length {0} is outside 1..={MAX_GPU_REPORT}")]
    ReportLength(u32),
    /// The chain is empty or larger than [`MAX_GPU_CHAIN`].
    #[error("GPU certificate chain length {0} is outside 1..={MAX_GPU_CHAIN}")]
    ChainLength(u32),
    /// The lengths do not add up to the container's size.
    #[error("GPU evidence header announces {announced} bytes, the container has {actual}")]
    Size {
        /// 12 + report + chain.
        announced: usize,
        /// Bytes present.
        actual: usize,
    },
}

/// A parsed container: borrowed report and chain, both within their bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuEvidence<'a> {
    /// SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response.
    pub report: &'a [u8],
    /// The device certificate chain, PEM, leaf first.
    pub chain_pem: &'a [u8],
}

fn checked_len(len: usize, max: usize) -> Option<u32> {
    if len == 0 || len > max {
        return None;
    }
    u32::try_from(len).ok()
}

impl<'a> GpuEvidence<'a> {
    /// Parses a container; its size must be exactly header + report + chain.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GpuEvidenceError> {
        let (header, rest) = GpuEvidenceHeader::ref_from_prefix(bytes)
            .map_err(|_| GpuEvidenceError::Truncated(bytes.len()))?;
        if header.magic.get() != GPU_EVIDENCE_MAGIC {
            return Err(GpuEvidenceError::Magic(header.magic.get()));
        }
        let report_len = header.report_len.get();
        let chain_len = header.chain_len.get();
        let report = usize::try_from(report_len)
            .ok()
            .filter(|n| checked_len(*n, MAX_GPU_REPORT).is_some())
            .ok_or(GpuEvidenceError::ReportLength(report_len))?;
        let chain = usize::try_from(chain_len)
            .ok()
            .filter(|n| checked_len(*n, MAX_GPU_CHAIN).is_some())
            .ok_or(GpuEvidenceError::ChainLength(chain_len))?;
        // Both are at most 64 KiB: the sum cannot overflow.
        let announced = GPU_EVIDENCE_HEADER_LEN + report + chain;
        if announced != bytes.len() {
            return Err(GpuEvidenceError::Size {
                announced,
                actual: bytes.len(),
            });
        }
        let (report, chain_pem) = rest
            .split_at_checked(report)
            .ok_or(GpuEvidenceError::Size {
                announced,
                actual: bytes.len(),
            })?;
        Ok(GpuEvidence { report, chain_pem })
    }

    /// The header that precedes `report` and `chain_pem` in a container: the caller writes
    /// header ‖ report ‖ chain (this crate does not allocate).
    pub fn header(report: &[u8], chain_pem: &[u8]) -> Result<GpuEvidenceHeader, GpuEvidenceError> {
        let report_len = checked_len(report.len(), MAX_GPU_REPORT).ok_or(
            GpuEvidenceError::ReportLength(u32::try_from(report.len()).unwrap_or(u32::MAX)),
        )?;
        let chain_len = checked_len(chain_pem.len(), MAX_GPU_CHAIN).ok_or(
            GpuEvidenceError::ChainLength(u32::try_from(chain_pem.len()).unwrap_or(u32::MAX)),
        )?;
        Ok(GpuEvidenceHeader {
            magic: U32::new(GPU_EVIDENCE_MAGIC),
            report_len: U32::new(report_len),
            chain_len: U32::new(chain_len),
        })
    }
}

/// The SPDM requester nonce a GPU report must carry to belong to the attestation whose relying
/// party issued `rp_nonce`: SHA-256([`GPU_NONCE_LABEL`] ‖ `rp_nonce`). The label keeps a GPU
/// nonce from ever equalling a value the relying party's nonce is used as elsewhere (the
/// quote's qualifying data, REPORT_DATA's input); the hash maps the relying party's nonce (up
/// to 64 bytes) onto SPDM's 32.
pub fn gpu_nonce(rp_nonce: &[u8]) -> [u8; GPU_NONCE_LEN] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(GPU_NONCE_LABEL)
        .chain_update(rp_nonce)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn container(report: &[u8], chain: &[u8]) -> Vec<u8> {
        let mut out = GpuEvidence::header(report, chain)
            .unwrap()
            .as_bytes()
            .to_vec();
        out.extend_from_slice(report);
        out.extend_from_slice(chain);
        out
    }

    #[test]
    fn round_trip() {
        let c = container(b"report", b"-----BEGIN CERTIFICATE-----");
        assert_eq!(&c[..4], &[0x01, 0x47, 0x48, 0x56]);
        let e = GpuEvidence::parse(&c).unwrap();
        assert_eq!(e.report, b"report");
        assert_eq!(e.chain_pem, b"-----BEGIN CERTIFICATE-----");
    }

    #[test]
    fn malformed_refused_by_field() {
        let good = container(b"rr", b"cc");
        for n in 0..GPU_EVIDENCE_HEADER_LEN {
            assert_eq!(
                GpuEvidence::parse(&good[..n]),
                Err(GpuEvidenceError::Truncated(n))
            );
        }
        for n in GPU_EVIDENCE_HEADER_LEN..good.len() {
            assert!(matches!(
                GpuEvidence::parse(&good[..n]),
                Err(GpuEvidenceError::Size { .. })
            ));
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            GpuEvidence::parse(&long),
            Err(GpuEvidenceError::Size {
                announced: 16,
                actual: 17
            })
        );
        let mut magic = good.clone();
        magic[3] ^= 1;
        assert!(matches!(
            GpuEvidence::parse(&magic),
            Err(GpuEvidenceError::Magic(_))
        ));
        let mut zero = good.clone();
        zero[4..8].fill(0);
        assert_eq!(
            GpuEvidence::parse(&zero),
            Err(GpuEvidenceError::ReportLength(0))
        );
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            GpuEvidence::parse(&huge),
            Err(GpuEvidenceError::ChainLength(u32::MAX))
        );
        assert_eq!(
            GpuEvidence::header(&[], b"c").map(|_| ()),
            Err(GpuEvidenceError::ReportLength(0))
        );
        assert_eq!(
            GpuEvidence::header(b"r", &[0u8; MAX_GPU_CHAIN + 1]).map(|_| ()),
            Err(GpuEvidenceError::ChainLength(MAX_GPU_CHAIN as u32 + 1))
        );
    }

    #[test]
    fn nonce_is_labelled_sha256() {
        // SHA-256("svsm-vhsm gpu-nonce v1" ‖ 00 11 .. ff), computed with `sha256sum` over the
        // concatenated bytes.
        let rp: Vec<u8> = (0u8..16).map(|i| i * 0x11).collect();
        assert_eq!(
            hex::encode(gpu_nonce(&rp)),
            "93a33ceb6b3cae6c640f1eaa9484a54dc396d8635eaeedebc308f3dca1980c94"
        );
        assert_ne!(gpu_nonce(b"a"), gpu_nonce(b"b"));
    }
}
