//! The kernel image `snp-measure guest-pcrs` reads (untrusted: the bzImage setup header, then
//! the PE/COFF headers and sections the Authenticode digest walks after QEMU's header patches):
//! any input is a kernel, measured with an initrd and memory size taken from its first two bytes
//! and a fixed command line. Every outcome must be a value or a typed error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovmf::direct_boot::{expected_pcrs, load_options_digest, DirectBoot, SetupHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], kernel)) = data.split_first_chunk::<2>() else {
        return;
    };
    let _ = SetupHeader::parse(kernel);
    let initrd = vec![0x5Au8; usize::from(a) * 97 + 1];
    let boot = DirectBoot {
        kernel,
        initrd: (b & 1 == 1).then_some(initrd.as_slice()),
        cmdline: "console=ttyS0 panic=-1",
        memory_bytes: (u64::from(b >> 1) + 1) << 26,
    };
    let _ = expected_pcrs(&boot);
    let _ = load_options_digest(boot.cmdline, boot.initrd.is_some());
});
