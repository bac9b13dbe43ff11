//! QEMU's TPM-emulator control messages (`svsm_abi::swtpm`) as the backend reads them: a u32
//! code, then as many payload bytes as `payload_len` says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::swtpm::{payload_len, CtrlCommand, SUPPORTED_CAPABILITIES};

fuzz_target!(|data: &[u8]| {
    let Some((code, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let code = u32::from_be_bytes(*code);
    match payload_len(code) {
        Some(n) => {
            let payload = &rest[..n.min(rest.len())];
            let parsed = CtrlCommand::parse(code, payload);
            if payload.len() != n {
                assert!(parsed.is_err());
            }
            if let Ok(CtrlCommand::SetLocality { locality } | CtrlCommand::ResetTpmEstablished { locality }) = parsed {
                assert!(locality <= 4);
            }
        }
        None => assert!(CtrlCommand::parse(code, rest).is_err()),
    }
    let _ = SUPPORTED_CAPABILITIES;
});
