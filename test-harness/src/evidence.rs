//! The guest side of combined evidence: everything a relying party needs in one
//! [`host_verifier::bundle::Bundle`], gathered through the SVSM protocols as a VMPL1 guest
//! would — the event log and the VMPL0 report over the vTPM manifest version 1 (services
//! protocol and SVSM_ATTEST_SINGLE_SERVICE), a TPM2_Quote by the AK over all SHA-256 PCRs with
//! the nonce as qualifying data, and the PCR values (vTPM protocol).

use guest_driver::attest::{attest, Scope};
use guest_driver::transport::SvsmTransport;
use guest_driver::vault::VaultClient;
use guest_driver::vtpm::VtpmClient;
use host_verifier::bundle::Bundle;
use svsm_abi::attest::{VTPM_MANIFEST_V2, VTPM_SERVICE_GUID};
use svsm_core::tpm2::command::{
    parse_pcr_read, parse_quote, pcr_read_sha256, quote_sha256, response_code,
};
use svsm_core::tpm2::templates::AK_HANDLE;

/// Why evidence could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A guest-driver call failed.
    #[error("{0}")]
    Driver(String),
    /// A TPM command failed.
    #[error("TPM: {0}")]
    Tpm(String),
}

fn driver(e: impl std::fmt::Display) -> EvidenceError {
    EvidenceError::Driver(e.to_string())
}

/// Gathers a bundle bound to `nonce` (at most 64 bytes: it is the quote's qualifying data).
/// `extra` pieces of evidence are registered with the module first, so the manifest lists them.
pub fn collect<T: SvsmTransport>(
    vault_transport: T,
    vtpm_transport: T,
    nonce: &[u8],
    extra: &[(u16, Vec<u8>)],
) -> Result<Bundle, EvidenceError> {
    use sha2::Digest;
    let mut vault = VaultClient::probe(vault_transport).map_err(driver)?;
    for (kind, data) in extra {
        vault
            .add_evidence(*kind, &sha2::Sha384::digest(data).into())
            .map_err(driver)?;
    }
    let mut tpm = VtpmClient::probe(vtpm_transport).map_err(driver)?;
    let mut rsp = vec![0u8; 4096];

    // Quote and PCR values first, then the log and the report: a measurement between them
    // would make the log longer than the PCRs, which the verifier reports as a mismatch.
    let quote = quote_sha256(AK_HANDLE, nonce, 0x00FF_FFFF)
        .map_err(|e| EvidenceError::Tpm(e.to_string()))?;
    let n = tpm.send_command(&quote, &mut rsp).map_err(driver)?;
    let (quote_attest, quote_signature) = parse_quote(&rsp[..n]).map_err(|e| {
        EvidenceError::Tpm(format!("Quote: {e} (rc {:?})", response_code(&rsp[..n])))
    })?;
    let mut pcrs = vec![[0u8; 32]; 24];
    let mut remaining = 0x00FF_FFFFu32;
    while remaining != 0 {
        let cmd = pcr_read_sha256(remaining).map_err(|e| EvidenceError::Tpm(e.to_string()))?;
        let n = tpm.send_command(&cmd, &mut rsp).map_err(driver)?;
        let (returned, values) =
            parse_pcr_read(&rsp[..n]).map_err(|e| EvidenceError::Tpm(e.to_string()))?;
        if returned & remaining == 0 {
            return Err(EvidenceError::Tpm("PCR_Read returned nothing new".into()));
        }
        for (value, index) in values
            .iter()
            .zip((0..24).filter(|i| returned & (1 << i) != 0))
        {
            pcrs[index] = *value;
        }
        remaining &= !returned;
    }
    let event_log = vault.read_event_log().map_err(driver)?;
    let evidence = attest(
        vault.transport_mut(),
        Scope::SingleService(VTPM_SERVICE_GUID, VTPM_MANIFEST_V2),
        nonce,
        true,
    )
    .map_err(driver)?;
    Ok(Bundle {
        nonce: nonce.to_vec(),
        snp_report: evidence.report,
        certificates: evidence.certs,
        manifest: evidence.manifest,
        quote_attest,
        quote_signature,
        pcrs_sha256: pcrs,
        event_log,
        firmware_log: None,
        ima_log: None,
        extra_evidence: extra.to_vec(),
    })
}
