//! SNP guest-request payloads: the responses a (possibly hostile) PSP path returns, and the
//! requests the emulated PSP decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::snp::msg::{KeyRequest, KeyResponse, ReportRequest, ReportResponse};

fuzz_target!(|data: &[u8]| {
    let _ = ReportResponse::parse(data);
    let _ = KeyResponse::parse(data);
    let _ = ReportRequest::parse(data);
    if let Ok(req) = KeyRequest::parse(data) {
        let _ = req.fields();
        let _ = req.root_key();
    }
});
