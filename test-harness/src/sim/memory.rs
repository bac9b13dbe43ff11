//! Guest physical memory with the RMP's per-VMPL permission model, plus hostile behaviours a
//! malicious guest (or a racing vCPU) shows: buffers that change between reads, ranges that
//! cross pages or leave memory, and VMPL0-private pages named as buffers.

use svsm_core::platform::{Gpa, GuestMemory, MemoryError, Vmpl, PAGE_SIZE};

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
