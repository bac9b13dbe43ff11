//! `svsm-sim` is the host-side companion a user runs next to an svsm-vhsm guest on this
//! machine: it serves a vTPM (of the simulated SNP machine `test-harness` provides, or of the
//! freestanding SVSM image) to TPM clients over the mssim protocol and to QEMU as its TPM
//! emulator backend, builds a real Linux guest from Debian's packages, and boots it under QEMU
//! and OVMF with the SVSM call channel on a serial port. It trusts the machines it serves (they
//! are its own) and treats everything QEMU and the guest send as untrusted input: the TPM
//! emulator control channel is parsed by `svsm_abi::swtpm` with typed errors.

#![forbid(unsafe_code)]

pub mod disk;
pub mod endpoints;
pub mod guest;
pub mod guest_demo;
pub mod qemu_tpm;
pub mod server_process;
