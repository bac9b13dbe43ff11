//! The Azure "HCL report" (vTPM NV index 0x01400001): a 32-byte header, the hardware report in a
//! fixed 1184-byte slot, a 20-byte IGVM request-data header and the variable data (the UTF-8
//! JSON "runtime claims"), zero-padded to the NV size. Layout: kinvolk azure-cvm-tooling
//! `az-cvm-vtpm/src/hcl/mod.rs` (checked on the three real vectors). Every integer is little-endian. Parsing is bounds-checked and every inconsistent field is
//! a typed [`HclError`]; the padding after `report_size` is not read.

use sha2::{Digest, Sha256};

/// `signature` of the header: ASCII "HCLA".
pub const HCL_MAGIC: [u8; 4] = *b"HCLA";
/// Size of the HCL header; the hardware report follows it.
pub const HEADER_SIZE: usize = 0x20;
/// Size of the hardware-report slot (an SNP ATTESTATION_REPORT).
pub const HW_REPORT_SIZE: usize = svsm_abi::snp::REPORT_SIZE;
/// Offset of the IGVM request-data header.
pub const DATA_OFFSET: usize = HEADER_SIZE + HW_REPORT_SIZE;
/// Size of the IGVM request-data header (data_size, version, report_type, hash_type, var size).
pub const DATA_HEADER_SIZE: usize = 0x14;
/// Offset of the variable data (runtime-claims JSON).
pub const VAR_DATA_OFFSET: usize = DATA_OFFSET + DATA_HEADER_SIZE;
/// HCL header versions this parser knows (1: Milan vectors, 2: Genoa vector; same layout).
pub const HEADER_VERSIONS: [u32; 2] = [1, 2];
/// The only IGVM request-data version seen.
pub const DATA_VERSION: u32 = 1;
/// `report_type` of an SNP report.
pub const REPORT_TYPE_SNP: u32 = 2;
/// `report_type` of a TDX report.
pub const REPORT_TYPE_TDX: u32 = 4;

/// The hash named by `report_data_hash_type`: how REPORT_DATA binds the variable data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum HclHashType {
    /// 1: SHA-256 (the only one observed).
    Sha256,
    /// 2: SHA-384.
    Sha384,
    /// 3: SHA-512.
    Sha512,
}

impl HclHashType {
    /// From the wire value.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(HclHashType::Sha256),
            2 => Some(HclHashType::Sha384),
            3 => Some(HclHashType::Sha512),
            _ => None,
        }
    }

    /// The name in output.
    pub fn name(self) -> &'static str {
        match self {
            HclHashType::Sha256 => "SHA-256",
            HclHashType::Sha384 => "SHA-384",
            HclHashType::Sha512 => "SHA-512",
        }
    }
}

/// Why bytes are not an HCL report this verifier reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HclError {
    /// The input ends before `what`.
    #[error("HCL report truncated: {what} needs {need} bytes, {have} supplied")]
    Truncated {
        /// The part that does not fit.
        what: &'static str,
        /// Bytes needed from the start of the blob.
        need: usize,
        /// Bytes supplied.
        have: usize,
    },
    /// The header does not start with "HCLA".
    #[error("HCL report signature is {} ({:?}), expected 48434c41 (\"HCLA\")", hex::encode(.0), String::from_utf8_lossy(.0))]
    Magic([u8; 4]),
    /// A header version this parser does not know.
    #[error("HCL header version {0} is not supported (known: 1, 2)")]
    HeaderVersion(u32),
    /// The HCL reports a failed request.
    #[error("HCL status is {0:#x}, not 0 (success)")]
    Status(u32),
    /// The 12 reserved header bytes are not zero.
    #[error("HCL header reserved bytes 0x14..0x20 are not zero: {0}")]
    Reserved(String),
    /// The IGVM request-data version is not 1.
    #[error("IGVM request data version {0} is not supported (known: 1)")]
    DataVersion(u32),
    /// The hardware report is a TDX report.
    #[error("HCL report_type 4 is a TDX report; only SEV-SNP (2) is appraised")]
    TdxReport,
    /// An unknown report type.
    #[error("HCL report_type {0} is unknown (2 = SEV-SNP, 4 = TDX)")]
    ReportType(u32),
    /// An unknown REPORT_DATA hash type.
    #[error("HCL report_data_hash_type {0} is unknown (1 SHA-256, 2 SHA-384, 3 SHA-512)")]
    UnknownHashType(u32),
    /// `data_size` is not the request-data header plus `variable_data_size`.
    #[error("IGVM data_size {data_size} != 0x14 + variable_data_size {var_size}")]
    DataSize {
        /// data_size.
        data_size: u32,
        /// variable_data_size.
        var_size: u32,
    },
    /// `report_size` is not header + report + request data.
    #[error("HCL report_size {report_size} != 0x20 + 0x4A0 + data_size = {expected}")]
    ReportSize {
        /// report_size.
        report_size: u32,
        /// What data_size implies.
        expected: u64,
    },
}

/// A parsed HCL report. The slices borrow the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HclReport<'a> {
    /// Header version (1 or 2).
    pub header_version: u32,
    /// Meaningful bytes (header + report + request data).
    pub report_size: u32,
    /// Request type (2 in every vector); not interpreted.
    pub request_type: u32,
    /// The 1184-byte hardware report (SNP ATTESTATION_REPORT).
    pub hw_report: &'a [u8],
    /// Request-data size (0x14 + variable data).
    pub data_size: u32,
    /// Request-data version (1).
    pub data_version: u32,
    /// Report type (2, SNP).
    pub report_type: u32,
    /// How REPORT_DATA binds the variable data.
    pub hash_type: HclHashType,
    /// The variable data: the runtime-claims JSON, exactly as hashed.
    pub var_data: &'a [u8],
}

fn le32(bytes: &[u8], off: usize) -> u32 {
    // Callers check the length first; a short read yields 0 rather than a panic.
    bytes
        .get(off..off + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

fn need(bytes: &[u8], what: &'static str, need: usize) -> Result<(), HclError> {
    if bytes.len() < need {
        return Err(HclError::Truncated {
            what,
            need,
            have: bytes.len(),
        });
    }
    Ok(())
}

impl<'a> HclReport<'a> {
    /// Parses an HCL report blob (trailing padding allowed and ignored).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, HclError> {
        need(bytes, "the header", HEADER_SIZE)?;
        let mut magic = [0u8; 4];
        magic.copy_from_slice(bytes.get(..4).unwrap_or(&[0; 4]));
        if magic != HCL_MAGIC {
            return Err(HclError::Magic(magic));
        }
        let header_version = le32(bytes, 0x04);
        if !HEADER_VERSIONS.contains(&header_version) {
            return Err(HclError::HeaderVersion(header_version));
        }
        let report_size = le32(bytes, 0x08);
        let request_type = le32(bytes, 0x0C);
        let status = le32(bytes, 0x10);
        if status != 0 {
            return Err(HclError::Status(status));
        }
        let reserved = bytes.get(0x14..HEADER_SIZE).unwrap_or(&[]);
        if reserved.iter().any(|&b| b != 0) {
            return Err(HclError::Reserved(hex::encode(reserved)));
        }
        need(
            bytes,
            "the hardware report and request-data header",
            VAR_DATA_OFFSET,
        )?;
        let hw_report = bytes.get(HEADER_SIZE..DATA_OFFSET).unwrap_or(&[]);
        let data_size = le32(bytes, DATA_OFFSET);
        let data_version = le32(bytes, DATA_OFFSET + 4);
        let report_type = le32(bytes, DATA_OFFSET + 8);
        let hash_raw = le32(bytes, DATA_OFFSET + 12);
        let var_size = le32(bytes, DATA_OFFSET + 16);
        if data_version != DATA_VERSION {
            return Err(HclError::DataVersion(data_version));
        }
        match report_type {
            REPORT_TYPE_SNP => {}
            REPORT_TYPE_TDX => return Err(HclError::TdxReport),
            other => return Err(HclError::ReportType(other)),
        }
        let hash_type =
            HclHashType::from_u32(hash_raw).ok_or(HclError::UnknownHashType(hash_raw))?;
        // u64 arithmetic: no overflow on any platform.
        if u64::from(data_size) != DATA_HEADER_SIZE as u64 + u64::from(var_size) {
            return Err(HclError::DataSize {
                data_size,
                var_size,
            });
        }
        let expected = DATA_OFFSET as u64 + u64::from(data_size);
        if u64::from(report_size) != expected {
            return Err(HclError::ReportSize {
                report_size,
                expected,
            });
        }
        let end = usize::try_from(expected).unwrap_or(usize::MAX);
        need(bytes, "the variable data (report_size)", end)?;
        let var_data = bytes.get(VAR_DATA_OFFSET..end).unwrap_or(&[]);
        Ok(HclReport {
            header_version,
            report_size,
            request_type,
            hw_report,
            data_size,
            data_version,
            report_type,
            hash_type,
            var_data,
        })
    }

    /// SHA-256 of the variable data, exactly as stored.
    pub fn var_data_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.var_data).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(var: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; VAR_DATA_OFFSET];
        b[..4].copy_from_slice(b"HCLA");
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        let data_size = (DATA_HEADER_SIZE + var.len()) as u32;
        b[8..12].copy_from_slice(&(DATA_OFFSET as u32 + data_size).to_le_bytes());
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        b[DATA_OFFSET..DATA_OFFSET + 4].copy_from_slice(&data_size.to_le_bytes());
        b[DATA_OFFSET + 4..DATA_OFFSET + 8].copy_from_slice(&1u32.to_le_bytes());
        b[DATA_OFFSET + 8..DATA_OFFSET + 12].copy_from_slice(&2u32.to_le_bytes());
        b[DATA_OFFSET + 12..DATA_OFFSET + 16].copy_from_slice(&1u32.to_le_bytes());
        b[DATA_OFFSET + 16..DATA_OFFSET + 20].copy_from_slice(&(var.len() as u32).to_le_bytes());
        b.extend_from_slice(var);
        b
    }

    #[test]
    fn parses_minimal_and_padding() {
        let mut b = minimal(b"{}");
        let h = HclReport::parse(&b).unwrap();
        assert_eq!(h.var_data, b"{}");
        assert_eq!(h.hw_report.len(), HW_REPORT_SIZE);
        b.extend_from_slice(&[0xAA; 100]);
        assert_eq!(HclReport::parse(&b).unwrap().var_data, b"{}");
    }

    #[test]
    fn every_prefix_is_an_error_not_a_panic() {
        let b = minimal(b"{\"keys\":[]}");
        for n in 0..b.len() {
            assert!(
                matches!(HclReport::parse(&b[..n]), Err(HclError::Truncated { .. })),
                "{n}"
            );
        }
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let mut b = minimal(b"");
        b[DATA_OFFSET + 16..DATA_OFFSET + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        b[DATA_OFFSET..DATA_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            HclReport::parse(&b),
            Err(HclError::DataSize { .. })
        ));
        let mut b = minimal(b"");
        b[DATA_OFFSET + 16..DATA_OFFSET + 20].copy_from_slice(&0xFFFF_FFEBu32.to_le_bytes());
        b[DATA_OFFSET..DATA_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            HclReport::parse(&b),
            Err(HclError::ReportSize { .. })
        ));
    }
}
