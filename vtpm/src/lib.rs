//! `vtpm` owns the TPM 2.0 engine: the TCG reference implementation as Debian's `libtpms`
//! builds it, linked statically, behind a safe API. It is the only crate with FFI into the
//! engine. It trusts libtpms and OpenSSL's libcrypto; it trusts no TPM command it is handed.
//!
//! The engine binding arrives with the vTPM issue; until then this crate is empty.

#![forbid(unsafe_code)]
