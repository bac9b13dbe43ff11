//! `guest-driver` is the guest (VMPL1+) side of the svsm-vhsm protocols: the `SvsmTransport`
//! abstraction, typed clients for the vTPM, attestation and vault protocols, and the real
//! VMGEXIT transport. Its core is `no_std`; the `std` feature adds host conveniences.
//!
//! It trusts the SVSM at VMPL0 (that is the point of attesting it) but still bounds-checks
//! every length the SVSM returns. Wire formats come from `svsm-abi`.
//!
//! This crate is the skeleton of the driver; the clients arrive with the module-core issue.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub use svsm_abi as abi;
