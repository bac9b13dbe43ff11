//! The EMULATED platform the image runs svsm-core on under plain QEMU (no SEV-SNP, no VMPLs).
//! Everything here is a stand-in, and says so:
//!
//! - [`EmulatedPsp`]: a software "secure processor". Its attestation reports are signed with a
//!   fixed **test** P-384 key ([`test_vcek_secret`], derived from a public constant), with no
//!   certificate chain; `chip_id` starts with `"EMULATED PSP"`. No verifier that pins AMD's
//!   roots accepts them. Its derived keys (MSG_KEY_REQ, the root of sealing) come from a
//!   constant compiled into the image, so state it seals is only as secret as the image file.
//!   On a real SNP launch, `svsm-platform-snp`'s `SnpPlatform` replaces all of this.
//! - [`EmulatedMemory`]: the guest's memory as an in-RAM array; calls arriving over COM1 carry
//!   the guest buffer they reference, which is placed here before the call and read back after.
//! - [`SerialStore`]: the untrusted state store on the host, over COM2 (protocol in
//!   [`crate::store_proto`]).
//! - [`RdrandEntropy`]: the CPU's RDRAND through the libc shim (fails closed).

use crate::serial::Uart;
use crate::store_proto::{self, StoreOp, StoreStatus};
use alloc::vec;
use alloc::vec::Vec;
use hmac::{Hmac, Mac};
use p384::ecdsa::signature::Signer;
use sha2::{Digest, Sha384};
use svsm_abi::snp::msg::{GuestFieldSelect, KeyRequest, RootKey};
use svsm_abi::snp::report::EcdsaSignature;
use svsm_abi::snp::{Product, RawReport, ReportVersion, TcbComponents, TcbVersion};
use svsm_core::platform::{
    DerivedKey, Entropy, EntropyError, Gpa, GuestMemory, MemoryError, PspError, SecureProcessor,
    StateStore, StoreError, Vmpl,
};
use svsm_core::BootConfig;
use zerocopy::little_endian::{U32, U64};
use zerocopy::FromZeros;

/// What the image needs from a platform backend: svsm-core's four platform pieces, how to build
/// them, and the boot configuration. [`EmulatedPlatform`] is the stand-in for plain QEMU; on an
/// SNP launch, `svsm-platform-snp`'s pieces (`SnpPlatform`: guest memory behind the RMP, the
/// PSP through VMPCK0 guest messages, the host's storage) implement the same trait and
/// `run::<SnpPlatform>()` replaces `run::<EmulatedPlatform>()`.
pub trait Platform {
    /// Guest memory.
    type Memory: GuestMemory;
    /// The secure processor.
    type Psp: SecureProcessor;
    /// The untrusted state store.
    type Store: StateStore;
    /// The entropy source.
    type Entropy: Entropy;
    /// What the log calls it.
    const NAME: &'static str;
    /// Builds the pieces.
    fn build(env: &BootEnv) -> (Self::Memory, Self::Psp, Self::Store, Self::Entropy);
    /// The boot configuration (the TCB the root key is pinned to).
    fn boot_config() -> BootConfig;
    /// (requests, failed requests) of the store, for the statistics.
    fn store_stats(store: &mut Self::Store) -> (u64, u64);
}

/// What the boot code hands the platform.
pub struct BootEnv {
    /// Measured TSC frequency.
    pub tsc_hz: u64,
    /// The second serial port (the emulated platform's store line).
    pub com2: Uart,
}

/// The emulated platform (see the module documentation).
pub struct EmulatedPlatform;

impl Platform for EmulatedPlatform {
    type Memory = EmulatedMemory;
    type Psp = EmulatedPsp;
    type Store = SerialStore;
    type Entropy = RdrandEntropy;
    const NAME: &'static str = "EMULATED platform (test PSP key, no SEV-SNP)";

    fn build(env: &BootEnv) -> (EmulatedMemory, EmulatedPsp, SerialStore, RdrandEntropy) {
        (
            EmulatedMemory::new(),
            EmulatedPsp::new(),
            SerialStore::new(env.com2, env.tsc_hz),
            RdrandEntropy,
        )
    }

    fn boot_config() -> BootConfig {
        BootConfig {
            min_tcb: TcbVersion::encode(&launch_tcb(), PRODUCT.tcb_layout()),
            expected_epoch: None,
        }
    }

    fn store_stats(store: &mut SerialStore) -> (u64, u64) {
        (store.requests, store.failures)
    }
}

/// The public label the emulated PSP's test signing key is derived from (SHA-384 of it is the
/// private scalar). Anyone can recompute the key: that is the point, it is a test key.
pub const TEST_VCEK_LABEL: &[u8] = b"svsm-vhsm EMULATED PSP test VCEK v1 - NOT AN AMD KEY";
/// The constant the emulated PSP derives MSG_KEY_REQ keys from (the "chip secret").
const TEST_CHIP_SECRET_LABEL: &[u8] = b"svsm-vhsm EMULATED PSP chip secret v1 - NOT SECRET";
/// PSP status for invalid parameters.
pub const STATUS_INVALID_PARAMS: u32 = 0x16;
/// PSP status for an invalid key selection.
pub const STATUS_INVALID_KEY: u32 = 0x27;

/// The emulated launch: a Genoa-like part, report version 3.
pub fn launch_tcb() -> TcbComponents {
    TcbComponents {
        bootloader: 10,
        tee: 0,
        snp: 23,
        microcode: 84,
        ..Default::default()
    }
}

/// The emulated product.
pub const PRODUCT: Product = Product::Genoa;
/// The emulated guest SVN.
pub const GUEST_SVN: u32 = 1;
/// The emulated launch measurement: a recognisable pattern, not a digest of anything.
pub const MEASUREMENT: [u8; 48] = *b"EMULATED-SVSM-IMAGE-MEASUREMENT-NOT-A-DIGEST....";

/// The test key's private scalar: SHA-384([`TEST_VCEK_LABEL`]).
pub fn test_vcek_secret() -> [u8; 48] {
    Sha384::digest(TEST_VCEK_LABEL).into()
}

/// The emulated secure processor (VMPCK0's view).
pub struct EmulatedPsp {
    vcek: p384::ecdsa::SigningKey,
    chip_secret: [u8; 48],
    vmrk_secret: [u8; 48],
    report_id: [u8; 32],
}

impl EmulatedPsp {
    /// The PSP with the fixed test key and secrets.
    pub fn new() -> Self {
        let secret = test_vcek_secret();
        let vcek = match p384::ecdsa::SigningKey::from_slice(&secret) {
            Ok(k) => k,
            // SHA-384 of the label is a valid scalar (checked on every boot).
            Err(_) => panic!("emulated PSP: test key label does not give a P-384 scalar"),
        };
        let derive = |label: &[u8]| -> [u8; 48] {
            let mut mac = hmac384(&Sha384::digest(TEST_CHIP_SECRET_LABEL));
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let mut report_id = [0u8; 32];
        report_id.copy_from_slice(derive(b"report-id").get(..32).unwrap_or(&[0; 32]));
        EmulatedPsp {
            vcek,
            chip_secret: derive(b"chip-secret"),
            vmrk_secret: derive(b"vmrk"),
            report_id,
        }
    }

    fn tcb_version() -> TcbVersion {
        TcbVersion::encode(&launch_tcb(), PRODUCT.tcb_layout())
    }

    fn sign_report(&self, report_data: &[u8; 64], vmpl: u32) -> RawReport {
        let tcb = Self::tcb_version();
        let mut r = RawReport::new_zeroed();
        r.version = U32::new(ReportVersion::V3.number());
        r.guest_svn = U32::new(GUEST_SVN);
        r.policy = U64::new(0x3_0000);
        r.vmpl = U32::new(vmpl);
        r.signature_algo = U32::new(1);
        r.current_tcb = tcb;
        r.platform_info = U64::new(0);
        r.key_info = U32::new(0);
        r.report_data = *report_data;
        r.measurement = MEASUREMENT;
        r.report_id = self.report_id;
        r.report_id_ma = [0xFF; 32];
        r.reported_tcb = tcb;
        (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) = (0x19, 0x11, 0x01);
        let mut chip_id = [0u8; 64];
        chip_id[..32].copy_from_slice(b"EMULATED PSP - TEST KEY, NO AMD ");
        r.chip_id = chip_id;
        r.committed_tcb = tcb;
        r.launch_tcb = tcb;
        let signed = zerocopy::IntoBytes::as_bytes(&r)
            .get(..svsm_abi::snp::report::SIGNED_LEN)
            .unwrap_or(&[]);
        let sig: p384::ecdsa::Signature = self.vcek.sign(signed);
        let (rb, sb) = sig.split_bytes();
        r.signature = EcdsaSignature::from_be_components(&rb.into(), &sb.into());
        r
    }
}

impl Default for EmulatedPsp {
    fn default() -> Self {
        Self::new()
    }
}

fn hmac384(key: &[u8]) -> Hmac<Sha384> {
    match Hmac::<Sha384>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => panic!("HMAC accepts keys of any length"),
    }
}

impl SecureProcessor for EmulatedPsp {
    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
        vmpl: Vmpl,
    ) -> Result<RawReport, PspError> {
        Ok(self.sign_report(report_data, u32::from(vmpl.level())))
    }

    /// No certificates: the test key has no chain (an empty table: one all-zero entry).
    fn certificates(&mut self) -> Result<Vec<u8>, PspError> {
        Ok(vec![0; 24])
    }

    fn derived_key(&mut self, request: &KeyRequest) -> Result<DerivedKey, PspError> {
        let raw = zerocopy::IntoBytes::as_bytes(request);
        let request =
            KeyRequest::parse(raw).map_err(|_| PspError::Refused(STATUS_INVALID_PARAMS))?;
        if request.vmpl.get() > 3 {
            return Err(PspError::Refused(STATUS_INVALID_PARAMS));
        }
        if (request.key_select.get() >> 1) & 3 == 2 {
            return Err(PspError::Refused(STATUS_INVALID_KEY)); // no VLEK
        }
        if request.guest_svn.get() > GUEST_SVN {
            return Err(PspError::Refused(STATUS_INVALID_PARAMS));
        }
        let fields = request.fields();
        let layout = PRODUCT.tcb_layout();
        if fields.contains(GuestFieldSelect::TCB_VERSION)
            && launch_tcb().at_least(&request.tcb_version.decode(layout)) != Some(true)
        {
            return Err(PspError::Refused(STATUS_INVALID_PARAMS));
        }
        let root = match request.root_key() {
            RootKey::Vcek => &self.chip_secret,
            RootKey::Vmrk => &self.vmrk_secret,
        };
        let mut mac = hmac384(root);
        mac.update(b"svsm-image emulated MSG_KEY_REQ v1");
        mac.update(&request.vmpl.get().to_le_bytes());
        mac.update(&fields.bits().to_le_bytes());
        if fields.contains(GuestFieldSelect::POLICY) {
            mac.update(&0x3_0000u64.to_le_bytes());
        }
        if fields.contains(GuestFieldSelect::IMAGE_ID) {
            mac.update(&[0; 16]);
        }
        if fields.contains(GuestFieldSelect::FAMILY_ID) {
            mac.update(&[0; 16]);
        }
        if fields.contains(GuestFieldSelect::MEASUREMENT) {
            mac.update(&MEASUREMENT);
        }
        if fields.contains(GuestFieldSelect::GUEST_SVN) {
            mac.update(&request.guest_svn.get().to_le_bytes());
        }
        if fields.contains(GuestFieldSelect::TCB_VERSION) {
            mac.update(&request.tcb_version.0);
        }
        if fields.contains(GuestFieldSelect::LAUNCH_MIT_VECTOR) {
            mac.update(&request.launch_mit_vector.get().to_le_bytes());
        }
        let out = mac.finalize().into_bytes();
        let mut key = [0u8; 32];
        key.copy_from_slice(out.get(..32).unwrap_or(&[0; 32]));
        Ok(DerivedKey(key))
    }
}

/// Pages of emulated guest memory (4 MiB from GPA 0).
pub const GUEST_PAGES: usize = 1024;

/// The guest's memory as the image models it: [`GUEST_PAGES`] pages from GPA 0, readable and
/// writable by every VMPL above 0 (the COM1 loop refuses VMPL0 callers). There is no RMP here.
pub struct EmulatedMemory {
    bytes: Vec<u8>,
}

impl EmulatedMemory {
    /// Zeroed memory.
    pub fn new() -> Self {
        EmulatedMemory {
            bytes: vec![0; GUEST_PAGES * 4096],
        }
    }

    fn range(&self, gpa: Gpa, len: usize) -> Result<core::ops::Range<usize>, MemoryError> {
        let end = gpa
            .raw()
            .checked_add(len as u64)
            .ok_or(MemoryError::Overflow {
                gpa: gpa.raw(),
                len,
            })?;
        if end > self.bytes.len() as u64 {
            let first_missing = gpa.raw().max(self.bytes.len() as u64);
            return Err(MemoryError::NotPresent(first_missing));
        }
        Ok(gpa.raw() as usize..end as usize)
    }
}

impl Default for EmulatedMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestMemory for EmulatedMemory {
    fn read(&mut self, _vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(self.bytes.get(r).unwrap_or(&[]));
        Ok(())
    }

    fn write(&mut self, _vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(gpa, data.len())?;
        if let Some(dst) = self.bytes.get_mut(r) {
            dst.copy_from_slice(data);
        }
        Ok(())
    }
}

/// Seconds the image waits for the host's answer to a store request before treating the store
/// as unavailable.
pub const STORE_TIMEOUT_SECS: u64 = 20;

/// The state store on the host, reached over COM2. Every answer is parsed strictly; anything
/// malformed, late or unexpected is [`StoreError::Unavailable`] (the module then records a
/// persistence failure, or at boot runs ephemeral). What the store returns is untrusted anyway:
/// svsm-core authenticates every blob it reads back.
pub struct SerialStore {
    uart: Uart,
    tsc_hz: u64,
    /// Requests answered / failed (statistics).
    pub requests: u64,
    /// Requests that got no valid answer.
    pub failures: u64,
}

impl SerialStore {
    /// A store on `uart`; `tsc_hz` measures the answer timeout.
    pub fn new(uart: Uart, tsc_hz: u64) -> Self {
        SerialStore {
            uart,
            tsc_hz,
            requests: 0,
            failures: 0,
        }
    }

    fn transact(&mut self, op: StoreOp, slot: u8, blob: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.requests += 1;
        let result = self.transact_inner(op, slot, blob);
        if matches!(result, Err(StoreError::Unavailable)) {
            self.failures += 1;
        }
        result
    }

    fn transact_inner(
        &mut self,
        op: StoreOp,
        slot: u8,
        blob: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        if blob.len() > store_proto::MAX_BLOB {
            return Err(StoreError::TooLarge(blob.len()));
        }
        // Whatever a misbehaving host sent unasked is not an answer to this request.
        self.uart.drain();
        let mut head = [0u8; store_proto::HEADER_LEN];
        store_proto::encode_request_header(op, slot, blob.len(), &mut head);
        self.uart.write_all(&head);
        self.uart.write_all(blob);

        let deadline =
            crate::cpu::rdtsc().saturating_add(self.tsc_hz.saturating_mul(STORE_TIMEOUT_SECS));
        let mut reply_head = [0u8; store_proto::HEADER_LEN];
        for b in reply_head.iter_mut() {
            *b = self
                .uart
                .read_byte_until(deadline)
                .ok_or(StoreError::Unavailable)?;
        }
        let reply = store_proto::parse_reply_header(&reply_head).map_err(|_| {
            self.uart.drain();
            StoreError::Unavailable
        })?;
        if op == StoreOp::Write && reply.len != 0 {
            self.uart.drain();
            return Err(StoreError::Unavailable);
        }
        let mut data = vec![0u8; reply.len];
        for b in data.iter_mut() {
            *b = self
                .uart
                .read_byte_until(deadline)
                .ok_or(StoreError::Unavailable)?;
        }
        match reply.status {
            StoreStatus::Ok => Ok(data),
            StoreStatus::Empty => Err(StoreError::Empty(slot)),
            StoreStatus::TooLarge => Err(StoreError::TooLarge(blob.len())),
            StoreStatus::Unavailable => Err(StoreError::Unavailable),
        }
    }
}

impl StateStore for SerialStore {
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError> {
        self.transact(StoreOp::Read, slot, &[])
    }

    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError> {
        self.transact(StoreOp::Write, slot, blob).map(|_| ())
    }
}

/// Entropy for the module's own needs (IVs, instance id, vault keys): RDRAND through the libc
/// shim, which fails closed and latches.
pub struct RdrandEntropy;

impl Entropy for RdrandEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        libc_shim::entropy::fill(buf).map_err(|_| EntropyError::Unavailable)
    }
}
