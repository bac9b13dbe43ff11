//! GPU evidence as a bundle carries it (extra evidence of kind 1): the svsm-abi container, then
//! the whole GPU appraisal of its report and PEM chain (chain parsing, signatures, TcbInfo,
//! SPDM) against the pinned NVIDIA root, with the chain cache. Nothing may panic.
#![no_main]

use host_verifier::gpu::{GpuExpectations, GpuVerifier};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};
use svsm_abi::gpu::GpuEvidence;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = GpuEvidence::parse(data) {
        let expect = GpuExpectations {
            nonce: Some([0u8; 32]),
            reference: None,
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
        let a = GpuVerifier::shared_nvidia().appraise(e.report, e.chain_pem, &expect, at);
        let _ = a.affirming();
    }
});
