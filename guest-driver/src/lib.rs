//! `guest-driver` is the guest (VMPL1+) side of the svsm-vhsm protocols: the [`SvsmTransport`]
//! abstraction, typed clients for the core, vTPM and attestation protocols, and the real
//! transport (GHCB MSR protocol + calling area + VMGEXIT) in its own `unsafe` module. Its core is
//! `no_std` + `alloc`; the `std` feature adds the framed stream transport and the `svsm-vault`
//! command line for guest apps.
//!
//! It trusts the SVSM at VMPL0 (attesting it is the point) but still bounds-checks every length
//! the SVSM returns, and it never trusts the hypervisor that relays the calls. Wire formats come
//! from `svsm-abi`.

#![no_std]
#![deny(unsafe_code)]
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
#[cfg(feature = "std")]
extern crate std;

pub use svsm_abi as abi;

#[cfg(feature = "std")]
pub mod agent_socket;
pub mod attest;
#[cfg(feature = "std")]
pub mod channel;
#[cfg(feature = "std")]
pub mod cli;
pub mod core_protocol;
#[cfg(feature = "std")]
pub mod evidence;
#[cfg(feature = "std")]
pub mod framed;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub mod ghcb;
pub mod tpm_vault;
pub mod transport;
pub mod vault;
pub mod vtpm;

pub use transport::{DriverError, SvsmTransport, TransportError};
