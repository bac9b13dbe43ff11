//! The guest side of combined evidence on the simulated machine: the bundle
//! `guest_driver::evidence::collect` gathers (the same code `svsm-attest bundle` runs in a real
//! guest), with the vTPM reached through the SVSM vTPM protocol from VMPL1 instead of a Linux
//! TPM driver, and no firmware or IMA log (the simulated machine boots no firmware).

use guest_driver::evidence::{EvidenceError, GuestLogs};
use guest_driver::transport::SvsmTransport;
use guest_driver::vault::VaultClient;
use guest_driver::vtpm::VtpmClient;
use host_verifier::bundle::Bundle;

/// Gathers a bundle bound to `nonce` (at most 64 bytes: it is the quote's qualifying data).
/// `extra` pieces of evidence are registered with the module first, so the manifest lists them.
pub fn collect<T: SvsmTransport>(
    vault_transport: T,
    vtpm_transport: T,
    nonce: &[u8],
    extra: &[(u16, Vec<u8>)],
) -> Result<Bundle, EvidenceError> {
    let mut vault = VaultClient::probe(vault_transport)?;
    let mut tpm = VtpmClient::probe(vtpm_transport)?;
    guest_driver::evidence::collect(&mut vault, &mut tpm, nonce, extra, || {
        Ok(GuestLogs::default())
    })
}
