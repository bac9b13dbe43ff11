//! Launch-digest PAGE_INFO records.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::launch::PageInfo;

fuzz_target!(|data: &[u8]| {
    let _ = PageInfo::parse(data);
});
