//! The vTPM's vendor-command routing, the part commands, its TPM_CAP_COMMANDS amendment and the
//! vendor response decoders: untrusted TPM commands and responses never panic or read out of
//! bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::tpm_vendor::{
    amend_capability, parse_part_response, parse_vault_response, route, Part, PartAction, Route,
    PART_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    match route(data) {
        Route::Vault(body) => assert_eq!(body.len() + 10, data.len()),
        Route::VaultPart(body) => {
            assert_eq!(body.len() + 10, data.len());
            if let Ok(part) = Part::parse(body) {
                // The data is what follows the part header, and a READ has none.
                assert_eq!(part.data.len() + PART_HEADER_LEN, body.len());
                assert!(part.transfer != 0);
                assert!(part.action != PartAction::Read || part.data.is_empty());
            }
        }
        _ => {}
    }
    let _ = parse_vault_response(data);
    if let Ok(r) = parse_part_response(data) {
        assert!(r.data.len() as u64 <= r.reply.rcx.get() || r.data.is_empty());
    }
    // The first 22 bytes as a GetCapability command, the rest as the engine's answer.
    if data.len() > 22 {
        let (command, answer) = data.split_at(22);
        let mut response = answer.to_vec();
        response.extend_from_slice(&[0; 8]);
        let mut len = answer.len();
        amend_capability(command, &mut response, &mut len);
        assert!(len <= response.len());
    }
});
