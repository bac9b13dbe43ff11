//! The NVIDIA Hopper attestation report as NVIDIA's tools hand it over: an SPDM 1.1
//! GET_MEASUREMENTS request followed by the MEASUREMENTS response (DMTF DSP0274 1.1 §10.11,
//! Tables 40-45), the measurement blocks in the DMTF measurement specification format
//! (DSP0274 §10.11.1, Table 45: DMTFSpecMeasurementValueType/Size/Value), and the response's
//! opaque data as NVIDIA's TLV list (u16 type, u16 length, little-endian). Every length is
//! checked against the bytes present; every failure names the field. The layout is the one of
//! `vectors/nvidia/hopperAttestationReport.txt` (docs/gpu.md).

use std::collections::BTreeMap;

/// SPDM version 1.1 (the version byte of request and response).
pub const SPDM_VERSION_11: u8 = 0x11;
/// GET_MEASUREMENTS request code.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// MEASUREMENTS response code.
pub const MEASUREMENTS: u8 = 0x60;
/// The request's length with a nonce and the SPDM 1.1 SlotIDParam.
pub const REQUEST_LEN: usize = 4 + NONCE_LEN + 1;
/// Nonce length (requester and responder).
pub const NONCE_LEN: usize = 32;
/// ECDSA P-384 signature r ‖ s.
pub const SIGNATURE_LEN: usize = 96;
/// Largest report accepted (a Hopper report is about 4 KiB).
pub const MAX_REPORT: usize = 64 * 1024;
/// Length of one Hopper measurement (SHA-384).
pub const MEASUREMENT_LEN: usize = 48;

/// Why a report does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpdmError {
    /// Larger than [`MAX_REPORT`].
    #[error("GPU report of {0} bytes exceeds {MAX_REPORT}")]
    TooLarge(usize),
    /// A field runs past the end.
    #[error("GPU report truncated in {field}: needs {needed} bytes at offset {offset}, {available} in all")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Its length.
        needed: usize,
        /// Where it starts.
        offset: usize,
        /// The report's length.
        available: usize,
    },
    /// A version byte is not SPDM 1.1.
    #[error("{field}: SPDM version {found:#04x}, expected 0x11")]
    Version {
        /// Request or response.
        field: &'static str,
        /// The byte.
        found: u8,
    },
    /// A request or response code is not GET_MEASUREMENTS / MEASUREMENTS.
    #[error("{field}: code {found:#04x}, expected {expected:#04x}")]
    Code {
        /// Request or response.
        field: &'static str,
        /// The byte.
        found: u8,
        /// The expected code.
        expected: u8,
    },
    /// The request did not ask for a signature: nothing in the response is signed.
    #[error("the GET_MEASUREMENTS request did not ask for a signature (param1 {0:#04x})")]
    Unsigned(u8),
    /// The blocks do not fill the record exactly, or their number is not the declared one.
    #[error("measurement record: {0}")]
    Record(&'static str),
    /// A block is not in the DMTF measurement specification format.
    #[error("measurement block {index}: {reason}")]
    Block {
        /// Its index.
        index: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// The opaque data is not a well-formed TLV list.
    #[error("opaque data: {0}")]
    Opaque(&'static str),
    /// Bytes after the signature.
    #[error("{0} bytes after the signature")]
    Trailing(usize),
}

/// One measurement block (DMTF format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementBlock<'a> {
    /// Index (1-based).
    pub index: u8,
    /// DMTFSpecMeasurementValueType.
    pub value_type: u8,
    /// The value.
    pub value: &'a [u8],
}

/// A parsed report. Nothing is verified: [`super::verify`] does that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuReport<'a> {
    /// The requester's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Measurement operation asked for (0xFF: all).
    pub operation: u8,
    /// The measurement blocks, in record order.
    pub blocks: Vec<MeasurementBlock<'a>>,
    /// The responder's nonce.
    pub responder_nonce: [u8; NONCE_LEN],
    /// The opaque data.
    pub opaque: &'a [u8],
    /// ECDSA P-384 r ‖ s.
    pub signature: &'a [u8; SIGNATURE_LEN],
    /// What the signature covers: request ‖ response without the signature (SPDM 1.1 L1).
    pub transcript: &'a [u8],
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], SpdmError> {
        let end = self.at.checked_add(n);
        let slice = end.and_then(|e| self.bytes.get(self.at..e));
        let slice = slice.ok_or(SpdmError::Truncated {
            field,
            needed: n,
            offset: self.at,
            available: self.bytes.len(),
        })?;
        self.at += n;
        Ok(slice)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, SpdmError> {
        Ok(self.take(1, field)?.first().copied().unwrap_or(0))
    }

    fn le(&mut self, n: usize, field: &'static str) -> Result<usize, SpdmError> {
        let b = self.take(n, field)?;
        Ok(b.iter()
            .rev()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte)))
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SpdmError> {
        let b = self.take(N, field)?;
        b.try_into().map_err(|_| SpdmError::Record("length"))
    }
}

impl<'a> GpuReport<'a> {
    /// Parses request ‖ response.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SpdmError> {
        if bytes.len() > MAX_REPORT {
            return Err(SpdmError::TooLarge(bytes.len()));
        }
        let mut c = Cursor { bytes, at: 0 };
        let version = c.u8("request.version")?;
        if version != SPDM_VERSION_11 {
            return Err(SpdmError::Version {
                field: "request",
                found: version,
            });
        }
        let code = c.u8("request.code")?;
        if code != GET_MEASUREMENTS {
            return Err(SpdmError::Code {
                field: "request",
                found: code,
                expected: GET_MEASUREMENTS,
            });
        }
        let param1 = c.u8("request.param1")?;
        if param1 & 1 == 0 {
            return Err(SpdmError::Unsigned(param1));
        }
        let operation = c.u8("request.param2")?;
        let nonce = c.array::<NONCE_LEN>("request.nonce")?;
        let _slot = c.u8("request.slot_id")?;

        let version = c.u8("response.version")?;
        if version != SPDM_VERSION_11 {
            return Err(SpdmError::Version {
                field: "response",
                found: version,
            });
        }
        let code = c.u8("response.code")?;
        if code != MEASUREMENTS {
            return Err(SpdmError::Code {
                field: "response",
                found: code,
                expected: MEASUREMENTS,
            });
        }
        let _param1 = c.u8("response.param1")?;
        let _param2 = c.u8("response.param2")?;
        let count = c.u8("response.number_of_blocks")?;
        let record_len = c.le(3, "response.measurement_record_length")?;
        let record = c.take(record_len, "response.measurement_record")?;
        let blocks = parse_blocks(record, count)?;
        let responder_nonce = c.array::<NONCE_LEN>("response.nonce")?;
        let opaque_len = c.le(2, "response.opaque_length")?;
        let opaque = c.take(opaque_len, "response.opaque_data")?;
        let signed_end = c.at;
        let signature = c
            .take(SIGNATURE_LEN, "response.signature")?
            .try_into()
            .map_err(|_| SpdmError::Record("signature"))?;
        if c.at != bytes.len() {
            return Err(SpdmError::Trailing(bytes.len() - c.at));
        }
        Ok(GpuReport {
            nonce,
            operation,
            blocks,
            responder_nonce,
            opaque,
            signature,
            transcript: bytes.get(..signed_end).unwrap_or(&[]),
        })
    }

    /// The opaque data's TLV fields (type, value), in order.
    pub fn opaque_fields(&self) -> Result<Vec<(u16, &'a [u8])>, SpdmError> {
        let mut c = Cursor {
            bytes: self.opaque,
            at: 0,
        };
        let mut out = Vec::new();
        while c.at < self.opaque.len() {
            let ty = c
                .le(2, "opaque.type")
                .map_err(|_| SpdmError::Opaque("truncated type"))?;
            let len = c
                .le(2, "opaque.length")
                .map_err(|_| SpdmError::Opaque("truncated length"))?;
            let value = c
                .take(len, "opaque.value")
                .map_err(|_| SpdmError::Opaque("a value runs past the end"))?;
            // Both fit: read from two bytes.
            out.push((ty as u16, value));
        }
        Ok(out)
    }
}

fn parse_blocks(record: &[u8], count: u8) -> Result<Vec<MeasurementBlock<'_>>, SpdmError> {
    let mut c = Cursor {
        bytes: record,
        at: 0,
    };
    let mut blocks = Vec::with_capacity(usize::from(count));
    let mut seen = [false; 256];
    while c.at < record.len() {
        let index = c.u8("block.index")?;
        let spec = c.u8("block.measurement_specification")?;
        let size = c.le(2, "block.measurement_size")?;
        let body = c.take(size, "block.measurement")?;
        if spec & 1 == 0 {
            return Err(SpdmError::Block {
                index,
                reason: "not in the DMTF measurement specification format",
            });
        }
        let mut b = Cursor { bytes: body, at: 0 };
        let value_type = b.u8("block.dmtf.type").map_err(|_| SpdmError::Block {
            index,
            reason: "no DMTF value type",
        })?;
        let value_size = b.le(2, "block.dmtf.size").map_err(|_| SpdmError::Block {
            index,
            reason: "no DMTF value size",
        })?;
        let value = b
            .take(value_size, "block.dmtf.value")
            .map_err(|_| SpdmError::Block {
                index,
                reason: "the value runs past the block",
            })?;
        if b.at != body.len() {
            return Err(SpdmError::Block {
                index,
                reason: "bytes after the DMTF value",
            });
        }
        let slot = seen
            .get_mut(usize::from(index))
            .ok_or(SpdmError::Record("index"))?;
        if *slot {
            return Err(SpdmError::Block {
                index,
                reason: "index appears twice",
            });
        }
        *slot = true;
        blocks.push(MeasurementBlock {
            index,
            value_type,
            value,
        });
    }
    if blocks.len() != usize::from(count) {
        return Err(SpdmError::Record(
            "the number of blocks is not NumberOfBlocks",
        ));
    }
    Ok(blocks)
}

/// NVIDIA opaque data field types (the ones this decoder names).
pub mod opaque {
    /// Driver version, NUL-terminated text.
    pub const DRIVER_VERSION: u16 = 3;
    /// GPU info, hex.
    pub const GPU_INFO: u16 = 4;
    /// VBIOS version, 8 bytes.
    pub const VBIOS_VERSION: u16 = 6;
    /// NVDEC0 status, one character.
    pub const NVDEC0_STATUS: u16 = 11;
    /// Measurement counts: u32 LE per index.
    pub const MSRSCNT: u16 = 12;
    /// CPR info, hex.
    pub const CPR_INFO: u16 = 13;
    /// Board id, hex.
    pub const BOARD_ID: u16 = 14;
    /// Chip SKU, text.
    pub const CHIP_SKU: u16 = 15;
    /// Chip SKU modifier, text.
    pub const CHIP_SKU_MOD: u16 = 16;
    /// Project, text.
    pub const PROJECT: u16 = 17;
    /// Project SKU, text.
    pub const PROJECT_SKU: u16 = 18;
    /// Project SKU modifier, hex.
    pub const PROJECT_SKU_MOD: u16 = 19;
    /// FWID (SHA-384), hex.
    pub const FWID: u16 = 20;
    /// Protected PCIe status, one character.
    pub const PROTECTED_PCIE_STATUS: u16 = 21;
}

/// The claims decoded from a report (what NVIDIA's verifier reports as `config` and
/// `measurements`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpuClaims {
    /// Opaque-data fields by claim name (`driver_version`, `vbios_version`, `fwid`, ...).
    pub config: BTreeMap<String, String>,
    /// Measurement counts by index (opaque MSRSCNT).
    pub measurement_count: BTreeMap<u32, u32>,
    /// Measurement values by index, hex.
    pub measurements: BTreeMap<u8, String>,
}

fn text(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(value.get(..end).unwrap_or(&[])).into_owned()
}

/// The VBIOS version as NVIDIA prints it: bytes 3, 2, 1, 0, 4 as two-digit hex, dotted.
fn vbios(value: &[u8]) -> Option<String> {
    let b = |i: usize| value.get(i).copied();
    Some(format!(
        "{:02x}.{:02x}.{:02x}.{:02x}.{:02x}",
        b(3)?,
        b(2)?,
        b(1)?,
        b(0)?,
        b(4)?
    ))
}

impl GpuReport<'_> {
    /// Decodes the claims (opaque fields and measurement values).
    pub fn claims(&self) -> Result<GpuClaims, SpdmError> {
        let mut claims = GpuClaims::default();
        for (ty, value) in self.opaque_fields()? {
            let (name, decoded) = match ty {
                opaque::DRIVER_VERSION => ("driver_version", text(value)),
                opaque::GPU_INFO => ("gpu_info", hex::encode(value)),
                opaque::VBIOS_VERSION => (
                    "vbios_version",
                    vbios(value).ok_or(SpdmError::Opaque("VBIOS version shorter than 5 bytes"))?,
                ),
                opaque::NVDEC0_STATUS => ("nvdec0_status", text(value)),
                opaque::CPR_INFO => ("cpr_info", hex::encode(value)),
                opaque::BOARD_ID => ("board_id", hex::encode(value)),
                opaque::CHIP_SKU => ("chip_sku", text(value)),
                opaque::CHIP_SKU_MOD => ("chip_sku_mod", text(value)),
                opaque::PROJECT => ("project", text(value)),
                opaque::PROJECT_SKU => ("project_sku", text(value)),
                opaque::PROJECT_SKU_MOD => ("project_sku_mod", hex::encode(value)),
                opaque::FWID => ("fwid", hex::encode(value)),
                opaque::PROTECTED_PCIE_STATUS => ("protected_pcie_status", text(value)),
                opaque::MSRSCNT => {
                    if value.len() % 4 != 0 {
                        return Err(SpdmError::Opaque("MSRSCNT is not a list of u32"));
                    }
                    for (i, n) in value.chunks_exact(4).enumerate() {
                        let n: [u8; 4] = n.try_into().unwrap_or_default();
                        claims
                            .measurement_count
                            .insert(i as u32 + 1, u32::from_le_bytes(n));
                    }
                    continue;
                }
                _ => continue,
            };
            claims.config.insert(name.to_owned(), decoded);
        }
        for b in &self.blocks {
            claims.measurements.insert(b.index, hex::encode(b.value));
        }
        Ok(claims)
    }

    /// The FWID the opaque data carries.
    pub fn fwid(&self) -> Result<Option<&[u8]>, SpdmError> {
        Ok(self
            .opaque_fields()?
            .into_iter()
            .find(|(t, _)| *t == opaque::FWID)
            .map(|(_, v)| v))
    }
}
