//! `svsm-abi` owns every byte layout that crosses a trust boundary in svsm-vhsm, defined once:
//! the SVSM calling convention (result codes, protocol and call ids, calling area), the
//! attestation protocol requests and the services manifest, the vTPM `TPM_SEND_COMMAND`
//! buffers, the AMD SEV-SNP ATTESTATION_REPORT (versions 2 through 5) with its TCB, policy,
//! platform-info and signature fields, the SNP guest-request payloads (MSG_REPORT_REQ/RSP,
//! MSG_KEY_REQ/RSP), the extended-report certificate table, the launch-digest PAGE_INFO
//! record, the TCG crypto-agile event log, Linux IMA's binary measurement list, QEMU's TPM
//! emulator control messages, and the GPU evidence container with its nonce derivation.
//!
//! It trusts nothing it is given: every parser takes `&[u8]` from an untrusted party (a guest,
//! a host, a hypervisor, a file) and returns either a typed view or a typed error that names the
//! offending field. No parser panics or reads out of bounds; the crate has no `unsafe` and no
//! allocation, so the SVSM module, the guest driver and the host verifier share it unchanged.
//! Each structure cites the table of the specification it follows and carries compile-time
//! size and offset assertions.
//!
//! The error enums of what the module consumes are exhaustive on purpose: the module core maps
//! every variant to an SVSM result code without a catch-all arm, so a new variant must be mapped
//! where it is consumed. Host-only formats (IMA) have `#[non_exhaustive]` errors.

#![no_std]
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

#[cfg(test)]
extern crate std;

pub mod attest;
pub mod core_protocol;
pub mod eventlog;
pub mod frame;
pub mod gpu;
pub mod guid;
pub mod identity;
pub mod igvm_boot;
pub mod ima;
pub mod launch;
pub mod snp;
pub mod svsm;
pub mod swtpm;
pub mod tpm_vendor;
pub mod vault;
pub mod vtpm;

pub use guid::Guid;

/// Compile-time checks of a structure's size and of its fields' offsets against the spec table.
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr $(, $field:ident = $off:expr)* $(,)?) => {
        const _: () = assert!(::core::mem::size_of::<$ty>() == $size);
        $( const _: () = assert!(::core::mem::offset_of!($ty, $field) == $off); )*
    };
}
pub(crate) use assert_layout;
