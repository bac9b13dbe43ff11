//! `ovmf` computes the SEV-SNP launch digest (the report's MEASUREMENT) that a guest should
//! have, so a verifier's reference values can be generated from the images instead of copied
//! from a booted machine. It owns three things: the parsers for an OVMF image's footer GUID
//! table and SEV metadata ([`Firmware`]); the replay of the PSP's PAGE_INFO SHA-384 chain for the
//! QEMU/KVM `-bios` launch ([`snp`]: firmware pages, metadata sections, the kernel/initrd/cmdline
//! hashes page, one VMSA per vCPU); and the same chain for an IGVM file such as a COCONUT-SVSM +
//! OVMF image ([`igvm`]), with the known differences between QEMU and the measuring tools chosen
//! explicitly by [`IgvmFlavor`]. Beside the SNP digest it computes the SHA-256 PCR values of a
//! non-SEV QEMU + OVMF + Linux EFI-stub direct boot from the kernel, initrd and command line
//! ([`direct_boot`]). It also writes the IGVM file of an svsm-vhsm launch ([`igvm_build`]),
//! whose digest the same chain then predicts.
//!
//! It trusts nothing in the files it reads: firmware and IGVM bytes are parsed as untrusted
//! input, every offset and length is bounds- and overflow-checked, and every malformed table is
//! a typed error naming the field, never a panic. It trusts the PAGE_INFO layout and page types
//! of `svsm-abi`, the `sha2` crate for SHA-384/SHA-256, the `igvm` crate's binary parser for
//! IGVM files, and the `object` and `authenticode` crates for an EFI kernel's PE headers and
//! Authenticode digest. The facts it follows come from public sources, cited where used: the
//! AMD SEV-SNP Firmware ABI (doc 56860, SNP_LAUNCH_UPDATE and its PAGE_INFO table), QEMU
//! `target/i386/sev.c`, edk2 `OvmfPkg/ResetVector`, and the two independent calculators it is
//! tested against (sev-snp-measure 0.0.13, the `sev` crate 8.0.0); each structure carries
//! compile-time size and offset assertions.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

/// Compile-time checks of a structure's size and of its fields' offsets against its source.
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr $(, $field:ident = $off:expr)* $(,)?) => {
        const _: () = assert!(::core::mem::size_of::<$ty>() == $size);
        $( const _: () = assert!(::core::mem::offset_of!($ty, $field) == $off); )*
    };
}

pub mod cpu;
pub mod digest;
pub mod direct_boot;
pub mod error;
pub mod firmware;
pub mod hashes;
pub mod igvm;
pub mod igvm_build;
pub mod policy;
pub mod snp;
pub mod vmsa;

pub use cpu::VcpuType;
pub use digest::{LaunchDigest, Measurement};
pub use direct_boot::{
    expected_pcrs, kernel_digest, load_options_digest, DirectBoot, DirectBootError,
};
pub use error::{
    DigestHexError, FirmwareError, IgvmBuildError, IgvmError, MeasureError, VcpuTypeError,
};
pub use firmware::{Firmware, Section, SectionKind};
pub use hashes::SevHashes;
pub use igvm::{igvm_launch_digest, IgvmFlavor};
pub use snp::{ovmf_hash, snp_launch_digest, LaunchParams};
pub use vmsa::VmmType;

/// Size of a guest page as the PSP measures it.
pub const PAGE_SIZE: usize = 4096;

/// One 4 KiB page.
pub type Page = [u8; PAGE_SIZE];
