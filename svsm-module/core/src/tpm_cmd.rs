//! The few TPM 2.0 commands the module issues itself (not on behalf of a guest), marshalled by
//! hand (TPM 2.0 Part 2/3, big-endian): TPM2_CreatePrimary for the endorsement key that the
//! attestation manifest carries, and TPM2_FlushContext. Responses are parsed with bounds checks.

use crate::error::SvsmError;
use crate::tpm::TpmEngine;
use alloc::vec::Vec;

/// TPM_RC_RETRY: libtpms asks for a resend after the first DA-protected authorization.
pub const TPM_RC_RETRY: u32 = 0x922;
/// Resends of a command that keeps answering TPM_RC_RETRY.
pub const MAX_RETRIES: usize = 5;

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_CREATE_PRIMARY: u32 = 0x131;
const TPM_CC_FLUSH_CONTEXT: u32 = 0x165;
const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;
const TPM_RS_PW: u32 = 0x4000_0009;

/// TPM_ALG_* identifiers (TPM 2.0 Part 2 Table 9).
mod alg {
    pub const RSA: u16 = 0x0001;
    pub const SHA256: u16 = 0x000B;
    pub const AES: u16 = 0x0006;
    pub const NULL: u16 = 0x0010;
    pub const CFB: u16 = 0x0043;
}

/// PolicyA_SHA256 (TCG EK Credential Profile 2.x §B.6.1): PolicySecret(TPM_RH_ENDORSEMENT).
pub const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// The TCG EK Credential Profile "L-1" RSA-2048 storage EK template (§B.3.3), as a TPMT_PUBLIC:
/// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt,
/// AES-128-CFB, no scheme, 2048 bits, default exponent, 256 zero bytes of unique.
pub fn ek_rsa2048_template() -> Vec<u8> {
    let mut t = Vec::with_capacity(314);
    put_u16(&mut t, alg::RSA);
    put_u16(&mut t, alg::SHA256);
    put_u32(&mut t, 0x0003_00B2);
    put_u16(&mut t, 32);
    t.extend_from_slice(&POLICY_A_SHA256);
    put_u16(&mut t, alg::AES);
    put_u16(&mut t, 128);
    put_u16(&mut t, alg::CFB);
    put_u16(&mut t, alg::NULL);
    put_u16(&mut t, 2048);
    put_u32(&mut t, 0);
    put_u16(&mut t, 256);
    t.resize(t.len() + 256, 0);
    t
}

fn put_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn finish_header(cmd: &mut [u8]) {
    let len = u32::try_from(cmd.len()).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(size) = cmd.get_mut(2..6) {
        size.copy_from_slice(&len);
    }
}

/// TPM2_CreatePrimary in the endorsement hierarchy with an empty password session.
pub fn create_primary_endorsement(template: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(64 + template.len());
    put_u16(&mut c, TPM_ST_SESSIONS);
    put_u32(&mut c, 0); // size, filled in below
    put_u32(&mut c, TPM_CC_CREATE_PRIMARY);
    put_u32(&mut c, TPM_RH_ENDORSEMENT);
    put_u32(&mut c, 9); // authorization area: one TPMS_AUTH_COMMAND
    put_u32(&mut c, TPM_RS_PW);
    put_u16(&mut c, 0); // nonce
    c.push(0); // session attributes
    put_u16(&mut c, 0); // hmac (empty password)
    put_u16(&mut c, 4); // TPM2B_SENSITIVE_CREATE: empty userAuth and data
    put_u16(&mut c, 0);
    put_u16(&mut c, 0);
    put_u16(&mut c, u16::try_from(template.len()).unwrap_or(u16::MAX));
    c.extend_from_slice(template);
    put_u16(&mut c, 0); // outsideInfo
    put_u32(&mut c, 0); // creationPCR: empty selection
    finish_header(&mut c);
    c
}

/// TPM2_FlushContext.
pub fn flush_context(handle: u32) -> Vec<u8> {
    let mut c = Vec::with_capacity(14);
    put_u16(&mut c, TPM_ST_NO_SESSIONS);
    put_u32(&mut c, 14);
    put_u32(&mut c, TPM_CC_FLUSH_CONTEXT);
    put_u32(&mut c, handle);
    c
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The response code of a TPM response.
pub fn response_code(rsp: &[u8]) -> Result<u32, SvsmError> {
    be_u32(rsp, 6).ok_or(SvsmError::TpmResponse(u32::MAX))
}

/// Runs a module-issued command, resending on TPM_RC_RETRY; returns the response on success.
pub fn execute_checked<T: TpmEngine>(
    tpm: &mut T,
    command: &[u8],
    response: &mut [u8],
) -> Result<usize, SvsmError> {
    let mut attempts = 0;
    loop {
        let n = tpm.execute(0, command, response)?;
        let rsp = response.get(..n).ok_or(SvsmError::TpmResponse(u32::MAX))?;
        match response_code(rsp)? {
            0 => return Ok(n),
            TPM_RC_RETRY if attempts < MAX_RETRIES => attempts += 1,
            rc => return Err(SvsmError::TpmResponse(rc)),
        }
    }
}

/// The parts of a TPM2_CreatePrimary response the module uses.
pub struct CreatedPrimary {
    /// Transient handle of the new object.
    pub handle: u32,
    /// The TPMT_PUBLIC (without the TPM2B size).
    pub public: Vec<u8>,
}

/// Parses a successful TPM2_CreatePrimary response (handle at 10, parameterSize at 14, the
/// TPM2B_PUBLIC size at 18 and the TPMT_PUBLIC from 20).
pub fn parse_create_primary(rsp: &[u8]) -> Result<CreatedPrimary, SvsmError> {
    let bad = SvsmError::TpmResponse(u32::MAX);
    let handle = be_u32(rsp, 10).ok_or(bad)?;
    let size = usize::from(be_u16(rsp, 18).ok_or(bad)?);
    let public = rsp
        .get(20..20usize.checked_add(size).ok_or(bad)?)
        .ok_or(bad)?;
    Ok(CreatedPrimary {
        handle,
        public: public.to_vec(),
    })
}

/// Creates the L-1 RSA EK, returns its TPMT_PUBLIC and flushes it again. The EK is derived
/// from the endorsement seed, so the guest cannot substitute its own key for it.
pub fn ek_rsa_public<T: TpmEngine>(tpm: &mut T) -> Result<Vec<u8>, SvsmError> {
    let mut response = alloc::vec![0u8; crate::tpm::MAX_TPM_BUFFER];
    let n = execute_checked(
        tpm,
        &create_primary_endorsement(&ek_rsa2048_template()),
        &mut response,
    )?;
    let created = parse_create_primary(response.get(..n).unwrap_or(&[]))?;
    execute_checked(tpm, &flush_context(created.handle), &mut response)?;
    Ok(created.public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ek_template_is_the_314_byte_l1_layout() {
        let t = ek_rsa2048_template();
        assert_eq!(t.len(), 314);
        assert_eq!(&t[..8], &[0x00, 0x01, 0x00, 0x0B, 0x00, 0x03, 0x00, 0xB2]);
        assert_eq!(&t[10..42], &POLICY_A_SHA256);
    }

    #[test]
    fn create_primary_header_size_matches() {
        let c = create_primary_endorsement(&ek_rsa2048_template());
        assert_eq!(
            u32::from_be_bytes(c[2..6].try_into().unwrap()) as usize,
            c.len()
        );
        assert_eq!(&c[6..10], &0x131u32.to_be_bytes());
    }

    #[test]
    fn truncated_responses_are_errors() {
        let mut rsp = alloc::vec![0u8; 20 + 314];
        rsp[18..20].copy_from_slice(&314u16.to_be_bytes());
        assert_eq!(parse_create_primary(&rsp).unwrap().public.len(), 314);
        for len in 0..rsp.len() {
            assert!(parse_create_primary(&rsp[..len]).is_err());
        }
    }
}
