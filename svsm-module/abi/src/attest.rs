//! The SVSM attestation protocol: the SVSM_ATTEST_SERVICES and SVSM_ATTEST_SINGLE_SERVICE
//! request structures (SVSM spec §7 Tables 11 and 13) and the services manifest, a GUID table of
//! the active services and their manifests (SVSM spec §7.1 Table 12).

use crate::{assert_layout, Guid};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// GUID of the services manifest table header: 63849ebb-3d92-4670-a1ff-58f9c94b87bb (§7.1).
pub const SERVICES_MANIFEST_GUID: Guid = Guid::from_fields(
    0x6384_9ebb,
    0x3d92,
    0x4670,
    [0xa1, 0xff, 0x58, 0xf9, 0xc9, 0x4b, 0x87, 0xbb],
);

/// The vTPM service: c476f1eb-0123-45a5-9641-b4e7dde5bfe3 (SVSM spec §8.3.1). Its manifest
/// version 0 is the EK's TPMT_PUBLIC, TPM-marshalled, without a size prefix (§8.3.3).
pub const VTPM_SERVICE_GUID: Guid = Guid::from_fields(
    0xc476_f1eb,
    0x0123,
    0x45a5,
    [0x96, 0x41, 0xb4, 0xe7, 0xdd, 0xe5, 0xbf, 0xe3],
);

/// The svsm-vhsm vault service (our own; random, version-4 GUID
/// 5d0e7d6c-3a5e-4f4b-9a3c-6f8b2d1e7a45).
pub const VAULT_SERVICE_GUID: Guid = Guid::from_fields(
    0x5d0e_7d6c,
    0x3a5e,
    0x4f4b,
    [0x9a, 0x3c, 0x6f, 0x8b, 0x2d, 0x1e, 0x7a, 0x45],
);

/// Version of the richer vTPM service manifest ([`VtpmManifest`]): 0x5648_0003. The high half
/// ("VH") marks svsm-vhsm's own vTPM manifest layouts, so the number cannot be mistaken for the
/// small version numbers another SVSM's vTPM manifest uses; the low half is the layout
/// revision. Revision 1 (no per-boot transport key, no state kind, no requester VMPL) and
/// revision 2 (no EK certificate authority) are retired.
pub const VTPM_MANIFEST_VERSION: u32 = 0x5648_0003;
/// Length of the EK certificate authority's public key in [`VtpmManifest`] (SEC1 uncompressed
/// P-384).
pub const EK_CA_PUBLIC_LEN: usize = 97;
/// Version of the vault service manifest ([`StateHeader`] alone).
pub const VAULT_MANIFEST_V2: u32 = 2;
/// Most extra-evidence digests a manifest carries.
pub const MAX_EXTRA_EVIDENCE: usize = 8;

/// [`StateHeader::flags`] bit 0: the module runs on ephemeral (refused, unpersisted) state.
pub const MANIFEST_FLAG_EPHEMERAL: u32 = 1 << 0;
/// [`StateHeader::flags`] bit 1: the newest state could not be sealed and stored; a restart
/// would come back older. Cleared by the next successful write.
pub const MANIFEST_FLAG_NOT_PERSISTED: u32 = 1 << 1;
/// Every flag bit defined; the others are reserved (zero).
pub const MANIFEST_FLAGS_KNOWN: u32 = MANIFEST_FLAG_EPHEMERAL | MANIFEST_FLAG_NOT_PERSISTED;

/// Where the module's sealed state came from at boot ([`StateHeader::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StateKind {
    /// No sealed state was found: first boot, or the store lost or deleted it.
    Fresh = 0,
    /// Sealed state was opened and restored (its epoch is in the header).
    Restored = 1,
    /// Sealed state existed but was refused, or none could be made; nothing is persisted.
    Ephemeral = 2,
}

impl StateKind {
    /// Decodes a state byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => StateKind::Fresh,
            1 => StateKind::Restored,
            2 => StateKind::Ephemeral,
            _ => return None,
        })
    }
}

/// Why the state is ephemeral ([`StateHeader::reason`]; 0 when it is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EphemeralCause {
    /// Not ephemeral.
    None = 0,
    /// The secure processor gave no root key.
    NoRootKey = 1,
    /// The state was sealed by another launch (measurement, policy or pinned TCB).
    ForeignLaunch = 2,
    /// The state was modified.
    Tampered = 3,
    /// The state is older than the epoch the module was told to expect.
    Rollback = 4,
    /// The state does not parse, or is a format this module does not read.
    Malformed = 5,
    /// The store failed, or no entropy for a fresh instance.
    StoreUnavailable = 6,
    /// The TPM engine refused the unsealed state.
    TpmRestore = 7,
}

impl EphemeralCause {
    /// Decodes a reason byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => EphemeralCause::None,
            1 => EphemeralCause::NoRootKey,
            2 => EphemeralCause::ForeignLaunch,
            3 => EphemeralCause::Tampered,
            4 => EphemeralCause::Rollback,
            5 => EphemeralCause::Malformed,
            6 => EphemeralCause::StoreUnavailable,
            7 => EphemeralCause::TpmRestore,
            _ => return None,
        })
    }
}

/// The part every svsm-vhsm service manifest (version 2) opens with: what a remote party needs
/// to judge the module's state and to provision a key to exactly this boot of this instance.
/// Little-endian, 136 bytes.
///
/// The transport key is made from entropy at every boot and never sealed, so a key wrapped to
/// it can be unwrapped only by the boot that was attested (see `svsm_core::vault`).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct StateHeader {
    /// Manifest version ([`VTPM_MANIFEST_VERSION`] or [`VAULT_MANIFEST_V2`]).
    pub version: U32,
    /// [`MANIFEST_FLAG_EPHEMERAL`], [`MANIFEST_FLAG_NOT_PERSISTED`]; other bits zero.
    pub flags: U32,
    /// [`StateKind`].
    pub state: u8,
    /// [`EphemeralCause`].
    pub reason: u8,
    /// The VMPL that asked for this attestation (a key provisioned against it is owned there).
    pub requester_vmpl: u8,
    /// Zero.
    pub reserved0: u8,
    /// Sealed-state epoch (0 when nothing was ever stored).
    pub epoch: U64,
    /// Instance id of the sealed state (random at the first boot, kept across reboots).
    pub instance_id: [u8; 16],
    /// This boot's vault transport public key: P-384, SEC1 uncompressed (zeros if none).
    pub transport_public: [u8; 97],
    /// Zero (keeps the header a multiple of 8 bytes).
    pub reserved1: [u8; 3],
}
assert_layout!(
    StateHeader,
    size = 136,
    version = 0,
    flags = 4,
    state = 8,
    reason = 9,
    requester_vmpl = 10,
    reserved0 = 11,
    epoch = 12,
    instance_id = 20,
    transport_public = 36,
    reserved1 = 133
);

/// A [`StateHeader`] whose enums and reserved fields were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleState<'a> {
    /// Flags ([`MANIFEST_FLAGS_KNOWN`] only).
    pub flags: u32,
    /// Where the state came from.
    pub state: StateKind,
    /// Why it is ephemeral ([`EphemeralCause::None`] unless `state` is ephemeral).
    pub reason: EphemeralCause,
    /// The VMPL that asked for the attestation.
    pub requester_vmpl: u8,
    /// Sealed-state epoch.
    pub epoch: u64,
    /// Instance id.
    pub instance_id: &'a [u8; 16],
    /// This boot's transport public key.
    pub transport_public: &'a [u8; 97],
}

impl<'a> ModuleState<'a> {
    /// Parses the header at the start of `bytes`; returns it and the rest.
    pub fn parse_prefix(
        bytes: &'a [u8],
        expected_version: u32,
    ) -> Result<(Self, &'a [u8]), ManifestError> {
        let (h, rest) =
            StateHeader::ref_from_prefix(bytes).map_err(|_| ManifestError::Truncated {
                field: "state header",
                needed: core::mem::size_of::<StateHeader>(),
                available: bytes.len(),
            })?;
        if h.version.get() != expected_version {
            return Err(ManifestError::UnsupportedVersion(h.version.get()));
        }
        let flags = h.flags.get();
        if flags & !MANIFEST_FLAGS_KNOWN != 0 {
            return Err(ManifestError::Reserved("flags"));
        }
        if h.reserved0 != 0 || h.reserved1 != [0; 3] {
            return Err(ManifestError::Reserved("reserved"));
        }
        let state = StateKind::from_u8(h.state).ok_or(ManifestError::UnknownState(h.state))?;
        let reason =
            EphemeralCause::from_u8(h.reason).ok_or(ManifestError::UnknownState(h.reason))?;
        // The three must agree: an ephemeral state says why, and only an ephemeral one does.
        let ephemeral = state == StateKind::Ephemeral;
        if ephemeral != (reason != EphemeralCause::None)
            || ephemeral != (flags & MANIFEST_FLAG_EPHEMERAL != 0)
        {
            return Err(ManifestError::InconsistentState);
        }
        if h.requester_vmpl > 3 {
            return Err(ManifestError::Reserved("requester_vmpl"));
        }
        Ok((
            ModuleState {
                flags,
                state,
                reason,
                requester_vmpl: h.requester_vmpl,
                epoch: h.epoch.get(),
                instance_id: &h.instance_id,
                transport_public: &h.transport_public,
            },
            rest,
        ))
    }

    /// Parses a vault service manifest (version 2): the header and nothing else.
    pub fn parse_vault_manifest(bytes: &'a [u8]) -> Result<Self, ManifestError> {
        let (state, rest) = Self::parse_prefix(bytes, VAULT_MANIFEST_V2)?;
        if !rest.is_empty() {
            return Err(ManifestError::TotalSize {
                declared: core::mem::size_of::<StateHeader>() as u32,
                actual: bytes.len(),
            });
        }
        Ok(state)
    }

    /// Whether the newest state is not stored ([`MANIFEST_FLAG_NOT_PERSISTED`]).
    pub fn not_persisted(&self) -> bool {
        self.flags & MANIFEST_FLAG_NOT_PERSISTED != 0
    }
}

/// The vTPM service manifest [`VTPM_MANIFEST_VERSION`] (svsm-vhsm's own; version 0 is the
/// spec's bare EK TPMT_PUBLIC): what a remote party needs to tie vTPM evidence, the vTPM's EK
/// certificates and the vault to this SNP report. Layout, little-endian: [`StateHeader`],
/// 48-byte SHA-384 of the event log, u16 + EK TPMT_PUBLIC, u16 + AK TPMT_PUBLIC, u16 + the EK
/// certificate authority's public key (0 bytes when the module could not issue EK
/// certificates, else [`EK_CA_PUBLIC_LEN`]; docs/identity.md), u16 count of extra evidence,
/// then per item u16 kind + 48-byte SHA-384. The extra evidence is what the requesting VMPL registered since
/// its previous attestation: each item is carried by exactly one attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtpmManifest<'a> {
    /// The module's state, the requester and this boot's transport key.
    pub module: ModuleState<'a>,
    /// SHA-384 of the event log at attestation time.
    pub event_log_digest: &'a [u8; 48],
    /// The EK's TPMT_PUBLIC (template L-1).
    pub ek_public: &'a [u8],
    /// The AK's TPMT_PUBLIC.
    pub ak_public: &'a [u8],
    /// The public key (SEC1, P-384) of the CA that issued the vTPM's EK certificates, if any.
    pub ek_ca_public: Option<&'a [u8; EK_CA_PUBLIC_LEN]>,
    extra: &'a [u8],
}

impl<'a> VtpmManifest<'a> {
    /// Parses a manifest of exactly `bytes.len()` bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ManifestError> {
        let (module, rest) = ModuleState::parse_prefix(bytes, VTPM_MANIFEST_VERSION)?;
        let base = bytes.len() - rest.len();
        let trunc = |field: &'static str, needed: usize| ManifestError::Truncated {
            field,
            needed,
            available: bytes.len(),
        };
        let mut at = 0usize;
        let mut take = |n: usize, field: &'static str| -> Result<&'a [u8], ManifestError> {
            let end = at.checked_add(n).ok_or(trunc(field, usize::MAX))?;
            let s = rest
                .get(at..end)
                .ok_or(trunc(field, base.saturating_add(end)))?;
            at = end;
            Ok(s)
        };
        let u16_of = |b: &[u8]| {
            u16::from_le_bytes([
                b.first().copied().unwrap_or(0),
                b.get(1).copied().unwrap_or(0),
            ])
        };
        let event_log_digest = take(48, "event_log_digest")?
            .try_into()
            .map_err(|_| trunc("event_log_digest", base + 48))?;
        let ek_len = usize::from(u16_of(take(2, "ek_len")?));
        let ek_public = take(ek_len, "ek_public")?;
        let ak_len = usize::from(u16_of(take(2, "ak_len")?));
        let ak_public = take(ak_len, "ak_public")?;
        let ca_len = usize::from(u16_of(take(2, "ek_ca_len")?));
        let ek_ca_public = match ca_len {
            0 => None,
            EK_CA_PUBLIC_LEN => Some(
                take(EK_CA_PUBLIC_LEN, "ek_ca_public")?
                    .try_into()
                    .map_err(|_| trunc("ek_ca_public", base + EK_CA_PUBLIC_LEN))?,
            ),
            other => return Err(ManifestError::EkCaLength(other)),
        };
        let count = usize::from(u16_of(take(2, "extra_count")?));
        if count > MAX_EXTRA_EVIDENCE {
            return Err(ManifestError::TooManyEntries(count as u64));
        }
        let extra = take(count * 50, "extra_evidence")?;
        if at != rest.len() {
            return Err(ManifestError::TotalSize {
                declared: (base + at) as u32,
                actual: bytes.len(),
            });
        }
        Ok(VtpmManifest {
            module,
            event_log_digest,
            ek_public,
            ak_public,
            ek_ca_public,
            extra,
        })
    }

    /// The extra evidence digests (kind, SHA-384).
    pub fn extra_evidence(&self) -> impl Iterator<Item = (u16, &'a [u8; 48])> + '_ {
        self.extra.chunks_exact(50).filter_map(|c| {
            let (kind, digest) = c.split_at_checked(2)?;
            Some((
                u16::from_le_bytes(kind.try_into().ok()?),
                digest.try_into().ok()?,
            ))
        })
    }
}

/// Nonce size the Linux guest sends (and coconut-svsm requires).
pub const LINUX_NONCE_SIZE: usize = 64;
/// Largest certificate buffer served (Linux SEV_FW_BLOB_MAX_SIZE).
pub const MAX_CERTS_SIZE: usize = 0x4000;

/// SVSM_ATTEST_SERVICES request (SVSM spec §7 Table 11), 0x40 bytes, at any GPA (Linux puts it
/// at calling area + 8, so it is not page-aligned).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct AttestServicesRequest {
    /// GPA of the buffer for the 1184-byte report.
    pub report_gpa: U64,
    /// Size of that buffer.
    pub report_size: U32,
    /// MBZ.
    pub reserved0: [u8; 4],
    /// GPA of the nonce.
    pub nonce_gpa: U64,
    /// Nonce size in bytes (Linux writes a u32 here; the upper half must be zero).
    pub nonce_size: U16,
    /// MBZ.
    pub reserved1: [u8; 6],
    /// GPA of the buffer for the services manifest.
    pub manifest_gpa: U64,
    /// Size of that buffer.
    pub manifest_size: U32,
    /// MBZ.
    pub reserved2: [u8; 4],
    /// GPA of the buffer for the certificate table.
    pub certs_gpa: U64,
    /// Size of that buffer; 0 = no certificates wanted.
    pub certs_size: U32,
    /// MBZ.
    pub reserved3: [u8; 4],
}
assert_layout!(
    AttestServicesRequest,
    size = 0x40,
    report_gpa = 0x00,
    report_size = 0x08,
    reserved0 = 0x0C,
    nonce_gpa = 0x10,
    nonce_size = 0x18,
    reserved1 = 0x1A,
    manifest_gpa = 0x20,
    manifest_size = 0x28,
    reserved2 = 0x2C,
    certs_gpa = 0x30,
    certs_size = 0x38,
    reserved3 = 0x3C
);

/// SVSM_ATTEST_SINGLE_SERVICE request (SVSM spec §7 Table 13), 0x58 bytes.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct AttestSingleServiceRequest {
    /// The SVSM_ATTEST_SERVICES part.
    pub base: AttestServicesRequest,
    /// Service GUID, SVSM wire encoding.
    pub service_guid: Guid,
    /// Manifest version wanted.
    pub manifest_version: U32,
    /// MBZ.
    pub reserved: [u8; 4],
}
assert_layout!(
    AttestSingleServiceRequest,
    size = 0x58,
    base = 0,
    service_guid = 0x40,
    manifest_version = 0x50,
    reserved = 0x54
);

/// A reserved field of an attestation request that was not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestRequestError {
    /// The buffer is not the size of the request structure.
    #[error("attestation request is {actual} bytes, expected {expected}")]
    Length {
        /// Bytes given.
        actual: usize,
        /// Bytes the structure has.
        expected: usize,
    },
    /// A must-be-zero field holds a non-zero value.
    #[error("attestation request field {field} is reserved and must be zero")]
    ReservedNonZero {
        /// Name of the field.
        field: &'static str,
    },
}

impl AttestServicesRequest {
    /// Reads the request from exactly 0x40 bytes and checks its reserved fields.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestRequestError> {
        let req = Self::read_from_bytes(bytes).map_err(|_| AttestRequestError::Length {
            actual: bytes.len(),
            expected: core::mem::size_of::<Self>(),
        })?;
        req.check_reserved()?;
        Ok(req)
    }

    fn check_reserved(&self) -> Result<(), AttestRequestError> {
        let fields: [(&'static str, &[u8]); 4] = [
            ("reserved0", &self.reserved0),
            ("nonce_size_high/reserved1", &self.reserved1),
            ("reserved2", &self.reserved2),
            ("reserved3", &self.reserved3),
        ];
        for (field, bytes) in fields {
            if bytes.iter().any(|&b| b != 0) {
                return Err(AttestRequestError::ReservedNonZero { field });
            }
        }
        Ok(())
    }
}

impl AttestSingleServiceRequest {
    /// Reads the request from exactly 0x58 bytes and checks its reserved fields.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestRequestError> {
        let req = Self::read_from_bytes(bytes).map_err(|_| AttestRequestError::Length {
            actual: bytes.len(),
            expected: core::mem::size_of::<Self>(),
        })?;
        req.base.check_reserved()?;
        if req.reserved.iter().any(|&b| b != 0) {
            return Err(AttestRequestError::ReservedNonZero { field: "reserved" });
        }
        Ok(req)
    }
}

/// Header of the services manifest (SVSM spec §7.1 Table 12), 24 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ManifestHeader {
    /// [`SERVICES_MANIFEST_GUID`].
    pub guid: Guid,
    /// Total size of the table: header, entries and data.
    pub total_size: U32,
    /// Number of entries.
    pub count: U32,
}
assert_layout!(
    ManifestHeader,
    size = 24,
    guid = 0,
    total_size = 16,
    count = 20
);

/// One services-manifest entry (SVSM spec §7.1 Table 12), 24 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ManifestEntry {
    /// Service GUID.
    pub guid: Guid,
    /// Offset of the service's manifest from the start of the table.
    pub offset: U32,
    /// Size of the service's manifest (0: the service has none).
    pub size: U32,
}
assert_layout!(ManifestEntry, size = 24, guid = 0, offset = 16, size = 20);

/// Why a services manifest could not be parsed or built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Fewer bytes than the header, the entries or a service's data need.
    #[error("services manifest truncated: {field} needs {needed} bytes, {available} available")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// Bytes needed up to the end of that field.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The header GUID is not the services-manifest GUID.
    #[error("services manifest header GUID is {0}, not 63849ebb-3d92-4670-a1ff-58f9c94b87bb")]
    BadGuid(Guid),
    /// The header's total size disagrees with the buffer.
    #[error("services manifest total_size {declared} but {actual} bytes given")]
    TotalSize {
        /// Declared by the header.
        declared: u32,
        /// Bytes given.
        actual: usize,
    },
    /// An entry's data lies in the header/entry area or past the table.
    #[error("services manifest entry {index}: data {offset:#x}+{size:#x} outside the data area")]
    EntryOutOfRange {
        /// Entry index.
        index: usize,
        /// Declared offset.
        offset: u32,
        /// Declared size.
        size: u32,
    },
    /// Too many entries for the table or for u32 arithmetic.
    #[error("services manifest has too many entries ({0})")]
    TooManyEntries(u64),
    /// The vTPM manifest's EK CA key is neither absent nor a 97-byte SEC1 P-384 point.
    #[error("vTPM manifest EK CA public key is {0} bytes (0 or 97 allowed)")]
    EkCaLength(usize),
    /// A service manifest of a version this code does not read.
    #[error("service manifest version {0} is not supported")]
    UnsupportedVersion(u32),
    /// A state or reason byte of a service manifest is not defined.
    #[error("service manifest state/reason byte {0} is not defined")]
    UnknownState(u8),
    /// State kind, ephemeral reason and ephemeral flag of a service manifest disagree.
    #[error("service manifest state kind, reason and ephemeral flag disagree")]
    InconsistentState,
    /// A reserved field or flag of a service manifest is not zero.
    #[error("service manifest field {0} is reserved and must be zero")]
    Reserved(&'static str),
    /// The output buffer is too small for the table being built.
    #[error("services manifest needs {needed} bytes, buffer has {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

/// A parsed services manifest: a header and entries whose data ranges were all checked.
#[derive(Clone, Copy, Debug)]
pub struct ServicesManifest<'a> {
    bytes: &'a [u8],
    count: usize,
}

/// One service of a parsed manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service<'a> {
    /// Service GUID.
    pub guid: Guid,
    /// Its manifest bytes (empty when it has none).
    pub manifest: &'a [u8],
}

const HEADER_LEN: usize = core::mem::size_of::<ManifestHeader>();
const ENTRY_LEN: usize = core::mem::size_of::<ManifestEntry>();

impl<'a> ServicesManifest<'a> {
    /// Parses a table whose total size must equal `bytes.len()`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ManifestError> {
        let (header, _) =
            ManifestHeader::ref_from_prefix(bytes).map_err(|_| ManifestError::Truncated {
                field: "header",
                needed: HEADER_LEN,
                available: bytes.len(),
            })?;
        if header.guid != SERVICES_MANIFEST_GUID {
            return Err(ManifestError::BadGuid(header.guid));
        }
        let declared = header.total_size.get();
        if usize::try_from(declared).ok() != Some(bytes.len()) {
            return Err(ManifestError::TotalSize {
                declared,
                actual: bytes.len(),
            });
        }
        let count_u32 = header.count.get();
        let count = usize::try_from(count_u32)
            .map_err(|_| ManifestError::TooManyEntries(u64::from(count_u32)))?;
        let data_start = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or(ManifestError::TooManyEntries(u64::from(count_u32)))?;
        if data_start > bytes.len() {
            return Err(ManifestError::Truncated {
                field: "entries",
                needed: data_start,
                available: bytes.len(),
            });
        }
        let manifest = ServicesManifest { bytes, count };
        for index in 0..count {
            let entry = manifest.entry(index)?;
            let end = (entry.offset.get() as usize).checked_add(entry.size.get() as usize);
            let in_range = match end {
                Some(end) => {
                    end <= bytes.len()
                        && (entry.size.get() == 0 || entry.offset.get() as usize >= data_start)
                }
                None => false,
            };
            if !in_range {
                return Err(ManifestError::EntryOutOfRange {
                    index,
                    offset: entry.offset.get(),
                    size: entry.size.get(),
                });
            }
        }
        Ok(manifest)
    }

    fn entry(&self, index: usize) -> Result<&'a ManifestEntry, ManifestError> {
        let start = index
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or(ManifestError::TooManyEntries(index as u64))?;
        let tail = self.bytes.get(start..).unwrap_or(&[]);
        ManifestEntry::ref_from_prefix(tail)
            .map(|(e, _)| e)
            .map_err(|_| ManifestError::Truncated {
                field: "entry",
                needed: start.saturating_add(ENTRY_LEN),
                available: self.bytes.len(),
            })
    }

    /// Number of services listed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no service is listed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The services in table order.
    pub fn services(&self) -> impl Iterator<Item = Service<'a>> + '_ {
        (0..self.count).filter_map(move |i| {
            let e = self.entry(i).ok()?;
            let start = e.offset.get() as usize;
            let end = start.checked_add(e.size.get() as usize)?;
            Some(Service {
                guid: e.guid,
                manifest: self.bytes.get(start..end)?,
            })
        })
    }

    /// The manifest of the first service with this GUID.
    pub fn find(&self, guid: &Guid) -> Option<&'a [u8]> {
        self.services()
            .find(|s| s.guid == *guid)
            .map(|s| s.manifest)
    }
}

/// Size of the table that [`write_services_manifest`] produces for these services.
pub fn services_manifest_len(services: &[(Guid, &[u8])]) -> Result<usize, ManifestError> {
    let too_many = ManifestError::TooManyEntries(services.len() as u64);
    let mut total = services
        .len()
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(HEADER_LEN))
        .ok_or(too_many)?;
    for (_, data) in services {
        total = total.checked_add(data.len()).ok_or(too_many)?;
    }
    u32::try_from(total).map_err(|_| too_many)?;
    Ok(total)
}

/// Writes the services manifest for `services` (in order) into `out`; returns its length.
pub fn write_services_manifest(
    services: &[(Guid, &[u8])],
    out: &mut [u8],
) -> Result<usize, ManifestError> {
    let total = services_manifest_len(services)?;
    let available = out.len();
    let out = out.get_mut(..total).ok_or(ManifestError::BufferTooSmall {
        needed: total,
        available,
    })?;
    // `services_manifest_len` proved every length and offset below fits in u32.
    let narrow = |v: usize| U32::new(u32::try_from(v).unwrap_or(u32::MAX));
    let header = ManifestHeader {
        guid: SERVICES_MANIFEST_GUID,
        total_size: narrow(total),
        count: narrow(services.len()),
    };
    let (head, mut rest) = out.split_at_mut(HEADER_LEN);
    head.copy_from_slice(header.as_bytes());
    let mut data_offset = HEADER_LEN + services.len() * ENTRY_LEN;
    for (guid, data) in services {
        let entry = ManifestEntry {
            guid: *guid,
            offset: narrow(data_offset),
            size: narrow(data.len()),
        };
        let (slot, tail) = rest.split_at_mut(ENTRY_LEN);
        slot.copy_from_slice(entry.as_bytes());
        rest = tail;
        data_offset += data.len();
    }
    for (_, data) in services {
        let (slot, tail) = rest.split_at_mut(data.len());
        slot.copy_from_slice(data);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn build(services: &[(Guid, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; services_manifest_len(services).unwrap()];
        let n = write_services_manifest(services, &mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn manifest_round_trip() {
        let ek = [0x5Au8; 314];
        let table = build(&[(VTPM_SERVICE_GUID, &ek), (VAULT_SERVICE_GUID, b"")]);
        assert_eq!(table.len(), 24 + 48 + 314);
        assert_eq!(
            &table[..16],
            &[
                0xbb, 0x9e, 0x84, 0x63, 0x92, 0x3d, 0x70, 0x46, 0xa1, 0xff, 0x58, 0xf9, 0xc9, 0x4b,
                0x87, 0xbb
            ]
        );
        // First data offset = 24 * (1 + N).
        assert_eq!(u32::from_le_bytes(table[40..44].try_into().unwrap()), 72);
        let parsed = ServicesManifest::parse(&table).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed.find(&VTPM_SERVICE_GUID), Some(&ek[..]));
        assert_eq!(parsed.find(&VAULT_SERVICE_GUID), Some(&[][..]));
    }

    #[test]
    fn empty_manifest_is_just_the_header() {
        let table = build(&[]);
        assert_eq!(table.len(), 24);
        assert!(ServicesManifest::parse(&table).unwrap().is_empty());
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let ek = [1u8; 40];
        let table = build(&[(VTPM_SERVICE_GUID, &ek)]);
        for len in 0..table.len() {
            assert!(ServicesManifest::parse(&table[..len]).is_err(), "len {len}");
        }
        let mut longer = table.clone();
        longer.push(0);
        assert!(matches!(
            ServicesManifest::parse(&longer),
            Err(ManifestError::TotalSize { .. })
        ));
    }

    #[test]
    fn hostile_entries_are_rejected() {
        let ek = [1u8; 40];
        let table = build(&[(VTPM_SERVICE_GUID, &ek)]);
        // Offset pointing into the header.
        let mut t = table.clone();
        t[40..44].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            ServicesManifest::parse(&t),
            Err(ManifestError::EntryOutOfRange { .. })
        ));
        // Offset + size overflowing u32 arithmetic.
        let mut t = table.clone();
        t[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        t[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ServicesManifest::parse(&t),
            Err(ManifestError::EntryOutOfRange { .. })
        ));
        // Entry count far beyond the buffer.
        let mut t = table.clone();
        t[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ServicesManifest::parse(&t).is_err());
        // Wrong header GUID.
        let mut t = table;
        t[0] ^= 1;
        assert!(matches!(
            ServicesManifest::parse(&t),
            Err(ManifestError::BadGuid(_))
        ));
    }

    #[test]
    fn small_output_buffer_is_an_error() {
        let mut out = [0u8; 30];
        assert_eq!(
            write_services_manifest(&[(VTPM_SERVICE_GUID, &[1, 2, 3])], &mut out),
            Err(ManifestError::BufferTooSmall {
                needed: 51,
                available: 30
            })
        );
    }

    fn header(version: u32, flags: u32, state: u8, reason: u8) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&version.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&[state, reason, 1, 0]);
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&[1; 16]);
        m.extend_from_slice(&[4; 97]);
        m.extend_from_slice(&[0; 3]);
        m
    }

    #[test]
    fn manifest_v2_parses_and_refuses_damage() {
        let mut m = header(VTPM_MANIFEST_VERSION, MANIFEST_FLAG_NOT_PERSISTED, 1, 0);
        m.extend_from_slice(&[5; 48]);
        for part in [&[6u8; 314][..], &[7u8; 88][..], &[4u8; 97][..]] {
            m.extend_from_slice(&(part.len() as u16).to_le_bytes());
            m.extend_from_slice(part);
        }
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(&[8; 48]);
        let v = VtpmManifest::parse(&m).unwrap();
        assert_eq!(
            (v.module.epoch, v.ek_public.len(), v.ak_public.len()),
            (7, 314, 88)
        );
        assert_eq!(v.ek_ca_public, Some(&[4u8; 97]));
        assert_eq!(v.module.state, StateKind::Restored);
        assert_eq!(v.module.requester_vmpl, 1);
        assert!(v.module.not_persisted());
        assert_eq!(
            v.extra_evidence().collect::<Vec<_>>(),
            vec![(1, &[8u8; 48])]
        );
        for len in 0..m.len() {
            assert!(VtpmManifest::parse(&m[..len]).is_err(), "len {len}");
        }
        let mut longer = m.clone();
        longer.push(0);
        assert!(VtpmManifest::parse(&longer).is_err());
        // Revisions 1 and 2 (and any other) are their own error, not "too many entries".
        for old in [1u32, 2] {
            let mut retired = m.clone();
            retired[..4].copy_from_slice(&old.to_le_bytes());
            assert_eq!(
                VtpmManifest::parse(&retired),
                Err(ManifestError::UnsupportedVersion(old))
            );
        }
        // A CA key of any length but 0 or 97 is refused by name.
        let ca_at = 136 + 48 + 2 + 314 + 2 + 88;
        let mut odd = m.clone();
        odd[ca_at..ca_at + 2].copy_from_slice(&96u16.to_le_bytes());
        assert_eq!(
            VtpmManifest::parse(&odd),
            Err(ManifestError::EkCaLength(96))
        );
        let mut many = m;
        let at = many.len() - 52;
        many[at..at + 2].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(
            VtpmManifest::parse(&many),
            Err(ManifestError::TooManyEntries(9))
        );
    }

    #[test]
    fn state_header_refuses_undefined_and_inconsistent_states() {
        let ok = header(2, 0, 0, 0);
        let s = ModuleState::parse_vault_manifest(&ok).unwrap();
        assert_eq!(
            (s.state, s.reason),
            (StateKind::Fresh, EphemeralCause::None)
        );
        let eph = header(
            2,
            MANIFEST_FLAG_EPHEMERAL,
            2,
            EphemeralCause::Rollback as u8,
        );
        let s = ModuleState::parse_vault_manifest(&eph).unwrap();
        assert_eq!(
            (s.state, s.reason),
            (StateKind::Ephemeral, EphemeralCause::Rollback)
        );
        let cases: [(Vec<u8>, ManifestError); 7] = [
            (header(2, 0, 3, 0), ManifestError::UnknownState(3)),
            (header(2, 0, 0, 9), ManifestError::UnknownState(9)),
            // Ephemeral without a reason, a reason without ephemeral, flag disagreeing.
            (
                header(2, MANIFEST_FLAG_EPHEMERAL, 2, 0),
                ManifestError::InconsistentState,
            ),
            (header(2, 0, 1, 2), ManifestError::InconsistentState),
            (header(2, 0, 2, 2), ManifestError::InconsistentState),
            (header(2, 1 << 7, 0, 0), ManifestError::Reserved("flags")),
            (header(3, 0, 0, 0), ManifestError::UnsupportedVersion(3)),
        ];
        for (bytes, err) in cases {
            assert_eq!(ModuleState::parse_vault_manifest(&bytes), Err(err));
        }
        let mut vmpl = ok.clone();
        vmpl[10] = 4;
        assert!(ModuleState::parse_vault_manifest(&vmpl).is_err());
        let mut reserved = ok.clone();
        reserved[135] = 1;
        assert!(ModuleState::parse_vault_manifest(&reserved).is_err());
        let mut longer = ok;
        longer.push(0);
        assert!(ModuleState::parse_vault_manifest(&longer).is_err());
    }

    #[test]
    fn attest_requests_check_length_and_reserved() {
        let req = AttestServicesRequest {
            nonce_size: U16::new(64),
            ..Default::default()
        };
        let bytes = req.as_bytes().to_vec();
        assert_eq!(
            AttestServicesRequest::parse(&bytes)
                .unwrap()
                .nonce_size
                .get(),
            64
        );
        for len in 0..bytes.len() {
            assert!(matches!(
                AttestServicesRequest::parse(&bytes[..len]),
                Err(AttestRequestError::Length { .. })
            ));
        }
        for off in [0x0C, 0x1A, 0x1F, 0x2C, 0x3C] {
            let mut b = bytes.clone();
            b[off] = 1;
            assert!(matches!(
                AttestServicesRequest::parse(&b),
                Err(AttestRequestError::ReservedNonZero { .. })
            ));
        }
        let single = AttestSingleServiceRequest {
            base: req,
            service_guid: VTPM_SERVICE_GUID,
            ..Default::default()
        };
        let mut b = single.as_bytes().to_vec();
        assert_eq!(
            AttestSingleServiceRequest::parse(&b).unwrap().service_guid,
            VTPM_SERVICE_GUID
        );
        assert_eq!(
            &b[0x40..0x50],
            &[
                0xeb, 0xf1, 0x76, 0xc4, 0x23, 0x01, 0xa5, 0x45, 0x96, 0x41, 0xb4, 0xe7, 0xdd, 0xe5,
                0xbf, 0xe3
            ]
        );
        b[0x57] = 1;
        assert!(AttestSingleServiceRequest::parse(&b).is_err());
    }
}
