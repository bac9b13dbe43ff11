//! Attestation protocol client: a nonce in, the VMPL0 report, the services manifest and the
//! host's certificates out (the shape configfs-tsm gives user space).
//!
//! Buffer layout inside the transport's buffer: the request at offset 8 (unaligned, as Linux
//! places it in the calling area), the nonce at 0x100, the report on page 1, then the manifest
//! and the certificates in the remaining pages, split as the SVSM's reported sizes require.

use crate::transport::{call, DriverError, SvsmTransport};
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::attest::{AttestServicesRequest, AttestSingleServiceRequest};
use svsm_abi::snp::REPORT_SIZE;
use svsm_abi::svsm::{attest_call, CallId, CallRegisters, ResultCode, PROTOCOL_ATTEST};
use svsm_abi::Guid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

const REQUEST_OFFSET: usize = 8;
const NONCE_OFFSET: usize = 0x100;
const REPORT_OFFSET: usize = 0x1000;
const DATA_OFFSET: usize = 0x2000;

/// What an attestation call returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The ATTESTATION_REPORT (1184 bytes).
    pub report: Vec<u8>,
    /// The services manifest (or the single service's manifest).
    pub manifest: Vec<u8>,
    /// The certificate table (empty when the host supplied none or none was asked for).
    pub certs: Vec<u8>,
}

/// Which manifest to attest.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// SVSM_ATTEST_SERVICES.
    AllServices,
    /// SVSM_ATTEST_SINGLE_SERVICE for (GUID, manifest version).
    SingleService(Guid, u32),
}

/// Requests attestation evidence bound to `nonce` (at most 0xFFFF bytes and the room before the
/// report page). `want_certs` asks for the host's certificate table.
pub fn attest<T: SvsmTransport + ?Sized>(
    transport: &mut T,
    scope: Scope,
    nonce: &[u8],
    want_certs: bool,
) -> Result<Evidence, DriverError> {
    let nonce_room = REPORT_OFFSET - NONCE_OFFSET;
    if nonce.len() > nonce_room || u16::try_from(nonce.len()).is_err() {
        return Err(DriverError::BufferTooSmall {
            needed: nonce.len(),
            available: nonce_room,
        });
    }
    let base = transport.buffer_gpa();
    let data_room =
        transport
            .buffer_len()
            .checked_sub(DATA_OFFSET)
            .ok_or(DriverError::BufferTooSmall {
                needed: DATA_OFFSET,
                available: transport.buffer_len(),
            })?;
    transport.write_buffer(NONCE_OFFSET, nonce)?;

    // First try: split the data area evenly; then retry once with the sizes the SVSM reported.
    let mut manifest_room = if want_certs { data_room / 2 } else { data_room };
    for _ in 0..2 {
        let certs_room = if want_certs {
            data_room - manifest_room
        } else {
            0
        };
        let request = AttestServicesRequest {
            report_gpa: U64::new(base + REPORT_OFFSET as u64),
            report_size: U32::new(REPORT_SIZE as u32),
            nonce_gpa: U64::new(base + NONCE_OFFSET as u64),
            nonce_size: U16::new(nonce.len() as u16),
            manifest_gpa: U64::new(base + DATA_OFFSET as u64),
            manifest_size: U32::new(manifest_room as u32),
            certs_gpa: U64::new(base + (DATA_OFFSET + manifest_room) as u64),
            certs_size: U32::new(certs_room as u32),
            ..Default::default()
        };
        let call_id = match scope {
            Scope::AllServices => {
                transport.write_buffer(REQUEST_OFFSET, request.as_bytes())?;
                attest_call::ATTEST_SERVICES
            }
            Scope::SingleService(guid, version) => {
                let single = AttestSingleServiceRequest {
                    base: request,
                    service_guid: guid,
                    manifest_version: U32::new(version),
                    reserved: [0; 4],
                };
                transport.write_buffer(REQUEST_OFFSET, single.as_bytes())?;
                attest_call::ATTEST_SINGLE_SERVICE
            }
        };
        let regs = CallRegisters {
            rax: CallId {
                protocol: PROTOCOL_ATTEST,
                call: call_id,
            }
            .to_rax(),
            rcx: base + REQUEST_OFFSET as u64,
            // Preset like Linux so an unchanged register means "no size reported".
            rdx: u64::MAX,
            r8: u64::MAX,
            ..Default::default()
        };
        let (code, out) = call(transport, regs)?;
        let manifest_len =
            usize::try_from(out.rcx).map_err(|_| DriverError::BadSize("manifest"))?;
        let certs_len =
            usize::try_from(out.rdx).map_err(|_| DriverError::BadSize("certificate"))?;
        let report_len = usize::try_from(out.r8).map_err(|_| DriverError::BadSize("report"))?;
        match code {
            ResultCode::Success => {
                if report_len != REPORT_SIZE {
                    return Err(DriverError::BadSize("report"));
                }
                if manifest_len > manifest_room || (certs_len > certs_room) {
                    return Err(DriverError::BadSize("manifest/certificate"));
                }
                let mut report = vec![0u8; REPORT_SIZE];
                transport.read_buffer(REPORT_OFFSET, &mut report)?;
                let mut manifest = vec![0u8; manifest_len];
                transport.read_buffer(DATA_OFFSET, &mut manifest)?;
                let mut certs = vec![0u8; if want_certs { certs_len } else { 0 }];
                transport.read_buffer(DATA_OFFSET + manifest_room, &mut certs)?;
                return Ok(Evidence {
                    report,
                    manifest,
                    certs,
                });
            }
            ResultCode::InvalidParameter if out.rdx != u64::MAX && out.r8 != u64::MAX => {
                // Buffers too small: the SVSM told us what it needs.
                let needed = manifest_len.saturating_add(if want_certs { certs_len } else { 0 });
                if needed > data_room || report_len != REPORT_SIZE {
                    return Err(DriverError::BufferTooSmall {
                        needed,
                        available: data_room,
                    });
                }
                manifest_room = if want_certs {
                    data_room - certs_len
                } else {
                    data_room
                };
            }
            other => return Err(DriverError::Svsm(other)),
        }
    }
    Err(DriverError::BufferTooSmall {
        needed: data_room + 1,
        available: data_room,
    })
}
