//! Vault request decoding: the bytes a hostile guest puts in a vault call.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::vault::{Request, MAX_DATA, MAX_FIELD};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::parse(data) {
        // Every decoded field lies inside the input and within its bound.
        match request {
            Request::Encrypt { aad, plaintext, .. } => {
                assert!(aad.len() <= MAX_FIELD && plaintext.len() <= MAX_DATA);
            }
            Request::ImportKey { context, ephemeral_public, ciphertext, .. } => {
                assert!(context.len() <= MAX_FIELD && ephemeral_public.len() <= MAX_FIELD);
                assert!(ciphertext.len() <= MAX_FIELD);
            }
            Request::Seal { pcr_mask, .. } => assert_eq!(pcr_mask >> 24, 0),
            _ => {}
        }
    }
});
