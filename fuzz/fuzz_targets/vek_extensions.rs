//! VCEK/VLEK certificates (PEM or DER) and AMD's extension values: X.509 parsing, the AMD
//! extensions (DER INTEGER SPLs, raw or tagged hwID, IA5String names), the TCB binding with both
//! layouts. Seeds: every VEK and AMD CA certificate of vectors/snp (seed-corpus.sh).
#![no_main]
use host_verifier::vek::{parse_extension_value, AmdExtension, VekCert};
use libfuzzer_sys::fuzz_target;
use svsm_abi::snp::{TcbLayout, TcbVersion};

fuzz_target!(|data: &[u8]| {
    if let Ok(vek) = VekCert::from_bytes(data) {
        let _ = vek.kind();
        let _ = vek.public_key();
        let _ = vek.validity();
        if let Ok(ext) = vek.extensions() {
            let _ = ext.product();
            let tcb = TcbVersion(
                data.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 8]),
            );
            for layout in [TcbLayout::MilanGenoa, TcbLayout::Turin] {
                let _ = ext.check_tcb(tcb, layout);
            }
        }
    }
    if let Some((&selector, value)) = data.split_first() {
        let ext = match selector % 13 {
            0 => AmdExtension::StructVersion,
            1 => AmdExtension::ProductName,
            2 => AmdExtension::HwId,
            3 => AmdExtension::CspId,
            n => AmdExtension::Spl(n - 3),
        };
        let _ = parse_extension_value(ext, value);
    }
});
