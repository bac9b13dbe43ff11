//! The platform boundary: small traits, statically dispatched, each listing every error it can
//! return. `svsm-platform-snp` implements them on hardware, `test-harness` in software.

use alloc::vec::Vec;
use svsm_abi::snp::msg::KeyRequest;
use svsm_abi::snp::RawReport;

/// Size of a guest page.
pub const PAGE_SIZE: u64 = 4096;

/// A VMPL (0 = most privileged .. 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vmpl(u8);

impl Vmpl {
    /// VMPL0, the SVSM's own level.
    pub const ZERO: Vmpl = Vmpl(0);

    /// A VMPL from 0..=3.
    pub const fn new(level: u8) -> Option<Vmpl> {
        if level <= 3 {
            Some(Vmpl(level))
        } else {
            None
        }
    }

    /// The level number.
    pub const fn level(self) -> u8 {
        self.0
    }
}

/// A guest physical address. Arithmetic on it is checked: a range that would wrap is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(u64);

impl Gpa {
    /// Wraps a raw address.
    pub const fn new(addr: u64) -> Gpa {
        Gpa(addr)
    }

    /// The raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// `self + offset`, or `None` on overflow.
    pub fn checked_add(self, offset: u64) -> Option<Gpa> {
        self.0.checked_add(offset).map(Gpa)
    }

    /// Offset inside its 4 KiB page.
    pub const fn page_offset(self) -> u64 {
        self.0 % PAGE_SIZE
    }

    /// True when page aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }
}

/// Every way a guest-memory access can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The range wraps around the address space.
    #[error("guest range at {gpa:#x} of {len} bytes overflows")]
    Overflow {
        /// Start.
        gpa: u64,
        /// Length.
        len: usize,
    },
    /// Part of the range is not guest memory.
    #[error("guest address {0:#x} is not backed by guest memory")]
    NotPresent(u64),
    /// Part of the range is not accessible to the VMPL on whose behalf it is accessed (for
    /// example a VMPL0-private page named by a VMPL1 caller).
    #[error("guest address {gpa:#x} is not accessible to VMPL{vmpl}")]
    NoAccess {
        /// The address.
        gpa: u64,
        /// The VMPL.
        vmpl: u8,
    },
    /// Part of the range is not validated (PVALIDATE) in the guest's memory.
    #[error("guest address {0:#x} is not validated")]
    NotValidated(u64),
}

/// Guest memory, accessed on behalf of a VMPL. Implementations copy: nothing hands out a
/// reference into guest memory, so a guest changing its buffer mid-call cannot change what the
/// module already copied.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at `gpa` into `buf`, checking that `vmpl` may read all of them.
    /// Ranges may cross pages.
    fn read(&mut self, vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// Copies `data` to `gpa`, checking that `vmpl` may write all of it.
    fn write(&mut self, vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError>;
}

/// Every way a request to the AMD secure processor can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PspError {
    /// The PSP refused the request (its status code).
    #[error("the secure processor refused the request (status {0:#x})")]
    Refused(u32),
    /// The reply was malformed or failed authentication.
    #[error("the secure processor's reply was malformed or failed authentication")]
    BadReply,
    /// The channel to the PSP is unusable (for example a VMPCK disabled after a bad reply).
    #[error("the channel to the secure processor is disabled")]
    ChannelDisabled,
    /// The host did not deliver the request.
    #[error("the host did not deliver the request to the secure processor")]
    Transport,
    /// The host has more certificate data than the given buffer holds.
    #[error("certificate data needs {0} bytes")]
    CertificatesTooLarge(usize),
}

/// A 256-bit key derived by the PSP. Wiped on drop; never printed.
pub struct DerivedKey(pub [u8; 32]);

impl Drop for DerivedKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl core::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// The AMD secure processor, reached through SNP guest messages (MSG_REPORT_REQ, MSG_KEY_REQ).
pub trait SecureProcessor {
    /// An ATTESTATION_REPORT for `vmpl` carrying `report_data`, signed by the VCEK/VLEK.
    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
        vmpl: Vmpl,
    ) -> Result<RawReport, PspError>;
    /// The certificate table the host supplies with extended reports (GHCB §4.1.8.1); empty
    /// when the host has none.
    fn certificates(&mut self) -> Result<Vec<u8>, PspError>;
    /// A key derived by the PSP (MSG_KEY_REQ).
    fn derived_key(&mut self, request: &KeyRequest) -> Result<DerivedKey, PspError>;
}

/// Every way entropy can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntropyError {
    /// The source did not deliver (for example RDSEED kept failing); callers must fail closed.
    #[error("the entropy source failed")]
    Unavailable,
}

/// A source of random bytes suitable for keys.
pub trait Entropy {
    /// Fills `buf` or fails; never returns weak bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError>;
}

/// A monotonic clock.
pub trait Clock {
    /// Nanoseconds since an arbitrary, fixed origin; never decreases.
    fn monotonic_ns(&self) -> u64;
}

/// Every way the untrusted state store can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The slot holds nothing.
    #[error("state slot {0} is empty")]
    Empty(u8),
    /// The store is unreachable or refused the operation.
    #[error("the state store is unavailable")]
    Unavailable,
    /// The blob is larger than the store accepts.
    #[error("state blob of {0} bytes is too large for the store")]
    TooLarge(usize),
}

/// Opaque sealed blobs kept by an untrusted party (the host). Two slots allow crash-safe
/// write-then-switch; the module authenticates everything it reads back.
pub trait StateStore {
    /// Reads a slot.
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError>;
    /// Replaces a slot's contents.
    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError>;
}

/// The RMP instructions' failure codes (AMD APM vol. 3, PVALIDATE and RMPADJUST).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RmpError {
    /// FAIL_INPUT (1): the address is not a guest page, or faulted.
    #[error("RMP instruction: FAIL_INPUT")]
    Input,
    /// FAIL_PERMISSION (2): RMPADJUST of a VMPL not below the caller's, or of a permission
    /// the caller lacks.
    #[error("RMP instruction: FAIL_PERMISSION")]
    Permission,
    /// FAIL_INUSE (3): RMPADJUST of a VMSA page whose vCPU is running.
    #[error("RMP instruction: FAIL_INUSE")]
    InUse,
    /// FAIL_SIZEMISMATCH (6): the page size does not match the RMP entry's.
    #[error("RMP instruction: FAIL_SIZEMISMATCH")]
    SizeMismatch,
}

impl RmpError {
    /// The instruction's return code.
    pub const fn code(self) -> u32 {
        match self {
            RmpError::Input => 1,
            RmpError::Permission => 2,
            RmpError::InUse => 3,
            RmpError::SizeMismatch => 6,
        }
    }
}

/// What PVALIDATE did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// The page's validated state changed.
    Changed,
    /// It already had the requested value (CF=1).
    Unchanged,
}

/// The access RMPADJUST grants one VMPL to a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmplAccess {
    /// Read.
    pub read: bool,
    /// Write.
    pub write: bool,
    /// Execute (user and supervisor).
    pub execute: bool,
    /// The page is a VMSA for that VMPL.
    pub vmsa: bool,
}

impl VmplAccess {
    /// No access.
    pub const NONE: VmplAccess = VmplAccess {
        read: false,
        write: false,
        execute: false,
        vmsa: false,
    };
    /// Read, write and execute.
    pub const FULL: VmplAccess = VmplAccess {
        read: true,
        write: true,
        execute: true,
        vmsa: false,
    };
    /// A VMSA the target VMPL cannot access at all (the SVSM's own pages, such as the guest
    /// firmware's VMSA: the hardware runs a VMSA without the guest's permissions).
    pub const VMSA_ONLY: VmplAccess = VmplAccess {
        read: false,
        write: false,
        execute: false,
        vmsa: true,
    };
    /// A VMSA for the target VMPL: read-only to it, the VMSA bit set.
    pub const VMSA: VmplAccess = VmplAccess {
        read: true,
        write: false,
        execute: false,
        vmsa: true,
    };
}

/// The RMP as VMPL0 changes it for lower VMPLs: PVALIDATE (only VMPL0 runs it in an SVSM
/// guest) and RMPADJUST of a higher-numbered VMPL's access.
pub trait Rmp {
    /// PVALIDATE the page at `gpa` of `size` bytes (validate or rescind).
    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: svsm_abi::core_protocol::PageSize,
        validate: bool,
    ) -> Result<Validation, RmpError>;
    /// What `vmpl` (1..=3) may do with the 4 KiB page at `gpa`, as the platform recorded the
    /// RMP (`None` outside guest memory or for an unvalidated page).
    fn access(&self, gpa: Gpa, vmpl: Vmpl) -> Option<VmplAccess>;
    /// RMPADJUST: set `target`'s access to the page (target ≥ 1).
    fn rmpadjust(
        &mut self,
        gpa: Gpa,
        size: svsm_abi::core_protocol::PageSize,
        target: Vmpl,
        access: VmplAccess,
    ) -> Result<(), RmpError>;
}

/// Every way starting or stopping a vCPU can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VcpuError {
    /// The APIC ID names no vCPU of this guest.
    #[error("no vCPU has APIC ID {0}")]
    UnknownApicId(u32),
    /// The vCPU is running and cannot be stopped now.
    #[error("the vCPU is running")]
    Running,
    /// The host answered with a refusal or a value its protocol does not define (on SNP: the
    /// GHCB's SW_EXITINFO value, kept for the log).
    #[error("the host refused the vCPU operation ({0:#x})")]
    Host(u64),
    /// The request never reached the host or its answer could not be read back (on SNP: the
    /// GHCB is not registered, its shared page cannot be mapped, or a field is missing).
    #[error("the vCPU request could not be exchanged with the host")]
    Channel,
}

/// vCPUs of lower VMPLs as the host runs them (GHCB AP Creation). The core protocol only asks
/// whether an APIC ID exists (the guest itself tells the host to run a VMSA it created with
/// SVSM_CORE_CREATE_VCPU); the SVSM uses `create` to start the guest's boot vCPU.
pub trait VcpuControl {
    /// True when the guest has a vCPU with this APIC ID (checked before anything changes).
    fn exists(&self, apic_id: u32) -> bool;
    /// Makes the vCPU `apic_id` run from the VMSA at `vmsa` (already marked a VMSA in the
    /// RMP) with these SEV features.
    fn create(
        &mut self,
        apic_id: u32,
        vmsa: Gpa,
        vmpl: Vmpl,
        sev_features: u64,
    ) -> Result<(), VcpuError>;
    /// Stops the vCPU `apic_id` whose VMSA for `vmpl` is at `vmsa`.
    fn destroy(&mut self, apic_id: u32, vmsa: Gpa, vmpl: Vmpl) -> Result<(), VcpuError>;
}
