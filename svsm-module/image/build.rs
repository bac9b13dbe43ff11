//! Passes the linker script to the image binary. The PVH build: `link.ld` as written (one RWX
//! PT_LOAD at 1 MiB, a PT_NOTE for the PVH entry note, `.init`/`.fini` discarded). The SNP build
//! (feature `snp`): the same layout linked at `SVSM_BASE` (environment, default 0x4000000 =
//! 64 MiB; 2 MiB aligned, below 2 GiB) with `snp_start32` as the entry, generated into OUT_DIR.

use std::path::PathBuf;

/// Default link (and load) address of the SNP build.
const DEFAULT_SVSM_BASE: u64 = 0x400_0000;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SVSM_BASE");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let script = if std::env::var_os("CARGO_FEATURE_SNP").is_some() {
        let base = match std::env::var("SVSM_BASE") {
            Ok(v) => {
                let digits = v.trim_start_matches("0x");
                u64::from_str_radix(digits, 16)
                    .unwrap_or_else(|_| panic!("SVSM_BASE={v:?} is not a hexadecimal address"))
            }
            Err(_) => DEFAULT_SVSM_BASE,
        };
        // 2 MiB aligned (the entry maps the image's 64 MiB with one page directory run), above
        // the first 2 MiB (left unmapped), and low enough for 32-bit and sign-extended
        // absolute addresses.
        if base % (2 << 20) != 0 || !((2 << 20)..(1 << 31) - (64 << 20)).contains(&base) {
            panic!(
                "SVSM_BASE={base:#x}: must be 2 MiB aligned, at least 2 MiB, below 2 GiB - 64 MiB"
            );
        }
        let ld = std::fs::read_to_string(format!("{dir}/link.ld")).expect("link.ld");
        let ld = ld
            .replace("ENTRY(pvh_start32)", "ENTRY(snp_start32)")
            .replace(". = 0x100000;", &format!(". = {base:#x};"))
            .replace("KEEP(*(.text.pvh_start32))", "KEEP(*(.text.snp_start32))");
        assert!(ld.contains("ENTRY(snp_start32)") && ld.contains(&format!(". = {base:#x};")));
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("link-snp.ld");
        std::fs::write(&out, ld).expect("write link-snp.ld");
        out.display().to_string()
    } else {
        format!("{dir}/link.ld")
    };
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--error-limit=0");
}
