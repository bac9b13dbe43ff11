//! TPM 2.0 quote structures (TPM 2.0 Part 2, big-endian marshalling): `TPMS_ATTEST` of type
//! `TPM_ST_ATTEST_QUOTE`, and the signature as a raw RSASSA block or a marshalled
//! `TPMT_SIGNATURE`. Every read is bounds-checked; every anomaly is a typed [`QuoteError`].

/// `TPM_GENERATED_VALUE`: the magic of every TPM-produced attestation.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_SHA512`.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// `TPM_ALG_RSASSA` (PKCS#1 v1.5 signatures).
pub const TPM_ALG_RSASSA: u16 = 0x0014;

pub use crate::bundle_verify::tpm::alg_name as tpm_alg_name;

/// The quote's TPMS_ATTEST is read by the one parser the bundle appraisal uses too (strict
/// size bounds on every field); Azure quotes have the same structure.
pub use crate::bundle_verify::tpm::{AttestError, PcrSelection, QuoteAttest};

/// Why a quote signature is not an RSASSA signature block this verifier reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFormatError {
    /// A TPMT_SIGNATURE with another scheme.
    #[error("TPMT_SIGNATURE scheme {0:#06x} is not TPM_ALG_RSASSA (0x0014)")]
    Scheme(u16),
    /// A TPMT_SIGNATURE whose hash is not SHA-256.
    #[error("TPMT_SIGNATURE hash is {}, expected SHA-256", tpm_alg_name(*.0))]
    Hash(u16),
    /// Neither a raw block of the key size nor a TPMT_SIGNATURE around one.
    #[error("signature is {found} bytes; expected {expected} (raw) or {} (TPMT_SIGNATURE)", expected + 6)]
    Length {
        /// Found.
        found: usize,
        /// The AK modulus size.
        expected: usize,
    },
}

/// The raw RSASSA block of `sig` for a key of `key_len` bytes: `sig` itself when it is that long,
/// or the contents of a marshalled `TPMT_SIGNATURE` (RSASSA, SHA-256, TPM2B of `key_len` bytes).
pub fn rsassa_block(sig: &[u8], key_len: usize) -> Result<&[u8], SignatureFormatError> {
    if sig.len() == key_len {
        return Ok(sig);
    }
    let wrapped = key_len.checked_add(6);
    if Some(sig.len()) == wrapped {
        // sigAlg u16, hash u16, TPM2B size u16, then the block (all big-endian).
        let length = SignatureFormatError::Length {
            found: sig.len(),
            expected: key_len,
        };
        let be16 = |at: usize| {
            sig.get(at..at + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(u16::from_be_bytes)
        };
        let (Some(scheme), Some(hash), Some(size)) = (be16(0), be16(2), be16(4)) else {
            return Err(length);
        };
        if scheme != TPM_ALG_RSASSA {
            return Err(SignatureFormatError::Scheme(scheme));
        }
        if hash != TPM_ALG_SHA256 {
            return Err(SignatureFormatError::Hash(hash));
        }
        return match sig.get(6..) {
            Some(block) if usize::from(size) == key_len && block.len() == key_len => Ok(block),
            _ => Err(length),
        };
    }
    Err(SignatureFormatError::Length {
        found: sig.len(),
        expected: key_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(extra: &[u8], select: &[(u16, &[u8])], digest: &[u8]) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        q.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        q.extend_from_slice(&[0, 2, 0, 0x0b]);
        q.extend_from_slice(&(extra.len() as u16).to_be_bytes());
        q.extend_from_slice(extra);
        q.extend_from_slice(&[0; 17]);
        q.extend_from_slice(&[0; 8]);
        q.extend_from_slice(&(select.len() as u32).to_be_bytes());
        for (hash, bits) in select {
            q.extend_from_slice(&hash.to_be_bytes());
            q.push(bits.len() as u8);
            q.extend_from_slice(bits);
        }
        q.extend_from_slice(&(digest.len() as u16).to_be_bytes());
        q.extend_from_slice(digest);
        q
    }

    #[test]
    fn parses_and_lists_pcrs() {
        let q = quote(b"n", &[(TPM_ALG_SHA256, &[0x81, 0x00, 0x01])], &[7; 32]);
        let a = QuoteAttest::parse(&q).unwrap();
        assert_eq!(a.extra_data, b"n");
        assert_eq!(a.pcr_select[0].pcrs().collect::<Vec<_>>(), vec![0, 7, 16]);
        assert_eq!(a.pcr_digest, &[7; 32]);
    }

    #[test]
    fn every_prefix_and_extension_is_an_error() {
        let q = quote(b"challenge", &[(TPM_ALG_SHA256, &[0xff; 3])], &[1; 32]);
        for n in 0..q.len() {
            assert!(
                matches!(
                    QuoteAttest::parse(&q[..n]),
                    Err(AttestError::Truncated { .. })
                ),
                "{n}"
            );
        }
        let mut long = q.clone();
        long.push(0);
        assert_eq!(
            QuoteAttest::parse(&long),
            Err(AttestError::TrailingBytes(1))
        );
    }

    #[test]
    fn bad_fields() {
        let q = quote(b"", &[], &[]);
        let mut m = q.clone();
        m[0] = 0;
        assert!(matches!(QuoteAttest::parse(&m), Err(AttestError::Magic(_))));
        let mut m = q.clone();
        m[5] = 0x14;
        assert_eq!(QuoteAttest::parse(&m), Err(AttestError::Type(0x8014)));
        let mut m = q.clone();
        // safe is the last byte of clockInfo: after magic(4) type(2) signer(2+2) extra(2).
        m[12 + 16] = 2;
        assert_eq!(QuoteAttest::parse(&m), Err(AttestError::ClockSafe(2)));
        let mut m = q.clone();
        let count_at = 12 + 17 + 8;
        m[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            QuoteAttest::parse(&m),
            Err(AttestError::TooManySelections(u32::MAX))
        );
    }

    #[test]
    fn signature_forms() {
        let raw = [5u8; 256];
        assert_eq!(rsassa_block(&raw, 256).unwrap(), &raw);
        let mut t = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
        t.extend_from_slice(&raw);
        assert_eq!(rsassa_block(&t, 256).unwrap(), &raw);
        t[1] = 0x16;
        assert_eq!(
            rsassa_block(&t, 256),
            Err(SignatureFormatError::Scheme(0x16))
        );
        t[1] = 0x14;
        t[3] = 0x04;
        assert_eq!(
            rsassa_block(&t, 256),
            Err(SignatureFormatError::Hash(TPM_ALG_SHA1))
        );
        t[3] = 0x0b;
        t[4] = 0;
        assert!(matches!(
            rsassa_block(&t, 256),
            Err(SignatureFormatError::Length { .. })
        ));
        assert!(matches!(
            rsassa_block(&raw[..255], 256),
            Err(SignatureFormatError::Length { found: 255, .. })
        ));
    }
}
