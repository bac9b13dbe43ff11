//! The emulated SEV-SNP machine under `svsm-platform-snp`: a PSP that speaks the real
//! guest-message envelope byte for byte (AES-256-GCM under the same VMPCK, AAD = header
//! 0x30..0x60, IV = MSG_SEQNO, its own sequence counter enforced) and delegates the payloads to
//! [`SimPsp`]; and a hypervisor behind VMGEXIT that implements the GHCB MSR protocol, the GHCB
//! page events (page-state change, guest request, extended guest request with the certificate
//! buffer) and an RMP for PVALIDATE/RMPADJUST.
//!
//! The envelope code here is written independently of the platform's (raw byte offsets, not the
//! `svsm-abi` header type), so a shared misunderstanding cannot hide. Both PSP and hypervisor
//! can be made hostile ([`PspFault`], [`HostFault`]); every request page the hypervisor sees is
//! logged so tests can prove that no sequence number carried two different messages.

use super::psp::SimPsp;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use svsm_abi::snp::certs::{cert_table_len, write_cert_table, CertKind};
use svsm_abi::snp::ghcb::{
    exit_code, info, GhcbField, GhcbPage, PageStateOp, PscDescriptor, PscEntry,
    GHCB_SHARED_BUFFER_OFFSET,
};
use svsm_abi::snp::msg::{KeyRequest, ReportRequest};
use svsm_abi::snp::secrets::SecretsPage;
use svsm_core::platform::{SecureProcessor, Vmpl, PAGE_SIZE};
use svsm_platform_snp::cpu::{CpuOps, PageSize, PvalidateOutput, VmplPermissions};
use svsm_platform_snp::memory::{MappingError, MemoryRegion, PrivateMemory, SharedMemory};
use svsm_platform_snp::messenger::GuestRequestPages;
use svsm_platform_snp::platform::SnpConfig;
use zerocopy::{FromBytes, IntoBytes};

/// Firmware status INVALID_PARAM: what the PSP answers an envelope it rejects.
pub const FW_INVALID_PARAM: u32 = 0x16;
const PAGE: usize = PAGE_SIZE as usize;

/// A fault the emulated PSP puts into its next response; the response is still encrypted and
/// tagged correctly, so only the platform's header checks can catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PspFault {
    /// MSG_TYPE of another response.
    WrongType,
    /// MSG_VERSION 2.
    WrongVersion,
    /// MSG_SIZE one byte short (the payload truncated accordingly).
    ShortPayload,
    /// MSG_SEQNO two ahead (a PSP whose counter skipped).
    SkipSequence,
    /// MSG_SEQNO of the request (a replayed number).
    ReplaySequence,
    /// MSG_VMPCK 1.
    WrongVmpck,
    /// ALGO 0.
    WrongAlgo,
    /// The payload STATUS set to this value (a correct envelope around a refusal).
    Status(u32),
}

/// A fault the emulated hypervisor applies to the next guest-request exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFault {
    /// Flip bit 0 of AUTHTAG byte 0 in the response page.
    FlipTagByte,
    /// Flip a ciphertext byte of the response.
    FlipCiphertextByte,
    /// Forward the request, then write the previous response page instead of the new one.
    ReplayPrevious,
    /// Write only the first `n` bytes of the response page.
    TruncateResponse(usize),
    /// Answer BUSY this many times (without calling the PSP) before forwarding.
    Busy(u32),
    /// Answer INVALID_LEN (VMM error 1) to a plain guest request, without calling the PSP.
    InvalidLenOnPlain,
    /// Claim a certificate buffer too small, asking for this many pages, whatever its size.
    ClaimCertPages(u64),
    /// Report this firmware status without calling the PSP.
    FirmwareError(u32),
    /// Report this VMM error without calling the PSP.
    VmmError(u32),
    /// SW_EXITINFO1 = 2 (input error), without calling the PSP.
    GhcbInputError,
    /// Forward the request but return without marking SW_EXITINFO2 valid.
    DropValidBits,
    /// Return success without calling the PSP or writing a response.
    Swallow,
    /// Write a certificate table whose first entry points past the buffer.
    OversizedCertTable,
}

/// A guest-request page the hypervisor saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// MSG_SEQNO of the request.
    pub seqno: u64,
    /// SHA-256 of the whole request page.
    pub digest: [u8; 32],
    /// True for the extended guest request.
    pub extended: bool,
}

/// The PSP side of the envelope.
pub struct EmulatedPsp {
    sim: SimPsp,
    key: [u8; 32],
    vmpck_id: u8,
    last_seqno: u64,
    /// Faults to put into the next responses, one per response.
    pub faults: VecDeque<PspFault>,
    /// Requests accepted (authenticated, in sequence).
    pub accepted: u64,
    /// Requests rejected at the envelope.
    pub rejected: u64,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn iv(seqno: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    iv
}

impl EmulatedPsp {
    /// A PSP answering messages under VMPCK`vmpck_id` = `key`, with payloads handled by `sim`.
    pub fn new(sim: SimPsp, key: [u8; 32], vmpck_id: u8) -> Self {
        EmulatedPsp {
            sim,
            key,
            vmpck_id,
            last_seqno: 0,
            faults: VecDeque::new(),
            accepted: 0,
            rejected: 0,
        }
    }

    /// The software PSP behind the envelope.
    pub fn sim(&self) -> &SimPsp {
        &self.sim
    }

    /// The software PSP, mutably.
    pub fn sim_mut(&mut self) -> &mut SimPsp {
        &mut self.sim
    }

    /// The last sequence number this PSP consumed (its authoritative counter).
    pub fn last_seqno(&self) -> u64 {
        self.last_seqno
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.key).expect("32-byte key")
    }

    /// Handles one request page: the response page, or a firmware status for an envelope it
    /// rejects (wrong format, VMPCK, sequence number or tag; set reserved bytes).
    pub fn handle(&mut self, page: &[u8]) -> Result<Vec<u8>, u32> {
        let result = self.open_request(page);
        match result {
            Ok((msg_type, version, plain)) => {
                self.accepted += 1;
                let seqno = self.last_seqno + 1;
                let response = self.answer(msg_type, &plain);
                self.last_seqno += 2;
                Ok(self.seal_response(seqno + 1, msg_type + 1, version, response))
            }
            Err(status) => {
                self.rejected += 1;
                Err(status)
            }
        }
    }

    fn open_request(&self, page: &[u8]) -> Result<(u8, u8, Vec<u8>), u32> {
        let reject = Err(FW_INVALID_PARAM);
        if page.len() != PAGE {
            return reject;
        }
        let seqno = u64::from_le_bytes(page[0x20..0x28].try_into().unwrap());
        let (algo, hdr_version, hdr_size) = (page[0x30], page[0x31], u16_at(page, 0x32));
        let (msg_type, version, size, vmpck) = (
            page[0x34],
            page[0x35],
            usize::from(u16_at(page, 0x36)),
            page[0x3C],
        );
        let reserved_zero = page[0x10..0x20]
            .iter()
            .chain(&page[0x28..0x30])
            .chain(&page[0x38..0x3C])
            .chain(&page[0x3D..0x60])
            .all(|&b| b == 0);
        if algo != 1
            || hdr_version != 1
            || hdr_size != 0x60
            || vmpck != self.vmpck_id
            || size > PAGE - 0x60
            || !reserved_zero
            || seqno != self.last_seqno + 1
        {
            return reject;
        }
        let mut plain = page[0x60..0x60 + size].to_vec();
        let tag_bytes: [u8; 16] = page[..16].try_into().expect("16 bytes");
        let tag = Tag::from(tag_bytes);
        self.cipher()
            .decrypt_in_place_detached(&Nonce::from(iv(seqno)), &page[0x30..0x60], &mut plain, &tag)
            .map_err(|_| FW_INVALID_PARAM)?;
        Ok((msg_type, version, plain))
    }

    fn answer(&mut self, msg_type: u8, plain: &[u8]) -> Vec<u8> {
        match msg_type {
            5 => {
                let mut rsp = vec![0u8; 0x20 + svsm_abi::snp::REPORT_SIZE];
                let status = match ReportRequest::parse(plain) {
                    Err(_) => FW_INVALID_PARAM,
                    Ok(req) => match Vmpl::new(req.vmpl.get().min(255) as u8)
                        .filter(|_| req.vmpl.get() <= 3)
                    {
                        None => FW_INVALID_PARAM,
                        Some(vmpl) => match self.sim.attestation_report(&req.report_data, vmpl) {
                            Ok(report) => {
                                rsp[4..8].copy_from_slice(&0x4A0u32.to_le_bytes());
                                rsp[0x20..].copy_from_slice(report.as_bytes());
                                0
                            }
                            Err(e) => refusal(e),
                        },
                    },
                };
                rsp[..4].copy_from_slice(&status.to_le_bytes());
                rsp
            }
            3 => {
                let mut rsp = vec![0u8; 0x40];
                let mut raw = [0u8; 0x28];
                let status = if plain.len() == 0x20 || plain.len() == 0x28 {
                    raw[..plain.len()].copy_from_slice(plain);
                    let req = KeyRequest::read_from_bytes(&raw).expect("0x28 bytes");
                    match self.sim.derived_key(&req) {
                        Ok(key) => {
                            rsp[0x20..].copy_from_slice(&key.0);
                            0
                        }
                        Err(e) => refusal(e),
                    }
                } else {
                    FW_INVALID_PARAM
                };
                rsp[..4].copy_from_slice(&status.to_le_bytes());
                rsp
            }
            // Other message types: a status-only answer of the request's size.
            _ => {
                let mut rsp = vec![0u8; plain.len().max(4)];
                rsp[..4].copy_from_slice(&FW_INVALID_PARAM.to_le_bytes());
                rsp
            }
        }
    }

    fn seal_response(
        &mut self,
        seqno: u64,
        msg_type: u8,
        version: u8,
        mut payload: Vec<u8>,
    ) -> Vec<u8> {
        let (mut seqno, mut msg_type, mut version, mut vmpck, mut algo) =
            (seqno, msg_type, version, self.vmpck_id, 1u8);
        match self.faults.pop_front() {
            None => {}
            Some(PspFault::WrongType) => msg_type += 2,
            Some(PspFault::WrongVersion) => version = 2,
            Some(PspFault::ShortPayload) => {
                payload.pop();
            }
            Some(PspFault::SkipSequence) => seqno += 2,
            Some(PspFault::ReplaySequence) => seqno -= 1,
            Some(PspFault::WrongVmpck) => vmpck = 1,
            Some(PspFault::WrongAlgo) => algo = 0,
            Some(PspFault::Status(s)) => {
                payload[..4].copy_from_slice(&s.to_le_bytes());
                payload[4..].fill(0);
            }
        }
        let mut page = vec![0u8; PAGE];
        page[0x20..0x28].copy_from_slice(&seqno.to_le_bytes());
        page[0x30] = algo;
        page[0x31] = 1;
        page[0x32..0x34].copy_from_slice(&0x60u16.to_le_bytes());
        page[0x34] = msg_type;
        page[0x35] = version;
        page[0x36..0x38].copy_from_slice(&(payload.len() as u16).to_le_bytes());
        page[0x3C] = vmpck;
        // The firmware leaves non-zero reserved bytes in responses; so does this one.
        page[0x28] = 0xA5;
        page[0x5F] = 0x5A;
        let aad = page[0x30..0x60].to_vec();
        let tag = self
            .cipher()
            .encrypt_in_place_detached(&Nonce::from(iv(seqno)), &aad, &mut payload)
            .expect("payload fits");
        page[..16].copy_from_slice(&tag);
        page[0x60..0x60 + payload.len()].copy_from_slice(&payload);
        page
    }
}

fn refusal(e: svsm_core::platform::PspError) -> u32 {
    match e {
        svsm_core::platform::PspError::Refused(s) => s,
        _ => FW_INVALID_PARAM,
    }
}

/// One page's RMP entry in the emulated machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RmpEntry {
    /// Assigned to the guest (private); false = shared with the hypervisor.
    pub private: bool,
    /// PVALIDATEd.
    pub validated: bool,
    /// VMPL1..3 permissions (RMPADJUST bits 11:8).
    pub perms: [u8; 3],
    /// VMSA bit.
    pub vmsa: bool,
}

/// The emulated machine's state: memory, RMP, GHCB MSR, hypervisor and PSP.
pub struct HostState {
    /// Guest physical memory from GPA 0.
    pub memory: Vec<u8>,
    /// One RMP entry per page.
    pub rmp: Vec<RmpEntry>,
    /// The GHCB MSR.
    pub msr: u64,
    /// The registered GHCB GPA.
    pub ghcb: Option<u64>,
    /// The PSP.
    pub psp: EmulatedPsp,
    /// The certificate table the host supplies with extended requests.
    pub certs: Vec<u8>,
    /// Faults for the next guest-request exits, one per exit.
    pub faults: VecDeque<HostFault>,
    /// Every request page seen by the hypervisor, in order.
    pub seen: Vec<SeenRequest>,
    /// Exits the hypervisor handled (MSR protocol and GHCB page).
    pub exits: u64,
    /// The last response page written.
    pub last_response: Option<Vec<u8>>,
    /// The MSR value of a termination request.
    pub terminated: Option<u64>,
    /// Accesses the platform should never make (private access to a shared or unvalidated
    /// page, shared access to a private page, unknown exits).
    pub violations: Vec<String>,
    /// RDTSC value.
    pub tsc: u64,
    /// PVALIDATE executions.
    pub pvalidates: u64,
    /// RMPADJUST executions.
    pub rmpadjusts: u64,
}

/// A handle on the emulated machine; clones share it. It is the platform's `CpuOps`,
/// `SharedMemory` and `PrivateMemory` at once.
#[derive(Clone)]
pub struct EmulatedMachine(pub Rc<RefCell<HostState>>);

/// The machine's page layout.
pub mod layout {
    /// Pages of guest memory.
    pub const PAGES: u64 = 64;
    /// First SVSM page.
    pub const SVSM_FIRST: u64 = 8;
    /// SVSM pages.
    pub const SVSM_PAGES: u64 = 8;
    /// The GHCB page (shared).
    pub const GHCB: u64 = 16;
    /// The request page (shared).
    pub const REQUEST: u64 = 17;
    /// The response page (shared).
    pub const RESPONSE: u64 = 18;
    /// First certificate-buffer page (shared).
    pub const CERTS: u64 = 19;
    /// Certificate-buffer pages.
    pub const CERT_PAGES: u64 = 4;
    /// First guest page after the shared ones.
    pub const GUEST_HIGH: u64 = 24;
}

/// A fixed VMPCK0 for the emulated launch.
pub const VMPCK0: [u8; 32] = [
    0x5c, 0x11, 0x9e, 0x27, 0x60, 0xb2, 0x3d, 0x48, 0x07, 0xf1, 0x6a, 0xc3, 0x92, 0x1e, 0x74, 0x0b,
    0xd8, 0x35, 0x4f, 0xa6, 0x19, 0x83, 0xe0, 0x5b, 0x2c, 0x71, 0x9d, 0x46, 0xbe, 0x08, 0xf3, 0x6e,
];

impl EmulatedMachine {
    /// A machine in the standard [`layout`] around `sim`, keyed with [`VMPCK0`]; the host
    /// supplies `sim`'s certificate chain.
    pub fn new(mut sim: SimPsp) -> Self {
        let certs = sim
            .certificates()
            .expect("the simulated chain builds a table");
        let rmp = (0..layout::PAGES)
            .map(|p| {
                let shared = (layout::GHCB..layout::GUEST_HIGH).contains(&p);
                RmpEntry {
                    private: !shared,
                    validated: !shared,
                    perms: if shared { [0; 3] } else { [0xF; 3] },
                    vmsa: false,
                }
            })
            .collect();
        EmulatedMachine(Rc::new(RefCell::new(HostState {
            memory: vec![0; (layout::PAGES * PAGE_SIZE) as usize],
            rmp,
            msr: 0,
            ghcb: None,
            psp: EmulatedPsp::new(sim, VMPCK0, 0),
            certs,
            faults: VecDeque::new(),
            seen: Vec::new(),
            exits: 0,
            last_response: None,
            terminated: None,
            violations: Vec::new(),
            tsc: 0,
            pvalidates: 0,
            rmpadjusts: 0,
        })))
    }

    /// The state.
    pub fn state(&self) -> std::cell::RefMut<'_, HostState> {
        self.0.borrow_mut()
    }

    /// The secrets page of this launch: version 3, VMPCK0 = [`VMPCK0`], VMPCK1..3 distinct.
    pub fn secrets_page() -> SecretsPage {
        let mut page = SecretsPage::zeroed();
        page.version = 3.into();
        page.vmpck[0] = VMPCK0;
        for (i, key) in page.vmpck.iter_mut().enumerate().skip(1) {
            *key = [0x40 + i as u8; 32];
        }
        page
    }

    /// The platform configuration matching [`layout`].
    pub fn config() -> SnpConfig {
        use layout::*;
        let rwx = [VmplPermissions::RWX; 3];
        SnpConfig {
            ghcb_gpa: GHCB * PAGE_SIZE,
            request_pages: GuestRequestPages {
                request_gpa: REQUEST * PAGE_SIZE,
                response_gpa: RESPONSE * PAGE_SIZE,
                certs_gpa: CERTS * PAGE_SIZE,
                cert_pages: CERT_PAGES,
            },
            regions: vec![
                MemoryRegion {
                    start: 0,
                    pages: GHCB,
                    validated: true,
                    perms: rwx,
                },
                MemoryRegion {
                    start: GUEST_HIGH * PAGE_SIZE,
                    pages: PAGES - GUEST_HIGH,
                    validated: true,
                    perms: rwx,
                },
            ],
            svsm_base: SVSM_FIRST * PAGE_SIZE,
            svsm_size: SVSM_PAGES * PAGE_SIZE,
            tsc_hz: 1_000_000_000,
        }
    }

    /// Sequence numbers the hypervisor saw carrying two different request pages (must be
    /// empty: that would be AES-GCM IV reuse).
    pub fn reused_seqnos(&self) -> Vec<u64> {
        let st = self.0.borrow();
        let mut by_seqno: BTreeMap<u64, Vec<[u8; 32]>> = BTreeMap::new();
        for s in &st.seen {
            let digests = by_seqno.entry(s.seqno).or_default();
            if !digests.contains(&s.digest) {
                digests.push(s.digest);
            }
        }
        by_seqno
            .into_iter()
            .filter(|(_, d)| d.len() > 1)
            .map(|(s, _)| s)
            .collect()
    }

    /// Distinct sequence numbers the hypervisor saw.
    pub fn distinct_seqnos(&self) -> usize {
        let st = self.0.borrow();
        let mut s: Vec<u64> = st.seen.iter().map(|r| r.seqno).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }
}

impl HostState {
    fn page(&self, page: u64) -> Option<&RmpEntry> {
        self.rmp.get(page as usize)
    }

    fn bytes(&self, gpa: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(gpa).ok()?;
        self.memory.get(start..start.checked_add(len)?)
    }

    fn bytes_mut(&mut self, gpa: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(gpa).ok()?;
        self.memory.get_mut(start..start.checked_add(len)?)
    }

    /// True when every page of the range is shared.
    fn is_shared(&self, gpa: u64, len: usize) -> bool {
        let first = gpa / PAGE_SIZE;
        let last = (gpa + len.max(1) as u64 - 1) / PAGE_SIZE;
        (first..=last).all(|p| self.page(p).is_some_and(|e| !e.private))
    }

    fn vmgexit(&mut self) {
        self.exits += 1;
        let msr = self.msr;
        if Some(msr) == self.ghcb {
            self.ghcb_exit(msr);
            return;
        }
        self.msr = match msr & 0xFFF {
            info::SEV_INFO_REQ => (2 << 48) | (2 << 32) | (51 << 24) | info::SEV_INFO_RESP,
            info::HV_FEATURES_REQ => (0x23 << 12) | info::HV_FEATURES_RESP,
            info::REGISTER_REQ => {
                let gpa = msr & !0xFFF;
                if self.is_shared(gpa, PAGE) {
                    self.ghcb = Some(gpa);
                    gpa | info::REGISTER_RESP
                } else {
                    !0xFFF | info::REGISTER_RESP
                }
            }
            info::PSC_REQ => {
                let gfn = (msr >> 12) & ((1 << 40) - 1);
                let op = (msr >> 52) & 0xF;
                if self.change_state(gfn, op) {
                    info::PSC_RESP
                } else {
                    (1 << 32) | info::PSC_RESP
                }
            }
            info::RUN_VMPL_REQ => info::RUN_VMPL_RESP,
            info::TERMINATE_REQ => {
                self.terminated = Some(msr);
                msr
            }
            _ => {
                self.violations
                    .push(format!("unknown MSR protocol request {msr:#x}"));
                0
            }
        };
    }

    fn change_state(&mut self, gfn: u64, op: u64) -> bool {
        let Some(e) = self.rmp.get_mut(gfn as usize) else {
            return false;
        };
        match op {
            1 => {
                *e = RmpEntry {
                    private: true,
                    validated: false,
                    perms: [0; 3],
                    vmsa: false,
                }
            }
            2 => {
                *e = RmpEntry {
                    private: false,
                    validated: false,
                    perms: [0; 3],
                    vmsa: false,
                }
            }
            _ => return false,
        }
        true
    }

    fn ghcb_exit(&mut self, gpa: u64) {
        let mut g = GhcbPage::read_from_bytes(self.bytes(gpa, PAGE).expect("registered GHCB"))
            .expect("one page");
        if g.protocol_version.get() != 2 {
            self.violations.push("GHCB protocol version".into());
        }
        let code = g.get(GhcbField::SwExitCode);
        let (info1, info2) = match code {
            Some(exit_code::PAGE_STATE_CHANGE) => self.psc(&mut g),
            Some(exit_code::GUEST_REQUEST) => self.guest_request(&mut g, false),
            Some(exit_code::EXT_GUEST_REQUEST) => self.guest_request(&mut g, true),
            other => {
                self.violations
                    .push(format!("unexpected GHCB exit {other:?}"));
                (Some(2), Some(6))
            }
        };
        // The hypervisor writes its own valid bitmap.
        g.valid_bitmap = [0; 16];
        let rbx = g.rbx.get();
        if let Some(v) = info1 {
            g.set(GhcbField::SwExitInfo1, v);
        }
        if let Some(v) = info2 {
            g.set(GhcbField::SwExitInfo2, v);
        }
        if code == Some(exit_code::EXT_GUEST_REQUEST) {
            g.set(GhcbField::Rbx, rbx);
        }
        self.bytes_mut(gpa, PAGE)
            .expect("registered GHCB")
            .copy_from_slice(g.as_bytes());
    }

    fn psc(&mut self, g: &mut GhcbPage) -> (Option<u64>, Option<u64>) {
        let (mut d, _) = PscDescriptor::read_from_prefix(&g.shared_buffer).expect("fits");
        if g.get(GhcbField::SwScratch) != self.ghcb.map(|x| x + GHCB_SHARED_BUFFER_OFFSET as u64) {
            self.violations.push("PSC scratch".into());
        }
        let (cur, end) = (d.header.cur_entry.get(), d.header.end_entry.get());
        for i in cur..=end {
            let Some(e) = d
                .entries
                .get(usize::from(i))
                .and_then(|e| PscEntry::decode(e.get()))
            else {
                return (Some(0), Some(1));
            };
            let op = match e.op {
                PageStateOp::Private => 1,
                PageStateOp::Shared => 2,
                _ => return (Some(0), Some(1)),
            };
            if !self.change_state(e.gfn, op) {
                return (Some(0), Some(1));
            }
        }
        d.header.cur_entry = (end + 1).into();
        g.shared_buffer[..d.as_bytes().len()].copy_from_slice(d.as_bytes());
        (Some(0), Some(0))
    }

    fn guest_request(&mut self, g: &mut GhcbPage, extended: bool) -> (Option<u64>, Option<u64>) {
        let (Some(req_gpa), Some(rsp_gpa)) =
            (g.get(GhcbField::SwExitInfo1), g.get(GhcbField::SwExitInfo2))
        else {
            return (Some(2), Some(4));
        };
        if !self.is_shared(req_gpa, PAGE) || !self.is_shared(rsp_gpa, PAGE) {
            self.violations
                .push("guest request pages not shared".into());
            return (Some(2), Some(5));
        }
        let request = self.bytes(req_gpa, PAGE).expect("checked").to_vec();
        self.seen.push(SeenRequest {
            seqno: u64::from_le_bytes(request[0x20..0x28].try_into().unwrap()),
            digest: Sha256::digest(&request).into(),
            extended,
        });
        let fault = self.faults.pop_front();
        let pages_needed = (self.certs.len() as u64).div_ceil(PAGE_SIZE);
        match fault {
            Some(HostFault::Busy(n)) => {
                if n > 1 {
                    self.faults.push_front(HostFault::Busy(n - 1));
                }
                return (Some(0), Some(2 << 32));
            }
            Some(HostFault::InvalidLenOnPlain) if !extended => return (Some(0), Some(1 << 32)),
            Some(HostFault::FirmwareError(s)) => return (Some(0), Some(u64::from(s))),
            Some(HostFault::VmmError(e)) => return (Some(0), Some(u64::from(e) << 32)),
            Some(HostFault::GhcbInputError) => return (Some(2), Some(5)),
            Some(HostFault::Swallow) => return (Some(0), Some(0)),
            _ => {}
        }
        let (cert_gpa, cert_pages) = (g.rax.get(), g.rbx.get());
        if extended {
            if g.get(GhcbField::Rax).is_none() || g.get(GhcbField::Rbx).is_none() {
                return (Some(2), Some(4));
            }
            if cert_gpa % PAGE_SIZE != 0 {
                return (Some(2), Some(5));
            }
            let claimed = match fault {
                Some(HostFault::ClaimCertPages(p)) => Some(p),
                _ => (cert_pages < pages_needed).then_some(pages_needed),
            };
            if let Some(p) = claimed {
                g.rbx = p.into();
                return (Some(0), Some(1 << 32));
            }
        }
        let response = match self.psp.handle(&request) {
            Ok(r) => r,
            Err(status) => return (Some(0), Some(u64::from(status))),
        };
        let mut written = match fault {
            Some(HostFault::ReplayPrevious) => self.last_response.clone().unwrap_or_default(),
            _ => response.clone(),
        };
        written.resize(PAGE, 0);
        match fault {
            Some(HostFault::FlipTagByte) => written[0] ^= 1,
            Some(HostFault::FlipCiphertextByte) => written[0x70] ^= 1,
            Some(HostFault::TruncateResponse(n)) => written[n.min(PAGE)..].fill(0),
            _ => {}
        }
        self.last_response = Some(response);
        self.bytes_mut(rsp_gpa, PAGE)
            .expect("checked")
            .copy_from_slice(&written);
        if extended {
            let len = (cert_pages * PAGE_SIZE) as usize;
            if !self.is_shared(cert_gpa, len) {
                self.violations.push("certificate buffer not shared".into());
                return (Some(2), Some(5));
            }
            let mut table = self.certs.clone();
            if fault == Some(HostFault::OversizedCertTable) {
                table[16..20].copy_from_slice(&(len as u32).to_le_bytes());
                table[20..24].copy_from_slice(&0x100u32.to_le_bytes());
            }
            table.resize(len, 0);
            self.bytes_mut(cert_gpa, len)
                .expect("checked")
                .copy_from_slice(&table);
        }
        match fault {
            Some(HostFault::DropValidBits) => (Some(0), None),
            _ => (Some(0), Some(0)),
        }
    }
}

impl CpuOps for EmulatedMachine {
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateOutput {
        let mut st = self.0.borrow_mut();
        st.pvalidates += 1;
        if size == PageSize::Size2M {
            return PvalidateOutput {
                rax: 6,
                carry: false,
            };
        }
        match st.rmp.get_mut((va / PAGE_SIZE) as usize) {
            Some(e) if e.private => {
                let unchanged = e.validated == validate;
                e.validated = validate;
                PvalidateOutput {
                    rax: 0,
                    carry: unchanged,
                }
            }
            _ => PvalidateOutput {
                rax: 1,
                carry: false,
            },
        }
    }

    fn rmpadjust(&mut self, va: u64, _size: PageSize, attrs: u64) -> u64 {
        let mut st = self.0.borrow_mut();
        st.rmpadjusts += 1;
        let vmpl = (attrs & 0xFF) as usize;
        if !(1..=3).contains(&vmpl) || attrs >> 17 != 0 {
            return 1;
        }
        match st.rmp.get_mut((va / PAGE_SIZE) as usize) {
            Some(e) if e.private && e.validated => {
                e.perms[vmpl - 1] = ((attrs >> 8) & 0xF) as u8;
                e.vmsa = attrs & (1 << 16) != 0;
                0
            }
            _ => 1,
        }
    }

    fn read_ghcb_msr(&mut self) -> u64 {
        self.0.borrow().msr
    }

    fn write_ghcb_msr(&mut self, value: u64) {
        self.0.borrow_mut().msr = value;
    }

    fn vmgexit(&mut self) {
        self.0.borrow_mut().vmgexit();
    }

    fn rdseed(&mut self) -> Option<u64> {
        Some(rand::random())
    }

    fn rdtsc(&self) -> u64 {
        self.0.borrow().tsc
    }

    fn flush_tlb(&mut self, _va: u64) {}

    fn flush_tlb_all(&mut self) {}

    fn halt(&mut self) {
        let msr = self.0.borrow().msr;
        panic!("the emulated vCPU halted after a termination request ({msr:#x})");
    }
}

impl SharedMemory for EmulatedMachine {
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError> {
        let mut st = self.0.borrow_mut();
        let err = MappingError::OutOfRange {
            gpa,
            len: out.len(),
        };
        if !st.is_shared(gpa, out.len()) {
            st.violations
                .push(format!("shared read of private {gpa:#x}"));
            return Err(err);
        }
        out.copy_from_slice(st.bytes(gpa, out.len()).ok_or(err)?);
        Ok(())
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError> {
        let mut st = self.0.borrow_mut();
        let err = MappingError::OutOfRange {
            gpa,
            len: data.len(),
        };
        if !st.is_shared(gpa, data.len()) {
            st.violations
                .push(format!("shared write of private {gpa:#x}"));
            return Err(err);
        }
        st.bytes_mut(gpa, data.len())
            .ok_or(err)?
            .copy_from_slice(data);
        Ok(())
    }
}

impl PrivateMemory for EmulatedMachine {
    fn read_private(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError> {
        let mut st = self.0.borrow_mut();
        let err = MappingError::OutOfRange {
            gpa,
            len: out.len(),
        };
        if !private_ok(&st, gpa, out.len()) {
            st.violations
                .push(format!("private read of {gpa:#x} (#VC)"));
            return Err(err);
        }
        out.copy_from_slice(st.bytes(gpa, out.len()).ok_or(err)?);
        Ok(())
    }

    fn write_private(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError> {
        let mut st = self.0.borrow_mut();
        let err = MappingError::OutOfRange {
            gpa,
            len: data.len(),
        };
        if !private_ok(&st, gpa, data.len()) {
            st.violations
                .push(format!("private write of {gpa:#x} (#VC)"));
            return Err(err);
        }
        st.bytes_mut(gpa, data.len())
            .ok_or(err)?
            .copy_from_slice(data);
        Ok(())
    }

    fn linear_address(&self, gpa: u64) -> Option<u64> {
        (gpa < layout::PAGES * PAGE_SIZE).then_some(gpa)
    }
}

/// VMPL0 may touch a page privately only when it is private and validated.
fn private_ok(st: &HostState, gpa: u64, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let first = gpa / PAGE_SIZE;
    let last = (gpa + len as u64 - 1) / PAGE_SIZE;
    (first..=last).all(|p| st.page(p).is_some_and(|e| e.private && e.validated))
}

/// A certificate table with `n` blobs of `size` bytes each (for too-small-buffer tests).
pub fn synthetic_cert_table(n: usize, size: usize) -> Vec<u8> {
    let blobs: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8 + 1; size]).collect();
    let certs: Vec<(CertKind, &[u8])> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let kind = [CertKind::Vcek, CertKind::Ask, CertKind::Ark, CertKind::Crl][i % 4];
            (kind, b.as_slice())
        })
        .collect();
    let mut out = vec![0u8; cert_table_len(&certs).expect("small")];
    write_cert_table(&certs, &mut out).expect("sized");
    out
}
