//! `test-harness` owns the test bed of svsm-vhsm: the simulated SNP machine (software PSP with
//! a test certificate chain, guest memory with the RMP's VMPL permissions, the SVSM module over
//! them with the real vTPM engine), the mssim TPM endpoint that lets real TPM clients in,
//! end-to-end tests, and the `svsm-sim` binary behind `make demo`. It trusts everything (it is
//! the test bed), and nothing depends on it.

#![forbid(unsafe_code)]

pub mod demo;
pub mod evidence;
pub mod guest;
pub mod guest_channel;
pub mod image;
pub mod mssim;
pub mod qemu_tpm;
pub mod sim;
pub mod tpm_backend;
pub mod vectors;
