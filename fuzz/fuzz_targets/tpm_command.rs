//! Arbitrary bytes as TPM commands into the vtpm engine wrapper (libtpms), at any locality.
//! Byte 0 is the locality; the rest is the command. Any crash or abort is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use svsm_core::tpm::TpmEngine;
use vtpm::Vtpm;

fn engine() -> &'static Mutex<Vtpm> {
    static ENGINE: OnceLock<Mutex<Vtpm>> = OnceLock::new();
    ENGINE.get_or_init(|| Mutex::new(Vtpm::manufacture(Default::default()).expect("manufacture")))
}

fuzz_target!(|data: &[u8]| {
    let Some((&locality, command)) = data.split_first() else {
        return;
    };
    let mut tpm = engine().lock().unwrap_or_else(|p| p.into_inner());
    let mut response = [0u8; 4096];
    if let Ok(n) = tpm.execute(locality, command, &mut response) {
        // Every response carries at least a header whose size field is its length.
        assert!(n >= 10, "short response");
        assert_eq!(u32::from_be_bytes(response[2..6].try_into().unwrap()) as usize, n);
    }
    if !tpm.is_powered_on() {
        let _ = tpm.power_on();
    }
});
