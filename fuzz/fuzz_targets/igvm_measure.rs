//! IGVM files through the `igvm` crate's parser and this project's measurement, in every
//! flavour.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovmf::{igvm_launch_digest, IgvmFlavor};

fuzz_target!(|data: &[u8]| {
    for flavor in IgvmFlavor::ALL {
        let _ = igvm_launch_digest(data, flavor);
    }
});
