//! The hardware side: the only `unsafe` code of the crate.
//! - [`cpu`]: [`HardwareCpu`], the [`crate::cpu::CpuOps`] that executes PVALIDATE, RMPADJUST,
//!   RDMSR/WRMSR of the GHCB MSR, VMGEXIT, RDSEED, RDTSC, INVLPG and HLT.
//! - [`map`]: [`SharedWindow`] and [`DirectMap`], raw mappings of the hypervisor-shared pages and
//!   of guest memory, accessed with volatile byte copies because other parties (the host, other
//!   vCPUs) may change them at any time.
//!
//! These run only at CPL0 inside an SEV-SNP guest at VMPL0. The code compiles everywhere (it
//! is built for `x86_64-unknown-none` in CI) but is never executed by host tests, which drive
//! the safe layers through mocks of the same traits.

pub mod cpu;
pub mod map;

pub use cpu::HardwareCpu;
pub use map::{DirectMap, SharedWindow};
