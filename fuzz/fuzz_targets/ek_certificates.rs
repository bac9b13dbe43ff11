//! The vTPM identity's untrusted inputs on the verifier side (docs/identity.md): an EK CA
//! certificate and an EK (or AK) certificate as a guest or registrar hands them over, through
//! `host_verifier::ek_certs` (chain, key, CMW report extraction, AK chain), and the TPM
//! responses the guest reads them with (`svsm_tpm2::platform`: NV_ReadPublic, NV_Read,
//! GetCapability). Input: u16 LE length of the CA certificate, the CA certificate, then the
//! other certificate. Nothing may panic.
#![no_main]

use host_verifier::ek_certs;
use libfuzzer_sys::fuzz_target;
use svsm_abi::identity::{EK_CA_CERT_INDEX, EK_CERT_RSA_2048_INDEX};
use svsm_core::tpm2::platform;

fuzz_target!(|data: &[u8]| {
    let _ = platform::parse_nv_read_public(data);
    let _ = platform::parse_nv_read(data);
    let _ = platform::parse_tpm_properties(data);
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (ca, other) = rest.split_at(len);
    let ca_key = ek_certs::ca_report(ca).map(|(_, key)| key).ok();
    let index = ek_certs::index_for(other).unwrap_or(EK_CERT_RSA_2048_INDEX);
    let certs = [(EK_CA_CERT_INDEX, ca.to_vec()), (index, other.to_vec())];
    let _ = ek_certs::verify(&certs, ca_key.as_ref().or(Some(&[4; 97])), None);
    let _ = ek_certs::verify_ak_certificate(other, ca, None);
});
