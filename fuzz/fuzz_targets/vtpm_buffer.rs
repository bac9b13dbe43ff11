//! vTPM TPM_SEND_COMMAND request and response buffers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::vtpm::{parse_response, SendCommand, MAX_TPM_COMMAND};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = SendCommand::parse(data) {
        assert!(cmd.tpm_command.len() <= MAX_TPM_COMMAND);
        assert_eq!(cmd.locality, 0);
    }
    let _ = parse_response(data);
});
