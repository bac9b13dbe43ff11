//! `svsm-core` owns what runs at VMPL0 independent of the platform: the platform traits, the
//! dispatch of SVSM calls (core, attestation, vTPM and vault protocols), the key hierarchy, the
//! sealed state and the measurement log of higher-VMPL components.
//!
//! It trusts the platform implementation it is given (real SNP hardware or the simulated
//! machine) and the cryptographic primitives. It trusts nothing that comes from a guest at a
//! higher VMPL: guest requests are copied in once, validated as copies, and answered with SVSM
//! result codes, never with a panic. Wire formats come from `svsm-abi`.
//!

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

extern crate alloc;

pub use svsm_abi as abi;

mod attest;
pub mod core_protocol;
pub mod error;
pub mod guest_boot;
pub mod identity;
pub mod keys;
pub mod measure;
pub mod module;
pub mod platform;
pub mod request_loop;
pub mod sealed;
pub mod tpm;
pub mod tpm2;
pub mod vault;
mod vault_parts;
mod vault_service;
mod vtpm_service;

pub use error::SvsmError;
pub use module::{BootConfig, StateStatus, SvsmModule, TpmFactory};
pub use svsm_abi::svsm::CallRegisters;
