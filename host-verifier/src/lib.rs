//! `host-verifier` appraises evidence from an svsm-vhsm guest on a machine the relying party
//! trusts: SEV-SNP reports and their AMD certificate chains, vTPM quotes, event logs and the
//! services manifest. It trusts only AMD's pinned root keys and the caller's policy; the
//! evidence, the certificates and the logs are untrusted input.
//!
//! The appraisal arrives with the host-verifier issue; until then this crate is empty.

#![forbid(unsafe_code)]
