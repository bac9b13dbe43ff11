//! Test doubles for the crate's unit tests: a scripted CPU, a CPU with an RMP model, plain
//! memory, and a scripted hypervisor behind VMGEXIT.

use crate::cpu::{CpuOps, PageSize, PvalidateOutput};
use crate::memory::{MappingError, PrivateMemory, SharedMemory};
use std::boxed::Box;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::vec::Vec;

/// Returns queued results and records the operands.
#[derive(Default)]
pub struct ScriptedCpu {
    pub pvalidate_out: VecDeque<PvalidateOutput>,
    pub pvalidate_calls: Vec<(u64, PageSize, bool)>,
    pub rmpadjust_out: VecDeque<u64>,
    pub rmpadjust_calls: Vec<(u64, PageSize, u64)>,
}

impl CpuOps for ScriptedCpu {
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateOutput {
        self.pvalidate_calls.push((va, size, validate));
        self.pvalidate_out.pop_front().unwrap()
    }
    fn rmpadjust(&mut self, va: u64, size: PageSize, attrs: u64) -> u64 {
        self.rmpadjust_calls.push((va, size, attrs));
        self.rmpadjust_out.pop_front().unwrap()
    }
    fn read_ghcb_msr(&mut self) -> u64 {
        unimplemented!("not used by these tests")
    }
    fn write_ghcb_msr(&mut self, _: u64) {
        unimplemented!("not used by these tests")
    }
    fn vmgexit(&mut self) {
        unimplemented!("not used by these tests")
    }
    fn rdseed(&mut self) -> Option<u64> {
        unimplemented!("not used by these tests")
    }
    fn rdtsc(&self) -> u64 {
        unimplemented!("not used by these tests")
    }
    fn flush_tlb(&mut self, _: u64) {}
    fn flush_tlb_all(&mut self) {}
    fn halt(&mut self) {}
}

/// A CPU whose PVALIDATE/RMPADJUST act on a 4 KiB-granular RMP model (identity-mapped VAs).
pub struct RmpCpu {
    pub validated: Vec<bool>,
    pub perms: Vec<[u8; 3]>,
    pub vmsa: Vec<bool>,
    pub pvalidates: usize,
    pub rmpadjusts: usize,
    pub flushed: Vec<u64>,
    pub flushed_all: usize,
    pub fail_next_rmpadjust: Option<u64>,
}

impl RmpCpu {
    pub fn new(pages: u64, validated: impl Fn(u64) -> bool) -> Self {
        RmpCpu {
            validated: (0..pages).map(validated).collect(),
            perms: std::vec![[0xF; 3]; pages as usize],
            vmsa: std::vec![false; pages as usize],
            pvalidates: 0,
            rmpadjusts: 0,
            flushed: Vec::new(),
            flushed_all: 0,
            fail_next_rmpadjust: None,
        }
    }
    pub fn validated(&self, page: u64) -> bool {
        self.validated[page as usize]
    }
    pub fn perms(&self, page: u64, vmpl: u8) -> u8 {
        self.perms[page as usize][vmpl as usize - 1]
    }
    pub fn vmsa(&self, page: u64) -> bool {
        self.vmsa[page as usize]
    }
}

impl CpuOps for RmpCpu {
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateOutput {
        self.pvalidates += 1;
        if size == PageSize::Size2M {
            return PvalidateOutput {
                rax: 6,
                carry: false,
            };
        }
        let page = (va / 4096) as usize;
        let Some(v) = self.validated.get_mut(page) else {
            return PvalidateOutput {
                rax: 1,
                carry: false,
            };
        };
        let unchanged = *v == validate;
        *v = validate;
        if validate && !unchanged {
            self.perms[page] = [0; 3];
        }
        PvalidateOutput {
            rax: 0,
            carry: unchanged,
        }
    }
    fn rmpadjust(&mut self, va: u64, _size: PageSize, attrs: u64) -> u64 {
        self.rmpadjusts += 1;
        if let Some(code) = self.fail_next_rmpadjust.take() {
            return code;
        }
        let page = (va / 4096) as usize;
        let vmpl = (attrs & 0xFF) as usize;
        self.perms[page][vmpl - 1] = ((attrs >> 8) & 0xF) as u8;
        self.vmsa[page] = attrs & (1 << 16) != 0;
        0
    }
    fn read_ghcb_msr(&mut self) -> u64 {
        unimplemented!("not used by these tests")
    }
    fn write_ghcb_msr(&mut self, _: u64) {
        unimplemented!("not used by these tests")
    }
    fn vmgexit(&mut self) {
        unimplemented!("not used by these tests")
    }
    fn rdseed(&mut self) -> Option<u64> {
        unimplemented!("not used by these tests")
    }
    fn rdtsc(&self) -> u64 {
        unimplemented!("not used by these tests")
    }
    fn flush_tlb(&mut self, va: u64) {
        self.flushed.push(va);
    }
    fn flush_tlb_all(&mut self) {
        self.flushed_all += 1;
    }
    fn halt(&mut self) {}
}

/// Private memory in a Vec, identity "mapped".
pub struct VecMemory {
    pub bytes: Vec<u8>,
}

impl VecMemory {
    pub fn new(pages: usize) -> Self {
        VecMemory {
            bytes: std::vec![0; pages * 4096],
        }
    }
}

impl PrivateMemory for VecMemory {
    fn read_private(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError> {
        let s = gpa as usize;
        let src = self
            .bytes
            .get(s..s + out.len())
            .ok_or(MappingError::OutOfRange {
                gpa,
                len: out.len(),
            })?;
        out.copy_from_slice(src);
        Ok(())
    }
    fn write_private(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError> {
        let s = gpa as usize;
        let dst = self
            .bytes
            .get_mut(s..s + data.len())
            .ok_or(MappingError::OutOfRange {
                gpa,
                len: data.len(),
            })?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn linear_address(&self, gpa: u64) -> Option<u64> {
        ((gpa as usize) < self.bytes.len()).then_some(gpa)
    }
}

/// The hypervisor's side of a VMGEXIT: sees the MSR value and the shared pages, answers.
pub type HvHandler = Box<dyn FnMut(&mut HvState)>;

/// State shared by the CPU and the shared memory of [`MockHv`].
pub struct HvState {
    pub msr: u64,
    pub shared: BTreeMap<u64, Vec<u8>>,
    pub exits: Vec<u64>,
    pub tsc: u64,
    pub seeds: VecDeque<Option<u64>>,
}

impl HvState {
    pub fn page(&mut self, gpa: u64) -> &mut Vec<u8> {
        self.shared
            .entry(gpa & !0xFFF)
            .or_insert_with(|| std::vec![0; 4096])
    }
}

/// A CPU + shared memory whose VMGEXIT runs `handler`. Cloning shares the state.
#[derive(Clone)]
pub struct MockHv {
    pub state: Rc<RefCell<HvState>>,
    handler: Rc<RefCell<HvHandler>>,
}

impl MockHv {
    pub fn new(handler: impl FnMut(&mut HvState) + 'static) -> Self {
        MockHv {
            state: Rc::new(RefCell::new(HvState {
                msr: 0,
                shared: BTreeMap::new(),
                exits: Vec::new(),
                tsc: 0,
                seeds: VecDeque::new(),
            })),
            handler: Rc::new(RefCell::new(Box::new(handler))),
        }
    }
}

impl CpuOps for MockHv {
    fn pvalidate(&mut self, _: u64, _: PageSize, _: bool) -> PvalidateOutput {
        PvalidateOutput {
            rax: 0,
            carry: false,
        }
    }
    fn rmpadjust(&mut self, _: u64, _: PageSize, _: u64) -> u64 {
        0
    }
    fn read_ghcb_msr(&mut self) -> u64 {
        self.state.borrow().msr
    }
    fn write_ghcb_msr(&mut self, value: u64) {
        self.state.borrow_mut().msr = value;
    }
    fn vmgexit(&mut self) {
        let mut st = self.state.borrow_mut();
        let msr = st.msr;
        st.exits.push(msr);
        (self.handler.borrow_mut())(&mut st);
    }
    fn rdseed(&mut self) -> Option<u64> {
        self.state.borrow_mut().seeds.pop_front().flatten()
    }
    fn rdtsc(&self) -> u64 {
        self.state.borrow().tsc
    }
    fn flush_tlb(&mut self, _: u64) {}
    fn flush_tlb_all(&mut self) {}
    fn halt(&mut self) {
        panic!("halted with MSR {:#x}", self.state.borrow().msr);
    }
}

impl SharedMemory for MockHv {
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError> {
        let mut st = self.state.borrow_mut();
        for (i, b) in out.iter_mut().enumerate() {
            let a = gpa + i as u64;
            *b = st.page(a)[(a & 0xFFF) as usize];
        }
        Ok(())
    }
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError> {
        let mut st = self.state.borrow_mut();
        for (i, b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            st.page(a)[(a & 0xFFF) as usize] = *b;
        }
        Ok(())
    }
}
