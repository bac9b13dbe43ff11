//! Extended-report certificate table from the (untrusted) host.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::snp::certs::{CertKind, CertTable};

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = CertTable::parse(data) {
        let mut n = 0;
        for cert in table.certs() {
            assert!(cert.der.len() <= data.len());
            n += 1;
        }
        assert_eq!(n, table.len());
        let _ = table.find(CertKind::Vcek);
    }
});
