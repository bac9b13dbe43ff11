//! Runtime integrity of a guest as its TPM records it: which files Linux IMA measured, and
//! whether they are the ones the relying party allows. [`runtime_policy`] owns the allowlist
//! (Keylime's runtime policy format, and making one from a directory tree); [`ima_rounds`]
//! appraises a measurement list against it incrementally, round after round, from the position
//! a verifier kept. Both sit on the replay in [`crate::bundle_verify::ima`], used by the
//! one-shot bundle appraisal and the broker's continuous attestation alike.
//!
//! Trusted: the policy the caller hands in and the position it kept. Untrusted: the list and
//! the PCR 10 value, which must come from a quote whose signature the caller checked.

pub mod encode;
pub mod ima_rounds;
pub mod runtime_policy;
