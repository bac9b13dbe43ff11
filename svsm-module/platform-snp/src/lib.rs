//! `svsm-platform-snp` is the SEV-SNP hardware backend of the svsm-vhsm module running at VMPL0:
//! the code that talks to the AMD secure processor (PSP) and the hypervisor, and drives the RMP
//! instructions. It implements svsm-core's platform traits with these pieces.
//!
//! Layers, bottom up:
//! - [`cpu`]: the [`cpu::CpuOps`] trait (PVALIDATE, RMPADJUST, the GHCB MSR, VMGEXIT, RDSEED,
//!   RDTSC, HLT, INVLPG) and typed wrappers that turn the instructions' failure codes into
//!   errors. [`hw::HardwareCpu`] executes the real instructions; host tests use mocks.
//! - [`memory`]: [`memory::SharedMemory`] (pages shared with the hypervisor) and
//!   [`memory::PrivateMemory`] (VMPL0's private view of guest memory), with
//!   [`hw::SharedWindow`] and [`hw::DirectMap`] as the hardware mappings, and
//!   [`memory::SnpMemory`], svsm-core's `GuestMemory` under the permission model the RMP
//!   enforces.
//! - [`ghcb`]: the GHCB MSR protocol (registration, page-state change, run VMPL, termination)
//!   and GHCB-page events (page-state change, guest request, extended guest request).
//! - [`envelope`] and [`messenger`]: the PSP guest-message envelope (AES-256-GCM under a VMPCK,
//!   per-VMPCK sequence numbers never reused, the VMPCK disabled on any reply that does not
//!   check out) and MSG_REPORT / MSG_KEY / the extended report over a
//!   [`messenger::GuestRequestChannel`].
//! - [`platform`]: [`platform::SnpPlatform`] and its parts implementing `GuestMemory`,
//!   `SecureProcessor`, `Entropy` and `Clock`.
//!
//! Trust: the hypervisor and everything it writes (the GHCB page, response pages, the
//! certificate buffer, the MSR) are hostile: they are copied into private memory once and then
//! checked. The PSP is trusted, but its replies are authenticated before they are believed.
//!
//! `unsafe` exists only in [`hw`] (the instructions and the raw mappings); every other module
//! is safe code.

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
#[cfg(test)]
extern crate std;

pub mod cpu;
pub mod envelope;
pub mod ghcb;
#[allow(unsafe_code)]
pub mod hw;
pub mod memory;
pub mod messenger;
pub mod platform;
pub mod vcpus;

pub use cpu::CpuOps;
pub use ghcb::{Ghcb, GhcbError};
pub use memory::{PrivateMemory, SharedMemory, SnpMemory};
pub use messenger::{GuestMessenger, GuestRequestChannel, MessengerError};
pub use platform::{SnpPlatform, SnpPsp};

#[cfg(test)]
mod testutil;
