//! `test-harness` owns the test bed of svsm-vhsm: the simulated SNP machine, end-to-end tests,
//! and the `svsm-sim` binary behind `make demo`. It trusts everything (it is the test bed), and
//! nothing depends on it.

#![forbid(unsafe_code)]

pub mod vectors;
