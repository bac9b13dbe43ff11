//! SVSM attestation requests as a hostile guest writes them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::attest::{AttestServicesRequest, AttestSingleServiceRequest};

fuzz_target!(|data: &[u8]| {
    let _ = AttestServicesRequest::parse(data);
    let _ = AttestSingleServiceRequest::parse(data);
});
