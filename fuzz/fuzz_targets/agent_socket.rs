//! The guest agent's local socket (`guest_driver::agent_socket`): any local process can write a
//! request to the agent, and the app reads the agent's answer. Both parsers take any bytes:
//! a request decodes to a valid key name or a typed error, an answer to a key id or an error,
//! never a panic; a line longer than the bound is refused.
#![no_main]
use guest_driver::agent_socket::{parse_answer, read_request, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = read_request(data) {
        assert!(svsm_abi::vault::valid_key_name(name.as_bytes()));
        assert!(data.len() > name.len());
    }
    if data.len() > MAX_LINE + 1 && !data[..=MAX_LINE].contains(&b'\n') {
        assert!(read_request(data).is_err());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_answer(text);
    }
});
