//! NVIDIA GPU evidence as a relying party receives it: the SPDM 1.1 report (request ‖
//! MEASUREMENTS response, opaque TLVs, claims), and a TCG DICE TcbInfo extension value, through
//! `host_verifier::gpu`. Nothing may panic.
#![no_main]

use host_verifier::gpu::spdm::GpuReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = GpuReport::parse(data) {
        let _ = report.opaque_fields();
        let _ = report.claims();
        let _ = report.fwid();
    }
    let _ = host_verifier::gpu::tcb_info_fwids(data);
});
