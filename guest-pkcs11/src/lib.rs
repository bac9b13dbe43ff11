//! `libsvsm_vault_pkcs11.so`: a PKCS#11 2.40 module whose one token is the svsm-vhsm vault at
//! VMPL0, so applications that speak PKCS#11 (OpenSSL's pkcs11 engine, OpenSSH, GnuTLS,
//! p11-kit, pkcs11-tool) use vault keys without knowing the vault.
//!
//! What it owns: the PKCS#11 object model over vault keys ([`objects`]), sessions, searches and
//! operations ([`token`]), the mechanisms ([`mechanism`]), the C entry points ([`ffi`], the
//! only module with `unsafe`: pointer checks at the boundary), and where the vault is
//! ([`config`]: the TPM vendor command through `/dev/tpmrm0`, or the SVSM call channel).
//!
//! What it trusts: nothing the application passes (every pointer, length, template and
//! mechanism parameter is checked, and no panic crosses the C boundary); the vault's answers
//! only as far as the vault client bounds-checks them. Keys never pass through it: the vault
//! answers with public keys, signatures, MACs and ciphertexts only.

#![deny(unsafe_code)]

pub mod config;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod mechanism;
pub mod objects;
pub mod token;

pub use error::Error;
pub use token::{Attr, Template, Token};
