//! The exported-state envelope. libtpms cannot be handed arbitrary bytes as state: a corrupt
//! object inside a permanent or volatile blob makes it take its fatal-error path outside a
//! command, which `longjmp`s into a dead stack frame and crashes the process (see `crate::ffi`).
//! So every blob leaves [`crate::Vtpm`] wrapped with a SHA-256 digest, and is handed back to
//! libtpms only after the digest matches.
//!
//! The digest detects corruption and truncation, not forgery: whoever stores the state must
//! protect its authenticity (the SVSM seals it with an AEAD key only VMPL0 holds).
//!
//! Layout of each non-empty blob (integers big-endian):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 4    | magic `"vTPM"` |
//! | 4      | 2    | format version, 1 |
//! | 6      | 2    | kind: 1 = permanent, 2 = volatile |
//! | 8      | 32   | digest |
//! | 40     | n    | libtpms's blob |
//!
//! The permanent digest is SHA-256(bytes 0..8 || blob). The volatile digest is
//! SHA-256(bytes 0..8 || permanent digest || blob): it binds the volatile state to the
//! permanent state it was exported with. An empty volatile blob means "no volatile state".

use alloc::vec::Vec;
use svsm_core::tpm::{TpmEngineError, TpmState};
use zeroize::Zeroizing;

use crate::ffi::sha256;

const MAGIC: [u8; 4] = *b"vTPM";
const VERSION: u16 = 1;
const KIND_PERMANENT: u16 = 1;
const KIND_VOLATILE: u16 = 2;
/// Bytes before the libtpms blob.
pub(crate) const HEADER_LEN: usize = 40;

fn prefix(kind: u16) -> [u8; 8] {
    let mut p = [0u8; 8];
    let (magic, rest) = p.split_at_mut(4);
    magic.copy_from_slice(&MAGIC);
    let (version, kind_field) = rest.split_at_mut(2);
    version.copy_from_slice(&VERSION.to_be_bytes());
    kind_field.copy_from_slice(&kind.to_be_bytes());
    p
}

fn digest(prefix: &[u8; 8], bound: Option<&[u8; 32]>, blob: &[u8]) -> [u8; 32] {
    let mut input = Zeroizing::new(Vec::with_capacity(8 + 32 + blob.len()));
    input.extend_from_slice(prefix);
    if let Some(bound) = bound {
        input.extend_from_slice(bound);
    }
    input.extend_from_slice(blob);
    sha256(&input)
}

fn wrap(kind: u16, bound: Option<&[u8; 32]>, blob: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let prefix = prefix(kind);
    let d = digest(&prefix, bound, blob);
    let mut out = Vec::with_capacity(HEADER_LEN + blob.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&d);
    out.extend_from_slice(blob);
    (out, d)
}

/// Checks one wrapped blob; returns its digest and libtpms's blob inside.
fn unwrap<'a>(
    kind: u16,
    bound: Option<&[u8; 32]>,
    wrapped: &'a [u8],
) -> Result<([u8; 32], &'a [u8]), TpmEngineError> {
    let (head, blob) = wrapped
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(TpmEngineError::StateCorrupt)?;
    let (found_prefix, found_digest) = head
        .split_first_chunk::<8>()
        .ok_or(TpmEngineError::StateCorrupt)?;
    let expected_prefix = prefix(kind);
    if *found_prefix != expected_prefix || blob.is_empty() {
        return Err(TpmEngineError::StateCorrupt);
    }
    let d = digest(&expected_prefix, bound, blob);
    // Not secret-dependent in a way that matters (the digest is over data the caller holds),
    // so a plain comparison is fine.
    if found_digest != d.as_slice() {
        return Err(TpmEngineError::StateCorrupt);
    }
    Ok((d, blob))
}

/// Wraps libtpms's (permanent, volatile) blobs into a [`TpmState`].
pub(crate) fn seal(permanent: &[u8], volatile: &[u8]) -> TpmState {
    let (permanent, perm_digest) = wrap(KIND_PERMANENT, None, permanent);
    let volatile = if volatile.is_empty() {
        Vec::new()
    } else {
        wrap(KIND_VOLATILE, Some(&perm_digest), volatile).0
    };
    TpmState {
        permanent,
        volatile,
    }
}

/// Checks a [`TpmState`] and returns libtpms's (permanent, volatile) blobs inside it; the
/// volatile one is empty when the state has none. [`TpmEngineError::StateCorrupt`] if either
/// is not a blob [`seal`] made, or was changed or truncated since.
pub(crate) fn open(state: &TpmState) -> Result<(&[u8], &[u8]), TpmEngineError> {
    let (perm_digest, permanent) = unwrap(KIND_PERMANENT, None, &state.permanent)?;
    let volatile = if state.volatile.is_empty() {
        &[][..]
    } else {
        unwrap(KIND_VOLATILE, Some(&perm_digest), &state.volatile)?.1
    };
    Ok((permanent, volatile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let st = seal(b"permanent state", b"volatile state");
        assert_eq!(st.permanent.len(), HEADER_LEN + 15);
        let (p, v) = open(&st).unwrap();
        assert_eq!((p, v), (&b"permanent state"[..], &b"volatile state"[..]));

        let no_vol = seal(b"permanent state", b"");
        assert!(no_vol.volatile.is_empty());
        assert_eq!(open(&no_vol).unwrap().1, b"");

        for i in 0..st.permanent.len() {
            let mut bad = st.clone();
            bad.permanent[i] ^= 1;
            assert_eq!(open(&bad), Err(TpmEngineError::StateCorrupt), "byte {i}");
        }
        for i in 0..st.volatile.len() {
            let mut bad = st.clone();
            bad.volatile[i] ^= 1;
            assert_eq!(open(&bad), Err(TpmEngineError::StateCorrupt), "byte {i}");
        }
        for n in 0..st.permanent.len() {
            let mut bad = st.clone();
            bad.permanent.truncate(n);
            assert_eq!(open(&bad), Err(TpmEngineError::StateCorrupt), "len {n}");
        }
        // volatile state of another export does not pass with this permanent state
        let other = seal(b"other permanent", b"volatile state");
        let mixed = TpmState {
            permanent: st.permanent.clone(),
            volatile: other.volatile.clone(),
        };
        assert_eq!(open(&mixed), Err(TpmEngineError::StateCorrupt));
        // kinds are not interchangeable
        let swapped = TpmState {
            permanent: st.volatile.clone(),
            volatile: Vec::new(),
        };
        assert_eq!(open(&swapped), Err(TpmEngineError::StateCorrupt));
    }

    #[test]
    fn sha256_known_answer() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1
        assert_eq!(
            sha256(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "libcrypto SHA256"
        );
    }
}
