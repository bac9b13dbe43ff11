//! [`SnpPlatform`]: svsm-core's platform traits on SEV-SNP hardware, made of
//! [`SnpMemory`] (`GuestMemory` under the RMP model), [`SnpPsp`] (`SecureProcessor` through PSP
//! guest messages under VMPCK0 over the GHCB), [`RdseedEntropy`] (`Entropy`) and [`TscClock`]
//! (`Clock`). svsm-core's module takes memory and PSP as separate values:
//! [`SnpPlatform::into_parts`] hands them out.

use crate::cpu::{CpuOps, PageSize};
use crate::ghcb::{Ghcb, GhcbError};
use crate::memory::{MemoryRegion, PrivateMemory, RmpError, SharedMemory, SnpMemory};
use crate::messenger::{
    GhcbChannel, GuestMessenger, GuestRequestChannel, GuestRequestPages, MessengerError,
};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use svsm_abi::snp::ghcb::{PageStateOp, TerminationReason};
use svsm_abi::snp::msg::{KeyRequest, KeySelect, MessageError, ReportRequest};
use svsm_abi::snp::secrets::SecretsPage;
use svsm_abi::snp::RawReport;
use svsm_core::platform::{
    Clock, DerivedKey, Entropy, EntropyError, Gpa, GuestMemory, MemoryError, PspError,
    SecureProcessor, Vmpl, PAGE_SIZE,
};

impl From<MessengerError> for PspError {
    fn from(e: MessengerError) -> Self {
        match e {
            MessengerError::Disabled(_)
            | MessengerError::Absent(_)
            | MessengerError::VmpckIndex(_)
            | MessengerError::SequenceExhausted(_)
            | MessengerError::Seal(_) => PspError::ChannelDisabled,
            MessengerError::Header(_)
            | MessengerError::Authentication
            | MessengerError::Certificates(_) => PspError::BadReply,
            MessengerError::Payload(MessageError::Status(status)) => {
                PspError::Refused(status.to_u32())
            }
            MessengerError::Payload(
                MessageError::Length { .. }
                | MessageError::ReportSize(_)
                | MessageError::Reserved(_),
            ) => PspError::BadReply,
            MessengerError::Firmware(status) => PspError::Refused(status),
            MessengerError::Ghcb(_)
            | MessengerError::Busy
            | MessengerError::Hypervisor(_)
            | MessengerError::NoCertificateBuffer => PspError::Transport,
            MessengerError::CertBufferTooSmall { needed_pages, .. } => {
                PspError::CertificatesTooLarge(
                    usize::try_from(needed_pages.saturating_mul(PAGE_SIZE)).unwrap_or(usize::MAX),
                )
            }
        }
    }
}

/// svsm-core's `SecureProcessor` through PSP guest messages.
pub struct SnpPsp<T> {
    messenger: GuestMessenger<T>,
}

impl<T: GuestRequestChannel> SnpPsp<T> {
    /// A PSP reached through `messenger` (VMPCK0 for the SVSM).
    pub fn new(messenger: GuestMessenger<T>) -> Self {
        SnpPsp { messenger }
    }

    /// The messenger (sequence numbers, disabling, extended reports).
    pub fn messenger(&self) -> &GuestMessenger<T> {
        &self.messenger
    }

    /// The messenger, mutably.
    pub fn messenger_mut(&mut self) -> &mut GuestMessenger<T> {
        &mut self.messenger
    }
}

impl<T: GuestRequestChannel> SecureProcessor for SnpPsp<T> {
    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
        vmpl: Vmpl,
    ) -> Result<RawReport, PspError> {
        let request = ReportRequest::new(*report_data, u32::from(vmpl.level()), KeySelect::Default);
        Ok(self.messenger.report(&request)?)
    }

    /// The certificate table from an extended report request (the report itself is dropped).
    /// A platform configured without a certificate buffer has no host certificates: the empty
    /// table (one zero entry).
    fn certificates(&mut self) -> Result<Vec<u8>, PspError> {
        if self.messenger.channel_mut().certificate_capacity() == 0 {
            return Ok(vec![0; 24]);
        }
        let request = ReportRequest::new([0; 64], 0, KeySelect::Default);
        let (_, certs) = self.messenger.extended_report(&request)?;
        Ok(certs)
    }

    fn derived_key(&mut self, request: &KeyRequest) -> Result<DerivedKey, PspError> {
        Ok(self.messenger.derived_key(request)?)
    }
}

/// svsm-core's `Entropy` from RDSEED.
#[derive(Clone, Debug)]
pub struct RdseedEntropy<C> {
    cpu: C,
}

/// RDSEED attempts per 64-bit word before the source counts as failed.
pub const RDSEED_RETRIES: u32 = 128;

impl<C: CpuOps> RdseedEntropy<C> {
    /// Entropy from `cpu`'s RDSEED.
    pub fn new(cpu: C) -> Self {
        RdseedEntropy { cpu }
    }
}

impl<C: CpuOps> Entropy for RdseedEntropy<C> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        for chunk in buf.chunks_mut(8) {
            let word = (0..RDSEED_RETRIES)
                .find_map(|_| self.cpu.rdseed())
                .ok_or(EntropyError::Unavailable)?;
            for (dst, src) in chunk.iter_mut().zip(word.to_le_bytes()) {
                *dst = src;
            }
        }
        Ok(())
    }
}

/// svsm-core's `Clock` from RDTSC at a known frequency. The host can move the TSC offset of a
/// guest without Secure TSC, so the clock never goes back: it holds at the last value until
/// the TSC passes it.
#[derive(Debug)]
pub struct TscClock<C> {
    cpu: C,
    hz: u64,
    last: AtomicU64,
}

impl<C: CpuOps> TscClock<C> {
    /// A clock counting `hz` TSC ticks per second (a zero frequency counts as 1 Hz).
    pub fn new(cpu: C, hz: u64) -> Self {
        TscClock {
            cpu,
            hz: hz.max(1),
            last: AtomicU64::new(0),
        }
    }
}

impl<C: CpuOps> Clock for TscClock<C> {
    fn monotonic_ns(&self) -> u64 {
        let ticks = u128::from(self.cpu.rdtsc());
        let ns = u64::try_from(ticks * 1_000_000_000 / u128::from(self.hz)).unwrap_or(u64::MAX);
        let prev = self.last.fetch_max(ns, Ordering::AcqRel);
        prev.max(ns)
    }
}

/// Where the platform's pieces live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpConfig {
    /// GPA of this vCPU's GHCB page (shared).
    pub ghcb_gpa: u64,
    /// The guest-request pages (shared); `cert_pages` 0 disables extended reports.
    pub request_pages: GuestRequestPages,
    /// Guest memory and its launch state.
    pub regions: Vec<MemoryRegion>,
    /// The SVSM's own memory.
    pub svsm_base: u64,
    /// Bytes of SVSM memory.
    pub svsm_size: u64,
    /// TSC frequency in Hz.
    pub tsc_hz: u64,
}

/// Why the platform could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// GHCB negotiation or registration failed.
    #[error("GHCB: {0}")]
    Ghcb(#[from] GhcbError),
    /// The VMPCK cannot be used.
    #[error("guest messages: {0}")]
    Messenger(#[from] MessengerError),
    /// The memory map was refused.
    #[error("memory: {0}")]
    Memory(#[from] RmpError),
}

/// Why a page conversion failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// PVALIDATE or the memory model refused.
    #[error(transparent)]
    Rmp(#[from] RmpError),
    /// The hypervisor's page-state change failed.
    #[error(transparent)]
    Ghcb(#[from] GhcbError),
}

/// svsm-core's platform on SEV-SNP.
pub struct SnpPlatform<C, S, P> {
    /// Guest memory.
    pub memory: SnpMemory<C, P>,
    /// The secure processor.
    pub psp: SnpPsp<GhcbChannel<C, S>>,
    /// Entropy.
    pub entropy: RdseedEntropy<C>,
    /// Clock.
    pub clock: TscClock<C>,
}

impl<C: CpuOps + Clone, S: SharedMemory, P: PrivateMemory> SnpPlatform<C, S, P> {
    /// Negotiates GHCB protocol 2, registers the GHCB, takes VMPCK0 from `secrets` (its
    /// counter starts at 0: nothing else uses VMPCK0) and builds the memory model. The caller
    /// should wipe VMPCK0 from every copy of the secrets page it keeps, and hand the guest
    /// [`SecretsPage::copy_for_guest`].
    pub fn new(
        cpu: C,
        shared: S,
        private: P,
        secrets: &SecretsPage,
        config: SnpConfig,
    ) -> Result<Self, SetupError> {
        let mut ghcb = Ghcb::new(cpu.clone(), shared, config.ghcb_gpa)?;
        ghcb.negotiate()?;
        ghcb.register()?;
        let channel = GhcbChannel::new(ghcb, config.request_pages)?;
        let key = secrets.vmpck(0).ok_or(MessengerError::Absent(0))?;
        let messenger = GuestMessenger::new(channel, 0, key, 0)?;
        let memory = SnpMemory::new(
            cpu.clone(),
            private,
            config.regions,
            config.svsm_base,
            config.svsm_size,
        )?;
        Ok(SnpPlatform {
            memory,
            psp: SnpPsp::new(messenger),
            entropy: RdseedEntropy::new(cpu.clone()),
            clock: TscClock::new(cpu, config.tsc_hz),
        })
    }

    /// The parts, for svsm-core's `SvsmModule::new(memory, psp, tpm)`.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> (
        SnpMemory<C, P>,
        SnpPsp<GhcbChannel<C, S>>,
        RdseedEntropy<C>,
        TscClock<C>,
    ) {
        (self.memory, self.psp, self.entropy, self.clock)
    }

    fn ghcb(&mut self) -> &mut Ghcb<C, S> {
        self.psp.messenger_mut().channel_mut().ghcb_mut()
    }

    /// Makes a private guest page shared with the hypervisor: PVALIDATE rescind first, then the
    /// page-state change (the C-bit in the page tables is the caller's).
    pub fn convert_to_shared(&mut self, gpa: u64) -> Result<(), ConversionError> {
        self.memory.pvalidate(gpa, PageSize::Size4K, false)?;
        self.ghcb()
            .page_state_change_msr(gpa / PAGE_SIZE, PageStateOp::Shared)?;
        Ok(())
    }

    /// Makes a shared page private again: the page-state change first, then PVALIDATE.
    pub fn convert_to_private(&mut self, gpa: u64) -> Result<(), ConversionError> {
        if gpa % PAGE_SIZE != 0 {
            return Err(RmpError::Misaligned(gpa).into());
        }
        self.ghcb()
            .page_state_change_msr(gpa / PAGE_SIZE, PageStateOp::Private)?;
        self.memory.pvalidate(gpa, PageSize::Size4K, true)?;
        Ok(())
    }

    /// Asks the hypervisor to end the guest; never returns.
    pub fn terminate(&mut self, reason: TerminationReason) -> ! {
        self.ghcb().terminate(reason)
    }
}

impl<C: CpuOps, S, P: PrivateMemory> GuestMemory for SnpPlatform<C, S, P> {
    fn read(&mut self, vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.memory.read(vmpl, gpa, buf)
    }

    fn write(&mut self, vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
        self.memory.write(vmpl, gpa, data)
    }
}

impl<C: CpuOps, S: SharedMemory, P> SecureProcessor for SnpPlatform<C, S, P> {
    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
        vmpl: Vmpl,
    ) -> Result<RawReport, PspError> {
        self.psp.attestation_report(report_data, vmpl)
    }

    fn certificates(&mut self) -> Result<Vec<u8>, PspError> {
        self.psp.certificates()
    }

    fn derived_key(&mut self, request: &KeyRequest) -> Result<DerivedKey, PspError> {
        self.psp.derived_key(request)
    }
}

impl<C: CpuOps, S, P> Entropy for SnpPlatform<C, S, P> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        self.entropy.fill(buf)
    }
}

impl<C: CpuOps, S, P> Clock for SnpPlatform<C, S, P> {
    fn monotonic_ns(&self) -> u64 {
        self.clock.monotonic_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MockHv;
    use svsm_abi::snp::certs::CertTableError;
    use svsm_abi::snp::guest_msg::EnvelopeError;
    use svsm_abi::snp::msg::PspStatus;

    #[test]
    fn rdseed_retries_then_fails_closed() {
        let hv = MockHv::new(|_| {});
        hv.state.borrow_mut().seeds = [None, Some(0x0807_0605_0403_0201), Some(u64::MAX)]
            .into_iter()
            .collect();
        let mut e = RdseedEntropy::new(hv.clone());
        let mut buf = [0u8; 10];
        e.fill(&mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 0xFF, 0xFF]);
        // The queue is empty now: every RDSEED fails.
        assert_eq!(e.fill(&mut buf), Err(EntropyError::Unavailable));
    }

    #[test]
    fn tsc_clock_never_goes_back() {
        let hv = MockHv::new(|_| {});
        let clock = TscClock::new(hv.clone(), 2_000_000_000);
        hv.state.borrow_mut().tsc = 4_000;
        assert_eq!(clock.monotonic_ns(), 2_000);
        hv.state.borrow_mut().tsc = 1_000; // the host moved the TSC back
        assert_eq!(clock.monotonic_ns(), 2_000);
        hv.state.borrow_mut().tsc = u64::MAX;
        assert!(clock.monotonic_ns() >= 2_000);
    }

    #[test]
    fn messenger_errors_map_to_psp_errors() {
        let cases = [
            (MessengerError::Disabled(0), PspError::ChannelDisabled),
            (
                MessengerError::SequenceExhausted(0),
                PspError::ChannelDisabled,
            ),
            (MessengerError::Authentication, PspError::BadReply),
            (
                MessengerError::Header(EnvelopeError::Algorithm(0)),
                PspError::BadReply,
            ),
            (
                MessengerError::Payload(MessageError::Status(PspStatus::InvalidKey)),
                PspError::Refused(0x27),
            ),
            (MessengerError::Firmware(0x16), PspError::Refused(0x16)),
            (MessengerError::Busy, PspError::Transport),
            (MessengerError::Hypervisor(1 << 31), PspError::Transport),
            (
                MessengerError::CertBufferTooSmall {
                    needed_pages: 3,
                    capacity_pages: 1,
                },
                PspError::CertificatesTooLarge(3 * 4096),
            ),
            (
                MessengerError::Certificates(CertTableError::TooManyEntries),
                PspError::BadReply,
            ),
        ];
        for (from, to) in cases {
            assert_eq!(PspError::from(from), to, "{from:?}");
        }
    }
}
