//! `ovmf` computes the SEV-SNP launch digest a guest should have: it parses firmware images
//! (OVMF footer table, SEV metadata) and IGVM files and replays the PSP's PAGE_INFO chain. It
//! trusts nothing in the images it reads; every table is bounds-checked.
//!
//! The calculator arrives with the launch-measurement issue; until then this crate is empty.

#![forbid(unsafe_code)]
