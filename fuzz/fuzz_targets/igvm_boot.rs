//! What the SVSM's SNP entry parses at boot: the CPUID page (firmware-checked, parsed anyway),
//! the boot information page (measured, parsed anyway) and the IGVM memory map in the boot
//! parameter page (written by the host: hostile). Each must end in a value or a typed error;
//! accepted values must keep their invariants.
//!
//! Input: the first byte selects the parser, the rest is the page.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::igvm_boot::{ram_ranges, vp_count, SvsmBootInfo, PAGE};
use svsm_abi::snp::cpuid::{CpuidTable, CPUID_COUNT_MAX};

fuzz_target!(|data: &[u8]| {
    let Some((&which, page)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(t) = CpuidTable::parse(page) {
                assert!(t.functions().len() <= CPUID_COUNT_MAX);
                let r = t.lookup(1, 0, true);
                assert_ne!(r.ecx & (1 << 27), 0);
                if let Ok(pos) = t.cbit_position() {
                    assert!((32..=51).contains(&pos));
                }
            }
        }
        1 => {
            if let Ok(info) = SvsmBootInfo::parse(page) {
                assert_eq!(info.svsm.gpa.get() % PAGE, 0);
                assert!(info.svsm.end().is_some());
                assert!(info.svsm.contains(info.parameters.get()));
                assert!(!info.svsm.contains(info.guest_caa.get()));
                assert!(info.prevalidated_ranges().len() <= 16);
                for r in info.prevalidated_ranges() {
                    assert!(r.end().is_some());
                }
            }
        }
        _ => {
            if let Ok(ram) = ram_ranges(page) {
                let mut prev_end = 0u64;
                for r in ram {
                    assert!(r.gpa.get() >= prev_end);
                    prev_end = r.end().expect("accepted ranges do not wrap");
                }
            }
            let _ = vp_count(page);
        }
    }
});
