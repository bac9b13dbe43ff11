//! Guest physical memory with the RMP's per-VMPL permission model, plus hostile behaviours a
//! malicious guest (or a racing vCPU) shows: buffers that change between reads, ranges that
//! cross pages or leave memory, and VMPL0-private pages named as buffers. It also models the
//! two RMP instructions VMPL0 runs for the core protocol (PVALIDATE, RMPADJUST) with the RMP's
//! page sizes (4 KiB, or 2 MiB entries the "host" chose) and the VMSA attribute.

use svsm_abi::core_protocol::PageSize;
use svsm_core::platform::{
    Gpa, GuestMemory, MemoryError, Rmp, RmpError, Validation, Vmpl, VmplAccess, PAGE_SIZE,
};

/// Pages in a 2 MiB RMP entry.
const PAGES_2M: usize = 512;

/// Per-page permissions, indexed by VMPL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePerms {
    /// May VMPLn read the page.
    pub read: [bool; 4],
    /// May VMPLn write the page.
    pub write: [bool; 4],
    /// Validated by the guest (PVALIDATE).
    pub validated: bool,
}

/// The RMP attributes beyond access: a VMSA page, and for which VMPL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RmpExtra {
    /// The page is a VMSA of this VMPL (set by RMPADJUST with the VMSA bit).
    pub vmsa: Option<u8>,
}

impl PagePerms {
    /// Every VMPL may read and write (the RMP state after the guest validated the page).
    pub const SHARED: PagePerms = PagePerms {
        read: [true; 4],
        write: [true; 4],
        validated: true,
    };
    /// Only VMPL0 may touch it (the SVSM's own memory, e.g. vault pages).
    pub const VMPL0_PRIVATE: PagePerms = PagePerms {
        read: [true, false, false, false],
        write: [true, false, false, false],
        validated: true,
    };
}

/// How hostile the memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Hostility {
    /// Ordinary memory.
    #[default]
    None,
    /// After every read by the module, the bytes just read are changed, as if another vCPU
    /// rewrote the buffer mid-call. A module that reads anything twice sees different values.
    MutateAfterRead,
}

/// Simulated guest memory starting at GPA 0.
pub struct SimMemory {
    bytes: Vec<u8>,
    pages: Vec<PagePerms>,
    extra: Vec<RmpExtra>,
    /// Per 2 MiB region: the host assigned it as one 2 MiB RMP entry.
    large: Vec<bool>,
    /// VMSA pages whose vCPU is running (RMPADJUST of them fails with FAIL_INUSE).
    running: std::collections::BTreeSet<u64>,
    /// Current hostile behaviour.
    pub hostility: Hostility,
    /// Number of module reads served (for tests that count copies).
    pub reads: u64,
}

impl SimMemory {
    /// `pages` pages, all shared and validated.
    pub fn new(pages: usize) -> Self {
        SimMemory {
            bytes: vec![0; pages * PAGE_SIZE as usize],
            pages: vec![PagePerms::SHARED; pages],
            extra: vec![RmpExtra::default(); pages],
            large: vec![false; pages.div_ceil(PAGES_2M)],
            running: std::collections::BTreeSet::new(),
            hostility: Hostility::None,
            reads: 0,
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// True when there is no memory.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Sets the permissions of the page containing `gpa`.
    pub fn set_perms(&mut self, gpa: u64, perms: PagePerms) {
        if let Some(p) = self.pages.get_mut((gpa / PAGE_SIZE) as usize) {
            *p = perms;
        }
    }

    /// The permissions of the page containing `gpa`.
    pub fn perms(&self, gpa: u64) -> Option<PagePerms> {
        self.pages.get((gpa / PAGE_SIZE) as usize).copied()
    }

    /// The RMP attributes of the page containing `gpa`.
    pub fn rmp_extra(&self, gpa: u64) -> Option<RmpExtra> {
        self.extra.get((gpa / PAGE_SIZE) as usize).copied()
    }

    /// Makes the 2 MiB region containing `gpa` one 2 MiB RMP entry (or 512 4 KiB ones), as
    /// the host decides when it assigns guest memory.
    pub fn set_rmp_2m(&mut self, gpa: u64, large: bool) {
        if let Some(l) = self
            .large
            .get_mut((gpa / PageSize::Size2M.bytes()) as usize)
        {
            *l = large;
        }
    }

    /// Marks the VMSA page at `gpa` as running (or not): RMPADJUST of it fails with FAIL_INUSE.
    pub fn set_vmsa_running(&mut self, gpa: u64, running: bool) {
        if running {
            self.running.insert(gpa & !(PAGE_SIZE - 1));
        } else {
            self.running.remove(&(gpa & !(PAGE_SIZE - 1)));
        }
    }

    /// Writes bytes directly, as the host or the hardware would (no RMP checks): for tests
    /// that need content in a page the guest cannot write.
    pub fn poke(&mut self, gpa: u64, data: &[u8]) {
        let start = gpa as usize;
        if let Some(dst) = self.bytes.get_mut(start..start + data.len()) {
            dst.copy_from_slice(data);
        }
    }

    /// Reads bytes directly (no RMP checks).
    pub fn peek(&self, gpa: u64, len: usize) -> Vec<u8> {
        let start = gpa as usize;
        self.bytes
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    /// The page indices of an RMP operation, after the size checks PVALIDATE and RMPADJUST make.
    fn rmp_pages(&self, gpa: Gpa, size: PageSize) -> Result<std::ops::Range<usize>, RmpError> {
        let first = (gpa.raw() / PAGE_SIZE) as usize;
        let count = (size.bytes() / PAGE_SIZE) as usize;
        if first + count > self.pages.len() {
            return Err(RmpError::Input);
        }
        let large = self.large.get(first / PAGES_2M).copied().unwrap_or(false);
        match size {
            PageSize::Size4K if large => Err(RmpError::SizeMismatch),
            PageSize::Size2M if !large => Err(RmpError::SizeMismatch),
            _ => Ok(first..first + count),
        }
    }

    fn check(
        &self,
        vmpl: Vmpl,
        gpa: Gpa,
        len: usize,
        write: bool,
    ) -> Result<std::ops::Range<usize>, MemoryError> {
        let overflow = MemoryError::Overflow {
            gpa: gpa.raw(),
            len,
        };
        let end = gpa.raw().checked_add(len as u64).ok_or(overflow)?;
        if len == 0 {
            return Ok(0..0);
        }
        let mut page = gpa.raw() / PAGE_SIZE;
        while page * PAGE_SIZE < end {
            let at = (page * PAGE_SIZE).max(gpa.raw());
            let perms = self
                .pages
                .get(page as usize)
                .ok_or(MemoryError::NotPresent(at))?;
            if !perms.validated {
                return Err(MemoryError::NotValidated(at));
            }
            let level = usize::from(vmpl.level());
            let allowed = if write {
                perms.write[level]
            } else {
                perms.read[level]
            };
            if !allowed {
                return Err(MemoryError::NoAccess {
                    gpa: at,
                    vmpl: vmpl.level(),
                });
            }
            page += 1;
        }
        Ok(gpa.raw() as usize..end as usize)
    }
}

impl GuestMemory for SimMemory {
    fn read(&mut self, vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let range = self.check(vmpl, gpa, buf.len(), false)?;
        buf.copy_from_slice(&self.bytes[range.clone()]);
        self.reads += 1;
        if self.hostility == Hostility::MutateAfterRead && vmpl != Vmpl::ZERO {
            for b in &mut self.bytes[range] {
                *b = b.wrapping_add(0x5A);
            }
        }
        Ok(())
    }

    fn write(&mut self, vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
        let range = self.check(vmpl, gpa, data.len(), true)?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

impl Rmp for SimMemory {
    fn access(&self, gpa: Gpa, vmpl: Vmpl) -> Option<VmplAccess> {
        let p = self.pages.get((gpa.raw() / PAGE_SIZE) as usize)?;
        let e = self.extra.get((gpa.raw() / PAGE_SIZE) as usize)?;
        let level = usize::from(vmpl.level());
        p.validated.then_some(VmplAccess {
            read: p.read[level],
            write: p.write[level],
            execute: p.write[level],
            vmsa: e.vmsa == Some(vmpl.level()),
        })
    }

    fn pvalidate(
        &mut self,
        gpa: Gpa,
        size: PageSize,
        validate: bool,
    ) -> Result<Validation, RmpError> {
        let pages = self.rmp_pages(gpa, size)?;
        if self.pages[pages.start].validated == validate {
            return Ok(Validation::Unchanged);
        }
        for p in &mut self.pages[pages] {
            p.validated = validate;
        }
        Ok(Validation::Changed)
    }

    fn rmpadjust(
        &mut self,
        gpa: Gpa,
        size: PageSize,
        target: Vmpl,
        access: VmplAccess,
    ) -> Result<(), RmpError> {
        // VMPL0 adjusts only numerically higher VMPLs.
        if target.level() == 0 {
            return Err(RmpError::Permission);
        }
        let pages = self.rmp_pages(gpa, size)?;
        if !self.pages[pages.start].validated {
            return Err(RmpError::Input);
        }
        if self.running.contains(&gpa.raw()) {
            return Err(RmpError::InUse);
        }
        let level = usize::from(target.level());
        for i in pages {
            self.pages[i].read[level] = access.read;
            self.pages[i].write[level] = access.write;
            let extra = &mut self.extra[i];
            if access.vmsa {
                extra.vmsa = Some(target.level());
            } else if extra.vmsa == Some(target.level()) {
                extra.vmsa = None;
            }
        }
        Ok(())
    }
}
