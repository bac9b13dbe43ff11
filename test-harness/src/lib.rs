//! `test-harness` owns the test bed of svsm-vhsm: the simulated SNP machine (software PSP with
//! a test certificate chain, guest memory with the RMP's VMPL permissions, the SVSM module over
//! them with the real vTPM engine), the freestanding image as a machine (`image`), the mssim
//! TPM endpoint that lets real TPM clients in, the end-to-end tests, and the demo. The user's
//! tool on top of it (the QEMU TPM backend, the guest builder and runner) is the `svsm-sim`
//! crate next to it. It trusts everything (it is the test bed); only `svsm-sim` depends on it.

#![forbid(unsafe_code)]

pub mod broker;
pub mod demo;
pub mod evidence;
pub mod guest_channel;
pub mod image;
pub mod mssim;
pub mod sim;
pub mod tpm_backend;
pub mod vectors;
