//! OVMF firmware images (footer GUID table, SEV metadata) through the whole `-bios` launch
//! measurement: any input is parsed as an image and, if accepted, measured with knobs taken
//! from its first two bytes (vCPUs, hypervisor flavour, kernel hashes, features).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovmf::{snp_launch_digest, Firmware, LaunchParams, Measurement, SevHashes, VmmType};

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    // The parsers look at the end of the image: pad at the front to whole pages so the
    // fuzzer's bytes stay where the footer table lives (an unpadded length is also tried).
    let _ = Firmware::parse(rest);
    let pad = (4096 - rest.len() % 4096) % 4096;
    let mut img = vec![0u8; pad];
    img.extend_from_slice(rest);
    let Ok(fw) = Firmware::parse(&img) else {
        return;
    };
    let _ = fw.sev_es_reset_address();
    let _ = fw.hash_table_area();
    let mut p = LaunchParams::new(1 + u32::from(a & 3), 0x800F12, u64::from(b));
    p.vmm = match (a >> 2) & 3 {
        0 | 3 => VmmType::Qemu,
        1 => VmmType::Ec2,
        _ => VmmType::Gce,
    };
    if a & 0x10 != 0 {
        p.hashes = Some(SevHashes::new(b"kernel", None, Some("console=ttyS0")));
    }
    // Skip hashing the firmware pages unless asked: the chain after them is what varies.
    if a & 0x20 == 0 {
        p.ovmf_hash = Some(Measurement([0; 48]));
    }
    let _ = snp_launch_digest(&fw, &p);
});
