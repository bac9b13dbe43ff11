//! Reading the real SEV-SNP evidence in the repository's `vectors/snp/` and decoding its reports with
//! `svsm-abi`. Used by `svsm-sim vectors` and `svsm-sim inspect`.

use serde::Serialize;
use std::path::{Path, PathBuf};
use svsm_abi::snp::{AttestationReport, ReportError, SigningKey, REPORT_SIZE};

/// Where the vectors live: `$SVSM_VECTORS`, else the repository's `vectors/`.
pub fn default_vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SVSM_VECTORS") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    dir.canonicalize().unwrap_or(dir)
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a report.
    #[error("{path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: ReportError,
    },
    /// An HCL blob too short to hold a report.
    #[error("{0}: not an Azure HCL report (too short or no HCLA signature)")]
    NotHcl(PathBuf),
    /// A vectors folder without a single report.
    #[error("{0}: no */report.bin or azure-*/hcl-report.bin (set SVSM_VECTORS or --vectors)")]
    NoReports(PathBuf),
}

/// The decoded facts of one report, as printed by the demo.
#[derive(Debug, Serialize)]
pub struct ReportSummary {
    /// File the report came from.
    pub source: String,
    /// VERSION.
    pub version: u32,
    /// Product from CPUID (v3+), if known.
    pub product: Option<&'static str>,
    /// Signing key kind.
    pub signing_key: String,
    /// VMPL.
    pub vmpl: u32,
    /// Guest policy.
    pub policy: String,
    /// Whether the policy lets the host debug the guest.
    pub debug_allowed: bool,
    /// PLATFORM_INFO.
    pub platform_info: String,
    /// Unnamed PLATFORM_INFO bits that are set.
    pub platform_info_unknown_bits: String,
    /// Launch measurement.
    pub measurement: String,
    /// REPORTED_TCB as raw little-endian u64.
    pub reported_tcb: String,
    /// REPORTED_TCB decoded with the product's layout, when the product is known.
    pub reported_tcb_decoded: Option<String>,
    /// First 8 bytes of CHIP_ID.
    pub chip_id_prefix: String,
    /// Whether every must-be-zero field is zero.
    pub reserved_fields: String,
}

/// Reads a report from `path`; `hcl` files carry it at offset 0x20.
pub fn load_report(path: &Path) -> Result<Vec<u8>, InspectError> {
    let bytes = std::fs::read(path).map_err(|source| InspectError::Io {
        path: path.to_owned(),
        source,
    })?;
    if bytes.starts_with(b"HCLA") {
        return bytes
            .get(0x20..0x20 + REPORT_SIZE)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| InspectError::NotHcl(path.to_owned()));
    }
    Ok(bytes)
}

/// Decodes a report into its summary.
pub fn summarize(path: &Path) -> Result<ReportSummary, InspectError> {
    let bytes = load_report(path)?;
    let report = AttestationReport::parse(&bytes).map_err(|source| InspectError::Report {
        path: path.to_owned(),
        source,
    })?;
    let raw = report.raw();
    let product = report.product();
    let signing_key = match report.key_info().signing_key() {
        SigningKey::Vcek => "VCEK".to_owned(),
        SigningKey::Vlek => "VLEK".to_owned(),
        SigningKey::None => "none (unsigned)".to_owned(),
        SigningKey::Reserved(v) => format!("reserved ({v})"),
    };
    let reported_tcb_decoded = product.map(|p| {
        let t = raw.reported_tcb.decode(p.tcb_layout());
        let fmc = t.fmc.map(|f| format!("fmc {f} ")).unwrap_or_default();
        format!(
            "{fmc}bl {} tee {} snp {} ucode {}",
            t.bootloader, t.tee, t.snp, t.microcode
        )
    });
    Ok(ReportSummary {
        source: path.display().to_string(),
        version: report.version().number(),
        product: product.map(|p| p.kds_name()),
        signing_key,
        vmpl: report.vmpl(),
        policy: format!("{:#x}", report.policy().0),
        debug_allowed: report.policy().debug_allowed(),
        platform_info: format!("{:#x}", report.platform_info().bits()),
        platform_info_unknown_bits: format!("{:#x}", report.platform_info().unknown_bits()),
        measurement: hex::encode(raw.measurement),
        reported_tcb: format!("{:#018x}", raw.reported_tcb.raw()),
        reported_tcb_decoded,
        chip_id_prefix: hex::encode(&raw.chip_id[..8]),
        reserved_fields: match report.check_reserved() {
            Ok(()) => "all zero".to_owned(),
            Err(e) => e.to_string(),
        },
    })
}

/// Every report in a vectors folder: `snp/*/report.bin` and `snp/azure-*/hcl-report.bin`; an
/// error when there is none.
pub fn vector_reports(vectors: &Path) -> Result<Vec<PathBuf>, InspectError> {
    let snp = vectors.join("snp");
    let entries = std::fs::read_dir(&snp).map_err(|source| InspectError::Io {
        path: snp.clone(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        for name in ["report.bin", "hcl-report.bin"] {
            let p = entry.path().join(name);
            if p.is_file() {
                found.push(p);
            }
        }
    }
    if found.is_empty() {
        return Err(InspectError::NoReports(snp));
    }
    found.sort();
    Ok(found)
}
