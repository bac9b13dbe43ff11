//! Services manifest (SVSM attestation) as a verifier or guest receives it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::attest::{ServicesManifest, VTPM_SERVICE_GUID};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = ServicesManifest::parse(data) {
        assert_eq!(manifest.services().count(), manifest.len());
        let _ = manifest.find(&VTPM_SERVICE_GUID);
    }
});
