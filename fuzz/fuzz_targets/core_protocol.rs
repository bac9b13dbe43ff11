//! The SVSM core protocol (REMAP_CA, PVALIDATE lists, CREATE_VCPU, DELETE_VCPU) driven by a
//! hostile guest: arbitrary registers, caller VMPL and APIC ID, guest memory (lists, VMSAs)
//! and page states, over a small RMP model. Every call must end in a result code, and no call
//! may give a guest VMPL access to the SVSM's page or the boot vCPU's VMSA.
//!
//! Input: 40 bytes RAX RCX RDX R8 R9 (LE), 1 byte VMPL, 1 byte APIC ID, 1 byte per-page state
//! for the 8 pages (bit 0 validated, bits 1-3 VMPL1-3 access), then up to 8 pages of memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::core_protocol::PageSize;
use svsm_abi::svsm::CallRegisters;
use svsm_core::core_protocol::{Caller, CoreProtocol, VcpuRecord};
use svsm_core::platform::{
    Gpa, GuestMemory, MemoryError, Rmp, RmpError, Validation, VcpuControl, VcpuError, Vmpl,
    VmplAccess, PAGE_SIZE,
};

const PAGES: usize = 8;

struct FuzzMemory {
    bytes: Vec<u8>,
    validated: [bool; PAGES],
    access: [[bool; 4]; PAGES],
}

impl FuzzMemory {
    fn pages(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, MemoryError> {
        let end = gpa
            .checked_add(len as u64)
            .ok_or(MemoryError::Overflow { gpa, len })?;
        if end > self.bytes.len() as u64 {
            return Err(MemoryError::NotPresent(gpa));
        }
        Ok(gpa as usize..end as usize)
    }

    fn check(&self, vmpl: Vmpl, gpa: Gpa, len: usize) -> Result<core::ops::Range<usize>, MemoryError> {
        let r = self.pages(gpa.raw(), len)?;
        if len == 0 {
            return Ok(r);
        }
        for page in r.start / PAGE_SIZE as usize..=(r.end - 1) / PAGE_SIZE as usize {
            if !self.validated[page] {
                return Err(MemoryError::NotValidated(gpa.raw()));
            }
            if !self.access[page][usize::from(vmpl.level())] {
                return Err(MemoryError::NoAccess {
                    gpa: gpa.raw(),
                    vmpl: vmpl.level(),
                });
            }
        }
        Ok(r)
    }
}

impl GuestMemory for FuzzMemory {
    fn read(&mut self, vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.check(vmpl, gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.check(vmpl, gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

impl Rmp for FuzzMemory {
    fn access(&self, gpa: Gpa, vmpl: Vmpl) -> Option<VmplAccess> {
        let page = (gpa.raw() / PAGE_SIZE) as usize;
        let a = self.access.get(page)?[usize::from(vmpl.level())];
        self.validated[page].then_some(VmplAccess {
            read: a,
            write: a,
            execute: a,
            vmsa: false,
        })
    }
    fn pvalidate(&mut self, gpa: Gpa, size: PageSize, validate: bool) -> Result<Validation, RmpError> {
        if size == PageSize::Size2M {
            return Err(RmpError::SizeMismatch);
        }
        let page = (gpa.raw() / PAGE_SIZE) as usize;
        let v = self.validated.get_mut(page).ok_or(RmpError::Input)?;
        if *v == validate {
            return Ok(Validation::Unchanged);
        }
        *v = validate;
        Ok(Validation::Changed)
    }
    fn rmpadjust(&mut self, gpa: Gpa, size: PageSize, target: Vmpl, access: VmplAccess) -> Result<(), RmpError> {
        if target.level() == 0 {
            return Err(RmpError::Permission);
        }
        if size == PageSize::Size2M {
            return Err(RmpError::SizeMismatch);
        }
        let page = (gpa.raw() / PAGE_SIZE) as usize;
        let a = self.access.get_mut(page).ok_or(RmpError::Input)?;
        a[usize::from(target.level())] = access.read && !access.vmsa;
        Ok(())
    }
}

struct FuzzVcpus(bool);

impl VcpuControl for FuzzVcpus {
    fn exists(&self, apic_id: u32) -> bool {
        apic_id < 4
    }
    fn create(&mut self, _: u32, _: Gpa, _: Vmpl, _: u64) -> Result<(), VcpuError> {
        Ok(())
    }
    fn destroy(&mut self, _: u32, _: Gpa, _: Vmpl) -> Result<(), VcpuError> {
        if self.0 {
            Err(VcpuError::Running)
        } else {
            Ok(())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 43 + PAGES {
        return;
    }
    let word = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
    let mut regs = CallRegisters {
        rax: word(0),
        rcx: word(1),
        rdx: word(2),
        r8: word(3),
        r9: word(4),
    };
    let Some(vmpl) = Vmpl::new(data[40] % 4).filter(|v| v.level() > 0) else {
        return;
    };
    let caller = Caller {
        vmpl,
        apic_id: u32::from(data[41] % 4),
    };
    let states = &data[43..43 + PAGES];
    let mut memory = FuzzMemory {
        bytes: vec![0; PAGES * PAGE_SIZE as usize],
        validated: [false; PAGES],
        access: [[true, false, false, false]; PAGES],
    };
    for (page, s) in states.iter().enumerate() {
        memory.validated[page] = s & 1 != 0;
        for level in 1..4 {
            memory.access[page][level] = s & (1 << level) != 0;
        }
    }
    // Page 0 is the SVSM's, page 1 the boot VMSA: nobody else may touch them.
    memory.access[0] = [true, false, false, false];
    memory.access[1] = [true, false, false, false];
    memory.validated[0] = true;
    memory.validated[1] = true;
    let rest = &data[43 + PAGES..];
    let n = rest.len().min(memory.bytes.len());
    memory.bytes[..n].copy_from_slice(&rest[..n]);
    let mut core = CoreProtocol::new(
        Gpa::new(0),
        Gpa::new(PAGE_SIZE),
        VcpuRecord {
            apic_id: 0,
            vmpl: Vmpl::new(1).unwrap(),
            vmsa: Gpa::new(PAGE_SIZE),
            ca: Gpa::new(2 * PAGE_SIZE),
            boot: true,
            superseded: false,
        },
        u64::from(data[42]),
    );
    let mut vcpus = FuzzVcpus(data[42] & 0x80 != 0);
    for _ in 0..2 {
        let call = regs.rax as u32;
        if let Err(e) = core.handle(&mut memory, &mut vcpus, caller, call, &mut regs) {
            let _ = e.result_code().to_u32();
        }
    }
    for page in [0usize, 1] {
        assert!(
            memory.validated[page] && memory.access[page][1..].iter().all(|a| !a),
            "page {page} reached a guest VMPL"
        );
    }
});
