//! The TPM 2.0 structures of an evidence bundle's quote (TPM 2.0 Library Part 2, big-endian
//! marshalling): the quote's `TPMS_ATTEST`, the AK's ECDSA `TPMT_SIGNATURE`, and the AK's
//! `TPMT_PUBLIC` as the vTPM manifest carries it (an ECC NIST P-256 restricted signing key).
//! Two rules on a parsed quote are shared by the bundle and the Azure appraisals: which PCRs it
//! attests ([`QuoteAttest::sha256_selection`]: the SHA-256 bank, selected once) and who signed
//! it ([`QuoteAttest::check_signer`]: qualifiedSigner is the AK's Qualified Name, Part 1 §16).
//!
//! Every read is bounds-checked, every variable-size field has a hard upper bound, and every
//! anomaly is a typed error; nothing here panics on any input.

use p256::ecdsa::VerifyingKey;
use p256::EncodedPoint;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// `TPM_GENERATED_VALUE`: the magic of every TPM-produced attestation.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_RSA`.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_SHA512`.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// `TPM_ALG_NULL`.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECDSA`.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECC`.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ECC_NIST_P256`.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_RH_ENDORSEMENT`: the endorsement hierarchy. The vTPM's AK (and Azure's) is a primary
/// key made there with `TPM2_CreatePrimary`, so its Qualified Name is rooted in this handle.
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;

/// Largest `TPMS_ATTEST` accepted (a quote with the largest fields below is 347 bytes).
pub const MAX_ATTEST: usize = 512;
/// Largest `TPMT_SIGNATURE` accepted (ECDSA P-256 is 72 bytes).
pub const MAX_SIGNATURE: usize = 256;
/// Largest `TPMT_PUBLIC` accepted for the AK (an ECC P-256 key is 88 bytes).
pub const MAX_PUBLIC: usize = 1024;
/// `sizeof(TPMU_NAME)`: a hash algorithm id and a SHA-512 digest.
pub const MAX_NAME: usize = 2 + 64;
/// `sizeof(TPMU_HA)`: the largest digest (SHA-512), the bound of TPM2B_DATA and TPM2B_DIGEST.
pub const MAX_DIGEST: usize = 64;
/// Most `TPMS_PCR_SELECTION` entries in one quote (`HASH_COUNT`; one per bank).
pub const MAX_PCR_SELECTIONS: u32 = 16;
/// Largest `sizeofSelect` accepted (32 PCRs; the vTPM has 24, so 3).
pub const MAX_SIZEOF_SELECT: u8 = 4;
/// Size of a P-256 coordinate and scalar.
pub const P256_SIZE: usize = 32;

/// `TPMA_OBJECT.fixedTPM`.
pub const ATTR_FIXED_TPM: u32 = 1 << 1;
/// `TPMA_OBJECT.restricted`.
pub const ATTR_RESTRICTED: u32 = 1 << 16;
/// `TPMA_OBJECT.decrypt`.
pub const ATTR_DECRYPT: u32 = 1 << 17;
/// `TPMA_OBJECT.sign`.
pub const ATTR_SIGN: u32 = 1 << 18;
/// What an attestation key must have: only a restricted signing key that never leaves the TPM
/// signs nothing but TPM-generated structures, which is what makes a quote evidence.
pub const AK_REQUIRED_ATTRIBUTES: u32 = ATTR_FIXED_TPM | ATTR_RESTRICTED | ATTR_SIGN;

/// The name of a TPM algorithm id, for output.
pub fn alg_name(alg: u16) -> String {
    match alg {
        TPM_ALG_SHA1 => "SHA-1".into(),
        TPM_ALG_SHA256 => "SHA-256".into(),
        TPM_ALG_SHA384 => "SHA-384".into(),
        TPM_ALG_SHA512 => "SHA-512".into(),
        TPM_ALG_NULL => "NULL".into(),
        TPM_ALG_ECDSA => "ECDSA".into(),
        TPM_ALG_ECC => "ECC".into(),
        TPM_ALG_RSA => "RSA".into(),
        0x0014 => "RSASSA".into(),
        0x0016 => "RSAPSS".into(),
        other => format!("alg {other:#06x}"),
    }
}

/// Why bytes are not a quote's `TPMS_ATTEST`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// Larger than [`MAX_ATTEST`].
    #[error("TPMS_ATTEST is {0} bytes, more than the {MAX_ATTEST}-byte limit")]
    TooLarge(usize),
    /// The input ends inside a field.
    #[error("TPMS_ATTEST truncated: {field} at offset {offset} needs {need} bytes")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        need: usize,
    },
    /// The magic is not TPM_GENERATED_VALUE.
    #[error("TPMS_ATTEST magic is {0:#010x}, expected 0xff544347 (TPM_GENERATED_VALUE)")]
    Magic(u32),
    /// The attestation is not a quote.
    #[error("TPMS_ATTEST type is {0:#06x}, expected 0x8018 (TPM_ST_ATTEST_QUOTE)")]
    Type(u16),
    /// A TPM2B is larger than its type allows.
    #[error("TPMS_ATTEST {field} is {size} bytes, more than the {max} its type allows")]
    FieldTooLarge {
        /// The field.
        field: &'static str,
        /// Its declared size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// clockInfo.safe is not a TPMI_YES_NO.
    #[error("TPMS_CLOCK_INFO.safe is {0}, must be 0 or 1")]
    ClockSafe(u8),
    /// Too many PCR selections.
    #[error("TPML_PCR_SELECTION count {0} exceeds {MAX_PCR_SELECTIONS}")]
    TooManySelections(u32),
    /// A selection bitmap larger than any PCR bank.
    #[error("TPMS_PCR_SELECTION sizeofSelect {0} exceeds {MAX_SIZEOF_SELECT}")]
    SelectTooLarge(u8),
    /// Bytes follow the structure.
    #[error("{0} bytes follow the TPMS_ATTEST structure")]
    TrailingBytes(usize),
}

/// Why bytes are not an ECDSA P-256 / SHA-256 `TPMT_SIGNATURE`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Larger than [`MAX_SIGNATURE`].
    #[error("TPMT_SIGNATURE is {0} bytes, more than the {MAX_SIGNATURE}-byte limit")]
    TooLarge(usize),
    /// The input ends inside a field.
    #[error("TPMT_SIGNATURE truncated: {field} needs {need} bytes")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        need: usize,
    },
    /// sigAlg is not ECDSA.
    #[error("TPMT_SIGNATURE sigAlg is {}, expected ECDSA (0x0018)", alg_name(*.0))]
    Scheme(u16),
    /// The signature's hash is not SHA-256.
    #[error("TPMT_SIGNATURE hash is {}, expected SHA-256 (0x000b)", alg_name(*.0))]
    Hash(u16),
    /// r or s is empty or longer than a P-256 scalar.
    #[error("TPMT_SIGNATURE signatureR/S: {which} is {size} bytes, expected 1..=32")]
    ScalarSize {
        /// "r" or "s".
        which: &'static str,
        /// Its size.
        size: usize,
    },
    /// r or s is zero or not below the group order.
    #[error("TPMT_SIGNATURE r or s is zero or not below the P-256 group order")]
    ScalarRange,
    /// Bytes follow the structure.
    #[error("{0} bytes follow the TPMT_SIGNATURE structure")]
    TrailingBytes(usize),
}

/// Why a `TPMT_PUBLIC` is not an acceptable attestation key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicError {
    /// Empty, or larger than [`MAX_PUBLIC`].
    #[error("AK TPMT_PUBLIC is {0} bytes (expected 1..={MAX_PUBLIC})")]
    Size(usize),
    /// The input ends inside a field.
    #[error("AK TPMT_PUBLIC truncated: {field} needs {need} bytes")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        need: usize,
    },
    /// Not an ECC key.
    #[error("AK type is {}, expected ECC (0x0023)", alg_name(*.0))]
    Type(u16),
    /// nameAlg is not a hash this verifier knows.
    #[error("AK nameAlg is {}, expected SHA-256, SHA-384 or SHA-512", alg_name(*.0))]
    NameAlg(u16),
    /// The key is not a restricted signing key that never leaves the TPM.
    #[error("AK objectAttributes {attributes:#010x} lack {missing:#010x} (fixedTPM, restricted, sign must be set) or set decrypt")]
    Attributes {
        /// The attributes.
        attributes: u32,
        /// Required bits that are clear.
        missing: u32,
    },
    /// authPolicy larger than a digest.
    #[error("AK authPolicy is {0} bytes, more than a digest")]
    AuthPolicy(usize),
    /// A signing key with a symmetric algorithm.
    #[error("AK symmetric algorithm is {}, a signing key has NULL", alg_name(*.0))]
    Symmetric(u16),
    /// The signing scheme is not ECDSA with SHA-256.
    #[error("AK scheme is {} with {}, expected ECDSA with SHA-256", alg_name(*.scheme), alg_name(*.hash))]
    Scheme {
        /// scheme.
        scheme: u16,
        /// scheme.details.hashAlg (NULL when the scheme is NULL).
        hash: u16,
    },
    /// Not the P-256 curve.
    #[error("AK curveID is {0:#06x}, expected NIST P-256 (0x0003)")]
    Curve(u16),
    /// A KDF on a signing key.
    #[error("AK kdf is {}, expected NULL", alg_name(*.0))]
    Kdf(u16),
    /// A coordinate is empty or longer than 32 bytes.
    #[error("AK unique.{which} is {size} bytes, expected 1..=32")]
    Coordinate {
        /// "x" or "y".
        which: &'static str,
        /// Its size.
        size: usize,
    },
    /// (x, y) is not a point of P-256 (or is the identity).
    #[error("AK unique (x, y) is not a point on P-256")]
    NotOnCurve,
    /// Bytes follow the structure.
    #[error("{0} bytes follow the AK TPMT_PUBLIC structure")]
    TrailingBytes(usize),
}

/// Why a quote's PCR selection is not one SHA-256 selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectionError {
    /// A non-empty selection of a bank other than SHA-256.
    #[error("quote selects PCRs of the {} bank; only SHA-256 values are supplied", alg_name(*.0))]
    Bank(u16),
    /// The SHA-256 bank is selected more than once (non-empty both times).
    #[error("quote selects the SHA-256 bank more than once")]
    BankTwice,
    /// No PCR is selected.
    #[error("quote selects no PCR")]
    Empty,
}

/// Why a quote's qualifiedSigner is not the expected signer's Qualified Name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The AK's nameAlg is not a hash this verifier computes Names with.
    #[error("AK nameAlg is {}, expected SHA-256, SHA-384 or SHA-512", alg_name(*.0))]
    NameAlg(u16),
    /// qualifiedSigner differs from the AK's Qualified Name: another key signed the quote, or
    /// the AK is not the endorsement-hierarchy primary the evidence says it is.
    #[error("quote qualifiedSigner is {found}, but the AK's Qualified Name is {expected}")]
    Mismatch {
        /// qualifiedSigner, hex.
        found: String,
        /// nameAlg ‖ H(hierarchy ‖ Name(AK)), hex.
        expected: String,
    },
}

/// `nameAlg ‖ H_nameAlg(parts…)` for SHA-256/384/512; `None` for any other algorithm.
fn tagged_digest(name_alg: u16, parts: &[&[u8]]) -> Option<Vec<u8>> {
    fn run<D: Digest>(tag: u16, parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        [&tag.to_be_bytes()[..], &h.finalize()].concat()
    }
    match name_alg {
        TPM_ALG_SHA256 => Some(run::<Sha256>(name_alg, parts)),
        TPM_ALG_SHA384 => Some(run::<Sha384>(name_alg, parts)),
        TPM_ALG_SHA512 => Some(run::<Sha512>(name_alg, parts)),
        _ => None,
    }
}

/// The Name of an object (TPM 2.0 Part 1 §16): `nameAlg` (u16 big-endian) ‖
/// `H_nameAlg(TPMT_PUBLIC as marshalled)`. `None` unless nameAlg is SHA-256, SHA-384 or SHA-512.
pub fn object_name(name_alg: u16, public: &[u8]) -> Option<Vec<u8>> {
    tagged_digest(name_alg, &[public])
}

/// The Qualified Name of a primary object of `hierarchy` (Part 1 §16.6): `nameAlg` ‖
/// `H_nameAlg(QN(parent) ‖ Name)`, where a hierarchy's Qualified Name is its handle (u32
/// big-endian). This, not the Name, is what `TPM2_Quote` writes into qualifiedSigner. `None`
/// unless nameAlg is SHA-256, SHA-384 or SHA-512.
pub fn primary_qualified_name(hierarchy: u32, name_alg: u16, public: &[u8]) -> Option<Vec<u8>> {
    let name = object_name(name_alg, public)?;
    tagged_digest(name_alg, &[&hierarchy.to_be_bytes(), &name])
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

/// A parsed quote `TPMS_ATTEST`. The slices borrow the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteAttest<'a> {
    /// qualifiedSigner (TPM2B_NAME contents).
    pub qualified_signer: &'a [u8],
    /// extraData (TPM2B_DATA contents): the qualifying data, i.e. the verifier's nonce.
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

/// A parsed ECDSA `TPMT_SIGNATURE` (r and s left-padded to 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcdsaSignature {
    /// r, big-endian.
    pub r: [u8; P256_SIZE],
    /// s, big-endian.
    pub s: [u8; P256_SIZE],
}

/// An attestation key: a parsed ECC P-256 `TPMT_PUBLIC`.
#[derive(Clone, Debug)]
pub struct AkPublic {
    /// nameAlg.
    pub name_alg: u16,
    /// objectAttributes.
    pub attributes: u32,
    /// x, left-padded.
    pub x: [u8; P256_SIZE],
    /// y, left-padded.
    pub y: [u8; P256_SIZE],
    /// The verifying key.
    pub key: VerifyingKey,
}

/// A big-endian reader whose every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))?;
        self.pos += n;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(u8::from_be_bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    fn rest(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

impl<'a> QuoteAttest<'a> {
    /// Parses a quote's `TPMS_ATTEST`; the input must be exactly the structure.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_ATTEST {
            return Err(AttestError::TooLarge(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        fn get<'b, T>(
            r: &mut Reader<'b>,
            field: &'static str,
            need: usize,
            f: impl FnOnce(&mut Reader<'b>) -> Option<T>,
        ) -> Result<T, AttestError> {
            let offset = r.pos;
            f(r).ok_or(AttestError::Truncated {
                field,
                offset,
                need,
            })
        }
        fn tpm2b<'b>(
            r: &mut Reader<'b>,
            field: &'static str,
            max: usize,
        ) -> Result<&'b [u8], AttestError> {
            let size = usize::from(get(r, field, 2, Reader::u16)?);
            if size > max {
                return Err(AttestError::FieldTooLarge { field, size, max });
            }
            let offset = r.pos;
            r.take(size).ok_or(AttestError::Truncated {
                field,
                offset,
                need: size,
            })
        }
        let magic = get(&mut r, "magic", 4, Reader::u32)?;
        if magic != TPM_GENERATED_VALUE {
            return Err(AttestError::Magic(magic));
        }
        let ty = get(&mut r, "type", 2, Reader::u16)?;
        if ty != TPM_ST_ATTEST_QUOTE {
            return Err(AttestError::Type(ty));
        }
        let qualified_signer = tpm2b(&mut r, "qualifiedSigner", MAX_NAME)?;
        let extra_data = tpm2b(&mut r, "extraData", MAX_DIGEST)?;
        let clock = get(&mut r, "clockInfo.clock", 8, Reader::u64)?;
        let reset_count = get(&mut r, "clockInfo.resetCount", 4, Reader::u32)?;
        let restart_count = get(&mut r, "clockInfo.restartCount", 4, Reader::u32)?;
        let safe = match get(&mut r, "clockInfo.safe", 1, Reader::u8)? {
            0 => false,
            1 => true,
            v => return Err(AttestError::ClockSafe(v)),
        };
        let firmware_version = get(&mut r, "firmwareVersion", 8, Reader::u64)?;
        let count = get(&mut r, "pcrSelect.count", 4, Reader::u32)?;
        if count > MAX_PCR_SELECTIONS {
            return Err(AttestError::TooManySelections(count));
        }
        let mut pcr_select = Vec::new();
        for _ in 0..count {
            let hash = get(&mut r, "pcrSelections.hash", 2, Reader::u16)?;
            let size = get(&mut r, "pcrSelections.sizeofSelect", 1, Reader::u8)?;
            if size > MAX_SIZEOF_SELECT {
                return Err(AttestError::SelectTooLarge(size));
            }
            let need = usize::from(size);
            let select = get(&mut r, "pcrSelections.pcrSelect", need, |r| r.take(need))?;
            pcr_select.push(PcrSelection { hash, select });
        }
        let pcr_digest = tpm2b(&mut r, "pcrDigest", MAX_DIGEST)?;
        if r.rest() != 0 {
            return Err(AttestError::TrailingBytes(r.rest()));
        }
        Ok(QuoteAttest {
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

impl QuoteAttest<'_> {
    /// The PCRs the quote attests, ascending (the order the TPM hashes them in): every
    /// non-empty selection must be of the SHA-256 bank, that bank selected once, and at least
    /// one PCR selected. Empty selections of any bank are ignored.
    pub fn sha256_selection(&self) -> Result<Vec<usize>, SelectionError> {
        let mut selection = None;
        for sel in self.pcr_select.iter().filter(|s| !s.is_empty()) {
            if sel.hash != TPM_ALG_SHA256 {
                return Err(SelectionError::Bank(sel.hash));
            }
            if selection.replace(sel).is_some() {
                return Err(SelectionError::BankTwice);
            }
        }
        Ok(selection.ok_or(SelectionError::Empty)?.pcrs().collect())
    }

    /// Checks that qualifiedSigner is the Qualified Name of the primary key of `hierarchy`
    /// whose `TPMT_PUBLIC` (as marshalled, no TPM2B size) is `public`, with `name_alg`; returns
    /// that Qualified Name. A restricted signing key signs only what the TPM generated, and the
    /// TPM writes the signing key's own Qualified Name here, so a quote that names another key
    /// was not produced by the TPM for this AK.
    pub fn check_signer(
        &self,
        hierarchy: u32,
        name_alg: u16,
        public: &[u8],
    ) -> Result<Vec<u8>, SignerError> {
        let expected = primary_qualified_name(hierarchy, name_alg, public)
            .ok_or(SignerError::NameAlg(name_alg))?;
        if self.qualified_signer != expected.as_slice() {
            return Err(SignerError::Mismatch {
                found: hex::encode(self.qualified_signer),
                expected: hex::encode(&expected),
            });
        }
        Ok(expected)
    }
}

/// A big-endian integer of 1..=32 bytes, left-padded to 32; `None` when empty or too long.
fn pad32(bytes: &[u8]) -> Option<[u8; P256_SIZE]> {
    if bytes.is_empty() || bytes.len() > P256_SIZE {
        return None;
    }
    let mut out = [0u8; P256_SIZE];
    out.get_mut(P256_SIZE - bytes.len()..)?
        .copy_from_slice(bytes);
    Some(out)
}

impl EcdsaSignature {
    /// Parses a marshalled `TPMT_SIGNATURE` of scheme ECDSA with SHA-256; the input must be
    /// exactly the structure. r and s are range-checked against the P-256 group order.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() > MAX_SIGNATURE {
            return Err(SignatureError::TooLarge(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let trunc = |field, need| SignatureError::Truncated { field, need };
        let scheme = r.u16().ok_or(trunc("sigAlg", 2))?;
        if scheme != TPM_ALG_ECDSA {
            return Err(SignatureError::Scheme(scheme));
        }
        let hash = r.u16().ok_or(trunc("hash", 2))?;
        if hash != TPM_ALG_SHA256 {
            return Err(SignatureError::Hash(hash));
        }
        let mut scalar = |which: &'static str| -> Result<[u8; P256_SIZE], SignatureError> {
            let size = usize::from(r.u16().ok_or(trunc(which, 2))?);
            if size == 0 || size > P256_SIZE {
                return Err(SignatureError::ScalarSize { which, size });
            }
            let b = r.take(size).ok_or(trunc(which, size))?;
            pad32(b).ok_or(SignatureError::ScalarSize { which, size })
        };
        let rv = scalar("r")?;
        let sv = scalar("s")?;
        if r.rest() != 0 {
            return Err(SignatureError::TrailingBytes(r.rest()));
        }
        let sig = EcdsaSignature { r: rv, s: sv };
        sig.to_p256()?;
        Ok(sig)
    }

    /// The signature for `p256` (fails when r or s is zero or not below the group order).
    pub fn to_p256(&self) -> Result<p256::ecdsa::Signature, SignatureError> {
        p256::ecdsa::Signature::from_scalars(
            p256::FieldBytes::from(self.r),
            p256::FieldBytes::from(self.s),
        )
        .map_err(|_| SignatureError::ScalarRange)
    }
}

impl AkPublic {
    /// Parses the AK's `TPMT_PUBLIC` (as the vTPM manifest carries it, without a TPM2B size) and
    /// checks that it is an ECC NIST P-256 restricted signing key for ECDSA with SHA-256, whose
    /// public point is on the curve. The input must be exactly the structure.
    pub fn parse(bytes: &[u8]) -> Result<Self, PublicError> {
        if bytes.is_empty() || bytes.len() > MAX_PUBLIC {
            return Err(PublicError::Size(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let trunc = |field, need| PublicError::Truncated { field, need };
        let ty = r.u16().ok_or(trunc("type", 2))?;
        if ty != TPM_ALG_ECC {
            return Err(PublicError::Type(ty));
        }
        let name_alg = r.u16().ok_or(trunc("nameAlg", 2))?;
        if !matches!(name_alg, TPM_ALG_SHA256 | TPM_ALG_SHA384 | TPM_ALG_SHA512) {
            return Err(PublicError::NameAlg(name_alg));
        }
        let attributes = r.u32().ok_or(trunc("objectAttributes", 4))?;
        let missing = AK_REQUIRED_ATTRIBUTES & !attributes;
        if missing != 0 || attributes & ATTR_DECRYPT != 0 {
            return Err(PublicError::Attributes {
                attributes,
                missing,
            });
        }
        let policy = usize::from(r.u16().ok_or(trunc("authPolicy.size", 2))?);
        if policy > MAX_DIGEST {
            return Err(PublicError::AuthPolicy(policy));
        }
        r.take(policy).ok_or(trunc("authPolicy", policy))?;
        let symmetric = r.u16().ok_or(trunc("symmetric", 2))?;
        if symmetric != TPM_ALG_NULL {
            return Err(PublicError::Symmetric(symmetric));
        }
        let scheme = r.u16().ok_or(trunc("scheme", 2))?;
        let hash = if scheme == TPM_ALG_NULL {
            TPM_ALG_NULL
        } else {
            r.u16().ok_or(trunc("scheme.hashAlg", 2))?
        };
        if scheme != TPM_ALG_ECDSA || hash != TPM_ALG_SHA256 {
            return Err(PublicError::Scheme { scheme, hash });
        }
        let curve = r.u16().ok_or(trunc("curveID", 2))?;
        if curve != TPM_ECC_NIST_P256 {
            return Err(PublicError::Curve(curve));
        }
        let kdf = r.u16().ok_or(trunc("kdf", 2))?;
        if kdf != TPM_ALG_NULL {
            return Err(PublicError::Kdf(kdf));
        }
        let mut coordinate = |which: &'static str| -> Result<[u8; P256_SIZE], PublicError> {
            let size = usize::from(r.u16().ok_or(trunc(which, 2))?);
            if size == 0 || size > P256_SIZE {
                return Err(PublicError::Coordinate { which, size });
            }
            let b = r.take(size).ok_or(trunc(which, size))?;
            pad32(b).ok_or(PublicError::Coordinate { which, size })
        };
        let x = coordinate("x")?;
        let y = coordinate("y")?;
        if r.rest() != 0 {
            return Err(PublicError::TrailingBytes(r.rest()));
        }
        let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let key = VerifyingKey::from_encoded_point(&point).map_err(|_| PublicError::NotOnCurve)?;
        Ok(AkPublic {
            name_alg,
            attributes,
            x,
            y,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attest() -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        a.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        a.extend_from_slice(&[0, 2, 0xAA, 0xBB]); // qualifiedSigner
        a.extend_from_slice(&[0, 3, 1, 2, 3]); // extraData
        a.extend_from_slice(&[0; 17]); // clockInfo
        a.extend_from_slice(&[0; 8]); // firmwareVersion
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        a.extend_from_slice(&[3, 0x11, 0, 0x80]);
        a.extend_from_slice(&[0, 32]);
        a.extend_from_slice(&[7; 32]);
        a
    }

    #[test]
    fn attest_parses_and_every_truncation_fails() {
        let a = attest();
        let q = QuoteAttest::parse(&a).unwrap();
        assert_eq!(q.extra_data, &[1, 2, 3]);
        assert_eq!(q.pcr_select[0].pcrs().collect::<Vec<_>>(), vec![0, 4, 23]);
        assert_eq!(q.pcr_digest, &[7; 32]);
        for len in 0..a.len() {
            assert!(QuoteAttest::parse(&a[..len]).is_err(), "len {len}");
        }
        let mut long = a.clone();
        long.push(0);
        assert_eq!(
            QuoteAttest::parse(&long),
            Err(AttestError::TrailingBytes(1))
        );
        let mut big = a.clone();
        big[10] = 0xFF; // extraData size 0xFF03
        assert!(matches!(
            QuoteAttest::parse(&big),
            Err(AttestError::FieldTooLarge {
                field: "extraData",
                ..
            })
        ));
        assert_eq!(
            QuoteAttest::parse(&vec![0; MAX_ATTEST + 1]),
            Err(AttestError::TooLarge(MAX_ATTEST + 1))
        );
    }

    /// `attest()` with its selection list replaced by `sels` (bank, bitmap).
    fn attest_selecting(sels: &[(u16, &[u8])]) -> Vec<u8> {
        let a = attest();
        let count_at = 4 + 2 + 4 + 5 + 17 + 8;
        let mut out = a[..count_at].to_vec();
        out.extend_from_slice(&(sels.len() as u32).to_be_bytes());
        for (hash, bits) in sels {
            out.extend_from_slice(&hash.to_be_bytes());
            out.push(bits.len() as u8);
            out.extend_from_slice(bits);
        }
        out.extend_from_slice(&a[count_at + 4 + 6..]);
        out
    }

    #[test]
    fn one_sha256_selection_is_the_only_one_accepted() {
        let sel = |s: &[(u16, &[u8])]| {
            QuoteAttest::parse(&attest_selecting(s))
                .unwrap()
                .sha256_selection()
        };
        assert_eq!(
            sel(&[(TPM_ALG_SHA256, &[0x11, 0, 0x80])]),
            Ok(vec![0, 4, 23])
        );
        // Empty selections of any bank are ignored.
        assert_eq!(
            sel(&[(TPM_ALG_SHA1, &[0, 0, 0]), (TPM_ALG_SHA256, &[1])]),
            Ok(vec![0])
        );
        assert_eq!(
            sel(&[(TPM_ALG_SHA256, &[0]), (TPM_ALG_SHA256, &[2])]),
            Ok(vec![1])
        );
        // PCR0-7 and PCR8-23 in two SHA-256 selections hash like one selection of 0-23.
        assert_eq!(
            sel(&[
                (TPM_ALG_SHA256, &[0xFF, 0, 0]),
                (TPM_ALG_SHA256, &[0, 0xFF, 0xFF])
            ]),
            Err(SelectionError::BankTwice)
        );
        assert_eq!(
            sel(&[(TPM_ALG_SHA256, &[1]), (TPM_ALG_SHA384, &[1])]),
            Err(SelectionError::Bank(TPM_ALG_SHA384))
        );
        assert_eq!(sel(&[]), Err(SelectionError::Empty));
        assert_eq!(
            sel(&[(TPM_ALG_SHA256, &[0, 0])]),
            Err(SelectionError::Empty)
        );
    }

    #[test]
    fn names_and_qualified_names() {
        let public = b"a TPMT_PUBLIC";
        let name = object_name(TPM_ALG_SHA256, public).unwrap();
        assert_eq!(name[..2], [0x00, 0x0B]);
        assert_eq!(name[2..], Sha256::digest(public)[..]);
        assert_eq!(object_name(TPM_ALG_SHA384, public).unwrap().len(), 2 + 48);
        assert_eq!(object_name(TPM_ALG_SHA512, public).unwrap().len(), 2 + 64);
        assert_eq!(object_name(TPM_ALG_SHA1, public), None);
        let qn = primary_qualified_name(TPM_RH_ENDORSEMENT, TPM_ALG_SHA256, public).unwrap();
        let mut h = Sha256::new();
        h.update(0x4000_000Bu32.to_be_bytes());
        h.update(&name);
        assert_eq!(qn, [&[0x00, 0x0B][..], &h.finalize()].concat());

        let mut a = attest();
        a[6..8].copy_from_slice(&34u16.to_be_bytes());
        let tail = a.split_off(10);
        a.truncate(8);
        a.extend_from_slice(&qn);
        a.extend_from_slice(&tail);
        let q = QuoteAttest::parse(&a).unwrap();
        assert_eq!(
            q.check_signer(TPM_RH_ENDORSEMENT, TPM_ALG_SHA256, public),
            Ok(qn.clone())
        );
        // Another key, another hierarchy, or the Name instead of the Qualified Name: refused.
        for (hierarchy, key) in [
            (TPM_RH_ENDORSEMENT, &b"another TPMT_PUBLIC"[..]),
            (0x4000_0001, &public[..]),
        ] {
            assert!(matches!(
                q.check_signer(hierarchy, TPM_ALG_SHA256, key),
                Err(SignerError::Mismatch { found, .. }) if found == hex::encode(&qn)
            ));
        }
        let mut by_name = attest();
        by_name[6..8].copy_from_slice(&34u16.to_be_bytes());
        let tail = by_name.split_off(10);
        by_name.truncate(8);
        by_name.extend_from_slice(&name);
        by_name.extend_from_slice(&tail);
        assert!(matches!(
            QuoteAttest::parse(&by_name).unwrap().check_signer(
                TPM_RH_ENDORSEMENT,
                TPM_ALG_SHA256,
                public
            ),
            Err(SignerError::Mismatch { .. })
        ));
        assert_eq!(
            q.check_signer(TPM_RH_ENDORSEMENT, TPM_ALG_SHA1, public),
            Err(SignerError::NameAlg(TPM_ALG_SHA1))
        );
    }

    #[test]
    fn signature_scalars_are_bounded_and_ranged() {
        let mut s = Vec::new();
        s.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
        s.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        s.extend_from_slice(&[0, 1, 5, 0, 2, 0, 9]);
        let sig = EcdsaSignature::parse(&s).unwrap();
        assert_eq!(sig.r[31], 5);
        assert_eq!(sig.s[31], 9);
        let mut zero = s.clone();
        zero[6] = 0;
        assert_eq!(
            EcdsaSignature::parse(&zero),
            Err(SignatureError::ScalarRange)
        );
        let mut big = s.clone();
        big[5] = 33;
        assert_eq!(
            EcdsaSignature::parse(&big),
            Err(SignatureError::ScalarSize {
                which: "r",
                size: 33
            })
        );
        for len in 0..s.len() {
            assert!(EcdsaSignature::parse(&s[..len]).is_err(), "len {len}");
        }
    }
}
