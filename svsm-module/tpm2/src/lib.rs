//! TPM 2.0 marshalling shared by everything that talks to a TPM itself: the SVSM module
//! (manufacture, the attestation manifest's EK and AK), the `vtpm` engine crate, the guest tools
//! (`svsm-attest` quotes through `/dev/tpmrm0`) and the test harness. It owns the byte layout of
//! the commands svsm-vhsm issues, bounds-checked parsing of their responses, and the key
//! templates with their persistent handles. It trusts nothing it parses: a response is a
//! TPM's (or a host's) claim until checked, and every reader returns a typed error instead of
//! panicking. No I/O and no crypto: callers send the bytes and verify what comes back.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod command;
pub mod platform;
pub mod templates;
