//! The decoded report, as it appears in the appraisal (EAR attester claims) and in `--json`.
//! Everything is read through `svsm-abi`'s version-aware [`AttestationReport`].

use crate::policy::platform_info_names;
use serde::Serialize;
use svsm_abi::snp::{AttestationReport, Product, SigningKey, TcbLayout, TcbVersion};

/// A decoded TCB_VERSION.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecodedTcb {
    /// The 8 bytes as a little-endian u64, hex (display only).
    pub raw: String,
    /// FMC SPL (Turin layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// TEE SPL.
    pub tee: u8,
    /// SNP SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl DecodedTcb {
    fn new(t: TcbVersion, layout: TcbLayout) -> Self {
        let c = t.decode(layout);
        DecodedTcb {
            raw: format!("{:#018x}", t.raw()),
            fmc: c.fmc,
            bootloader: c.bootloader,
            tee: c.tee,
            snp: c.snp,
            microcode: c.microcode,
        }
    }
}

/// Every field of the report, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecodedReport {
    /// VERSION.
    pub version: u32,
    /// Product, when known.
    pub product: Option<String>,
    /// TCB layout used for the TCB fields below.
    pub tcb_layout: &'static str,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY, hex.
    pub policy: String,
    /// Guest policy ABI major.minor.
    pub policy_abi: String,
    /// Guest policy flags set.
    pub policy_flags: Vec<String>,
    /// FAMILY_ID.
    pub family_id: String,
    /// IMAGE_ID.
    pub image_id: String,
    /// VMPL.
    pub vmpl: u32,
    /// SIGNATURE_ALGO.
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: DecodedTcb,
    /// PLATFORM_INFO, hex.
    pub platform_info: String,
    /// PLATFORM_INFO bit names (unknown bits as `bitN`).
    pub platform_info_bits: Vec<String>,
    /// KEY_INFO, hex.
    pub key_info: String,
    /// Signer from KEY_INFO.
    pub signing_key: String,
    /// AUTHOR_KEY_EN.
    pub author_key_en: bool,
    /// REPORT_DATA.
    pub report_data: String,
    /// MEASUREMENT.
    pub measurement: String,
    /// HOST_DATA.
    pub host_data: String,
    /// ID_KEY_DIGEST.
    pub id_key_digest: String,
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: String,
    /// REPORT_ID.
    pub report_id: String,
    /// REPORT_ID_MA.
    pub report_id_ma: String,
    /// REPORTED_TCB.
    pub reported_tcb: DecodedTcb,
    /// CPUID family/model/stepping (v3+), hex.
    pub cpuid: Option<String>,
    /// CHIP_ID.
    pub chip_id: String,
    /// COMMITTED_TCB.
    pub committed_tcb: DecodedTcb,
    /// Current firmware major.minor.build.
    pub current_firmware: String,
    /// Committed firmware major.minor.build.
    pub committed_firmware: String,
    /// LAUNCH_TCB.
    pub launch_tcb: DecodedTcb,
    /// LAUNCH_MIT_VECTOR (v5), hex.
    pub launch_mit_vector: Option<String>,
    /// CURRENT_MIT_VECTOR (v5), hex.
    pub current_mit_vector: Option<String>,
}

/// The signer name used in output.
pub fn signing_key_name(k: SigningKey) -> String {
    match k {
        SigningKey::Vcek => "VCEK".into(),
        SigningKey::Vlek => "VLEK".into(),
        SigningKey::None => "none".into(),
        SigningKey::Reserved(v) => format!("reserved({v})"),
    }
}

impl DecodedReport {
    /// Decodes `r`; TCBs use the product's layout (Milan/Genoa when the product is unknown).
    pub fn new(r: &AttestationReport<'_>, product: Option<Product>) -> Self {
        let raw = r.raw();
        let layout = product.map_or(TcbLayout::MilanGenoa, Product::tcb_layout);
        let policy = r.policy();
        let flag_names = [
            (16, "SMT"),
            (17, "RESERVED_MBO"),
            (18, "MIGRATE_MA"),
            (19, "DEBUG"),
            (20, "SINGLE_SOCKET"),
            (21, "CXL_ALLOW"),
            (22, "MEM_AES_256_XTS"),
            (23, "RAPL_DIS"),
            (24, "CIPHERTEXT_HIDING"),
            (25, "PAGE_SWAP_DISABLE"),
        ];
        let mut policy_flags: Vec<String> = flag_names
            .iter()
            .filter(|(bit, _)| policy.0 & (1u64 << bit) != 0)
            .map(|(_, n)| (*n).to_owned())
            .collect();
        if policy.unknown_bits() != 0 {
            policy_flags.push(format!("unknown({:#x})", policy.unknown_bits()));
        }
        let ki = r.key_info();
        DecodedReport {
            version: r.version().number(),
            product: product.map(|p| p.kds_name().to_owned()),
            tcb_layout: match layout {
                TcbLayout::MilanGenoa => "Milan/Genoa",
                TcbLayout::Turin => "Turin",
            },
            guest_svn: r.guest_svn(),
            policy: format!("{:#x}", policy.0),
            policy_abi: format!("{}.{}", policy.abi_major(), policy.abi_minor()),
            policy_flags,
            family_id: hex::encode(raw.family_id),
            image_id: hex::encode(raw.image_id),
            vmpl: r.vmpl(),
            signature_algo: raw.signature_algo.get(),
            current_tcb: DecodedTcb::new(raw.current_tcb, layout),
            platform_info: format!("{:#x}", r.platform_info().bits()),
            platform_info_bits: platform_info_names(r.platform_info()),
            key_info: format!("{:#x}", ki.0),
            signing_key: signing_key_name(ki.signing_key()),
            author_key_en: ki.author_key_en(),
            report_data: hex::encode(raw.report_data),
            measurement: hex::encode(raw.measurement),
            host_data: hex::encode(raw.host_data),
            id_key_digest: hex::encode(raw.id_key_digest),
            author_key_digest: hex::encode(raw.author_key_digest),
            report_id: hex::encode(raw.report_id),
            report_id_ma: hex::encode(raw.report_id_ma),
            reported_tcb: DecodedTcb::new(raw.reported_tcb, layout),
            cpuid: r
                .cpuid()
                .map(|(f, m, s)| format!("{f:02x}/{m:02x}/{s:02x}")),
            chip_id: hex::encode(raw.chip_id),
            committed_tcb: DecodedTcb::new(raw.committed_tcb, layout),
            current_firmware: format!(
                "{}.{}.{}",
                raw.current_major, raw.current_minor, raw.current_build
            ),
            committed_firmware: format!(
                "{}.{}.{}",
                raw.committed_major, raw.committed_minor, raw.committed_build
            ),
            launch_tcb: DecodedTcb::new(raw.launch_tcb, layout),
            launch_mit_vector: r.mit_vectors().map(|(l, _)| format!("{l:#x}")),
            current_mit_vector: r.mit_vectors().map(|(_, c)| format!("{c:#x}")),
        }
    }
}
