//! A software AMD secure processor: signs ATTESTATION_REPORTs (versions 3 and 5) with the test
//! VCEK, answers MSG_KEY_REQ with keys bound to every selected field, and enforces the VMPL,
//! guest-SVN and TCB rules the real PSP enforces.

use super::chain::{TestChain, VcekIdentity};
use hmac::{Hmac, Mac};
use p384::ecdsa::signature::Signer;
use sha2::Sha384;
use std::sync::Arc;
use svsm_abi::snp::certs::{cert_table_len, write_cert_table, CertKind};
use svsm_abi::snp::msg::{GuestFieldSelect, KeyRequest, RootKey};
use svsm_abi::snp::report::EcdsaSignature;
use svsm_abi::snp::{Product, RawReport, ReportVersion, TcbComponents, TcbVersion};
use svsm_core::platform::{DerivedKey, PspError, SecureProcessor, Vmpl};
use zerocopy::little_endian::{U32, U64};
use zerocopy::FromZeros;

/// PSP status for invalid parameters.
pub const STATUS_INVALID_PARAMS: u32 = 0x16;
/// PSP status for an invalid key selection.
pub const STATUS_INVALID_KEY: u32 = 0x27;

/// What the hypervisor and the ID block fixed at launch.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// Report format to emit (3 or 5).
    pub report_version: ReportVersion,
    /// The part.
    pub product: Product,
    /// Launch digest.
    pub measurement: [u8; 48],
    /// Guest policy.
    pub policy: u64,
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// Family id.
    pub family_id: [u8; 16],
    /// Image id.
    pub image_id: [u8; 16],
    /// Host data.
    pub host_data: [u8; 32],
    /// Chip id (Turin: first 8 bytes used).
    pub chip_id: [u8; 64],
    /// The TCB (current = reported = committed = launch).
    pub tcb: TcbComponents,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// Launch mitigation vector (v5).
    pub launch_mit_vector: u64,
}

impl LaunchConfig {
    /// A Genoa-like launch with report version 3.
    pub fn genoa(measurement: [u8; 48]) -> Self {
        LaunchConfig {
            report_version: ReportVersion::V3,
            product: Product::Genoa,
            measurement,
            policy: 0x3_0000,
            guest_svn: 1,
            family_id: [0; 16],
            image_id: [0; 16],
            host_data: [0; 32],
            chip_id: core::array::from_fn(|i| i as u8 ^ 0xA5),
            tcb: TcbComponents {
                bootloader: 10,
                tee: 0,
                snp: 23,
                microcode: 84,
                ..Default::default()
            },
            platform_info: 0x25,
            launch_mit_vector: 0,
        }
    }

    /// A Turin-like launch with report version 5.
    pub fn turin(measurement: [u8; 48]) -> Self {
        let mut chip_id = [0u8; 64];
        chip_id[..8].copy_from_slice(&[0x59, 0x79, 0x0f, 0xb1, 0xc3, 0x9f, 0x35, 0xc1]);
        LaunchConfig {
            report_version: ReportVersion::V5,
            product: Product::Turin,
            chip_id,
            tcb: TcbComponents {
                fmc: Some(1),
                bootloader: 1,
                tee: 1,
                snp: 4,
                microcode: 81,
                ..Default::default()
            },
            platform_info: 0x65,
            launch_mit_vector: 0x3F,
            ..LaunchConfig::genoa(measurement)
        }
    }

    fn tcb_version(&self) -> TcbVersion {
        TcbVersion::encode(&self.tcb, self.product.tcb_layout())
    }

    fn cpuid(&self) -> (u8, u8, u8) {
        match self.product {
            Product::Milan => (0x19, 0x01, 0x01),
            Product::Genoa => (0x19, 0x11, 0x01),
            _ => (0x1A, 0x02, 0x01),
        }
    }

    fn identity(&self) -> VcekIdentity {
        VcekIdentity {
            product_name: self.product.kds_name().to_owned(),
            chip_id: self.chip_id,
            tcb: (
                self.tcb.fmc,
                self.tcb.bootloader,
                self.tcb.tee,
                self.tcb.snp,
                self.tcb.microcode,
            ),
        }
    }
}

/// The software PSP, bound to the VMPCK of one requester VMPL (VMPCK0 for the SVSM module).
pub struct SimPsp {
    config: LaunchConfig,
    chain: Arc<TestChain>,
    /// The chip's secret from which VCEK-rooted keys derive; differs per simulated chip.
    chip_secret: [u8; 48],
    /// The VM root key secret (VMRK-rooted keys).
    vmrk_secret: [u8; 48],
    requester: Vmpl,
    report_id: [u8; 32],
    /// Whether the host supplies certificates with extended reports.
    pub serve_certificates: bool,
    /// How many requests this PSP answered (report + key).
    pub requests: u64,
}

impl SimPsp {
    /// A PSP for a chip identified by `chip_seed`, launched with `config`, answering requests
    /// sent with VMPCK`requester`.
    pub fn new(
        config: LaunchConfig,
        chip_seed: [u8; 48],
        requester: Vmpl,
    ) -> Result<Self, super::chain::ChainError> {
        // Building a chain costs three RSA-4096 signatures; machines that reboot reuse theirs.
        type Cache = Vec<((VcekIdentity, [u8; 48]), Arc<TestChain>)>;
        static CHAINS: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
        let key = (config.identity(), chip_seed);
        let mut chains = CHAINS.lock().unwrap_or_else(|p| p.into_inner());
        let chain = match chains.iter().find(|(k, _)| *k == key) {
            Some((_, chain)) => chain.clone(),
            None => {
                let chain = Arc::new(TestChain::new(&key.0, &chip_seed)?);
                chains.push((key, chain.clone()));
                chain
            }
        };
        Ok(Self::with_chain(config, chip_seed, requester, chain))
    }

    /// Another PSP on the same chip (same chain and secrets), e.g. for another VMPCK or launch.
    pub fn with_chain(
        config: LaunchConfig,
        chip_seed: [u8; 48],
        requester: Vmpl,
        chain: Arc<TestChain>,
    ) -> Self {
        let derive = |label: &[u8]| -> [u8; 48] {
            let mut mac = hmac384(&chip_seed);
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        SimPsp {
            report_id: derive(b"report-id")[..32].try_into().unwrap_or([0; 32]),
            chip_secret: derive(b"chip-secret"),
            vmrk_secret: derive(b"vmrk"),
            config,
            chain,
            requester,
            serve_certificates: true,
            requests: 0,
        }
    }

    /// The chain (ARK, ASK, VCEK DER).
    pub fn chain(&self) -> &Arc<TestChain> {
        &self.chain
    }

    /// The launch configuration.
    pub fn config(&self) -> &LaunchConfig {
        &self.config
    }

    /// Builds and signs a report.
    pub fn sign_report(&self, report_data: &[u8; 64], vmpl: u32) -> RawReport {
        let c = &self.config;
        let tcb = c.tcb_version();
        let (fam, model, step) = c.cpuid();
        let mut r = RawReport::new_zeroed();
        r.version = U32::new(c.report_version.number());
        r.guest_svn = U32::new(c.guest_svn);
        r.policy = U64::new(c.policy);
        r.family_id = c.family_id;
        r.image_id = c.image_id;
        r.vmpl = U32::new(vmpl);
        r.signature_algo = U32::new(1);
        r.current_tcb = tcb;
        r.platform_info = U64::new(c.platform_info);
        r.key_info = U32::new(0); // signed by the VCEK
        r.report_data = *report_data;
        r.measurement = c.measurement;
        r.host_data = c.host_data;
        r.report_id = self.report_id;
        r.report_id_ma = [0xFF; 32];
        r.reported_tcb = tcb;
        if c.report_version >= ReportVersion::V3 {
            (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) = (fam, model, step);
        }
        r.chip_id = c.chip_id;
        r.committed_tcb = tcb;
        (r.current_major, r.current_minor, r.current_build) = (1, 55, 40);
        (r.committed_major, r.committed_minor, r.committed_build) = (1, 55, 40);
        r.launch_tcb = tcb;
        if c.report_version >= ReportVersion::V5 {
            r.launch_mit_vector = U64::new(c.launch_mit_vector);
            r.current_mit_vector = U64::new(c.launch_mit_vector);
        }
        let signed = &zerocopy::IntoBytes::as_bytes(&r)[..svsm_abi::snp::report::SIGNED_LEN];
        let sig: p384::ecdsa::Signature = self.chain.vcek_key.sign(signed);
        let (rb, sb) = sig.split_bytes();
        r.signature = EcdsaSignature::from_be_components(&rb.into(), &sb.into());
        r
    }

    fn check_vmpl(&self, vmpl: u32) -> Result<(), PspError> {
        if vmpl > 3 || vmpl < u32::from(self.requester.level()) {
            return Err(PspError::Refused(STATUS_INVALID_PARAMS));
        }
        Ok(())
    }
}

fn hmac384(key: &[u8]) -> Hmac<Sha384> {
    Hmac::<Sha384>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

impl SecureProcessor for SimPsp {
    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
        vmpl: Vmpl,
    ) -> Result<RawReport, PspError> {
        self.requests += 1;
        self.check_vmpl(u32::from(vmpl.level()))?;
        Ok(self.sign_report(report_data, u32::from(vmpl.level())))
    }

    fn certificates(&mut self) -> Result<Vec<u8>, PspError> {
        if !self.serve_certificates {
            return Ok(vec![0; 24]);
        }
        let certs: [(CertKind, &[u8]); 3] = [
            (CertKind::Vcek, &self.chain.vcek_der),
            (CertKind::Ask, &self.chain.ask_der),
            (CertKind::Ark, &self.chain.ark_der),
        ];
        let len = cert_table_len(&certs).ok_or(PspError::BadReply)?;
        let mut table = vec![0u8; len];
        write_cert_table(&certs, &mut table).map_err(|_| PspError::BadReply)?;
        Ok(table)
    }

    fn derived_key(&mut self, request: &KeyRequest) -> Result<DerivedKey, PspError> {
        self.requests += 1;
        let raw = zerocopy::IntoBytes::as_bytes(request);
        let request =
            KeyRequest::parse(raw).map_err(|_| PspError::Refused(STATUS_INVALID_PARAMS))?;
        self.check_vmpl(request.vmpl.get())?;
        if (request.key_select.get() >> 1) & 3 == 2 {
            return Err(PspError::Refused(STATUS_INVALID_KEY)); // no VLEK installed
        }
        if request.guest_svn.get() > self.config.guest_svn {
            return Err(PspError::Refused(STATUS_INVALID_PARAMS));
        }
        let fields = request.fields();
        let layout = self.config.product.tcb_layout();
        // The TCB mixed in may not be newer than the committed TCB, component by component.
        if fields.contains(GuestFieldSelect::TCB_VERSION)
            && self
                .config
                .tcb
                .at_least(&request.tcb_version.decode(layout))
                != Some(true)
        {
            return Err(PspError::Refused(STATUS_INVALID_PARAMS));
        }
        let root = match request.root_key() {
            RootKey::Vcek => &self.chip_secret,
            RootKey::Vmrk => &self.vmrk_secret,
        };
        let mut mac = hmac384(root);
        mac.update(b"svsm-sim MSG_KEY_REQ v1");
        mac.update(&request.vmpl.get().to_le_bytes());
        mac.update(&fields.bits().to_le_bytes());
        let c = &self.config;
        if fields.contains(GuestFieldSelect::POLICY) {
            mac.update(&c.policy.to_le_bytes());
        }
        if fields.contains(GuestFieldSelect::IMAGE_ID) {
            mac.update(&c.image_id);
        }
        if fields.contains(GuestFieldSelect::FAMILY_ID) {
            mac.update(&c.family_id);
        }
        if fields.contains(GuestFieldSelect::MEASUREMENT) {
            mac.update(&c.measurement);
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
        key.copy_from_slice(&out[..32]);
        Ok(DerivedKey(key))
    }
}
