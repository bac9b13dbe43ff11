//! ATTESTATION_REPORT parsing and every version-aware accessor.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::snp::{AttestationReport, TcbLayout};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = AttestationReport::parse(data) {
        let _ = report.check_reserved();
        let _ = report.product();
        let _ = report.cpuid();
        let _ = report.mit_vectors();
        let _ = report.key_info().signing_key();
        let _ = report.platform_info().unknown_bits();
        let _ = report.policy().unknown_bits();
        assert_eq!(report.signed_bytes().len(), 0x2A0);
        let raw = report.raw();
        for layout in [TcbLayout::MilanGenoa, TcbLayout::Turin] {
            let _ = raw.reported_tcb.decode(layout);
        }
        let _ = raw.signature.to_be_components();
    }
});
