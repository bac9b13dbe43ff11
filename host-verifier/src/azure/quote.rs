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
/// Most `TPMS_PCR_SELECTION` entries accepted in one quote (one per bank; TPMs have a few).
pub const MAX_PCR_SELECTIONS: u32 = 16;

/// The name of a TPM hash algorithm id, for output.
pub fn tpm_alg_name(alg: u16) -> String {
    match alg {
        TPM_ALG_SHA1 => "SHA-1".into(),
        TPM_ALG_SHA256 => "SHA-256".into(),
        TPM_ALG_SHA384 => "SHA-384".into(),
        TPM_ALG_SHA512 => "SHA-512".into(),
        other => format!("alg {other:#06x}"),
    }
}

/// Why bytes are not a TPM quote this verifier reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The input ends inside `field`.
    #[error("TPMS_ATTEST truncated: {field} at offset {offset} needs {need} bytes, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The magic is not TPM_GENERATED_VALUE.
    #[error("TPMS_ATTEST magic is {0:#010x}, expected 0xff544347 (TPM_GENERATED_VALUE)")]
    Magic(u32),
    /// The attestation is not a quote.
    #[error("TPMS_ATTEST type is {0:#06x}, expected 0x8018 (TPM_ST_ATTEST_QUOTE)")]
    NotAQuote(u16),
    /// clockInfo.safe is not a TPMI_YES_NO.
    #[error("TPMS_CLOCK_INFO.safe is {0}, must be 0 or 1")]
    ClockSafe(u8),
    /// Too many PCR selections.
    #[error("TPML_PCR_SELECTION count {0} exceeds {MAX_PCR_SELECTIONS}")]
    TooManySelections(u32),
    /// Bytes follow the structure.
    #[error("{0} bytes follow the TPMS_ATTEST structure")]
    TrailingBytes(usize),
}

/// One `TPMS_PCR_SELECTION`: a bank and a bitmap (bit `j` of byte `i` selects PCR `8*i + j`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcrSelection<'a> {
    /// The bank's hash algorithm.
    pub hash: u16,
    /// The `pcrSelect` bitmap.
    pub select: &'a [u8],
}

impl PcrSelection<'_> {
    /// The selected PCR indices, ascending (the order the TPM concatenates them in).
    pub fn pcrs(&self) -> impl Iterator<Item = usize> + '_ {
        self.select.iter().enumerate().flat_map(|(i, byte)| {
            (0..8usize)
                .filter(move |bit| byte & (1u8 << bit) != 0)
                .map(move |bit| i * 8 + bit)
        })
    }

    /// True when no PCR is selected.
    pub fn is_empty(&self) -> bool {
        self.select.iter().all(|&b| b == 0)
    }
}

/// A parsed `TPMS_ATTEST` of a quote. The slices borrow the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmsAttest<'a> {
    /// qualifiedSigner (TPM2B_NAME contents: name algorithm + digest of the signing key).
    pub qualified_signer: &'a [u8],
    /// extraData (TPM2B_DATA contents): the verifier's qualifying data (nonce).
    pub extra_data: &'a [u8],
    /// clockInfo.clock (milliseconds).
    pub clock: u64,
    /// clockInfo.resetCount.
    pub reset_count: u32,
    /// clockInfo.restartCount.
    pub restart_count: u32,
    /// clockInfo.safe.
    pub safe: bool,
    /// firmwareVersion.
    pub firmware_version: u64,
    /// TPMS_QUOTE_INFO.pcrSelect.
    pub pcr_select: Vec<PcrSelection<'a>>,
    /// TPMS_QUOTE_INFO.pcrDigest (TPM2B_DIGEST contents).
    pub pcr_digest: &'a [u8],
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let left = self.buf.len().saturating_sub(self.pos);
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(QuoteError::Truncated {
                field,
                offset: self.pos,
                need: n,
                have: left,
            })?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], QuoteError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, QuoteError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, QuoteError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A TPM2B: u16 size, then that many bytes.
    fn tpm2b(
        &mut self,
        size_field: &'static str,
        field: &'static str,
    ) -> Result<&'a [u8], QuoteError> {
        let n = self.u16(size_field)?;
        self.take(usize::from(n), field)
    }
}

impl<'a> TpmsAttest<'a> {
    /// Parses a quote's `TPMS_ATTEST`; the input must be exactly the structure.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, QuoteError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let magic = r.u32("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(QuoteError::Magic(magic));
        }
        let ty = r.u16("type")?;
        if ty != TPM_ST_ATTEST_QUOTE {
            return Err(QuoteError::NotAQuote(ty));
        }
        let qualified_signer = r.tpm2b("qualifiedSigner.size", "qualifiedSigner")?;
        let extra_data = r.tpm2b("extraData.size", "extraData")?;
        let clock = r.u64("clockInfo.clock")?;
        let reset_count = r.u32("clockInfo.resetCount")?;
        let restart_count = r.u32("clockInfo.restartCount")?;
        let safe = match r.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            v => return Err(QuoteError::ClockSafe(v)),
        };
        let firmware_version = r.u64("firmwareVersion")?;
        let count = r.u32("pcrSelect.count")?;
        if count > MAX_PCR_SELECTIONS {
            return Err(QuoteError::TooManySelections(count));
        }
        let mut pcr_select = Vec::new();
        for _ in 0..count {
            let hash = r.u16("pcrSelections.hash")?;
            let size = r.u8("pcrSelections.sizeofSelect")?;
            let select = r.take(usize::from(size), "pcrSelections.pcrSelect")?;
            pcr_select.push(PcrSelection { hash, select });
        }
        let pcr_digest = r.tpm2b("pcrDigest.size", "pcrDigest")?;
        let rest = bytes.len().saturating_sub(r.pos);
        if rest != 0 {
            return Err(QuoteError::TrailingBytes(rest));
        }
        Ok(TpmsAttest {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }
}

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
        let mut r = Reader { buf: sig, pos: 0 };
        let length = SignatureFormatError::Length {
            found: sig.len(),
            expected: key_len,
        };
        let scheme = r.u16("sigAlg").map_err(|_| length.clone())?;
        let hash = r.u16("hash").map_err(|_| length.clone())?;
        if scheme != TPM_ALG_RSASSA {
            return Err(SignatureFormatError::Scheme(scheme));
        }
        if hash != TPM_ALG_SHA256 {
            return Err(SignatureFormatError::Hash(hash));
        }
        return match r.tpm2b("sig.size", "sig") {
            Ok(block) if block.len() == key_len => Ok(block),
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
        let a = TpmsAttest::parse(&q).unwrap();
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
                    TpmsAttest::parse(&q[..n]),
                    Err(QuoteError::Truncated { .. })
                ),
                "{n}"
            );
        }
        let mut long = q.clone();
        long.push(0);
        assert_eq!(TpmsAttest::parse(&long), Err(QuoteError::TrailingBytes(1)));
    }

    #[test]
    fn bad_fields() {
        let q = quote(b"", &[], &[]);
        let mut m = q.clone();
        m[0] = 0;
        assert!(matches!(TpmsAttest::parse(&m), Err(QuoteError::Magic(_))));
        let mut m = q.clone();
        m[5] = 0x14;
        assert_eq!(TpmsAttest::parse(&m), Err(QuoteError::NotAQuote(0x8014)));
        let mut m = q.clone();
        // safe is the last byte of clockInfo: after magic(4) type(2) signer(2+2) extra(2).
        m[12 + 16] = 2;
        assert_eq!(TpmsAttest::parse(&m), Err(QuoteError::ClockSafe(2)));
        let mut m = q.clone();
        let count_at = 12 + 17 + 8;
        m[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            TpmsAttest::parse(&m),
            Err(QuoteError::TooManySelections(u32::MAX))
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
