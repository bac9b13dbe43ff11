//! Memory: the two mappings the backend uses and svsm-core's `GuestMemory` under the RMP's
//! permission model.
//!
//! VMPL0 can read every validated guest page, but it must only do so on behalf of a guest
//! VMPL where the RMP would let that VMPL do it itself. The RMP cannot be read cheaply, so
//! [`SnpMemory`] keeps the state it established: the launch state of each memory region, and
//! every later PVALIDATE and RMPADJUST it executed (only through its own methods). A page of the
//! SVSM's own memory is never accessible to VMPL1..3; a page that is not validated is accessible
//! to nobody (touching it at VMPL0 would raise #VC).

use crate::cpu::{self, CpuOps, PageSize, PvalidateError, RmpadjustError, VmplPermissions};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use svsm_abi::igvm_boot::GpaRange;
use svsm_core::platform::{Gpa, GuestMemory, MemoryError, Vmpl, PAGE_SIZE};

/// An address range outside a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The range is not (entirely) mapped.
    #[error("range {gpa:#x}+{len:#x} is outside the mapping")]
    OutOfRange {
        /// Start.
        gpa: u64,
        /// Length.
        len: usize,
    },
}

/// Pages shared with the hypervisor (C-bit clear, RMP shared): the GHCB page, the guest-message
/// request and response pages, the certificate buffer. The hypervisor may rewrite them at any
/// moment; implementations copy, never lend references.
pub trait SharedMemory {
    /// Copies `out.len()` bytes at shared `gpa` into `out`.
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError>;
    /// Copies `data` to shared `gpa`.
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError>;
}

/// VMPL0's private view (C-bit set) of guest physical memory.
pub trait PrivateMemory {
    /// Copies `out.len()` bytes at `gpa` into `out`.
    fn read_private(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError>;
    /// Copies `data` to `gpa`.
    fn write_private(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError>;
    /// The linear address at which `gpa` is mapped (the operand of PVALIDATE and RMPADJUST).
    fn linear_address(&self, gpa: u64) -> Option<u64>;
}

/// A range of guest memory and the RMP state its pages start in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First GPA (page aligned).
    pub start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Whether the pages are validated (pre-validated at launch).
    pub validated: bool,
    /// What VMPL1, VMPL2 and VMPL3 may do with the pages.
    pub perms: [VmplPermissions; 3],
}

/// Guest memory regions for [`SnpMemory::new`] at an IGVM launch: the loader's RAM with the `validated` ranges
/// (the SVSM's own memory, all of it validated by the launch or by the boot code before the
/// model exists, and the launched firmware, VMPL0 access only until the SVSM grants it) carved
/// out and added back as validated.
pub fn launch_regions(ram: &[GpaRange], validated: &[GpaRange]) -> Vec<MemoryRegion> {
    let none = [VmplPermissions::empty(); 3];
    let region = |(start, end): (u64, u64), validated: bool| MemoryRegion {
        start,
        pages: (end - start) / PAGE_SIZE,
        validated,
        perms: none,
    };
    let span = |r: &GpaRange| (r.gpa.get(), r.end().unwrap_or(u64::MAX));
    let mut pieces: Vec<(u64, u64)> = ram.iter().map(span).collect();
    for cut in validated.iter().map(span) {
        pieces = pieces
            .into_iter()
            .flat_map(|(start, end)| {
                [(start, end.min(cut.0)), (start.max(cut.1), end)]
                    .into_iter()
                    .filter(|(s, e)| s < e)
            })
            .collect();
    }
    let mut out: Vec<MemoryRegion> = pieces.into_iter().map(|p| region(p, false)).collect();
    out.extend(
        validated
            .iter()
            .filter(|r| r.size.get() > 0)
            .map(|r| region(span(r), true)),
    );
    out.retain(|r| r.pages > 0);
    out.sort_by_key(|r| r.start);
    out
}

/// The RMP state of one 4 KiB page as the module established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageState {
    /// PVALIDATEd.
    pub validated: bool,
    /// What VMPL1, VMPL2 and VMPL3 may do.
    pub perms: [VmplPermissions; 3],
    /// The page is a VMSA.
    pub vmsa: bool,
}

/// Why an RMP operation or a memory configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RmpError {
    /// PVALIDATE failed.
    #[error(transparent)]
    Pvalidate(#[from] PvalidateError),
    /// RMPADJUST failed.
    #[error(transparent)]
    Rmpadjust(#[from] RmpadjustError),
    /// The address is not in any guest memory region.
    #[error("{0:#x} is not guest memory")]
    NotGuestMemory(u64),
    /// The address is in the SVSM's own memory, which guest requests may not change.
    #[error("{0:#x} is SVSM memory")]
    SvsmPage(u64),
    /// The address is not page aligned (to the size asked for).
    #[error("{0:#x} is not aligned")]
    Misaligned(u64),
    /// The private mapping has no linear address for the page.
    #[error("{0:#x} is not mapped")]
    Unmapped(u64),
    /// The page is not validated.
    #[error("{0:#x} is not validated")]
    NotValidated(u64),
    /// A VMSA on a 2 MiB-aligned GPA collides with a large page's RMP entry (erratum).
    #[error("a VMSA may not sit at 2 MiB-aligned {0:#x}")]
    VmsaAlignment(u64),
    /// Two regions overlap, a region wraps, or a region is misaligned.
    #[error("memory region at {0:#x} overlaps another, wraps or is misaligned")]
    BadRegion(u64),
    /// Writing through the private mapping failed.
    #[error("private mapping: {0}")]
    Mapping(#[from] MappingError),
}

const NO_ACCESS: [VmplPermissions; 3] = [VmplPermissions::empty(); 3];
const PAGES_PER_2M: u64 = 512;

/// svsm-core's `GuestMemory` on SNP: the private direct map, checked against the RMP state the
/// module established (see the module documentation).
pub struct SnpMemory<C, P> {
    cpu: C,
    mem: P,
    regions: Vec<MemoryRegion>,
    svsm_start: u64,
    svsm_end: u64,
    pages: BTreeMap<u64, PageState>,
}

impl<C: CpuOps, P: PrivateMemory> SnpMemory<C, P> {
    /// Guest memory made of `regions`, of which `svsm_base..svsm_base+svsm_size` is the SVSM's
    /// own (VMPL0 only, whatever its region says).
    pub fn new(
        cpu: C,
        mem: P,
        mut regions: Vec<MemoryRegion>,
        svsm_base: u64,
        svsm_size: u64,
    ) -> Result<Self, RmpError> {
        regions.sort_by_key(|r| r.start);
        let mut prev_end = 0u64;
        for r in &regions {
            let end = r
                .pages
                .checked_mul(PAGE_SIZE)
                .and_then(|len| r.start.checked_add(len))
                .ok_or(RmpError::BadRegion(r.start))?;
            if r.start % PAGE_SIZE != 0 || r.start < prev_end {
                return Err(RmpError::BadRegion(r.start));
            }
            prev_end = end;
        }
        let svsm_end = svsm_base
            .checked_add(svsm_size)
            .filter(|_| svsm_base % PAGE_SIZE == 0 && svsm_size % PAGE_SIZE == 0)
            .ok_or(RmpError::BadRegion(svsm_base))?;
        Ok(SnpMemory {
            cpu,
            mem,
            regions,
            svsm_start: svsm_base,
            svsm_end,
            pages: BTreeMap::new(),
        })
    }

    fn is_svsm(&self, gpa: u64) -> bool {
        (self.svsm_start..self.svsm_end).contains(&gpa)
    }

    fn region(&self, gpa: u64) -> Option<&MemoryRegion> {
        self.regions
            .iter()
            .find(|r| gpa >= r.start && (gpa - r.start) / PAGE_SIZE < r.pages)
    }

    /// The RMP state of the page holding `gpa`, or `None` outside guest memory. SVSM pages
    /// report no access for VMPL1..3.
    pub fn page_state(&self, gpa: u64) -> Option<PageState> {
        let page = gpa / PAGE_SIZE;
        let mut state = match self.pages.get(&page) {
            Some(s) => *s,
            None => {
                let r = self.region(gpa)?;
                PageState {
                    validated: r.validated,
                    perms: r.perms,
                    vmsa: false,
                }
            }
        };
        if self.is_svsm(gpa) {
            state.perms = NO_ACCESS;
        }
        Some(state)
    }

    fn record(&mut self, gpa: u64, state: PageState) {
        let page = gpa / PAGE_SIZE;
        let default = self.region(gpa).map(|r| PageState {
            validated: r.validated,
            perms: r.perms,
            vmsa: false,
        });
        if default == Some(state) {
            self.pages.remove(&page);
        } else {
            self.pages.insert(page, state);
        }
    }

    fn check_changeable(&self, gpa: u64, pages: u64) -> Result<(), RmpError> {
        for i in 0..pages {
            let at = gpa
                .checked_add(i * PAGE_SIZE)
                .ok_or(RmpError::NotGuestMemory(gpa))?;
            if self.is_svsm(at) {
                return Err(RmpError::SvsmPage(at));
            }
            if self.region(at).is_none() {
                return Err(RmpError::NotGuestMemory(at));
            }
        }
        Ok(())
    }

    fn linear(&self, gpa: u64, size: PageSize) -> Result<u64, RmpError> {
        let va = self
            .mem
            .linear_address(gpa)
            .ok_or(RmpError::Unmapped(gpa))?;
        let last = gpa + (size.bytes() - 1);
        if self.mem.linear_address(last) != va.checked_add(size.bytes() - 1) {
            return Err(RmpError::Unmapped(last));
        }
        Ok(va)
    }

    /// PVALIDATE a guest page (4 KiB, or 2 MiB falling back to 512 × 4 KiB when the RMP holds
    /// 4 KiB entries). A freshly validated page is modelled as giving VMPL1..3 no access (what
    /// the RMP holds after a page-state change to private; the conservative choice otherwise)
    /// until [`Self::set_permissions`] grants it. `Unchanged` (some page already was in the
    /// requested state) is returned as an error, as the SVSM core protocol reports it, with the
    /// model updated.
    pub fn pvalidate(&mut self, gpa: u64, size: PageSize, validate: bool) -> Result<(), RmpError> {
        if gpa % size.bytes() != 0 {
            return Err(RmpError::Misaligned(gpa));
        }
        let pages = size.bytes() / PAGE_SIZE;
        self.check_changeable(gpa, pages)?;
        let va = self.linear(gpa, size)?;
        let result = cpu::pvalidate(&mut self.cpu, va, size, validate);
        if let (Err(PvalidateError::SizeMismatch(_)), PageSize::Size2M) = (result, size) {
            // The RMP holds 4 KiB entries here: validate them one by one.
            let mut outcome = Ok(());
            for i in 0..PAGES_PER_2M {
                let at = gpa + i * PAGE_SIZE;
                let va = self.linear(at, PageSize::Size4K)?;
                match cpu::pvalidate(&mut self.cpu, va, PageSize::Size4K, validate) {
                    Ok(()) => self.note_validation(at, validate, true),
                    Err(e @ PvalidateError::Unchanged(_)) => {
                        self.note_validation(at, validate, false);
                        outcome = outcome.and(Err(e));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            return outcome.map_err(RmpError::from);
        }
        match result {
            Ok(()) => {
                for i in 0..pages {
                    self.note_validation(gpa + i * PAGE_SIZE, validate, true);
                }
                Ok(())
            }
            Err(e @ PvalidateError::Unchanged(_)) => {
                for i in 0..pages {
                    self.note_validation(gpa + i * PAGE_SIZE, validate, false);
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn note_validation(&mut self, gpa: u64, validate: bool, changed: bool) {
        let Some(mut state) = self.page_state(gpa) else {
            return;
        };
        state.validated = validate;
        if changed && validate {
            // PSC to private resets the lower VMPLs' permissions; a newly validated page gives
            // them nothing until RMPADJUST grants it.
            state.perms = NO_ACCESS;
            state.vmsa = false;
        }
        self.record(gpa, state);
    }

    /// RMPADJUST a validated guest page: VMPL`vmpl` (1..=3) gets exactly `perms`; `vmsa` sets
    /// or clears the VMSA bit.
    pub fn set_permissions(
        &mut self,
        gpa: u64,
        vmpl: u8,
        perms: VmplPermissions,
        vmsa: bool,
    ) -> Result<(), RmpError> {
        if gpa % PAGE_SIZE != 0 {
            return Err(RmpError::Misaligned(gpa));
        }
        if !(1..=3).contains(&vmpl) {
            return Err(RmpadjustError::TargetVmpl(vmpl).into());
        }
        if vmsa && gpa % (PAGES_PER_2M * PAGE_SIZE) == 0 {
            return Err(RmpError::VmsaAlignment(gpa));
        }
        self.check_changeable(gpa, 1)?;
        let mut state = self.page_state(gpa).ok_or(RmpError::NotGuestMemory(gpa))?;
        if !state.validated {
            return Err(RmpError::NotValidated(gpa));
        }
        let va = self.linear(gpa, PageSize::Size4K)?;
        cpu::rmpadjust(&mut self.cpu, va, PageSize::Size4K, vmpl, perms, vmsa)?;
        let before = state.perms.get(usize::from(vmpl - 1)).copied();
        if takes_away(before, perms, state.vmsa, vmsa) {
            self.cpu.flush_tlb_all();
        }
        if let Some(p) = state.perms.get_mut(usize::from(vmpl - 1)) {
            *p = perms;
        }
        state.vmsa = vmsa;
        self.record(gpa, state);
        Ok(())
    }

    /// Validates a 4 KiB page for a guest at `guest_vmpl`: PVALIDATE, zero the page (a host
    /// remapping a page that held SVSM data must not leak it), then RMPADJUST RWX for the guest.
    pub fn validate_for_guest(&mut self, gpa: u64, guest_vmpl: u8) -> Result<(), RmpError> {
        if !(1..=3).contains(&guest_vmpl) {
            return Err(RmpadjustError::TargetVmpl(guest_vmpl).into());
        }
        self.pvalidate(gpa, PageSize::Size4K, true)?;
        self.mem.write_private(gpa, &[0u8; PAGE_SIZE as usize])?;
        self.set_permissions(gpa, guest_vmpl, VmplPermissions::RWX, false)
    }

    /// Takes a 4 KiB page back from the guests: revoke VMPL1..3, rescind validation, flush the
    /// TLB entry.
    pub fn rescind_from_guest(&mut self, gpa: u64) -> Result<(), RmpError> {
        for vmpl in 1..=3 {
            self.set_permissions(gpa, vmpl, VmplPermissions::empty(), false)?;
        }
        let va = self.linear(gpa, PageSize::Size4K)?;
        self.pvalidate(gpa, PageSize::Size4K, false)?;
        self.cpu.flush_tlb(va);
        self.cpu.flush_tlb_all();
        Ok(())
    }

    fn check_access(
        &self,
        vmpl: Vmpl,
        gpa: Gpa,
        len: usize,
        write: bool,
    ) -> Result<(), MemoryError> {
        let overflow = MemoryError::Overflow {
            gpa: gpa.raw(),
            len,
        };
        if len == 0 {
            return Ok(());
        }
        let end = gpa.raw().checked_add(len as u64).ok_or(overflow)?;
        let mut page = gpa.raw() / PAGE_SIZE;
        while page * PAGE_SIZE < end {
            let at = (page * PAGE_SIZE).max(gpa.raw());
            let state = self.page_state(at).ok_or(MemoryError::NotPresent(at))?;
            if !state.validated {
                return Err(MemoryError::NotValidated(at));
            }
            if let Some(i) = usize::from(vmpl.level()).checked_sub(1) {
                let perms = state.perms.get(i).copied().unwrap_or_default();
                let need = if write {
                    VmplPermissions::WRITE
                } else {
                    VmplPermissions::READ
                };
                if !perms.contains(need) {
                    return Err(MemoryError::NoAccess {
                        gpa: at,
                        vmpl: vmpl.level(),
                    });
                }
            }
            page += 1;
        }
        Ok(())
    }

    /// The CPU operations (for the platform's other parts and tests).
    pub fn cpu_mut(&mut self) -> &mut C {
        &mut self.cpu
    }
}

impl<C: CpuOps, P: PrivateMemory> GuestMemory for SnpMemory<C, P> {
    fn read(&mut self, vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.check_access(vmpl, gpa, buf.len(), false)?;
        self.mem
            .read_private(gpa.raw(), buf)
            .map_err(|_| MemoryError::NotPresent(gpa.raw()))
    }

    fn write(&mut self, vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
        self.check_access(vmpl, gpa, data.len(), true)?;
        self.mem
            .write_private(gpa.raw(), data)
            .map_err(|_| MemoryError::NotPresent(gpa.raw()))
    }
}

/// Whether an RMPADJUST from `before` (with the VMSA bit `was_vmsa`) to `after` (`vmsa`) takes
/// a right away (or changes what the page is), so translations made earlier must be flushed
/// everywhere. Granting more needs no flush: a missing translation is simply made again.
fn takes_away(
    before: Option<VmplPermissions>,
    after: VmplPermissions,
    was_vmsa: bool,
    vmsa: bool,
) -> bool {
    was_vmsa != vmsa || !before.is_some_and(|b| after.contains(b))
}

fn vmpl_permissions(access: svsm_core::platform::VmplAccess) -> VmplPermissions {
    let mut p = VmplPermissions::empty();
    if access.read {
        p |= VmplPermissions::READ;
    }
    if access.write {
        p |= VmplPermissions::WRITE;
    }
    if access.execute {
        p |= VmplPermissions::EXEC_USER | VmplPermissions::EXEC_SUPERVISOR;
    }
    p
}

/// The core protocol's view of the RMP instructions: exactly one PVALIDATE or RMPADJUST of the
/// size asked for (no 2 MiB → 4 KiB fallback: the guest does that on FAIL_SIZEMISMATCH, SVSM
/// spec §6.2), with the model of the RMP kept up to date. Anything refused before the
/// instruction runs (SVSM memory, not guest memory, unmapped, misaligned) is FAIL_INPUT, as
/// the instruction itself would answer.
impl<C: CpuOps, P: PrivateMemory> svsm_core::platform::Rmp for SnpMemory<C, P> {
    fn access(&self, gpa: Gpa, vmpl: Vmpl) -> Option<svsm_core::platform::VmplAccess> {
        let state = self.page_state(gpa.raw()).filter(|s| s.validated)?;
        let perms = *state.perms.get(usize::from(vmpl.level()).checked_sub(1)?)?;
        Some(svsm_core::platform::VmplAccess {
            read: perms.contains(VmplPermissions::READ),
            write: perms.contains(VmplPermissions::WRITE),
            execute: perms
                .intersects(VmplPermissions::EXEC_USER | VmplPermissions::EXEC_SUPERVISOR),
            vmsa: state.vmsa,
        })
    }

    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: svsm_core::abi::core_protocol::PageSize,
        validate: bool,
    ) -> Result<svsm_core::platform::Validation, svsm_core::platform::RmpError> {
        use svsm_core::platform::{RmpError as E, Validation};
        let g = gpa.raw();
        let pages = size.bytes() / PAGE_SIZE;
        if g % size.bytes() != 0 || self.check_changeable(g, pages).is_err() {
            return Err(E::Input);
        }
        let va = self.linear(g, size).map_err(|_| E::Input)?;
        match cpu::pvalidate(&mut self.cpu, va, size, validate) {
            Ok(()) => {
                for i in 0..pages {
                    self.note_validation(g + i * PAGE_SIZE, validate, true);
                }
                if !validate {
                    self.cpu.flush_tlb(va);
                    self.cpu.flush_tlb_all();
                }
                Ok(Validation::Changed)
            }
            Err(PvalidateError::Unchanged(_)) => {
                for i in 0..pages {
                    self.note_validation(g + i * PAGE_SIZE, validate, false);
                }
                Ok(Validation::Unchanged)
            }
            Err(PvalidateError::SizeMismatch(_)) => Err(E::SizeMismatch),
            Err(
                PvalidateError::FailInput(_)
                | PvalidateError::Misaligned { .. }
                | PvalidateError::Unknown { .. },
            ) => Err(E::Input),
        }
    }

    fn rmpadjust(
        &mut self,
        gpa: Gpa,
        size: svsm_core::abi::core_protocol::PageSize,
        target: Vmpl,
        access: svsm_core::platform::VmplAccess,
    ) -> Result<(), svsm_core::platform::RmpError> {
        use svsm_core::platform::RmpError as E;
        let g = gpa.raw();
        let level = target.level();
        if !(1..=3).contains(&level) {
            return Err(E::Permission);
        }
        let pages = size.bytes() / PAGE_SIZE;
        // The SVSM's own pages may be made (or stop being) a lower VMPL's VMSA — the guest
        // firmware's VMSA lives there — but never readable, writable or executable by it.
        let grants = access.read || access.write || access.execute;
        let changeable = self.check_changeable(g, pages).is_ok()
            || (!grants
                && (0..pages).all(|i| {
                    let at = g + i * PAGE_SIZE;
                    self.is_svsm(at) && self.region(at).is_some()
                }));
        if g % size.bytes() != 0
            || !changeable
            || (access.vmsa && g % (PAGES_PER_2M * PAGE_SIZE) == 0)
        {
            return Err(E::Input);
        }
        for i in 0..pages {
            if !self
                .page_state(g + i * PAGE_SIZE)
                .is_some_and(|s| s.validated)
            {
                return Err(E::Input);
            }
        }
        let va = self.linear(g, size).map_err(|_| E::Input)?;
        let perms = vmpl_permissions(access);
        match cpu::rmpadjust(&mut self.cpu, va, size, level, perms, access.vmsa) {
            Ok(()) => {}
            Err(RmpadjustError::Permission(_) | RmpadjustError::TargetVmpl(_)) => {
                return Err(E::Permission)
            }
            Err(RmpadjustError::SizeMismatch(_)) => return Err(E::SizeMismatch),
            // FAIL_INUSE: the VMSA's vCPU is running.
            Err(RmpadjustError::Unknown { code: 3, .. }) => return Err(E::InUse),
            Err(
                RmpadjustError::FailInput(_)
                | RmpadjustError::Misaligned { .. }
                | RmpadjustError::Unknown { .. },
            ) => return Err(E::Input),
        }
        let mut flush = false;
        for i in 0..pages {
            let at = g + i * PAGE_SIZE;
            if let Some(mut state) = self.page_state(at) {
                let before = state.perms.get(usize::from(level - 1)).copied();
                flush |= takes_away(before, perms, state.vmsa, access.vmsa);
                if let Some(p) = state.perms.get_mut(usize::from(level - 1)) {
                    *p = perms;
                }
                state.vmsa = access.vmsa;
                self.record(at, state);
            }
        }
        if flush {
            self.cpu.flush_tlb_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RmpCpu, VecMemory};

    #[test]
    fn launch_regions_carve_the_launched_ranges_out_of_ram() {
        let r = |gpa, size| GpaRange::new(gpa, size);
        // RAM below 2 GiB and above 4 GiB; the SVSM inside the low RAM; the firmware below
        // 4 GiB, outside RAM (the loader does not list it).
        let ram = [
            r(0, 0xA_0000),
            r(0x10_0000, 0x7FF0_0000),
            r(0x1_0000_0000, 0x4000_0000),
        ];
        let svsm = r(0x400_0000, 0x800_0000);
        let firmware = r(0xFFE0_0000, 0x20_0000);
        let got: Vec<(u64, u64, bool)> = launch_regions(&ram, &[svsm, firmware])
            .iter()
            .map(|m| (m.start, m.pages, m.validated))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0xA0, false),
                (0x10_0000, (0x400_0000 - 0x10_0000) / 4096, false),
                (0x400_0000, 0x8000, true),
                (0xC00_0000, (0x8000_0000 - 0xC00_0000) / 4096, false),
                (0xFFE0_0000, 0x200, true),
                (0x1_0000_0000, 0x4_0000, false),
            ]
        );
        // The memory model accepts them: sorted, no overlap.
        let regions = launch_regions(&ram, &[svsm, firmware]);
        assert!(SnpMemory::new(
            RmpCpu::new(1, |_| false),
            VecMemory::new(1),
            regions,
            0x400_0000,
            0x800_0000
        )
        .is_ok());
        // A launched range that covers a whole RAM range, or spans two, leaves no RAM piece in it.
        let got = launch_regions(&[r(0, 0x2000), r(0x3000, 0x1000)], &[r(0, 0x4000)]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start, got[0].pages, got[0].validated), (0, 4, true));
    }

    const RW: [VmplPermissions; 3] = [
        VmplPermissions::RWX,
        VmplPermissions::RWX,
        VmplPermissions::RWX,
    ];

    fn memory() -> SnpMemory<RmpCpu, VecMemory> {
        // 2 MiB + 16 pages of guest memory; the SVSM owns pages 4..8; pages 8..12 start
        // unvalidated.
        let pages = PAGES_PER_2M + 16;
        let regions = std::vec![
            MemoryRegion {
                start: 0,
                pages: 8,
                validated: true,
                perms: RW,
            },
            MemoryRegion {
                start: 8 * PAGE_SIZE,
                pages: 4,
                validated: false,
                perms: NO_ACCESS,
            },
            MemoryRegion {
                start: 12 * PAGE_SIZE,
                pages: pages - 12,
                validated: true,
                perms: RW,
            },
        ];
        let cpu = RmpCpu::new(pages, |p| !(8..12).contains(&p));
        SnpMemory::new(
            cpu,
            VecMemory::new(pages as usize),
            regions,
            4 * PAGE_SIZE,
            4 * PAGE_SIZE,
        )
        .unwrap()
    }

    fn v(level: u8) -> Vmpl {
        Vmpl::new(level).unwrap()
    }

    #[test]
    fn svsm_pages_are_vmpl0_only() {
        let mut m = memory();
        let mut buf = [0u8; 16];
        m.write(v(0), Gpa::new(4 * PAGE_SIZE), &[7; 16]).unwrap();
        m.read(v(0), Gpa::new(4 * PAGE_SIZE), &mut buf).unwrap();
        assert_eq!(buf, [7; 16]);
        for level in 1..=3 {
            assert_eq!(
                m.read(v(level), Gpa::new(4 * PAGE_SIZE + 8), &mut buf),
                Err(MemoryError::NoAccess {
                    gpa: 4 * PAGE_SIZE + 8,
                    vmpl: level
                })
            );
        }
        // A range that starts in guest memory and runs into the SVSM is refused at the
        // first SVSM page.
        assert_eq!(
            m.write(v(1), Gpa::new(4 * PAGE_SIZE - 8), &[0; 16]),
            Err(MemoryError::NoAccess {
                gpa: 4 * PAGE_SIZE,
                vmpl: 1
            })
        );
        assert_eq!(
            m.pvalidate(5 * PAGE_SIZE, PageSize::Size4K, false),
            Err(RmpError::SvsmPage(5 * PAGE_SIZE))
        );
        assert_eq!(
            m.set_permissions(5 * PAGE_SIZE, 1, VmplPermissions::RWX, false),
            Err(RmpError::SvsmPage(5 * PAGE_SIZE))
        );
        assert_eq!(m.cpu.pvalidates + m.cpu.rmpadjusts, 0);
    }

    #[test]
    fn unvalidated_and_absent_pages() {
        let mut m = memory();
        let mut buf = [0u8; 4];
        assert_eq!(
            m.read(v(0), Gpa::new(9 * PAGE_SIZE), &mut buf),
            Err(MemoryError::NotValidated(9 * PAGE_SIZE))
        );
        let end = (PAGES_PER_2M + 16) * PAGE_SIZE;
        assert_eq!(
            m.read(v(1), Gpa::new(end - 2), &mut buf),
            Err(MemoryError::NotPresent(end))
        );
        assert_eq!(
            m.read(v(1), Gpa::new(u64::MAX - 1), &mut buf),
            Err(MemoryError::Overflow {
                gpa: u64::MAX - 1,
                len: 4
            })
        );
    }

    #[test]
    fn validate_for_guest_follows_the_rmp() {
        let mut m = memory();
        let gpa = 9 * PAGE_SIZE;
        m.mem.bytes[gpa as usize] = 0xEE; // stale data the host might have planted
        m.validate_for_guest(gpa, 2).unwrap();
        let state = m.page_state(gpa).unwrap();
        assert!(state.validated);
        assert_eq!(
            state.perms,
            [
                VmplPermissions::empty(),
                VmplPermissions::RWX,
                VmplPermissions::empty()
            ]
        );
        let mut buf = [1u8; 1];
        m.read(v(2), Gpa::new(gpa), &mut buf).unwrap();
        assert_eq!(buf, [0], "the page was zeroed before the guest got it");
        assert!(matches!(
            m.read(v(1), Gpa::new(gpa), &mut buf),
            Err(MemoryError::NoAccess { vmpl: 1, .. })
        ));
        assert!(m.cpu.validated(9));
        assert_eq!(m.cpu.perms(9, 2), 0xF);
        // Validating again changes nothing and says so.
        assert_eq!(
            m.pvalidate(gpa, PageSize::Size4K, true),
            Err(RmpError::Pvalidate(PvalidateError::Unchanged(gpa)))
        );
        m.rescind_from_guest(gpa).unwrap();
        assert!(!m.cpu.validated(9));
        assert_eq!(m.cpu.perms(9, 2), 0);
        assert_eq!(m.cpu.flushed, std::vec![gpa]);
        assert_eq!(
            m.read(v(0), Gpa::new(gpa), &mut buf),
            Err(MemoryError::NotValidated(gpa))
        );
    }

    #[test]
    fn read_only_grants_and_vmsa_rules() {
        let mut m = memory();
        let gpa = 13 * PAGE_SIZE;
        m.set_permissions(gpa, 1, VmplPermissions::READ, false)
            .unwrap();
        let mut buf = [0u8; 8];
        m.read(v(1), Gpa::new(gpa), &mut buf).unwrap();
        assert_eq!(
            m.write(v(1), Gpa::new(gpa), &buf),
            Err(MemoryError::NoAccess { gpa, vmpl: 1 })
        );
        m.write(v(2), Gpa::new(gpa), &buf).unwrap();
        m.set_permissions(gpa, 1, VmplPermissions::READ, true)
            .unwrap();
        assert!(m.page_state(gpa).unwrap().vmsa);
        assert!(m.cpu.vmsa(13));
        assert_eq!(
            m.set_permissions(PAGES_PER_2M * PAGE_SIZE, 1, VmplPermissions::READ, true),
            Err(RmpError::VmsaAlignment(PAGES_PER_2M * PAGE_SIZE))
        );
        assert_eq!(
            m.set_permissions(9 * PAGE_SIZE, 1, VmplPermissions::READ, false),
            Err(RmpError::NotValidated(9 * PAGE_SIZE))
        );
        // The CPU's refusal comes back typed.
        m.cpu.fail_next_rmpadjust = Some(2);
        assert_eq!(
            m.set_permissions(gpa, 3, VmplPermissions::RWX, false),
            Err(RmpError::Rmpadjust(RmpadjustError::Permission(gpa)))
        );
        assert_eq!(m.page_state(gpa).unwrap().perms[2], VmplPermissions::RWX);
    }

    #[test]
    fn huge_pvalidate_falls_back_to_small_pages() {
        let mut m = memory();
        // The 2 MiB range at 2 MiB is partly outside memory: refused before any instruction.
        assert_eq!(
            m.pvalidate(PAGES_PER_2M * PAGE_SIZE, PageSize::Size2M, false),
            Err(RmpError::NotGuestMemory((PAGES_PER_2M + 16) * PAGE_SIZE))
        );
        assert_eq!(m.cpu.pvalidates, 0);
        // The first 2 MiB holds the SVSM: refused.
        assert_eq!(
            m.pvalidate(0, PageSize::Size2M, false),
            Err(RmpError::SvsmPage(4 * PAGE_SIZE))
        );
        let mut m = SnpMemory::new(
            RmpCpu::new(PAGES_PER_2M, |_| false),
            VecMemory::new(PAGES_PER_2M as usize),
            std::vec![MemoryRegion {
                start: 0,
                pages: PAGES_PER_2M,
                validated: false,
                perms: NO_ACCESS
            }],
            0,
            0,
        )
        .unwrap();
        m.pvalidate(0, PageSize::Size2M, true).unwrap();
        // One 2 MiB attempt (size mismatch: the RMP holds 4 KiB entries), then 512 small ones.
        assert_eq!(m.cpu.pvalidates, 1 + PAGES_PER_2M as usize);
        assert!((0..PAGES_PER_2M).all(|p| m.cpu.validated(p)));
        assert!(m.page_state(PAGE_SIZE * 300).unwrap().validated);
    }

    #[test]
    fn the_core_protocols_rmp_view_is_exact_and_typed() {
        use svsm_core::abi::core_protocol::PageSize as P;
        use svsm_core::platform::{Rmp, RmpError as E, Validation, VmplAccess};
        let mut m = memory();
        let page8 = Gpa::new(8 * PAGE_SIZE);
        assert_eq!(
            Rmp::pvalidate(&mut m, page8, P::Size4K, true),
            Ok(Validation::Changed)
        );
        assert_eq!(
            Rmp::pvalidate(&mut m, page8, P::Size4K, true),
            Ok(Validation::Unchanged)
        );
        // A 2 MiB page past the end of guest memory, and one holding SVSM pages: FAIL_INPUT
        // before any instruction runs.
        let before = m.cpu_mut().pvalidates;
        assert_eq!(
            Rmp::pvalidate(&mut m, Gpa::new(0x20_0000), P::Size2M, true),
            Err(E::Input)
        );
        assert_eq!(
            Rmp::pvalidate(&mut m, Gpa::new(0), P::Size2M, true),
            Err(E::Input)
        );
        assert_eq!(m.cpu_mut().pvalidates, before);
        assert_eq!(
            Rmp::pvalidate(&mut m, Gpa::new(4 * PAGE_SIZE), P::Size4K, false),
            Err(E::Input)
        );
        assert_eq!(
            Rmp::rmpadjust(&mut m, page8, P::Size4K, v(0), VmplAccess::FULL),
            Err(E::Permission)
        );
        Rmp::rmpadjust(&mut m, page8, P::Size4K, v(1), VmplAccess::FULL).unwrap();
        assert_eq!(m.cpu_mut().perms(8, 1), 0xF);
        // Granting needs no flush; taking away (or making a VMSA) flushes every CPU's TLB.
        assert_eq!(m.cpu_mut().flushed_all, 0);
        Rmp::rmpadjust(&mut m, page8, P::Size4K, v(1), VmplAccess::NONE).unwrap();
        assert_eq!(m.cpu_mut().flushed_all, 1);
        Rmp::rmpadjust(&mut m, page8, P::Size4K, v(1), VmplAccess::FULL).unwrap();
        assert_eq!(m.cpu_mut().flushed_all, 1);
        m.write(v(1), page8, &[1; 8]).unwrap();
        // A VMSA may not sit at a 2 MiB-aligned page.
        let vmsa = VmplAccess {
            read: true,
            write: false,
            execute: false,
            vmsa: true,
        };
        assert_eq!(
            Rmp::rmpadjust(&mut m, Gpa::new(0), P::Size4K, v(1), vmsa),
            Err(E::Input)
        );
        Rmp::rmpadjust(&mut m, page8, P::Size4K, v(1), vmsa).unwrap();
        assert!(m.cpu_mut().vmsa(8));
        assert!(m.page_state(8 * PAGE_SIZE).unwrap().vmsa);
        assert!(m.write(v(1), page8, &[1; 8]).is_err());
        // An SVSM page (5) may become a VMPL1 VMSA with no access (the firmware's VMSA lives in
        // SVSM memory; the emulated SNP machine found the refusal), never readable by VMPL1.
        let page5 = Gpa::new(5 * PAGE_SIZE);
        assert_eq!(
            Rmp::rmpadjust(&mut m, page5, P::Size4K, v(1), vmsa),
            Err(E::Input)
        );
        assert_eq!(
            Rmp::rmpadjust(&mut m, page5, P::Size4K, v(1), VmplAccess::FULL),
            Err(E::Input)
        );
        assert_eq!(
            Rmp::rmpadjust(&mut m, page5, P::Size4K, v(1), VmplAccess::VMSA),
            Err(E::Input)
        );
        Rmp::rmpadjust(&mut m, page5, P::Size4K, v(1), VmplAccess::VMSA_ONLY).unwrap();
        assert!(m.cpu_mut().vmsa(5));
        assert!(m.read(v(1), page5, &mut [0; 8]).is_err());
    }
}
