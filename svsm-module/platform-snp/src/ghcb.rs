//! The GHCB protocol (GHCB spec v2): the MSR protocol (SEV information, hypervisor features,
//! GHCB registration, page-state change, run VMPL, termination) and GHCB-page events (page-state
//! change, SNP guest request, SNP extended guest request).
//!
//! Every GHCB-page event is built in a private [`GhcbPage`], copied to the shared GHCB page,
//! issued with the GHCB GPA written back into the MSR (the MSR protocol overwrites it), and the
//! shared page is copied back into private memory before anything in it is looked at. Fields
//! read back must be marked valid by the hypervisor.

use crate::cpu::CpuOps;
use crate::memory::{MappingError, SharedMemory};
use svsm_abi::snp::ghcb::{
    self, exit_code, GhcbField, GhcbPage, GuestRequestResult, MsrProtocolError, PageStateOp,
    PscDescriptor, PscEntry, PscHeader, SevInfo, TerminationReason, EXIT_INFO1_EXCEPTION,
    EXIT_INFO1_INPUT_ERROR, EXIT_INFO1_OK, GHCB_PROTOCOL_VERSION, GHCB_SHARED_BUFFER_OFFSET,
    PSC_MAX_ENTRIES,
};
use svsm_core::platform::PAGE_SIZE;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Termination reasons of this module's own set (set 1). Set 0 is the GHCB spec's.
pub mod reason {
    use svsm_abi::snp::ghcb::TerminationReason;
    /// GHCB registration failed.
    pub const REGISTER: TerminationReason = TerminationReason { set: 1, code: 0 };
    /// A page-state change failed.
    pub const PAGE_STATE_CHANGE: TerminationReason = TerminationReason { set: 1, code: 1 };
    /// PVALIDATE failed.
    pub const PVALIDATE: TerminationReason = TerminationReason { set: 1, code: 2 };
    /// The module is not running at VMPL0.
    pub const NOT_VMPL0: TerminationReason = TerminationReason { set: 1, code: 3 };
    /// The VMPCK was disabled (the secure processor is unreachable for the rest of the launch).
    pub const VMPCK_DISABLED: TerminationReason = TerminationReason { set: 1, code: 4 };
}

/// Why a GHCB exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GhcbError {
    /// An MSR-protocol response was wrong.
    #[error("GHCB MSR protocol: {0}")]
    Msr(#[from] MsrProtocolError),
    /// The hypervisor's protocol range does not include version 2.
    #[error("hypervisor speaks GHCB protocol {min}..={max}, not 2")]
    ProtocolVersion {
        /// Lowest version.
        min: u16,
        /// Highest version.
        max: u16,
    },
    /// The GHCB GPA is not page aligned.
    #[error("GHCB GPA {0:#x} is not page aligned")]
    Misaligned(u64),
    /// A GHCB-page event before registration.
    #[error("the GHCB page is not registered")]
    NotRegistered,
    /// An IN/OUT size other than 1, 2 or 4 bytes.
    #[error("I/O size {0} (1, 2 or 4)")]
    IoSize(u8),
    /// SW_EXITINFO1 = 1: the hypervisor asks to inject an exception (SW_EXITINFO2's value).
    #[error("hypervisor asked to inject exception {0:#x}")]
    Exception(u64),
    /// SW_EXITINFO1 = 2: the hypervisor refused the GHCB input (reason in SW_EXITINFO2).
    #[error("hypervisor refused the GHCB input (reason {0})")]
    Input(u64),
    /// SW_EXITINFO1 holds a value the spec does not define.
    #[error("hypervisor returned SW_EXITINFO1 {0:#x}")]
    ExitInfo(u64),
    /// A field the hypervisor must return is not marked valid.
    #[error("hypervisor did not return {0}")]
    Missing(&'static str),
    /// The shared pages could not be accessed.
    #[error("shared page: {0}")]
    Shared(#[from] MappingError),
    /// Page-state change: the hypervisor reported an error (SW_EXITINFO2).
    #[error("page-state change failed with {0:#x}")]
    PageStateChange(u64),
    /// Page-state change: the hypervisor altered the descriptor in a way it may not.
    #[error("page-state change descriptor tampered: {0}")]
    PscTampered(&'static str),
    /// Page-state change: an entry cannot be encoded.
    #[error("page-state change entry for GFN {0:#x} cannot be encoded")]
    PscEntry(u64),
    /// Page-state change: the hypervisor kept returning without finishing.
    #[error("page-state change made no progress")]
    PscNoProgress,
}

/// What the hypervisor returned for a guest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRequestExit {
    /// SW_EXITINFO2 split into VMM error and firmware status.
    pub result: GuestRequestResult,
    /// RBX on return of an extended request (pages needed when the VMM error is INVALID_LEN).
    pub cert_pages: Option<u64>,
}

/// The GHCB of this vCPU: the CPU operations, the shared pages and the GHCB page's GPA.
pub struct Ghcb<C, S> {
    cpu: C,
    shared: S,
    gpa: u64,
    registered: bool,
}

impl<C: CpuOps, S: SharedMemory> Ghcb<C, S> {
    /// A GHCB at `gpa` (a page already shared with the hypervisor, reachable through `shared`).
    /// Nothing is sent: call [`Self::register`] before any GHCB-page event.
    pub fn new(cpu: C, shared: S, gpa: u64) -> Result<Self, GhcbError> {
        if gpa % PAGE_SIZE != 0 {
            return Err(GhcbError::Misaligned(gpa));
        }
        Ok(Ghcb {
            cpu,
            shared,
            gpa,
            registered: false,
        })
    }

    /// The GHCB page's GPA.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The shared pages.
    pub fn shared_mut(&mut self) -> &mut S {
        &mut self.shared
    }

    /// The CPU operations.
    pub fn cpu_mut(&mut self) -> &mut C {
        &mut self.cpu
    }

    /// One MSR-protocol exchange: saves the MSR, writes `request`, VMGEXIT, reads the response,
    /// restores the saved value. The caller has interrupts disabled.
    pub fn msr_call(&mut self, request: u64) -> u64 {
        let saved = self.cpu.read_ghcb_msr();
        self.cpu.write_ghcb_msr(request);
        self.cpu.vmgexit();
        let response = self.cpu.read_ghcb_msr();
        self.cpu.write_ghcb_msr(saved);
        response
    }

    /// SEV information: the hypervisor's protocol range and the C-bit position; fails unless
    /// version 2 is in the range.
    pub fn negotiate(&mut self) -> Result<SevInfo, GhcbError> {
        let info = SevInfo::decode(self.msr_call(ghcb::info::SEV_INFO_REQ))?;
        if !info.supports(GHCB_PROTOCOL_VERSION) {
            return Err(GhcbError::ProtocolVersion {
                min: info.min_version,
                max: info.max_version,
            });
        }
        Ok(info)
    }

    /// The hypervisor's feature bitmap.
    pub fn hv_features(&mut self) -> Result<u64, GhcbError> {
        Ok(ghcb::hv_features_response(
            self.msr_call(ghcb::info::HV_FEATURES_REQ),
        )?)
    }

    /// Registers the GHCB GPA (mandatory before the page is used); the hypervisor must echo it.
    /// Afterwards the MSR holds the GHCB GPA.
    pub fn register(&mut self) -> Result<(), GhcbError> {
        let gfn = self.gpa / PAGE_SIZE;
        let response = self.msr_call(ghcb::register_request(gfn)?);
        ghcb::register_response(response, gfn)?;
        self.cpu.write_ghcb_msr(self.gpa);
        self.registered = true;
        Ok(())
    }

    /// True once [`Self::register`] succeeded.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Page-state change of one 4 KiB page through the MSR protocol.
    pub fn page_state_change_msr(&mut self, gfn: u64, op: PageStateOp) -> Result<(), GhcbError> {
        let response = self.msr_call(ghcb::psc_request(gfn, op)?);
        Ok(ghcb::psc_response(response)?)
    }

    /// Asks the hypervisor to run VMPL`vmpl` on this vCPU (MSR protocol); returns when VMPL0 is
    /// entered again.
    pub fn run_vmpl(&mut self, vmpl: u8) -> Result<(), GhcbError> {
        let response = self.msr_call(ghcb::run_vmpl_request(vmpl));
        Ok(ghcb::run_vmpl_response(response)?)
    }

    /// Asks the hypervisor to terminate the guest with `reason` (MSR protocol) and never
    /// returns: if the hypervisor resumes the vCPU anyway, it asks again and halts.
    pub fn terminate(&mut self, reason: TerminationReason) -> ! {
        loop {
            self.cpu.write_ghcb_msr(reason.msr_request());
            self.cpu.vmgexit();
            self.cpu.halt();
        }
    }

    /// Issues a GHCB-page event: `page` goes out, the hypervisor's page comes back into it.
    /// SW_EXITINFO1 must come back valid and 0.
    pub fn page_call(&mut self, page: &mut GhcbPage) -> Result<(), GhcbError> {
        if !self.registered {
            return Err(GhcbError::NotRegistered);
        }
        page.protocol_version = GHCB_PROTOCOL_VERSION.into();
        page.ghcb_usage = 0.into();
        self.shared.write_shared(self.gpa, page.as_bytes())?;
        self.cpu.write_ghcb_msr(self.gpa);
        self.cpu.vmgexit();
        self.shared.read_shared(self.gpa, page.as_mut_bytes())?;
        let info1 = page
            .get(GhcbField::SwExitInfo1)
            .ok_or(GhcbError::Missing(GhcbField::SwExitInfo1.name()))?;
        let info2 = page.get(GhcbField::SwExitInfo2).unwrap_or(0);
        match (info1 & 0xFFFF_FFFF) as u32 {
            EXIT_INFO1_OK => Ok(()),
            EXIT_INFO1_EXCEPTION => Err(GhcbError::Exception(info2)),
            EXIT_INFO1_INPUT_ERROR => Err(GhcbError::Input(info2)),
            _ => Err(GhcbError::ExitInfo(info1)),
        }
    }

    /// AP creation NAE event: `event` ([`ghcb::AP_CREATE`], [`ghcb::AP_CREATE_ON_INIT`] or
    /// [`ghcb::AP_DESTROY`]) for the vCPU `apic_id` whose VMSA for `vmpl` is at `vmsa_gpa`,
    /// with `sev_features` in RAX (GHCB spec §4.1.9).
    pub fn ap_creation(
        &mut self,
        event: u64,
        apic_id: u32,
        vmpl: u8,
        vmsa_gpa: u64,
        sev_features: u64,
    ) -> Result<(), GhcbError> {
        let mut page = GhcbPage::new();
        page.set(GhcbField::SwExitCode, exit_code::AP_CREATION);
        page.set(
            GhcbField::SwExitInfo1,
            ghcb::ap_creation_exit_info1(apic_id, vmpl, event),
        );
        page.set(GhcbField::SwExitInfo2, vmsa_gpa);
        page.set(GhcbField::Rax, sev_features);
        self.page_call(&mut page)
    }

    /// OUT of the low `size` bytes (1, 2 or 4) of `value` to `port`, as the IOIO event (what a
    /// #VC handler would send for the instruction; the SVSM calls it directly).
    pub fn io_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), GhcbError> {
        let info1 = ghcb::ioio_exit_info1(port, size, false).ok_or(GhcbError::IoSize(size))?;
        let mut page = GhcbPage::new();
        page.set(GhcbField::SwExitCode, exit_code::IOIO);
        page.set(GhcbField::SwExitInfo1, info1);
        page.set(GhcbField::SwExitInfo2, 0);
        page.set(GhcbField::Rax, u64::from(value));
        self.page_call(&mut page)
    }

    /// IN of `size` bytes (1, 2 or 4) from `port`: the hypervisor's RAX, cut to the size.
    pub fn io_in(&mut self, port: u16, size: u8) -> Result<u32, GhcbError> {
        let info1 = ghcb::ioio_exit_info1(port, size, true).ok_or(GhcbError::IoSize(size))?;
        let mut page = GhcbPage::new();
        page.set(GhcbField::SwExitCode, exit_code::IOIO);
        page.set(GhcbField::SwExitInfo1, info1);
        page.set(GhcbField::SwExitInfo2, 0);
        page.set(GhcbField::Rax, 0);
        self.page_call(&mut page)?;
        let rax = page.get(GhcbField::Rax).ok_or(GhcbError::Missing("RAX"))?;
        let mask = (1u64 << (8 * u32::from(size))) - 1;
        Ok((rax & mask) as u32)
    }

    /// Page-state change of any number of entries through the GHCB page, in descriptors of at
    /// most 253 entries. The hypervisor may return with entries pending; the descriptor is
    /// re-sent until done. A descriptor whose cursor goes back, whose end grows or whose
    /// reserved field is set is hostile.
    pub fn page_state_change(&mut self, entries: &[PscEntry]) -> Result<(), GhcbError> {
        for chunk in entries.chunks(PSC_MAX_ENTRIES) {
            let mut desc = PscDescriptor::new_zeroed();
            for (slot, entry) in desc.entries.iter_mut().zip(chunk) {
                *slot = entry.encode().ok_or(GhcbError::PscEntry(entry.gfn))?.into();
            }
            let end = chunk.len().saturating_sub(1) as u16;
            desc.header = PscHeader {
                cur_entry: 0.into(),
                end_entry: end.into(),
                reserved: 0.into(),
            };
            // Each round must retire an entry or advance a 2 MiB entry; the bound is a backstop.
            let limit = chunk.len().saturating_mul(513).saturating_add(1);
            let mut progress = (0u16, 0u16);
            let mut finished = false;
            let original = desc.clone();
            for _ in 0..limit {
                let mut page = GhcbPage::new();
                let (buf, _) = page.shared_buffer.split_at_mut(desc.as_bytes().len());
                buf.copy_from_slice(desc.as_bytes());
                page.set(GhcbField::SwExitCode, exit_code::PAGE_STATE_CHANGE);
                page.set(GhcbField::SwExitInfo1, 0);
                page.set(GhcbField::SwExitInfo2, 0);
                page.set(
                    GhcbField::SwScratch,
                    self.gpa + GHCB_SHARED_BUFFER_OFFSET as u64,
                );
                self.page_call(&mut page)?;
                match page.get(GhcbField::SwExitInfo2) {
                    Some(0) => {}
                    Some(e) => return Err(GhcbError::PageStateChange(e)),
                    None => return Err(GhcbError::Missing(GhcbField::SwExitInfo2.name())),
                }
                let (back, _) = PscDescriptor::read_from_prefix(&page.shared_buffer)
                    .map_err(|_| GhcbError::PscTampered("descriptor"))?;
                let cur = back.header.cur_entry.get();
                if back.header.reserved.get() != 0 {
                    return Err(GhcbError::PscTampered("reserved"));
                }
                if back.header.end_entry.get() != end {
                    return Err(GhcbError::PscTampered("end_entry changed"));
                }
                if cur < desc.header.cur_entry.get() {
                    return Err(GhcbError::PscTampered("cur_entry went back"));
                }
                if cur > end {
                    finished = true;
                    break;
                }
                // The entries still to do must be the ones sent (only the progress inside a
                // 2 MiB entry, bits 11:0, may change): a swapped GFN or operation would go
                // unnoticed for conversions that no PVALIDATE follows.
                let pending = usize::from(cur)..=usize::from(end);
                let sent = original.entries.get(pending.clone()).unwrap_or(&[]);
                let now = back.entries.get(pending).unwrap_or(&[]);
                if sent.len() != now.len()
                    || sent
                        .iter()
                        .zip(now)
                        .any(|(a, b)| a.get() & !0xFFF != b.get() & !0xFFF)
                {
                    return Err(GhcbError::PscTampered("a pending entry changed"));
                }
                let cur_page = back
                    .entries
                    .get(usize::from(cur))
                    .map(|e| (e.get() & 0xFFF) as u16)
                    .unwrap_or(0);
                if (cur, cur_page) == progress {
                    return Err(GhcbError::PscNoProgress);
                }
                progress = (cur, cur_page);
                desc = back;
            }
            if !finished {
                return Err(GhcbError::PscNoProgress);
            }
        }
        Ok(())
    }

    /// An SNP guest request (or, with `certs` = (GPA, pages), an extended guest request):
    /// the request page and response page are shared pages the caller filled and will read.
    pub fn guest_request(
        &mut self,
        request_gpa: u64,
        response_gpa: u64,
        certs: Option<(u64, u64)>,
    ) -> Result<GuestRequestExit, GhcbError> {
        let mut page = GhcbPage::new();
        let code = match certs {
            Some(_) => exit_code::EXT_GUEST_REQUEST,
            None => exit_code::GUEST_REQUEST,
        };
        page.set(GhcbField::SwExitCode, code);
        page.set(GhcbField::SwExitInfo1, request_gpa);
        page.set(GhcbField::SwExitInfo2, response_gpa);
        if let Some((gpa, pages)) = certs {
            page.set(GhcbField::Rax, gpa);
            page.set(GhcbField::Rbx, pages);
        }
        self.page_call(&mut page)?;
        let info2 = page
            .get(GhcbField::SwExitInfo2)
            .ok_or(GhcbError::Missing(GhcbField::SwExitInfo2.name()))?;
        let result = GuestRequestResult::from_exit_info2(info2);
        let cert_pages = match certs {
            Some(_) if result.vmm_error == ghcb::VMM_ERR_INVALID_LEN => Some(
                page.get(GhcbField::Rbx)
                    .ok_or(GhcbError::Missing(GhcbField::Rbx.name()))?,
            ),
            Some(_) => page.get(GhcbField::Rbx),
            None => None,
        };
        Ok(GuestRequestExit { result, cert_pages })
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::testutil::{HvState, MockHv};
    use std::vec::Vec;
    use svsm_abi::snp::ghcb::{info, GuestRequestResult};

    const GHCB_GPA: u64 = 0x7000;

    /// A hypervisor that speaks the MSR protocol correctly and hands GHCB-page exits to `page`.
    fn hv(mut page: impl FnMut(&mut GhcbPage) + 'static) -> MockHv {
        MockHv::new(move |st: &mut HvState| {
            let msr = st.msr;
            if msr == GHCB_GPA {
                let mut g = GhcbPage::read_from_bytes(st.page(GHCB_GPA)).unwrap();
                page(&mut g);
                st.page(GHCB_GPA).copy_from_slice(g.as_bytes());
                return;
            }
            st.msr = match msr & 0xFFF {
                info::SEV_INFO_REQ => (2 << 48) | (1 << 32) | (51 << 24) | info::SEV_INFO_RESP,
                info::HV_FEATURES_REQ => (0x23 << 12) | info::HV_FEATURES_RESP,
                info::REGISTER_REQ => (msr & !0xFFF) | info::REGISTER_RESP,
                info::PSC_REQ => info::PSC_RESP,
                info::RUN_VMPL_REQ => info::RUN_VMPL_RESP,
                _ => 0,
            };
        })
    }

    fn registered(page: impl FnMut(&mut GhcbPage) + 'static) -> Ghcb<MockHv, MockHv> {
        let h = hv(page);
        let mut g = Ghcb::new(h.clone(), h, GHCB_GPA).unwrap();
        g.register().unwrap();
        g
    }

    #[test]
    fn port_io_events() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = seen.clone();
        let mut g = registered(move |p| {
            let get = |f| p.get(f).unwrap();
            log.borrow_mut().push((
                get(GhcbField::SwExitCode),
                get(GhcbField::SwExitInfo1),
                get(GhcbField::Rax),
            ));
            p.set(GhcbField::SwExitInfo1, 0);
            // The host answers IN with more bits than asked for.
            p.set(GhcbField::Rax, 0xDEAD_BEEF_1234_5678);
        });
        g.io_out(0x3F8, 1, 0x41).unwrap();
        assert_eq!(g.io_in(0x61, 1).unwrap(), 0x78);
        assert_eq!(g.io_in(0x40, 2).unwrap(), 0x5678);
        assert_eq!(g.io_in(0xCFC, 4).unwrap(), 0x1234_5678);
        assert_eq!(g.io_out(0x80, 3, 0), Err(GhcbError::IoSize(3)));
        assert_eq!(
            *seen.borrow(),
            [
                (0x7B, 0x03F8_0010, 0x41),
                (0x7B, 0x0061_0011, 0),
                (0x7B, 0x0040_0021, 0),
                (0x7B, 0x0CFC_0041, 0),
            ]
        );
    }

    #[test]
    fn ap_creation_event_and_the_vcpu_control_on_it() {
        use svsm_core::platform::{Gpa, VcpuControl, VcpuError, Vmpl};
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = seen.clone();
        let mut g = registered(move |p| {
            let get = |f| p.get(f).unwrap();
            let info1 = get(GhcbField::SwExitInfo1);
            log.borrow_mut().push((
                get(GhcbField::SwExitCode),
                info1,
                get(GhcbField::SwExitInfo2),
                get(GhcbField::Rax),
            ));
            // The host refuses APIC ID 3.
            p.set(GhcbField::SwExitInfo1, u64::from(info1 >> 32 == 3) * 2);
            p.set(GhcbField::SwExitInfo2, 0x77);
        });
        let mut vcpus = crate::vcpus::SnpVcpus::new(&mut g, &[0, 1, 3]);
        assert!(vcpus.exists(1) && !vcpus.exists(2));
        vcpus
            .create(1, Gpa::new(0x4_1000), Vmpl::new(2).unwrap(), 0x41)
            .unwrap();
        vcpus
            .destroy(1, Gpa::new(0x4_1000), Vmpl::new(2).unwrap())
            .unwrap();
        assert_eq!(
            vcpus.create(2, Gpa::new(0x4_1000), Vmpl::new(2).unwrap(), 0x41),
            Err(VcpuError::UnknownApicId(2))
        );
        assert_eq!(
            vcpus.create(3, Gpa::new(0x4_1000), Vmpl::new(2).unwrap(), 0x41),
            Err(VcpuError::Host(0x77))
        );
        let seen = seen.borrow();
        // Exit code 0x8000_0013; EXITINFO1 = APIC ID << 32 | VMPL << 16 | event; EXITINFO2 =
        // the VMSA; RAX = SEV_FEATURES on create.
        assert_eq!(
            seen[0],
            (0x8000_0013, (1 << 32) | (2 << 16) | 1, 0x4_1000, 0x41)
        );
        assert_eq!(
            seen[1],
            (0x8000_0013, (1 << 32) | (2 << 16) | 2, 0x4_1000, 0)
        );
        assert_eq!(seen.len(), 3);

        // A GHCB that cannot carry the request is a channel failure, not a host refusal.
        let h = hv(|_| {});
        let mut unregistered = Ghcb::new(h.clone(), h, GHCB_GPA).unwrap();
        let mut vcpus = crate::vcpus::SnpVcpus::new(&mut unregistered, &[0, 1]);
        assert_eq!(
            vcpus.create(1, Gpa::new(0x4_1000), Vmpl::new(1).unwrap(), 0x1),
            Err(VcpuError::Channel)
        );
    }

    #[test]
    fn msr_protocol() {
        let h = hv(|_| {});
        let mut g = Ghcb::new(h.clone(), h.clone(), GHCB_GPA).unwrap();
        h.state.borrow_mut().msr = 0xABC0_0000;
        assert_eq!(g.negotiate().unwrap().cbit, 51);
        // The MSR value from before the exchange is restored.
        assert_eq!(h.state.borrow().msr, 0xABC0_0000);
        assert_eq!(g.hv_features().unwrap(), 0x23);
        assert_eq!(
            g.page_call(&mut GhcbPage::new()),
            Err(GhcbError::NotRegistered)
        );
        g.register().unwrap();
        assert!(g.is_registered());
        assert_eq!(h.state.borrow().msr, GHCB_GPA);
        g.page_state_change_msr(0x42, PageStateOp::Shared).unwrap();
        assert!(h
            .state
            .borrow()
            .exits
            .contains(&((2 << 52) | (0x42 << 12) | info::PSC_REQ)));
        g.run_vmpl(2).unwrap();
        assert!(h
            .state
            .borrow()
            .exits
            .contains(&((2 << 32) | info::RUN_VMPL_REQ)));
        assert_eq!(
            Ghcb::new(h.clone(), h, 0x7001).err(),
            Some(GhcbError::Misaligned(0x7001))
        );
    }

    #[test]
    fn hostile_msr_answers() {
        let answers: [(u64, fn(&Result<(), GhcbError>) -> bool); 3] = [
            (0xFFFF_FFFF_FFFF_F013, |r| {
                matches!(
                    r,
                    Err(GhcbError::Msr(MsrProtocolError::RegistrationRefused { .. }))
                )
            }),
            (0x8013, |r| {
                matches!(
                    r,
                    Err(GhcbError::Msr(MsrProtocolError::RegistrationRefused { .. }))
                )
            }),
            (0x7015, |r| {
                matches!(
                    r,
                    Err(GhcbError::Msr(MsrProtocolError::UnexpectedInfo { .. }))
                )
            }),
        ];
        for (answer, check) in answers {
            let h = MockHv::new(move |st| st.msr = answer);
            let mut g = Ghcb::new(h.clone(), h, GHCB_GPA).unwrap();
            let r = g.register();
            assert!(check(&r), "{answer:#x}: {r:?}");
            assert!(!g.is_registered());
        }
        let h = MockHv::new(|st| st.msr = (3 << 48) | (3 << 32) | info::SEV_INFO_RESP);
        let mut g = Ghcb::new(h.clone(), h, GHCB_GPA).unwrap();
        assert_eq!(
            g.negotiate(),
            Err(GhcbError::ProtocolVersion { min: 3, max: 3 })
        );
        let h = MockHv::new(|st| st.msr = (5 << 32) | info::PSC_RESP);
        let mut g = Ghcb::new(h.clone(), h, GHCB_GPA).unwrap();
        assert_eq!(
            g.page_state_change_msr(1, PageStateOp::Private),
            Err(GhcbError::Msr(MsrProtocolError::Error(5)))
        );
    }

    #[test]
    fn terminate_asks_and_halts() {
        let h = hv(|_| {});
        let mut g = Ghcb::new(h.clone(), h.clone(), GHCB_GPA).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.terminate(reason::VMPCK_DISABLED)
        }));
        assert!(r.is_err(), "the mock halts by panicking");
        assert_eq!(h.state.borrow().exits, std::vec![0x4_1100]);
    }

    #[test]
    fn page_exit_results() {
        let cases: [(fn(&mut GhcbPage), GhcbError); 4] = [
            (|_| {}, GhcbError::Missing("SW_EXITINFO1")),
            (
                |g| {
                    g.set(GhcbField::SwExitInfo1, 1);
                    g.set(GhcbField::SwExitInfo2, 0x8000_0B0D);
                },
                GhcbError::Exception(0x8000_0B0D),
            ),
            (
                |g| {
                    g.set(GhcbField::SwExitInfo1, 2);
                    g.set(GhcbField::SwExitInfo2, 4);
                },
                GhcbError::Input(4),
            ),
            (|g| g.set(GhcbField::SwExitInfo1, 7), GhcbError::ExitInfo(7)),
        ];
        for (answer, err) in cases {
            let mut g = registered(move |g| {
                // The hypervisor rewrites the whole page: nothing the guest marked stays valid.
                *g = GhcbPage::new();
                answer(g)
            });
            assert_eq!(g.guest_request(0x1000, 0x2000, None), Err(err));
        }
    }

    #[test]
    fn guest_request_exits() {
        let mut g = registered(|g| {
            assert_eq!(
                g.get(GhcbField::SwExitCode),
                Some(exit_code::EXT_GUEST_REQUEST)
            );
            assert_eq!(g.get(GhcbField::SwExitInfo1), Some(0x1000));
            assert_eq!(g.get(GhcbField::SwExitInfo2), Some(0x2000));
            assert_eq!(g.get(GhcbField::Rax), Some(0x3000));
            assert_eq!(g.get(GhcbField::Rbx), Some(1));
            assert_eq!(g.protocol_version.get(), 2);
            g.set(GhcbField::SwExitInfo1, 0);
            g.set(GhcbField::SwExitInfo2, 1 << 32);
            g.set(GhcbField::Rbx, 3);
        });
        assert_eq!(
            g.guest_request(0x1000, 0x2000, Some((0x3000, 1))),
            Ok(GuestRequestExit {
                result: GuestRequestResult {
                    vmm_error: 1,
                    fw_status: 0
                },
                cert_pages: Some(3)
            })
        );
        // INVALID_LEN without RBX is an incomplete answer.
        let mut g = registered(|g| {
            *g = GhcbPage::new();
            g.set(GhcbField::SwExitInfo1, 0);
            g.set(GhcbField::SwExitInfo2, 1 << 32);
        });
        assert_eq!(
            g.guest_request(0x1000, 0x2000, Some((0x3000, 1))),
            Err(GhcbError::Missing("RBX"))
        );
    }

    fn entries(n: usize) -> Vec<PscEntry> {
        (0..n)
            .map(|i| PscEntry {
                cur_page: 0,
                gfn: 0x100 + i as u64,
                op: PageStateOp::Shared,
                huge: false,
            })
            .collect()
    }

    /// A hypervisor that processes `per_exit` entries per exit and then applies `tamper`.
    fn psc_hv(per_exit: u16, tamper: fn(&mut PscDescriptor, u32)) -> Ghcb<MockHv, MockHv> {
        let mut round = 0u32;
        registered(move |g| {
            assert_eq!(
                g.get(GhcbField::SwExitCode),
                Some(exit_code::PAGE_STATE_CHANGE)
            );
            assert_eq!(
                g.get(GhcbField::SwScratch),
                Some(GHCB_GPA + GHCB_SHARED_BUFFER_OFFSET as u64)
            );
            let (mut d, _) = PscDescriptor::read_from_prefix(&g.shared_buffer).unwrap();
            let cur = d.header.cur_entry.get();
            d.header.cur_entry = (cur + per_exit).into();
            tamper(&mut d, round);
            round += 1;
            let (buf, _) = g.shared_buffer.split_at_mut(d.as_bytes().len());
            buf.copy_from_slice(d.as_bytes());
            g.set(GhcbField::SwExitInfo1, 0);
            g.set(GhcbField::SwExitInfo2, 0);
        })
    }

    #[test]
    fn page_state_change_through_the_page() {
        let mut g = psc_hv(100, |_, _| {});
        g.page_state_change(&entries(300)).unwrap();
        // 253 entries in three rounds, then 47 in one.
        let exits = g.cpu_mut().state.borrow().exits.len();
        assert_eq!(exits, 1 + 3 + 1);
        let mut g = psc_hv(0, |_, _| {});
        assert_eq!(
            g.page_state_change(&entries(3)),
            Err(GhcbError::PscNoProgress)
        );
        let tampered: [(fn(&mut PscDescriptor, u32), GhcbError); 5] = [
            // A pending entry's GFN swapped, or its operation changed.
            (
                |d, _| d.entries[2] = (d.entries[2].get() ^ (1 << 12)).into(),
                GhcbError::PscTampered("a pending entry changed"),
            ),
            (
                |d, _| d.entries[2] = (d.entries[2].get() ^ (3 << 52)).into(),
                GhcbError::PscTampered("a pending entry changed"),
            ),
            (
                |d, _| d.header.reserved = 1.into(),
                GhcbError::PscTampered("reserved"),
            ),
            (
                |d, _| d.header.end_entry = 9.into(),
                GhcbError::PscTampered("end_entry changed"),
            ),
            (
                |d, round| {
                    if round == 1 {
                        d.header.cur_entry = 0.into()
                    }
                },
                GhcbError::PscTampered("cur_entry went back"),
            ),
        ];
        for (tamper, err) in tampered {
            let mut g = psc_hv(1, tamper);
            assert_eq!(g.page_state_change(&entries(3)), Err(err));
        }
        let mut g = registered(|g| {
            g.set(GhcbField::SwExitInfo1, 0);
            g.set(GhcbField::SwExitInfo2, 0x1_0000_0005);
        });
        assert_eq!(
            g.page_state_change(&entries(1)),
            Err(GhcbError::PageStateChange(0x1_0000_0005))
        );
        let bad = [PscEntry {
            cur_page: 0,
            gfn: 0x201,
            op: PageStateOp::Private,
            huge: true,
        }];
        assert_eq!(g.page_state_change(&bad), Err(GhcbError::PscEntry(0x201)));
    }
}
