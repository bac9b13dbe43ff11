//! TPM 2.0 marshalling shared by the module, the `vtpm` engine crate and the test harness: the
//! commands svsm-vhsm issues itself, the TCG EK Credential Profile templates, and the EK the
//! attestation manifest carries.

pub use svsm_tpm2::{command, platform, templates};

use crate::error::SvsmError;
use crate::tpm::{TpmEngine, MAX_TPM_BUFFER};
use alloc::vec;
use alloc::vec::Vec;
use command::{ResponseError, TPM_RC_RETRY, TPM_RH_ENDORSEMENT};
use templates::KeyTemplate;

/// Resends of a command that keeps answering TPM_RC_RETRY.
pub const MAX_RETRIES: usize = 5;

impl From<ResponseError> for SvsmError {
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::Tpm(rc) => SvsmError::TpmResponse(rc),
            ResponseError::Malformed(_) => SvsmError::TpmResponse(u32::MAX),
        }
    }
}

/// Runs a command the module issues itself, resending on TPM_RC_RETRY (libtpms asks for a
/// resend after the first DA-protected authorization); returns the successful response length.
pub fn execute_checked<T: TpmEngine>(
    tpm: &mut T,
    command: &[u8],
    response: &mut [u8],
) -> Result<usize, SvsmError> {
    for _ in 0..MAX_RETRIES {
        let n = tpm.execute(0, command, response)?;
        let rsp = response.get(..n).unwrap_or(&[]);
        match command::response_code(rsp) {
            Some(0) => return Ok(n),
            Some(TPM_RC_RETRY) => continue,
            Some(rc) => return Err(SvsmError::TpmResponse(rc)),
            None => return Err(SvsmError::TpmResponse(u32::MAX)),
        }
    }
    Err(SvsmError::TpmResponse(TPM_RC_RETRY))
}

/// The vTPM manifest's EK (SVSM spec §8.3.3): the TPMT_PUBLIC of the L-1 RSA-2048 EK. It is
/// re-derived with TPM2_CreatePrimary from the endorsement seed (and flushed again) rather than
/// read from its persistent handle, which a guest with owner authorization could replace.
pub fn ek_rsa_public<T: TpmEngine>(tpm: &mut T) -> Result<Vec<u8>, SvsmError> {
    let template = KeyTemplate::ek_rsa_l1();
    let mut response = vec![0u8; MAX_TPM_BUFFER];
    let create = command::create_primary(TPM_RH_ENDORSEMENT, &template.template())
        .map_err(|_| SvsmError::TpmResponse(u32::MAX))?;
    let n = execute_checked(tpm, &create, &mut response)?;
    let rsp = response.get(..n).unwrap_or(&[]);
    let (handle, public) = command::parse_create_primary_public(rsp)?;
    let flush = command::flush_context(handle).map_err(|_| SvsmError::TpmResponse(u32::MAX))?;
    execute_checked(tpm, &flush, &mut response)?;
    if !template.matches(&public) {
        return Err(SvsmError::TpmResponse(u32::MAX));
    }
    Ok(public)
}

/// The attestation key's TPMT_PUBLIC, re-derived like the EK (TPM2_CreatePrimary from the
/// endorsement seed with the AK template), so the manifest names the key the vTPM made
/// persistent without trusting whatever now sits at its handle.
pub fn ak_public<T: TpmEngine>(
    tpm: &mut T,
    curve: templates::AkCurve,
) -> Result<Vec<u8>, SvsmError> {
    let template = KeyTemplate::ak(curve);
    let mut response = vec![0u8; MAX_TPM_BUFFER];
    let create = command::create_primary(TPM_RH_ENDORSEMENT, &template.template())
        .map_err(|_| SvsmError::TpmResponse(u32::MAX))?;
    let n = execute_checked(tpm, &create, &mut response)?;
    let (handle, public) = command::parse_create_primary_public(response.get(..n).unwrap_or(&[]))?;
    let flush = command::flush_context(handle).map_err(|_| SvsmError::TpmResponse(u32::MAX))?;
    execute_checked(tpm, &flush, &mut response)?;
    if !template.matches(&public) {
        return Err(SvsmError::TpmResponse(u32::MAX));
    }
    Ok(public)
}

/// Extends `pcr` in the SHA-256 and SHA-384 banks.
pub fn extend_both<T: TpmEngine>(
    tpm: &mut T,
    pcr: u32,
    d256: &[u8; 32],
    d384: &[u8; 48],
) -> Result<(), SvsmError> {
    let cmd = command::pcr_extend_sha256_sha384(pcr, d256, d384)
        .map_err(|_| SvsmError::TpmResponse(u32::MAX))?;
    let mut response = vec![0u8; 64];
    execute_checked(tpm, &cmd, &mut response).map(|_| ())
}

/// SHA-256 digest of the SHA-256 bank PCRs selected by `mask` (bits 0..23), read with
/// TPM2_PCR_Read (repeated: the TPM returns at most eight values per call), in index order.
pub fn pcr_digest_sha256<T: TpmEngine>(tpm: &mut T, mask: u32) -> Result<[u8; 32], SvsmError> {
    let mut values: Vec<(u32, [u8; 32])> = Vec::new();
    let mut remaining = mask & 0x00FF_FFFF;
    let mut response = vec![0u8; MAX_TPM_BUFFER];
    while remaining != 0 {
        let cmd =
            command::pcr_read_sha256(remaining).map_err(|_| SvsmError::TpmResponse(u32::MAX))?;
        let n = execute_checked(tpm, &cmd, &mut response)?;
        let (returned, digests) = command::parse_pcr_read(response.get(..n).unwrap_or(&[]))?;
        if returned & remaining == 0 || digests.len() != returned.count_ones() as usize {
            return Err(SvsmError::TpmResponse(u32::MAX));
        }
        let indexes = (0..24).filter(|i| returned & (1 << i) != 0);
        for (index, digest) in indexes.zip(digests) {
            values.push((index, digest));
        }
        remaining &= !returned;
    }
    values.sort_by_key(|(i, _)| *i);
    let list: Vec<[u8; 32]> = values.into_iter().map(|(_, v)| v).collect();
    Ok(crate::vault::pcr_digest(&list))
}
