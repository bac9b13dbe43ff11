//! The SVSM core protocol (protocol 0; SVSM spec, AMD pub. 58019, §6) that a Linux guest at
//! VMPL1+ needs: SVSM_CORE_REMAP_CA, SVSM_CORE_PVALIDATE (the multi-entry list with its
//! progress index and partial completion), SVSM_CORE_CREATE_VCPU and SVSM_CORE_DELETE_VCPU (with
//! the checks on the VMSA a guest hands over). SVSM_CORE_QUERY_PROTOCOL is answered by the
//! module, which knows the services; DEPOSIT_MEM, WITHDRAW_MEM and CONFIGURE_VTOM answer
//! UNSUPPORTED_CALL (as coconut-svsm does; Linux does not call them).
//!
//! It trusts the platform's [`Rmp`] and [`VcpuControl`]; everything a guest names — list
//! addresses, entries, VMSA pages and their contents — is copied in once and checked. The SVSM's
//! own pages, every VMSA and every calling area are off limits to PVALIDATE and to each other.
//! Every refusal is a [`CoreError`] mapped to the spec's result code without a catch-all.

use crate::platform::{
    Gpa, GuestMemory, MemoryError, Rmp, RmpError, Validation, VcpuControl, Vmpl, VmplAccess,
    PAGE_SIZE,
};
use alloc::vec::Vec;
use svsm_abi::core_protocol::{
    PageSize, PvalidateEntry, PvalidateEntryError, DELETE_VCPU_IN_USE, PVALIDATE_ENTRY_LEN,
    PVALIDATE_FAIL_UNCHANGED, PVALIDATE_HEADER_LEN,
};
use svsm_abi::snp::vmsa;
use svsm_abi::svsm::{core_call, CallRegisters, ResultCode};

/// Most PVALIDATE entries done in one call before it answers SVSM_ERR_INCOMPLETE (the guest
/// calls again and the list's `next` index says where to resume), so one call cannot hold the
/// vCPU for a page list's worth of 2 MiB zeroing.
pub const PVALIDATE_BATCH: usize = 64;

/// Who is calling: the VMPL it runs at and its vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's VMPL (1..=3).
    pub vmpl: Vmpl,
    /// The caller's vCPU (its APIC ID).
    pub apic_id: u32,
}

/// A guest vCPU the SVSM serves: its VMSA, its calling area and its VMPL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuRecord {
    /// APIC ID.
    pub apic_id: u32,
    /// The VMPL its VMSA runs at.
    pub vmpl: Vmpl,
    /// Its VMSA page.
    pub vmsa: Gpa,
    /// Its calling area.
    pub ca: Gpa,
    /// The boot vCPU (from the launch, never deleted).
    pub boot: bool,
    /// A newer VMSA was created for this APIC ID; this one awaits DELETE_VCPU.
    pub superseded: bool,
}

/// Why a core call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A register that must hold an aligned address does not.
    #[error("{0} is not aligned")]
    Misaligned(&'static str),
    /// The PVALIDATE list runs past the end of its 4 KiB page.
    #[error("the PVALIDATE list of {entries} entries at {gpa:#x} crosses a page boundary")]
    ListCrossesPage {
        /// Where it starts.
        gpa: u64,
        /// Its entry count.
        entries: u16,
    },
    /// The list's count is 0 or its next index is not below it.
    #[error("PVALIDATE list: {entries} entries, next {next}")]
    ListIndex {
        /// Entries.
        entries: u16,
        /// Next.
        next: u16,
    },
    /// An entry is malformed.
    #[error("PVALIDATE entry {index}: {error}")]
    Entry {
        /// Its index.
        index: u16,
        /// What is wrong.
        error: PvalidateEntryError,
    },
    /// A page the guest may not name: the SVSM's own, a VMSA or a calling area.
    #[error("{0:#x} belongs to the SVSM (its memory, a VMSA or a calling area)")]
    Reserved(u64),
    /// Guest memory could not be read or written as the caller.
    #[error("guest memory: {0}")]
    Memory(MemoryError),
    /// PVALIDATE failed on an entry.
    #[error("PVALIDATE of entry {index}: {error}")]
    Pvalidate {
        /// The entry.
        index: u16,
        /// The instruction's failure.
        error: RmpError,
    },
    /// The entry's page already had the requested state and the entry did not allow that.
    #[error("PVALIDATE of entry {0}: the page was already in the requested state")]
    Unchanged(u16),
    /// RMPADJUST failed.
    #[error("RMPADJUST: {0}")]
    Rmpadjust(RmpError),
    /// More entries remain: call again.
    #[error("PVALIDATE stopped after a batch; call again to continue")]
    Incomplete,
    /// The VMSA's VMPL is 0, above 3, or more privileged than the caller.
    #[error("the VMSA's VMPL {found} is not allowed for a caller at VMPL{caller}")]
    VmsaVmpl {
        /// Its VMPL field.
        found: u8,
        /// The caller's.
        caller: u8,
    },
    /// The VMSA's EFER.SVME is clear.
    #[error("the VMSA's EFER.SVME is clear")]
    VmsaSvme,
    /// The VMSA's SEV_FEATURES differ from the boot vCPU's.
    #[error("the VMSA's SEV_FEATURES {found:#x} are not the boot vCPU's {expected:#x}")]
    VmsaFeatures {
        /// Found.
        found: u64,
        /// Expected.
        expected: u64,
    },
    /// The VMSA page changed while it was being taken over (another vCPU rewrote it).
    #[error("the VMSA at {0:#x} changed while it was being checked")]
    VmsaChanged(u64),
    /// A VMSA at a 2 MiB-aligned address (an RMP erratum makes it unusable).
    #[error("a VMSA cannot sit at the 2 MiB-aligned address {0:#x}")]
    VmsaAligned2M(u64),
    /// The caller's vCPU is not one the SVSM serves.
    #[error("vCPU {0} is not served")]
    VcpuState(u32),
    /// The APIC ID names no vCPU of the guest.
    #[error("no vCPU has APIC ID {0}")]
    UnknownApicId(u32),
    /// DELETE_VCPU of a VMSA whose vCPU is running (the RMP refused with FAIL_INUSE).
    #[error("the vCPU of the VMSA at {0:#x} is running")]
    VmsaInUse(u64),
    /// DELETE_VCPU of a page that is not a VMSA this SVSM created.
    #[error("{0:#x} is not a VMSA created through CREATE_VCPU")]
    NotAVmsa(u64),
    /// DELETE_VCPU of the boot vCPU.
    #[error("the boot vCPU cannot be deleted")]
    BootVcpu,
    /// A core call this SVSM does not serve.
    #[error("core call {0} is not served")]
    Unsupported(u32),
}

impl CoreError {
    /// The result code the guest sees (SVSM spec §5 Table 4, §6).
    pub const fn result_code(&self) -> ResultCode {
        match self {
            CoreError::Misaligned(_)
            | CoreError::ListCrossesPage { .. }
            | CoreError::ListIndex { .. }
            | CoreError::Entry { .. }
            | CoreError::VmsaVmpl { .. }
            | CoreError::VmsaSvme
            | CoreError::VmsaFeatures { .. }
            | CoreError::VmsaChanged(_)
            | CoreError::VcpuState(_)
            | CoreError::NotAVmsa(_)
            | CoreError::BootVcpu
            | CoreError::UnknownApicId(_) => ResultCode::InvalidParameter,
            CoreError::Reserved(_) | CoreError::Memory(_) | CoreError::VmsaAligned2M(_) => {
                ResultCode::InvalidAddress
            }
            CoreError::Pvalidate { error, .. } => ResultCode::ProtocolError(error.code()),
            CoreError::Rmpadjust(error) => ResultCode::ProtocolError(error.code()),
            CoreError::Unchanged(_) => ResultCode::ProtocolError(PVALIDATE_FAIL_UNCHANGED),
            CoreError::Incomplete => ResultCode::Incomplete,
            CoreError::VmsaInUse(_) => ResultCode::ProtocolError(DELETE_VCPU_IN_USE),
            CoreError::Unsupported(_) => ResultCode::UnsupportedCall,
        }
    }
}

/// The core protocol's state: the SVSM's memory and every vCPU it serves.
#[derive(Clone, Debug)]
pub struct CoreProtocol {
    svsm_start: u64,
    svsm_end: u64,
    sev_features: u64,
    vcpus: Vec<VcpuRecord>,
}

fn overlaps(a_start: u64, a_len: u64, b_start: u64, b_len: u64) -> bool {
    let a_end = a_start.saturating_add(a_len);
    let b_end = b_start.saturating_add(b_len);
    a_start < b_end && b_start < a_end
}

impl CoreProtocol {
    /// The SVSM occupies `[svsm_start, svsm_end)`; `boot` is the guest's boot vCPU (its VMSA and
    /// the calling area from the secrets page); `sev_features` are its VMSA's SEV_FEATURES.
    pub fn new(svsm_start: Gpa, svsm_end: Gpa, boot: VcpuRecord, sev_features: u64) -> Self {
        CoreProtocol {
            svsm_start: svsm_start.raw(),
            svsm_end: svsm_end.raw(),
            sev_features,
            vcpus: alloc::vec![VcpuRecord {
                boot: true,
                superseded: false,
                ..boot
            }],
        }
    }

    /// The vCPUs served.
    pub fn vcpus(&self) -> &[VcpuRecord] {
        &self.vcpus
    }

    /// The current (not superseded) VMSA record of the vCPU `apic_id`.
    pub fn current(&self, apic_id: u32) -> Option<&VcpuRecord> {
        self.vcpus
            .iter()
            .find(|v| v.apic_id == apic_id && !v.superseded)
    }

    /// The calling area of the vCPU `apic_id`.
    pub fn calling_area(&self, apic_id: u32) -> Option<Gpa> {
        self.current(apic_id).map(|v| v.ca)
    }

    /// True when `[gpa, gpa + len)` touches the SVSM's memory, a VMSA or a calling area.
    fn reserved(&self, gpa: u64, len: u64) -> bool {
        overlaps(
            gpa,
            len,
            self.svsm_start,
            self.svsm_end.saturating_sub(self.svsm_start),
        ) || self.vcpus.iter().any(|v| {
            overlaps(gpa, len, v.vmsa.raw(), PAGE_SIZE) || overlaps(gpa, len, v.ca.raw(), PAGE_SIZE)
        })
    }

    /// Serves core call `call` for `caller`, reading inputs from and writing outputs to `regs`
    /// (RAX is left to the caller of this function).
    pub fn handle<M: GuestMemory + Rmp, V: VcpuControl>(
        &mut self,
        memory: &mut M,
        vcpus: &mut V,
        caller: Caller,
        call: u32,
        regs: &mut CallRegisters,
    ) -> Result<(), CoreError> {
        match call {
            core_call::REMAP_CA => self.remap_ca(memory, caller, regs.rcx),
            core_call::PVALIDATE => self.pvalidate(memory, caller, regs.rcx),
            core_call::CREATE_VCPU => self.create_vcpu(memory, vcpus, caller, regs),
            core_call::DELETE_VCPU => self.delete_vcpu(memory, caller, regs.rcx),
            other => Err(CoreError::Unsupported(other)),
        }
    }

    fn remap_ca<M: GuestMemory>(
        &mut self,
        memory: &mut M,
        caller: Caller,
        gpa: u64,
    ) -> Result<(), CoreError> {
        if gpa % PAGE_SIZE != 0 {
            return Err(CoreError::Misaligned("RCX (calling area)"));
        }
        let index = self
            .vcpus
            .iter()
            .position(|v| v.apic_id == caller.apic_id && v.vmpl == caller.vmpl && !v.superseded)
            .ok_or(CoreError::VcpuState(caller.apic_id))?;
        let current = self.vcpus.get(index).map(|v| v.ca.raw());
        if current == Some(gpa) {
            return Ok(());
        }
        if self.reserved(gpa, PAGE_SIZE) {
            return Err(CoreError::Reserved(gpa));
        }
        // The new area starts with no call pending; writing it as the caller also proves the
        // caller may use the page.
        memory
            .write(caller.vmpl, Gpa::new(gpa), &[0u8; 8])
            .map_err(CoreError::Memory)?;
        if let Some(v) = self.vcpus.get_mut(index) {
            v.ca = Gpa::new(gpa);
        }
        Ok(())
    }

    fn pvalidate<M: GuestMemory + Rmp>(
        &mut self,
        memory: &mut M,
        caller: Caller,
        list: u64,
    ) -> Result<(), CoreError> {
        if list % 8 != 0 {
            return Err(CoreError::Misaligned("RCX (PVALIDATE list)"));
        }
        let mut header = [0u8; PVALIDATE_HEADER_LEN];
        memory
            .read(caller.vmpl, Gpa::new(list), &mut header)
            .map_err(CoreError::Memory)?;
        let entries = u16::from_le_bytes([header[0], header[1]]);
        let next = u16::from_le_bytes([header[2], header[3]]);
        // The header was read, so `list + 8` is guest memory: the sums below cannot wrap.
        let room = (PAGE_SIZE - list % PAGE_SIZE) as usize;
        let len = PVALIDATE_HEADER_LEN + usize::from(entries) * PVALIDATE_ENTRY_LEN;
        if len > room {
            return Err(CoreError::ListCrossesPage { gpa: list, entries });
        }
        if entries == 0 || next >= entries {
            return Err(CoreError::ListIndex { entries, next });
        }
        // One copy of the whole list: a guest rewriting it mid-call changes nothing here.
        let mut raw = alloc::vec![0u8; len - PVALIDATE_HEADER_LEN];
        memory
            .read(
                caller.vmpl,
                Gpa::new(list + PVALIDATE_HEADER_LEN as u64),
                &mut raw,
            )
            .map_err(CoreError::Memory)?;
        let mut done = next;
        let mut result = Ok(());
        for (in_this_call, chunk) in raw
            .chunks_exact(PVALIDATE_ENTRY_LEN)
            .skip(usize::from(next))
            .enumerate()
        {
            if in_this_call == PVALIDATE_BATCH {
                result = Err(CoreError::Incomplete);
                break;
            }
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if let Err(e) = self.pvalidate_one(memory, caller, done, u64::from_le_bytes(word)) {
                result = Err(e);
                break;
            }
            done += 1;
        }
        // `next` = entries processed, or the failing entry's index (§6.2).
        memory
            .write(caller.vmpl, Gpa::new(list + 2), &done.to_le_bytes())
            .map_err(CoreError::Memory)?;
        result
    }

    fn pvalidate_one<M: GuestMemory + Rmp>(
        &self,
        memory: &mut M,
        caller: Caller,
        index: u16,
        raw: u64,
    ) -> Result<(), CoreError> {
        let entry =
            PvalidateEntry::decode(raw).map_err(|error| CoreError::Entry { index, error })?;
        let size = entry.size.bytes();
        if self.reserved(entry.gpa, size) {
            return Err(CoreError::Reserved(entry.gpa));
        }
        let gpa = Gpa::new(entry.gpa);
        let lower = (caller.vmpl.level()..=3).filter_map(Vmpl::new);
        if entry.validate {
            let outcome = memory
                .pvalidate(gpa, entry.size, true)
                .map_err(|error| CoreError::Pvalidate { index, error })?;
            if outcome == Validation::Unchanged && !entry.ignore_unchanged {
                return Err(CoreError::Unchanged(index));
            }
            // Zero before granting: the host may have mapped a page the SVSM used to own here.
            let zero = [0u8; PAGE_SIZE as usize];
            for page in 0..size / PAGE_SIZE {
                memory
                    .write(Vmpl::ZERO, Gpa::new(entry.gpa + page * PAGE_SIZE), &zero)
                    .map_err(CoreError::Memory)?;
            }
            for level in (1..=caller.vmpl.level()).filter_map(Vmpl::new) {
                memory
                    .rmpadjust(gpa, entry.size, level, VmplAccess::FULL)
                    .map_err(CoreError::Rmpadjust)?;
            }
        } else {
            // Revoke the caller's (and less privileged VMPLs') access before rescinding. A page
            // that is not validated has no access to revoke (RMPADJUST answers FAIL_INPUT):
            // PVALIDATE then tells "unchanged" or the real failure.
            for level in lower {
                match memory.rmpadjust(gpa, entry.size, level, VmplAccess::NONE) {
                    Ok(()) | Err(RmpError::Input) => {}
                    Err(e) => return Err(CoreError::Rmpadjust(e)),
                }
            }
            let outcome = memory
                .pvalidate(gpa, entry.size, false)
                .map_err(|error| CoreError::Pvalidate { index, error })?;
            if outcome == Validation::Unchanged && !entry.ignore_unchanged {
                return Err(CoreError::Unchanged(index));
            }
        }
        Ok(())
    }

    fn create_vcpu<M: GuestMemory + Rmp, V: VcpuControl>(
        &mut self,
        memory: &mut M,
        vcpus: &mut V,
        caller: Caller,
        regs: &CallRegisters,
    ) -> Result<(), CoreError> {
        let (vmsa_gpa, ca_gpa) = (regs.rcx, regs.rdx);
        let apic_id = regs.r8 as u32;
        if vmsa_gpa % PAGE_SIZE != 0 {
            return Err(CoreError::Misaligned("RCX (VMSA)"));
        }
        if ca_gpa % PAGE_SIZE != 0 {
            return Err(CoreError::Misaligned("RDX (calling area)"));
        }
        if vmsa_gpa % PageSize::Size2M.bytes() == 0 {
            return Err(CoreError::VmsaAligned2M(vmsa_gpa));
        }
        if self.reserved(vmsa_gpa, PAGE_SIZE) {
            return Err(CoreError::Reserved(vmsa_gpa));
        }
        // A vCPU brought up again keeps its calling area (Linux creates the new VMSA first,
        // then deletes the old one): only other vCPUs' pages are off limits for it.
        let ca_taken = overlaps(
            ca_gpa,
            PAGE_SIZE,
            self.svsm_start,
            self.svsm_end.saturating_sub(self.svsm_start),
        ) || self.vcpus.iter().any(|v| {
            overlaps(ca_gpa, PAGE_SIZE, v.vmsa.raw(), PAGE_SIZE)
                || (v.apic_id != apic_id && overlaps(ca_gpa, PAGE_SIZE, v.ca.raw(), PAGE_SIZE))
        });
        if ca_taken || vmsa_gpa == ca_gpa {
            return Err(CoreError::Reserved(ca_gpa));
        }
        if !vcpus.exists(apic_id) {
            return Err(CoreError::UnknownApicId(apic_id));
        }
        let mut page = [0u8; vmsa::VMSA_SIZE];
        memory
            .read(caller.vmpl, Gpa::new(vmsa_gpa), &mut page)
            .map_err(CoreError::Memory)?;
        let level = vmsa::read_u8(&page, vmsa::VMPL);
        let target = Vmpl::new(level)
            .filter(|t| t.level() != 0 && t.level() >= caller.vmpl.level())
            .ok_or(CoreError::VmsaVmpl {
                found: level,
                caller: caller.vmpl.level(),
            })?;
        if vmsa::read_u64(&page, vmsa::EFER) & vmsa::EFER_SVME == 0 {
            return Err(CoreError::VmsaSvme);
        }
        let features = vmsa::read_u64(&page, vmsa::SEV_FEATURES);
        if features != self.sev_features {
            return Err(CoreError::VmsaFeatures {
                found: features,
                expected: self.sev_features,
            });
        }
        // The calling area must be the caller's to write (proved by writing back what is
        // there; it is cleared only once the call succeeds).
        let mut ca_head = [0u8; 8];
        memory
            .read(caller.vmpl, Gpa::new(ca_gpa), &mut ca_head)
            .and_then(|()| memory.write(caller.vmpl, Gpa::new(ca_gpa), &ca_head))
            .map_err(CoreError::Memory)?;

        // Take the page: no guest VMPL may touch it (what each had is kept to give it back if
        // anything below fails), the page must still be what was checked (another vCPU may
        // have rewritten it before the revocation), then it is marked a VMSA.
        let gpa = Gpa::new(vmsa_gpa);
        let before = Self::access_of(memory, gpa);
        let taken = Self::revoke_all(memory, gpa)
            .and_then(|()| {
                let mut again = [0u8; vmsa::VMSA_SIZE];
                memory
                    .read(Vmpl::ZERO, gpa, &mut again)
                    .map_err(CoreError::Memory)?;
                if again != page {
                    return Err(CoreError::VmsaChanged(vmsa_gpa));
                }
                Ok(())
            })
            .and_then(|()| {
                memory
                    .rmpadjust(gpa, PageSize::Size4K, target, VmplAccess::VMSA)
                    .map_err(CoreError::Rmpadjust)
            })
            .and_then(|()| {
                memory
                    .write(caller.vmpl, Gpa::new(ca_gpa), &[0u8; 8])
                    .map_err(CoreError::Memory)
            });
        if let Err(e) = taken {
            Self::restore(memory, gpa, &before);
            return Err(e);
        }
        for v in self.vcpus.iter_mut().filter(|v| v.apic_id == apic_id) {
            v.superseded = true;
        }
        self.vcpus.push(VcpuRecord {
            apic_id,
            vmpl: target,
            vmsa: gpa,
            ca: Gpa::new(ca_gpa),
            boot: false,
            superseded: false,
        });
        Ok(())
    }

    /// Each guest VMPL's access to the page (the platform's record of the RMP).
    fn access_of<M: Rmp>(memory: &M, gpa: Gpa) -> [Option<VmplAccess>; 3] {
        [1u8, 2, 3].map(|l| Vmpl::new(l).and_then(|v| memory.access(gpa, v)))
    }

    /// No guest VMPL may access the page.
    fn revoke_all<M: Rmp>(memory: &mut M, gpa: Gpa) -> Result<(), CoreError> {
        for level in (1..=3).filter_map(Vmpl::new) {
            memory
                .rmpadjust(gpa, PageSize::Size4K, level, VmplAccess::NONE)
                .map_err(CoreError::Rmpadjust)?;
        }
        Ok(())
    }

    /// Gives each guest VMPL back the access it had (best effort: this runs on a failure path).
    fn restore<M: Rmp>(memory: &mut M, gpa: Gpa, before: &[Option<VmplAccess>; 3]) {
        for (level, access) in (1u8..=3).zip(before) {
            if let (Some(v), Some(a)) = (Vmpl::new(level), access) {
                let _ = memory.rmpadjust(gpa, PageSize::Size4K, v, *a);
            }
        }
    }

    fn delete_vcpu<M: GuestMemory + Rmp>(
        &mut self,
        memory: &mut M,
        caller: Caller,
        vmsa_gpa: u64,
    ) -> Result<(), CoreError> {
        let index = self
            .vcpus
            .iter()
            .position(|v| v.vmsa.raw() == vmsa_gpa)
            .ok_or(CoreError::NotAVmsa(vmsa_gpa))?;
        let record = *self.vcpus.get(index).ok_or(CoreError::NotAVmsa(vmsa_gpa))?;
        if record.boot {
            return Err(CoreError::BootVcpu);
        }
        if record.vmpl.level() < caller.vmpl.level() {
            return Err(CoreError::VmsaVmpl {
                found: record.vmpl.level(),
                caller: caller.vmpl.level(),
            });
        }
        // The vCPU must not run again from this VMSA: clear SVME, then clear the VMSA bit,
        // which the RMP refuses (FAIL_INUSE) while the vCPU is running.
        let efer_at = Gpa::new(vmsa_gpa + vmsa::EFER as u64);
        let mut efer = [0u8; 8];
        memory
            .read(Vmpl::ZERO, efer_at, &mut efer)
            .map_err(CoreError::Memory)?;
        let efer = u64::from_le_bytes(efer);
        memory
            .write(
                Vmpl::ZERO,
                efer_at,
                &(efer & !vmsa::EFER_SVME).to_le_bytes(),
            )
            .map_err(CoreError::Memory)?;
        if let Err(e) =
            memory.rmpadjust(record.vmsa, PageSize::Size4K, record.vmpl, VmplAccess::NONE)
        {
            let _ = memory.write(Vmpl::ZERO, efer_at, &efer.to_le_bytes());
            return Err(match e {
                RmpError::InUse => CoreError::VmsaInUse(vmsa_gpa),
                other => CoreError::Rmpadjust(other),
            });
        }
        self.vcpus.remove(index);
        // The page is the caller's again.
        for level in (1..=caller.vmpl.level()).filter_map(Vmpl::new) {
            memory
                .rmpadjust(record.vmsa, PageSize::Size4K, level, VmplAccess::FULL)
                .map_err(CoreError::Rmpadjust)?;
        }
        Ok(())
    }
}

impl<M, P, T, S, R> crate::SvsmModule<M, P, T, S, R>
where
    M: GuestMemory + Rmp,
    P: crate::platform::SecureProcessor,
    T: crate::tpm::TpmEngine,
    S: crate::platform::StateStore,
    R: crate::platform::Entropy,
{
    /// Handles one SVSM call from `caller` when the SVSM also serves the core protocol's
    /// memory and vCPU calls through `core`: those go to [`CoreProtocol::handle`], everything
    /// else (QUERY_PROTOCOL included) to [`crate::SvsmModule::handle_call`]. RAX gets the result.
    pub fn handle_vcpu_call<V: VcpuControl>(
        &mut self,
        core: &mut CoreProtocol,
        vcpus: &mut V,
        caller: Caller,
        regs: &mut CallRegisters,
    ) {
        let id = svsm_abi::svsm::CallId::from_rax(regs.rax);
        if id.protocol != svsm_abi::svsm::PROTOCOL_CORE || id.call == core_call::QUERY_PROTOCOL {
            self.handle_call(caller.vmpl, regs);
            return;
        }
        regs.rax = match core.handle(&mut self.memory, vcpus, caller, id.call, regs) {
            Ok(()) => 0,
            Err(e) => u64::from(e.result_code().to_u32()),
        };
    }
}
