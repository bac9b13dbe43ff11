//! Vault request decoding: the bytes a hostile guest puts in a vault call.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::vault::{
    valid_key_name, Request, MAX_DATA, MAX_DIGEST, MAX_FIELD, MAX_RANDOM, MIN_DIGEST,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::parse(data) {
        // Every decoded field lies inside the input and within its bound.
        match request {
            Request::Encrypt { aad, plaintext, .. } => {
                assert!(aad.len() <= MAX_FIELD && plaintext.len() <= MAX_DATA);
            }
            Request::ImportKey(p) => {
                assert!(p.ciphertext.len() <= MAX_FIELD);
                assert!(svsm_abi::vault::valid_key_name(p.binding.name));
                assert!(p.binding.owner_vmpl <= 3);
                // The binding re-encodes to exactly the bytes it was parsed from.
                let mut again = [0u8; 512];
                let n = p.binding.write(&mut again).expect("a parsed binding re-encodes");
                assert_eq!(&again[..n], p.binding_bytes);
            }
            Request::Seal { pcr_mask, .. } => assert_eq!(pcr_mask >> 24, 0),
            Request::CreateKey { name, .. } => {
                assert!(name.is_empty() || valid_key_name(name));
            }
            Request::SignDigest { digest, .. } => {
                assert!((MIN_DIGEST..=MAX_DIGEST).contains(&digest.len()));
            }
            Request::Random { len } => assert!((1..=MAX_RANDOM).contains(&usize::from(len))),
            Request::DeriveRaw {
                peer_public, name, ..
            } => {
                assert!(peer_public.len() <= MAX_FIELD);
                assert!(name.is_empty() || valid_key_name(name));
            }
            Request::EncryptWithIv { aad, plaintext, .. } => {
                assert!(aad.len() <= MAX_FIELD && plaintext.len() <= MAX_DATA);
            }
            _ => {}
        }
    }
});
