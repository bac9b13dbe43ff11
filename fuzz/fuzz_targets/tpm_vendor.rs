//! The vTPM's vendor-command routing, its TPM_CAP_COMMANDS amendment and the vendor response
//! decoder: untrusted TPM commands and responses never panic or read out of bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::tpm_vendor::{amend_capability, parse_vault_response, route, Route};

fuzz_target!(|data: &[u8]| {
    if let Route::Vault(body) = route(data) {
        assert_eq!(body.len() + 10, data.len());
    }
    let _ = parse_vault_response(data);
    // The first 22 bytes as a GetCapability command, the rest as the engine's answer.
    if data.len() > 22 {
        let (command, answer) = data.split_at(22);
        let mut response = answer.to_vec();
        response.extend_from_slice(&[0; 4]);
        let mut len = answer.len();
        amend_capability(command, &mut response, &mut len);
        assert!(len <= response.len());
    }
});
