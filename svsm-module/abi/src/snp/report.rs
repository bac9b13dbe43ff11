//! ATTESTATION_REPORT (SNP ABI spec, "ATTESTATION_REPORT Structure"), 1184 bytes, versions 2
//! through 5. Version 3 adds the CPUID fields at 0x188; version 5 adds the mitigation vectors
//! at 0x1F8. Version 4 has no known layout change and is read like version 3.

use super::policy::{GuestPolicy, KeyInfo, PlatformInfo};
use super::tcb::{Product, TcbVersion};
use crate::assert_layout;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of an ATTESTATION_REPORT.
pub const REPORT_SIZE: usize = 0x4A0;
/// The report bytes covered by the signature: 0x000..0x2A0.
pub const SIGNED_LEN: usize = 0x2A0;
/// The only SIGNATURE_ALGO defined: ECDSA P-384 with SHA-384.
pub const SIGNATURE_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// The report signature (SNP ABI spec, "ECDSA Signature Format"): R and S as 72-byte
/// little-endian integers, each zero above byte 48, then 368 bytes that must be zero.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EcdsaSignature {
    /// R, little-endian, zero-padded to 72 bytes.
    pub r: [u8; 72],
    /// S, little-endian, zero-padded to 72 bytes.
    pub s: [u8; 72],
    /// MBZ.
    pub reserved: [u8; 368],
}
assert_layout!(
    EcdsaSignature,
    size = 0x200,
    r = 0,
    s = 0x48,
    reserved = 0x90
);

/// Which component of a signature was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureComponent {
    /// R.
    R,
    /// S.
    S,
}

impl EcdsaSignature {
    /// R and S as 48-byte big-endian integers, refusing non-zero padding.
    pub fn to_be_components(&self) -> Result<([u8; 48], [u8; 48]), ReportError> {
        Ok((
            le72_to_be48(&self.r, SignatureComponent::R)?,
            le72_to_be48(&self.s, SignatureComponent::S)?,
        ))
    }

    /// Builds the signature field from big-endian 48-byte R and S.
    pub fn from_be_components(r: &[u8; 48], s: &[u8; 48]) -> Self {
        let mut sig = EcdsaSignature {
            r: [0; 72],
            s: [0; 72],
            reserved: [0; 368],
        };
        for (dst, src) in sig.r.iter_mut().zip(r.iter().rev()) {
            *dst = *src;
        }
        for (dst, src) in sig.s.iter_mut().zip(s.iter().rev()) {
            *dst = *src;
        }
        sig
    }
}

fn le72_to_be48(le: &[u8; 72], which: SignatureComponent) -> Result<[u8; 48], ReportError> {
    let (value, padding) = le.split_at(48);
    if padding.iter().any(|&b| b != 0) {
        return Err(ReportError::SignaturePadding(which));
    }
    let mut be = [0u8; 48];
    for (dst, src) in be.iter_mut().zip(value.iter().rev()) {
        *dst = *src;
    }
    Ok(be)
}

/// The ATTESTATION_REPORT exactly as the PSP writes it. Fields that a given VERSION reserves are
/// read through [`AttestationReport`], which knows the version.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawReport {
    /// Report format version.
    pub version: U32,
    /// Guest SVN from the ID block.
    pub guest_svn: U32,
    /// Guest policy.
    pub policy: U64,
    /// Family ID from the ID block.
    pub family_id: [u8; 16],
    /// Image ID from the ID block.
    pub image_id: [u8; 16],
    /// VMPL the report was requested for.
    pub vmpl: U32,
    /// Signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: U32,
    /// TCB now running.
    pub current_tcb: TcbVersion,
    /// Platform configuration bits.
    pub platform_info: U64,
    /// Signer information.
    pub key_info: U32,
    /// MBZ.
    pub reserved0: [u8; 4],
    /// Guest-supplied data.
    pub report_data: [u8; 64],
    /// Launch digest.
    pub measurement: [u8; 48],
    /// Host-supplied data at launch.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID block signing key.
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key (if AUTHOR_KEY_EN).
    pub author_key_digest: [u8; 48],
    /// Per-guest report ID.
    pub report_id: [u8; 32],
    /// Migration agent's report ID (all 0xFF when none).
    pub report_id_ma: [u8; 32],
    /// TCB the VEK was derived for.
    pub reported_tcb: TcbVersion,
    /// CPUID family (v3+; reserved in v2).
    pub cpuid_fam_id: u8,
    /// CPUID model (v3+; reserved in v2).
    pub cpuid_mod_id: u8,
    /// CPUID stepping (v3+; reserved in v2).
    pub cpuid_step: u8,
    /// MBZ.
    pub reserved1: [u8; 21],
    /// Chip identifier (zero if masked; Turin uses the first 8 bytes only).
    pub chip_id: [u8; 64],
    /// Committed (anti-rollback) TCB.
    pub committed_tcb: TcbVersion,
    /// Current firmware build.
    pub current_build: u8,
    /// Current firmware minor version.
    pub current_minor: u8,
    /// Current firmware major version.
    pub current_major: u8,
    /// MBZ.
    pub reserved2: u8,
    /// Committed firmware build.
    pub committed_build: u8,
    /// Committed firmware minor version.
    pub committed_minor: u8,
    /// Committed firmware major version.
    pub committed_major: u8,
    /// MBZ.
    pub reserved3: u8,
    /// TCB at launch.
    pub launch_tcb: TcbVersion,
    /// Mitigation vector at launch (v5; reserved before).
    pub launch_mit_vector: U64,
    /// Mitigation vector now (v5; reserved before).
    pub current_mit_vector: U64,
    /// MBZ.
    pub reserved4: [u8; 152],
    /// Signature over bytes 0x000..0x2A0.
    pub signature: EcdsaSignature,
}
assert_layout!(
    RawReport,
    size = REPORT_SIZE,
    version = 0x000,
    guest_svn = 0x004,
    policy = 0x008,
    family_id = 0x010,
    image_id = 0x020,
    vmpl = 0x030,
    signature_algo = 0x034,
    current_tcb = 0x038,
    platform_info = 0x040,
    key_info = 0x048,
    reserved0 = 0x04C,
    report_data = 0x050,
    measurement = 0x090,
    host_data = 0x0C0,
    id_key_digest = 0x0E0,
    author_key_digest = 0x110,
    report_id = 0x140,
    report_id_ma = 0x160,
    reported_tcb = 0x180,
    cpuid_fam_id = 0x188,
    cpuid_mod_id = 0x189,
    cpuid_step = 0x18A,
    reserved1 = 0x18B,
    chip_id = 0x1A0,
    committed_tcb = 0x1E0,
    current_build = 0x1E8,
    current_minor = 0x1E9,
    current_major = 0x1EA,
    reserved2 = 0x1EB,
    committed_build = 0x1EC,
    committed_minor = 0x1ED,
    committed_major = 0x1EE,
    reserved3 = 0x1EF,
    launch_tcb = 0x1F0,
    launch_mit_vector = 0x1F8,
    current_mit_vector = 0x200,
    reserved4 = 0x208,
    signature = SIGNED_LEN
);

/// A report format version this crate understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportVersion {
    /// Version 2 (Milan firmware before 1.55).
    V2,
    /// Version 3: CPUID fields.
    V3,
    /// Version 4: no known layout change from version 3.
    V4,
    /// Version 5: mitigation vectors.
    V5,
}

impl ReportVersion {
    /// The numeric version.
    pub const fn number(self) -> u32 {
        match self {
            ReportVersion::V2 => 2,
            ReportVersion::V3 => 3,
            ReportVersion::V4 => 4,
            ReportVersion::V5 => 5,
        }
    }
}

/// Why report bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not exactly 1184 bytes.
    #[error("attestation report is {0} bytes, expected 1184")]
    Length(usize),
    /// VERSION is not 2, 3, 4 or 5.
    #[error("attestation report version {0} is not supported (2..=5)")]
    UnsupportedVersion(u32),
    /// A field the report's version reserves is not zero.
    #[error("attestation report field {field} must be zero for version {version}")]
    ReservedNonZero {
        /// Field name.
        field: &'static str,
        /// Report version.
        version: u32,
    },
    /// R or S has non-zero bytes above byte 48.
    #[error("signature component {0:?} has non-zero padding")]
    SignaturePadding(SignatureComponent),
}

/// A report whose length and version were checked; accessors are version-aware.
#[derive(Clone, Copy, Debug)]
pub struct AttestationReport<'a> {
    raw: &'a RawReport,
    version: ReportVersion,
}

impl<'a> AttestationReport<'a> {
    /// Parses exactly [`REPORT_SIZE`] bytes with a supported VERSION.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ReportError> {
        let raw = RawReport::ref_from_bytes(bytes).map_err(|_| ReportError::Length(bytes.len()))?;
        let version = match raw.version.get() {
            2 => ReportVersion::V2,
            3 => ReportVersion::V3,
            4 => ReportVersion::V4,
            5 => ReportVersion::V5,
            v => return Err(ReportError::UnsupportedVersion(v)),
        };
        Ok(AttestationReport { raw, version })
    }

    /// The raw structure (every field, including ones this version reserves).
    pub fn raw(&self) -> &'a RawReport {
        self.raw
    }

    /// The bytes as parsed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw.as_bytes()
    }

    /// The bytes the signature covers (0x000..0x2A0).
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.raw
            .as_bytes()
            .split_at_checked(SIGNED_LEN)
            .map_or(&[], |(signed, _)| signed)
    }

    /// The format version.
    pub fn version(&self) -> ReportVersion {
        self.version
    }

    /// Guest policy.
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy(self.raw.policy.get())
    }

    /// Platform info, unknown bits retained.
    pub fn platform_info(&self) -> PlatformInfo {
        PlatformInfo::from_bits_retain(self.raw.platform_info.get())
    }

    /// Key info.
    pub fn key_info(&self) -> KeyInfo {
        KeyInfo(self.raw.key_info.get())
    }

    /// VMPL the report was requested for.
    pub fn vmpl(&self) -> u32 {
        self.raw.vmpl.get()
    }

    /// Guest SVN.
    pub fn guest_svn(&self) -> u32 {
        self.raw.guest_svn.get()
    }

    /// (family, model, stepping) from CPUID, present from version 3.
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version >= ReportVersion::V3).then_some((
            self.raw.cpuid_fam_id,
            self.raw.cpuid_mod_id,
            self.raw.cpuid_step,
        ))
    }

    /// The product, when the report names it (version 3+ with a known family/model).
    pub fn product(&self) -> Option<Product> {
        self.cpuid()
            .and_then(|(fam, model, _)| Product::from_cpuid(fam, model))
    }

    /// (launch, current) mitigation vectors, present from version 5.
    pub fn mit_vectors(&self) -> Option<(u64, u64)> {
        (self.version >= ReportVersion::V5).then_some((
            self.raw.launch_mit_vector.get(),
            self.raw.current_mit_vector.get(),
        ))
    }

    /// Checks every field the version reserves (MBZ), naming the first that is not zero.
    pub fn check_reserved(&self) -> Result<(), ReportError> {
        let r = self.raw;
        let version = self.version.number();
        let bad = |field| Err(ReportError::ReservedNonZero { field, version });
        let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
        if !zero(&r.reserved0) {
            return bad("reserved@0x04C");
        }
        if self.key_info().reserved_bits() != 0 {
            return bad("key_info[31:5]");
        }
        if self.version == ReportVersion::V2
            && (r.cpuid_fam_id != 0 || r.cpuid_mod_id != 0 || r.cpuid_step != 0)
        {
            return bad("cpuid@0x188 (reserved in v2)");
        }
        if !zero(&r.reserved1) {
            return bad("reserved@0x18B");
        }
        if r.reserved2 != 0 {
            return bad("reserved@0x1EB");
        }
        if r.reserved3 != 0 {
            return bad("reserved@0x1EF");
        }
        if self.version < ReportVersion::V5
            && (r.launch_mit_vector.get() != 0 || r.current_mit_vector.get() != 0)
        {
            return bad("mit_vectors@0x1F8 (reserved before v5)");
        }
        if !zero(&r.reserved4) {
            return bad("reserved@0x208");
        }
        if !zero(&r.signature.reserved) {
            return bad("signature.reserved@0x330");
        }
        r.signature.to_be_components().map(|_| ())
    }
}
