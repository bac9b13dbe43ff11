//! Gathering an evidence bundle (`svsm_evidence::Bundle`) as a guest does: a TPM2_Quote by the
//! SVSM's AK over every SHA-256 PCR with the relying party's nonce, the PCR values, then the
//! logs that explain them (the firmware's and IMA's, read after the quote so they cover at
//! least what it quotes), the SVSM's own event log, and last the VMPL0 SNP report over the vTPM
//! manifest (`SVSM_ATTEST_SINGLE_SERVICE`) bound to the same nonce.
//!
//! The TPM is reached through [`TpmDevice`]: the vTPM protocol ([`VtpmClient`]) or the
//! kernel's resource manager (`/dev/tpmrm0`, [`CharDevice`]) when Linux owns the TPM. Nothing
//! here is appraised: the verifier does that.

use crate::attest::{attest, Scope};
use crate::transport::{DriverError, SvsmTransport};
use crate::vault::{VaultClient, VaultClientError};
use crate::vtpm::VtpmClient;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use std::io::{Read, Write};
use svsm_abi::attest::{VTPM_MANIFEST_VERSION, VTPM_SERVICE_GUID};
use svsm_evidence::Bundle;
use svsm_tpm2::command::{
    parse_pcr_read, parse_quote, pcr_read_sha256, quote_sha256, response_code, ResponseError,
    TPM_RC_RETRY,
};
use svsm_tpm2::templates::AK_HANDLE;

/// Sends of one TPM command that keeps answering `TPM_RC_RETRY` before giving up.
pub const MAX_TPM_SENDS: usize = 5;
/// Largest TPM response read (TPM 2.0 commands svsm-vhsm sends answer in far less).
pub const TPM_RESPONSE_MAX: usize = 4096;
/// Every SHA-256 PCR (bits 0..23).
pub const ALL_PCRS: u32 = 0x00FF_FFFF;

/// Why evidence could not be gathered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// An SVSM call failed.
    #[error("SVSM call: {0}")]
    Driver(#[from] DriverError),
    /// A vault call failed.
    #[error("vault: {0}")]
    Vault(#[from] VaultClientError),
    /// The TPM device could not be used.
    #[error("TPM device: {0}")]
    TpmIo(std::io::Error),
    /// A TPM command could not be marshalled.
    #[error("TPM command {0} could not be marshalled")]
    Marshal(&'static str),
    /// A TPM command answered an error code.
    #[error("TPM command {command} failed with response code {rc:#x}")]
    TpmResponse {
        /// The command.
        command: &'static str,
        /// Its response code.
        rc: u32,
    },
    /// A TPM response could not be parsed.
    #[error("TPM command {command}: malformed response: {error}")]
    TpmMalformed {
        /// The command.
        command: &'static str,
        /// What was wrong.
        error: ResponseError,
    },
    /// PCR_Read stopped returning the PCRs asked for.
    #[error("TPM2_PCR_Read returned none of the PCRs still missing ({0:#08x})")]
    PcrReadStalled(u32),
    /// A log file could not be read.
    #[error("cannot read the {what} {path}: {error}")]
    Log {
        /// Which log.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A GPU report and chain cannot be packed (empty or too large).
    #[error("GPU evidence: {0}")]
    GpuEvidence(svsm_abi::gpu::GpuEvidenceError),
    /// A GPU report does not start with an SPDM 1.1 GET_MEASUREMENTS request.
    #[error("the GPU report does not start with an SPDM 1.1 GET_MEASUREMENTS request")]
    GpuNotSpdm,
    /// A GPU report was made for another request.
    #[error(
        "the GPU report carries nonce {found}, but this attestation needs {expected} (derived \
         from the relying party's nonce: ask the GPU for a report with it)"
    )]
    GpuNonce {
        /// The report's, hex.
        found: String,
        /// SHA-256("svsm-vhsm gpu-nonce v1" ‖ nonce), hex.
        expected: String,
    },
}

/// Packs a GPU's report (SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response) and its
/// certificate chain (PEM, leaf first) as the extra evidence of kind
/// [`svsm_abi::gpu::EXTRA_KIND_GPU`] that [`collect`] registers for the attestation answering
/// `rp_nonce`. Refuses a report whose requester nonce is not the one derived from `rp_nonce`
/// ([`svsm_abi::gpu::gpu_nonce`]): the verifier would refuse it as made for another request.
pub fn gpu_evidence(
    report: &[u8],
    chain_pem: &[u8],
    rp_nonce: &[u8],
) -> Result<Vec<u8>, EvidenceError> {
    use svsm_abi::gpu::{gpu_nonce, GpuEvidence, GPU_NONCE_LEN};
    use zerocopy::IntoBytes;
    // SPDM 1.1 GET_MEASUREMENTS (DSP0274 Table 40): version 0x11, code 0xE0, param1, param2,
    // then the 32-byte requester nonce.
    let found = match report {
        [0x11, 0xE0, _, _, rest @ ..] => {
            rest.get(..GPU_NONCE_LEN).ok_or(EvidenceError::GpuNotSpdm)?
        }
        _ => return Err(EvidenceError::GpuNotSpdm),
    };
    let expected = gpu_nonce(rp_nonce);
    if found != expected {
        return Err(EvidenceError::GpuNonce {
            found: hex::encode(found),
            expected: hex::encode(expected),
        });
    }
    let header = GpuEvidence::header(report, chain_pem).map_err(EvidenceError::GpuEvidence)?;
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(report);
    out.extend_from_slice(chain_pem);
    Ok(out)
}

/// Something that runs one TPM command and returns the response length.
pub trait TpmDevice {
    /// Sends `command`, writes the response into `response`, returns its length.
    fn transmit(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, EvidenceError>;
}

impl<T: SvsmTransport> TpmDevice for VtpmClient<T> {
    fn transmit(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, EvidenceError> {
        Ok(self.send_command(command, response)?)
    }
}

/// A TPM character device (`/dev/tpmrm0`, `/dev/tpm0`): one `write` of a command, one `read`
/// of its response, as the Linux TPM driver defines it.
pub struct CharDevice<F>(pub F);

impl<F: Read + Write> TpmDevice for CharDevice<F> {
    fn transmit(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, EvidenceError> {
        self.0.write_all(command).map_err(EvidenceError::TpmIo)?;
        self.0.read(response).map_err(EvidenceError::TpmIo)
    }
}

/// Runs `command` on `tpm`, resending on `TPM_RC_RETRY`; returns the successful response.
pub fn run_tpm<'r, D: TpmDevice + ?Sized>(
    tpm: &mut D,
    name: &'static str,
    command: &[u8],
    response: &'r mut [u8],
) -> Result<&'r [u8], EvidenceError> {
    let mut rc = TPM_RC_RETRY;
    for _ in 0..MAX_TPM_SENDS {
        let n = tpm.transmit(command, response)?;
        let rsp = response.get(..n).unwrap_or(&[]);
        rc = response_code(rsp).ok_or(EvidenceError::TpmMalformed {
            command: name,
            error: ResponseError::Malformed("header"),
        })?;
        match rc {
            0 => return Ok(response.get(..n).unwrap_or(&[])),
            TPM_RC_RETRY => continue,
            _ => break,
        }
    }
    Err(EvidenceError::TpmResponse { command: name, rc })
}

/// The logs a guest adds besides the SVSM's own.
#[derive(Clone, Debug, Default)]
pub struct GuestLogs {
    /// The firmware's TCG log (`binary_bios_measurements`).
    pub firmware: Option<Vec<u8>>,
    /// IMA's `binary_runtime_measurements`.
    pub ima: Option<Vec<u8>>,
}

/// A TPM2_Quote by the SVSM's AK over `pcr_mask` with `nonce`, and the SHA-256 values of all
/// 24 PCRs read right after it: `(attest, signature, pcrs)`.
pub type QuoteAndPcrs = (Vec<u8>, Vec<u8>, Vec<[u8; 32]>);

/// Quotes every SHA-256 PCR with the AK and reads their values.
pub fn quote_all<D: TpmDevice + ?Sized>(
    tpm: &mut D,
    nonce: &[u8],
) -> Result<QuoteAndPcrs, EvidenceError> {
    let mut rsp = vec![0u8; TPM_RESPONSE_MAX];
    let quote =
        quote_sha256(AK_HANDLE, nonce, ALL_PCRS).map_err(|_| EvidenceError::Marshal("Quote"))?;
    let (attest, signature) =
        parse_quote(run_tpm(tpm, "Quote", &quote, &mut rsp)?).map_err(|error| {
            EvidenceError::TpmMalformed {
                command: "Quote",
                error,
            }
        })?;
    let pcrs = read_pcrs(tpm, ALL_PCRS)?;
    Ok((attest, signature, pcrs))
}

/// Reads the SHA-256 PCRs of `mask` (bit i: PCR i), asking again for those a TPM2_PCR_Read
/// answer left out (a TPM returns at most 8 per answer); all 24 slots are returned, those
/// outside `mask` zero.
pub fn read_pcrs<D: TpmDevice + ?Sized>(
    tpm: &mut D,
    mask: u32,
) -> Result<Vec<[u8; 32]>, EvidenceError> {
    let mut rsp = vec![0u8; TPM_RESPONSE_MAX];
    let mut pcrs = vec![[0u8; 32]; 24];
    let mut remaining = mask & ALL_PCRS;
    while remaining != 0 {
        let cmd = pcr_read_sha256(remaining).map_err(|_| EvidenceError::Marshal("PCR_Read"))?;
        let (returned, values) = parse_pcr_read(run_tpm(tpm, "PCR_Read", &cmd, &mut rsp)?)
            .map_err(|error| EvidenceError::TpmMalformed {
                command: "PCR_Read",
                error,
            })?;
        if returned & remaining == 0 {
            return Err(EvidenceError::PcrReadStalled(remaining));
        }
        for (value, index) in values
            .iter()
            .zip((0..24usize).filter(|i| returned & (1 << i) != 0))
        {
            if let Some(slot) = pcrs.get_mut(index) {
                *slot = *value;
            }
        }
        remaining &= !returned;
    }
    Ok(pcrs)
}

/// Reads the vTPM's EK certificates and their CA's from the TCG NV indices
/// (`svsm_abi::identity`), `(index, DER)` in index order; an index that is not defined is left
/// out (a TPM without EK certificates gives an empty list).
pub fn read_ek_certificates<D: TpmDevice + ?Sized>(
    tpm: &mut D,
) -> Result<Vec<(u32, Vec<u8>)>, EvidenceError> {
    use svsm_abi::identity::{EK_IDENTITY_INDICES, MAX_EK_CERT_SIZE};
    use svsm_tpm2::platform::{
        nv_read, nv_read_public, parse_nv_read, parse_nv_read_public, NV_WRITE_CHUNK,
        TPM_RC_HANDLE_1,
    };
    let mut rsp = vec![0u8; TPM_RESPONSE_MAX];
    let mut out = Vec::new();
    let mut indices = EK_IDENTITY_INDICES;
    indices.sort_unstable();
    for index in indices {
        let cmd = nv_read_public(index).map_err(|_| EvidenceError::Marshal("NV_ReadPublic"))?;
        let public = match run_tpm(tpm, "NV_ReadPublic", &cmd, &mut rsp) {
            Ok(r) => parse_nv_read_public(r).map_err(|error| EvidenceError::TpmMalformed {
                command: "NV_ReadPublic",
                error,
            })?,
            Err(EvidenceError::TpmResponse {
                rc: TPM_RC_HANDLE_1,
                ..
            }) => continue,
            Err(e) => return Err(e),
        };
        let size = usize::from(public.data_size).min(MAX_EK_CERT_SIZE);
        let mut der = Vec::with_capacity(size);
        while der.len() < size {
            let chunk = (size - der.len()).min(NV_WRITE_CHUNK);
            // Both fit a u16: size is at most MAX_EK_CERT_SIZE.
            let cmd = nv_read(index, chunk as u16, der.len() as u16)
                .map_err(|_| EvidenceError::Marshal("NV_Read"))?;
            let data =
                parse_nv_read(run_tpm(tpm, "NV_Read", &cmd, &mut rsp)?).map_err(|error| {
                    EvidenceError::TpmMalformed {
                        command: "NV_Read",
                        error,
                    }
                })?;
            if data.is_empty() || data.len() > chunk {
                return Err(EvidenceError::TpmMalformed {
                    command: "NV_Read",
                    error: ResponseError::Malformed("data size"),
                });
            }
            der.extend_from_slice(data);
        }
        out.push((index, der));
    }
    Ok(out)
}

/// Gathers a bundle bound to `nonce` (at most 64 bytes: it is the quote's qualifying data).
/// `extra` pieces of evidence (kind, data) are registered with the module first, so the
/// manifest lists their SHA-384; `logs` is called after the quote and before the report.
pub fn collect<T: SvsmTransport, D: TpmDevice + ?Sized>(
    vault: &mut VaultClient<T>,
    tpm: &mut D,
    nonce: &[u8],
    extra: &[(u16, Vec<u8>)],
    logs: impl FnOnce() -> Result<GuestLogs, EvidenceError>,
) -> Result<Bundle, EvidenceError> {
    use sha2::Digest;
    for (kind, data) in extra {
        vault.add_evidence(*kind, &sha2::Sha384::digest(data).into())?;
    }
    // Quote and PCR values first, then the logs and the report: a measurement between them
    // makes a log longer than the quote covers, which the verifier can tell (IMA: it replays the
    // covered prefix) instead of a quote that covers entries no log shows.
    let (quote_attest, quote_signature, pcrs_sha256) = quote_all(tpm, nonce)?;
    let ek_certificates = read_ek_certificates(tpm)?;
    let guest_logs = logs()?;
    let event_log = vault.read_event_log()?;
    let evidence = attest(
        vault.transport_mut(),
        Scope::SingleService(VTPM_SERVICE_GUID, VTPM_MANIFEST_VERSION),
        nonce,
        true,
    )?;
    Ok(Bundle {
        nonce: nonce.to_vec(),
        snp_report: evidence.report,
        certificates: evidence.certs,
        manifest: evidence.manifest,
        quote_attest,
        quote_signature,
        pcrs_sha256,
        event_log,
        firmware_log: guest_logs.firmware,
        ima_log: guest_logs.ima,
        ima_offset: 0,
        extra_evidence: extra.to_vec(),
        ek_certificates,
    })
}

/// Reads an optional log file: `None` when `path` does not exist (the kernel exposes no such
/// log), an error when it exists but cannot be read.
pub fn read_optional_log(what: &'static str, path: &str) -> Result<Option<Vec<u8>>, EvidenceError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(EvidenceError::Log {
            what,
            path: path.into(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each command with the next canned response.
    struct Canned(Vec<Vec<u8>>);

    impl TpmDevice for Canned {
        fn transmit(&mut self, _: &[u8], response: &mut [u8]) -> Result<usize, EvidenceError> {
            let next = self.0.remove(0);
            response[..next.len()].copy_from_slice(&next);
            Ok(next.len())
        }
    }

    fn header(rc: u32) -> Vec<u8> {
        let mut h = vec![0x80, 0x01, 0, 0, 0, 10];
        h.extend_from_slice(&rc.to_be_bytes());
        h
    }

    #[test]
    fn gpu_evidence_is_packed_only_for_this_requests_nonce() {
        let rp = b"relying party nonce";
        let mut report = vec![0x11, 0xE0, 0x01, 0xFF];
        report.extend_from_slice(&svsm_abi::gpu::gpu_nonce(rp));
        report.extend_from_slice(b"...response...");
        let packed = gpu_evidence(&report, b"PEM chain", rp).unwrap();
        let e = svsm_abi::gpu::GpuEvidence::parse(&packed).unwrap();
        assert_eq!((e.report, e.chain_pem), (&report[..], &b"PEM chain"[..]));
        // Made for another request.
        assert!(matches!(
            gpu_evidence(&report, b"PEM chain", b"another nonce"),
            Err(EvidenceError::GpuNonce { .. })
        ));
        // Not an SPDM 1.1 GET_MEASUREMENTS request, or too short to hold its nonce.
        let mut v12 = report.clone();
        v12[0] = 0x12;
        assert!(matches!(
            gpu_evidence(&v12, b"c", rp),
            Err(EvidenceError::GpuNotSpdm)
        ));
        assert!(matches!(
            gpu_evidence(&report[..20], b"c", rp),
            Err(EvidenceError::GpuNotSpdm)
        ));
        // No chain.
        assert!(matches!(
            gpu_evidence(&report, b"", rp),
            Err(EvidenceError::GpuEvidence(_))
        ));
    }

    #[test]
    fn retry_is_resent_and_errors_are_named() {
        let mut rsp = [0u8; 64];
        let mut tpm = Canned(vec![header(TPM_RC_RETRY), header(0)]);
        assert_eq!(
            run_tpm(&mut tpm, "Quote", b"cmd", &mut rsp).unwrap().len(),
            10
        );
        let mut tpm = Canned(vec![header(0x9A2)]);
        assert!(matches!(
            run_tpm(&mut tpm, "Quote", b"cmd", &mut rsp),
            Err(EvidenceError::TpmResponse {
                command: "Quote",
                rc: 0x9A2
            })
        ));
        let mut tpm = Canned(vec![header(TPM_RC_RETRY); MAX_TPM_SENDS]);
        assert!(matches!(
            run_tpm(&mut tpm, "Quote", b"cmd", &mut rsp),
            Err(EvidenceError::TpmResponse {
                rc: TPM_RC_RETRY,
                ..
            })
        ));
        let mut tpm = Canned(vec![vec![0x80]]);
        assert!(matches!(
            run_tpm(&mut tpm, "Quote", b"cmd", &mut rsp),
            Err(EvidenceError::TpmMalformed { .. })
        ));
    }

    #[test]
    fn a_missing_log_is_left_out_and_an_unreadable_one_is_an_error() {
        assert!(read_optional_log("IMA log", "/nonexistent/svsm-vhsm/log")
            .unwrap()
            .is_none());
        assert!(matches!(
            read_optional_log("IMA log", "/proc/self/mem"),
            Err(EvidenceError::Log { .. })
        ));
    }
}
