//! The Linux IMA runtime measurement list in its binary form, as the kernel prints it to
//! `/sys/kernel/security/ima/binary_runtime_measurements` (`ima_measurements_show`, Linux
//! `security/integrity/ima/ima_fs.c`), and the fields of the `ima-ng` and `ima-sig` templates
//! (`security/integrity/ima/ima_template_lib.c`). The host verifier replays the list to the
//! quoted PCR 10; this module only frames and decodes it.
//!
//! The input is untrusted (it comes from the guest): the list is bounds-checked as a whole
//! before any entry is handed out ([`ImaLog::parse`]), every length has a hard upper bound,
//! every anomaly is a typed [`ImaError`] naming the entry, and nothing here panics, allocates
//! or reads out of bounds. The log proves nothing by itself: only a replay to a quoted PCR
//! binds an entry's `template_data`, and a violation entry binds nothing but its position.
//!
//! Format (all integers in the kernel's byte order, little-endian on x86_64; with the
//! `ima_canonical_fmt` boot option they are little-endian on every architecture): per entry,
//! u32 PCR index, the 20-byte SHA-1 template digest (all zero for a violation), u32 template
//! name length, the name (no NUL), then, for every template except the legacy `ima`, u32
//! template data length and the template data. The template data is each field's u32 length
//! followed by its bytes, and it is exactly what `ima_calc_field_array_hash` hashes for every
//! bank's template digest. Templates other than `ima-ng` and `ima-sig` are framed and
//! split into fields generically (their entries replay like any other) but not decoded; the
//! legacy `ima` template is refused, since its template digest covers bytes the list does not
//! hold (a name padded to 256 bytes).

use crate::assert_layout;
use core::fmt;
use zerocopy::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Most entries the parser accepts: a long-running server's list passes 100,000 entries, and
/// a verifier that appraises incrementally still reads the whole list once.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Largest list the parser accepts (entries of a few hundred bytes each, at most
/// [`MAX_ENTRIES`]).
pub const MAX_LOG: usize = 256 * 1024 * 1024;
/// Largest template name: a custom template is named by its format string
/// (`ima_measurements_show`: `template_desc->fmt` when the name is empty), at most
/// `IMA_TEMPLATE_NUM_FIELDS_MAX` (15) field ids of `IMA_TEMPLATE_FIELD_ID_MAX_LEN` (16) bytes
/// joined by 14 `|` (`ima.h`, `template_desc_init_fields`).
pub const MAX_TEMPLATE_NAME: usize = 15 * 16 + 14;
/// Largest template data: a path of `PATH_MAX` (4 KiB) plus a signature xattr of up to
/// `XATTR_SIZE_MAX` (64 KiB) fit with room to spare.
pub const MAX_TEMPLATE_DATA: usize = 128 * 1024;
/// Most fields in one template (`IMA_TEMPLATE_NUM_FIELDS_MAX`, `ima.h`).
pub const MAX_FIELDS: usize = 15;
/// Largest file digest (`IMA_MAX_DIGEST_SIZE`, `ima.h`: SHA-512).
pub const MAX_DIGEST: usize = 64;
/// Longest d-ng algorithm name (`CRYPTO_MAX_ALG_NAME`, `crypto.h`, the bound
/// `ima_eventdigest_init_common` writes it with).
pub const MAX_ALGO_NAME: usize = 128;
/// Highest PCR a policy rule can name: `INVALID_PCR` (`ima_policy.c`) refuses PCRs beyond the
/// bits of `measured_pcrs`, an `unsigned long`.
pub const MAX_PCR: u32 = 63;
/// Length of the SHA-1 template digest (`TPM_DIGEST_SIZE`).
pub const TEMPLATE_DIGEST_LEN: usize = 20;
/// Length of the zero digest a d-ng field holds for a violation, whatever its algorithm
/// (`ima_eventdigest_init_common` leaves `IMA_DIGEST_SIZE` zero bytes when `digest` is NULL).
pub const VIOLATION_DIGEST_LEN: usize = 20;
/// The file name of the first entry, the aggregate of PCRs 0-9 when IMA started
/// (`boot_aggregate_name`, `ima_init.c`).
pub const BOOT_AGGREGATE: &[u8] = b"boot_aggregate";

/// A part of an entry, named in [`ImaError`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImaField {
    /// The u32 PCR index.
    Pcr,
    /// The 20-byte SHA-1 template digest.
    TemplateDigest,
    /// The u32 length of the template name.
    TemplateNameLength,
    /// The template name.
    TemplateName,
    /// The u32 length of the template data.
    TemplateDataLength,
    /// The template data.
    TemplateData,
    /// A template field's u32 length.
    FieldLength,
    /// A template field's bytes.
    FieldData,
    /// The digest of a d-ng field.
    FileDigest,
}

impl fmt::Display for ImaField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImaField::Pcr => "PCR index",
            ImaField::TemplateDigest => "SHA-1 template digest",
            ImaField::TemplateNameLength => "template name length",
            ImaField::TemplateName => "template name",
            ImaField::TemplateDataLength => "template data length",
            ImaField::TemplateData => "template data",
            ImaField::FieldLength => "template field length",
            ImaField::FieldData => "template field data",
            ImaField::FileDigest => "file digest",
        })
    }
}

/// The template an entry names, for decoding its fields (`builtin_templates`,
/// `ima_template.c`). A custom template carries its format string as its name, so the format
/// strings of the two decoded templates name them too (`lookup_template_desc` matches either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    /// `ima-ng`: `d-ng|n-ng`.
    ImaNg,
    /// `ima-sig`: `d-ng|n-ng|sig`.
    ImaSig,
    /// Any other template (`ima-buf`, `ima-modsig`, `evm-sig`, `ima-ngv2`, custom formats):
    /// framed and split into fields, not decoded.
    Other,
}

impl Template {
    /// The template a name denotes.
    pub fn from_name(name: &[u8]) -> Template {
        match name {
            b"ima-ng" | b"d-ng|n-ng" => Template::ImaNg,
            b"ima-sig" | b"d-ng|n-ng|sig" => Template::ImaSig,
            _ => Template::Other,
        }
    }

    /// Number of fields of a decoded template.
    pub const fn field_count(self) -> Option<usize> {
        match self {
            Template::ImaNg => Some(2),
            Template::ImaSig => Some(3),
            Template::Other => None,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Template::ImaNg => "ima-ng",
            Template::ImaSig => "ima-sig",
            Template::Other => "an undecoded template",
        })
    }
}

/// A hash algorithm a d-ng field names, by the kernel's `hash_algo_name[]`
/// (`crypto/hash_info.c`), for the algorithms IMA is configured with in practice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgo {
    /// `md5`.
    Md5,
    /// `sha1`.
    Sha1,
    /// `sha224`.
    Sha224,
    /// `sha256`.
    Sha256,
    /// `sha384`.
    Sha384,
    /// `sha512`.
    Sha512,
    /// `sm3`.
    Sm3,
    /// `streebog256`.
    Streebog256,
    /// `streebog512`.
    Streebog512,
    /// `sha3-256`.
    Sha3_256,
    /// `sha3-384`.
    Sha3_384,
    /// `sha3-512`.
    Sha3_512,
}

impl HashAlgo {
    /// The algorithm a d-ng prefix names, if it is one of these.
    pub fn from_name(name: &[u8]) -> Option<HashAlgo> {
        Some(match name {
            b"md5" => HashAlgo::Md5,
            b"sha1" => HashAlgo::Sha1,
            b"sha224" => HashAlgo::Sha224,
            b"sha256" => HashAlgo::Sha256,
            b"sha384" => HashAlgo::Sha384,
            b"sha512" => HashAlgo::Sha512,
            b"sm3" => HashAlgo::Sm3,
            b"streebog256" => HashAlgo::Streebog256,
            b"streebog512" => HashAlgo::Streebog512,
            b"sha3-256" => HashAlgo::Sha3_256,
            b"sha3-384" => HashAlgo::Sha3_384,
            b"sha3-512" => HashAlgo::Sha3_512,
            _ => return None,
        })
    }

    /// The kernel's name of the algorithm.
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha224 => "sha224",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
            HashAlgo::Sm3 => "sm3",
            HashAlgo::Streebog256 => "streebog256",
            HashAlgo::Streebog512 => "streebog512",
            HashAlgo::Sha3_256 => "sha3-256",
            HashAlgo::Sha3_384 => "sha3-384",
            HashAlgo::Sha3_512 => "sha3-512",
        }
    }

    /// Its digest size (`hash_digest_size[]`).
    pub const fn digest_size(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha224 => 28,
            HashAlgo::Sha256 | HashAlgo::Sm3 | HashAlgo::Streebog256 | HashAlgo::Sha3_256 => 32,
            HashAlgo::Sha384 | HashAlgo::Sha3_384 => 48,
            HashAlgo::Sha512 | HashAlgo::Streebog512 | HashAlgo::Sha3_512 => 64,
        }
    }
}

impl HashAlgo {
    /// The algorithm a kernel `enum hash_algo` value names (`include/uapi/linux/hash_info.h`),
    /// as a signature header carries it.
    pub fn from_kernel_id(id: u8) -> Option<HashAlgo> {
        Some(match id {
            1 => HashAlgo::Md5,
            2 => HashAlgo::Sha1,
            4 => HashAlgo::Sha256,
            5 => HashAlgo::Sha384,
            6 => HashAlgo::Sha512,
            7 => HashAlgo::Sha224,
            18 => HashAlgo::Streebog256,
            19 => HashAlgo::Streebog512,
            20 => HashAlgo::Sm3,
            21 => HashAlgo::Sha3_256,
            22 => HashAlgo::Sha3_384,
            23 => HashAlgo::Sha3_512,
            _ => return None,
        })
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a measurement list, or a field of one of its entries, was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImaError {
    /// The list is larger than [`MAX_LOG`].
    #[error("IMA log is {0} bytes, more than the {MAX_LOG}-byte limit")]
    LogTooLarge(usize),
    /// The list has more than [`MAX_ENTRIES`] entries.
    #[error("IMA log has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// The input ends inside a field, or a template field runs past its template data.
    #[error("IMA entry {index}: truncated in its {field}")]
    Truncated {
        /// Entry index.
        index: usize,
        /// The field being read.
        field: ImaField,
    },
    /// A length is larger than its bound.
    #[error("IMA entry {index}: {field} is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Entry index.
        index: usize,
        /// The field.
        field: ImaField,
        /// Its declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A PCR no IMA policy can name.
    #[error("IMA entry {index}: PCR {pcr} is beyond the PCRs IMA can extend (0-{MAX_PCR})")]
    Pcr {
        /// Entry index.
        index: usize,
        /// The PCR.
        pcr: u32,
    },
    /// The template name is empty or not printable ASCII.
    #[error("IMA entry {index}: the template name is empty or not printable ASCII")]
    TemplateName {
        /// Entry index.
        index: usize,
    },
    /// The legacy `ima` template (no template data length; its digest pads the name).
    #[error("IMA entry {index}: the legacy \"ima\" template is not supported")]
    LegacyTemplate {
        /// Entry index.
        index: usize,
    },
    /// The template data splits into more than [`MAX_FIELDS`] fields.
    #[error("IMA entry {index}: template data holds more than {MAX_FIELDS} fields")]
    TooManyFields {
        /// Entry index.
        index: usize,
    },
    /// A decoded template with the wrong number of fields.
    #[error("IMA entry {index}: {template} has {found} fields, expected {expected}")]
    FieldCount {
        /// Entry index.
        index: usize,
        /// The template.
        template: Template,
        /// Fields found.
        found: usize,
        /// Fields the template has.
        expected: usize,
    },
    /// A d-ng field without the `<algo>:\0` prefix.
    #[error("IMA entry {index}: the d-ng file digest lacks its \"<algo>:\\0\" prefix")]
    DigestPrefix {
        /// Entry index.
        index: usize,
    },
    /// A d-ng algorithm name that is empty, too long or not printable ASCII.
    #[error("IMA entry {index}: the d-ng algorithm name is empty, too long or not printable")]
    DigestAlgorithm {
        /// Entry index.
        index: usize,
    },
    /// A file digest whose length is not its algorithm's (nor a violation's zero digest).
    #[error("IMA entry {index}: the {algo} file digest is {len} bytes, expected {}", .algo.digest_size())]
    DigestLength {
        /// Entry index.
        index: usize,
        /// The algorithm.
        algo: HashAlgo,
        /// The digest's length.
        len: usize,
    },
    /// An n-ng field that is not one NUL-terminated string.
    #[error("IMA entry {index}: the n-ng file name is not one NUL-terminated string")]
    FileName {
        /// Entry index.
        index: usize,
    },
    /// Field access on an entry whose template is not decoded ([`Template::Other`]).
    #[error("IMA entry {index}: its template's fields are not decoded (only ima-ng and ima-sig)")]
    UnsupportedTemplate {
        /// Entry index.
        index: usize,
    },
}

#[derive(Clone)]
struct Reader<'a> {
    data: &'a [u8],
    index: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self, field: ImaField) -> ImaError {
        ImaError::Truncated {
            index: self.index,
            field,
        }
    }

    fn take(&mut self, n: usize, field: ImaField) -> Result<&'a [u8], ImaError> {
        let (head, tail) = self.data.split_at_checked(n).ok_or(self.truncated(field))?;
        self.data = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: ImaField) -> Result<&'a [u8; N], ImaError> {
        let (head, tail) = self
            .data
            .split_first_chunk::<N>()
            .ok_or(self.truncated(field))?;
        self.data = tail;
        Ok(head)
    }

    fn u32(&mut self, field: ImaField) -> Result<u32, ImaError> {
        self.array::<4>(field).map(|b| u32::from_le_bytes(*b))
    }

    /// A u32 length, checked against `max` before anything is read.
    fn length(&mut self, field: ImaField, max: usize) -> Result<usize, ImaError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(ImaError::TooLarge {
                index: self.index,
                field,
                len,
                max,
            });
        }
        Ok(len)
    }
}

/// A list whose every entry was framed, split into fields and (for `ima-ng` and `ima-sig`)
/// decoded.
#[derive(Clone, Copy, Debug)]
pub struct ImaLog<'a> {
    data: &'a [u8],
    count: usize,
}

impl<'a> ImaLog<'a> {
    /// Parses and checks a whole list: framing and bounds of every entry, the field split of
    /// every template, the d-ng, n-ng and sig fields of `ima-ng` and `ima-sig` entries.
    pub fn parse(log: &'a [u8]) -> Result<Self, ImaError> {
        if log.len() > MAX_LOG {
            return Err(ImaError::LogTooLarge(log.len()));
        }
        let mut r = Reader {
            data: log,
            index: 0,
        };
        while !r.data.is_empty() {
            if r.index >= MAX_ENTRIES {
                return Err(ImaError::TooManyEntries);
            }
            next_entry(&mut r)?.check()?;
            r.index += 1;
        }
        Ok(ImaLog {
            data: log,
            count: r.index,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes of the list from entry `first` on (what a guest sends a verifier that has
    /// appraised `first` entries); empty when `first` is the number of entries, `None` past it.
    pub fn bytes_from(&self, first: usize) -> Option<&'a [u8]> {
        if first > self.count {
            return None;
        }
        let mut r = Reader {
            data: self.data,
            index: 0,
        };
        for _ in 0..first {
            next_entry(&mut r).ok()?;
            r.index += 1;
        }
        Some(r.data)
    }

    /// The entries in list order (the order they were extended in).
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            r: Reader {
                data: self.data,
                index: 0,
            },
            remaining: self.count,
        }
    }
}

/// Reads one entry's framing (`ima_measurements_show`, `ima_fs.c`).
fn next_entry<'a>(r: &mut Reader<'a>) -> Result<ImaEntry<'a>, ImaError> {
    let index = r.index;
    let pcr = r.u32(ImaField::Pcr)?;
    if pcr > MAX_PCR {
        return Err(ImaError::Pcr { index, pcr });
    }
    let sha1_template_digest = r.array::<TEMPLATE_DIGEST_LEN>(ImaField::TemplateDigest)?;
    let name_len = r.length(ImaField::TemplateNameLength, MAX_TEMPLATE_NAME)?;
    let template_name = r.take(name_len, ImaField::TemplateName)?;
    if template_name.is_empty() || !template_name.iter().all(u8::is_ascii_graphic) {
        return Err(ImaError::TemplateName { index });
    }
    // ima_measurements_show writes no template data length for "ima" (IMA_TEMPLATE_IMA_NAME),
    // and ima_calc_field_array_hash_tfm pads its "n" field to IMA_EVENT_NAME_LEN_MAX + 1.
    if template_name == b"ima" {
        return Err(ImaError::LegacyTemplate { index });
    }
    let data_len = r.length(ImaField::TemplateDataLength, MAX_TEMPLATE_DATA)?;
    let template_data = r.take(data_len, ImaField::TemplateData)?;
    Ok(ImaEntry {
        index,
        pcr,
        sha1_template_digest,
        template_name,
        template_data,
    })
}

/// The entries of a parsed list.
#[derive(Clone)]
pub struct Entries<'a> {
    r: Reader<'a>,
    remaining: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = ImaEntry<'a>;

    fn next(&mut self) -> Option<ImaEntry<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The list was checked whole by ImaLog::parse, so this cannot fail; stop if it did.
        let entry = next_entry(&mut self.r).ok();
        self.r.index += 1;
        self.remaining = if entry.is_some() {
            self.remaining - 1
        } else {
            0
        };
        entry
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Entries<'_> {}

/// One entry of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImaEntry<'a> {
    /// Position in the list, from 0.
    pub index: usize,
    /// The PCR the entry was extended into (10 unless a policy rule says `pcr=`).
    pub pcr: u32,
    /// SHA-1 of `template_data` (`ima_calc_field_array_hash` for the SHA-1 bank); all zero for
    /// a violation, which `ima_store_template` does not hash.
    pub sha1_template_digest: &'a [u8; TEMPLATE_DIGEST_LEN],
    /// The template name (a custom template's format string), without NUL.
    pub template_name: &'a [u8],
    /// The template data without its outer length: every field's u32 length and bytes, the
    /// exact bytes `ima_calc_field_array_hash_tfm` hashes for each bank's template digest.
    pub template_data: &'a [u8],
}

/// The file digest of a d-ng field: `<algo>:\0` followed by the digest
/// (`ima_eventdigest_init_common`, `DATA_FMT_DIGEST_WITH_ALGO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileDigest<'a> {
    /// The algorithm name as written (`hash_algo_name[]`), without `:`.
    pub algo_name: &'a [u8],
    /// The algorithm, when it is one [`HashAlgo`] knows.
    pub algo: Option<HashAlgo>,
    /// The digest: the algorithm's size, or [`VIOLATION_DIGEST_LEN`] zero bytes for a violation.
    pub digest: &'a [u8],
}

/// The decoded fields of an `ima-ng` or `ima-sig` entry ([`ImaEntry::ng_fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NgFields<'a> {
    /// d-ng ([`ImaEntry::file_digest`]).
    pub digest: FileDigest<'a>,
    /// n-ng without its NUL ([`ImaEntry::file_name`]).
    pub name: &'a [u8],
    /// sig, when present and not empty ([`ImaEntry::signature`]).
    pub signature: Option<&'a [u8]>,
}

/// The fields of an entry's template data, each a u32 length and its bytes
/// (`ima_show_template_data_binary` with `IMA_SHOW_BINARY`; `ima_parse_buf`).
#[derive(Clone)]
pub struct Fields<'a> {
    r: Reader<'a>,
    count: usize,
    failed: bool,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<&'a [u8], ImaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || (self.r.data.is_empty() && self.count > 0) {
            return None;
        }
        let field = if self.count >= MAX_FIELDS {
            Err(ImaError::TooManyFields {
                index: self.r.index,
            })
        } else {
            // A template has at least one field, so empty template data is truncated too.
            self.r.u32(ImaField::FieldLength).and_then(|len| {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                self.r.take(len, ImaField::FieldData)
            })
        };
        self.count += 1;
        self.failed = field.is_err();
        Some(field)
    }
}

impl<'a> ImaEntry<'a> {
    /// A violation (`ima_add_violation`): its SHA-1 template digest is all zero and PCR 10 was
    /// extended with all-0xFF digests instead of the template digest (`ima_add_template_entry`),
    /// so nothing in its template data is bound by the PCR.
    pub fn is_violation(&self) -> bool {
        self.sha1_template_digest.iter().all(|&b| b == 0)
    }

    /// The template its name denotes.
    pub fn template(&self) -> Template {
        Template::from_name(self.template_name)
    }

    /// The template data split into fields, for any template. A malformed field ends the
    /// iteration with an error.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            r: Reader {
                data: self.template_data,
                index: self.index,
            },
            count: 0,
            failed: false,
        }
    }

    /// The fields of a decoded template, checked to be exactly as many as it has.
    fn decoded_fields(&self) -> Result<[&'a [u8]; 3], ImaError> {
        let template = self.template();
        let expected = template
            .field_count()
            .ok_or(ImaError::UnsupportedTemplate { index: self.index })?;
        let mut out: [&'a [u8]; 3] = [&[]; 3];
        let mut found = 0;
        for field in self.fields() {
            let field = field?;
            if let Some(slot) = out.get_mut(found) {
                *slot = field;
            }
            found += 1;
        }
        if found != expected {
            return Err(ImaError::FieldCount {
                index: self.index,
                template,
                found,
                expected,
            });
        }
        Ok(out)
    }

    /// The file digest (d-ng, the first field of `ima-ng` and `ima-sig`).
    pub fn file_digest(&self) -> Result<FileDigest<'a>, ImaError> {
        let [d_ng, _, _] = self.decoded_fields()?;
        self.digest_field(d_ng)
    }

    /// The three decoded fields of an `ima-ng` or `ima-sig` entry at once (one pass over the
    /// template data instead of one per accessor): file digest, file name, signature.
    pub fn ng_fields(&self) -> Result<NgFields<'a>, ImaError> {
        let [d_ng, n_ng, sig] = self.decoded_fields()?;
        Ok(NgFields {
            digest: self.digest_field(d_ng)?,
            name: self.name_field(n_ng)?,
            signature: Some(sig).filter(|s| !s.is_empty()),
        })
    }

    fn digest_field(&self, d_ng: &'a [u8]) -> Result<FileDigest<'a>, ImaError> {
        let index = self.index;
        let colon = d_ng
            .iter()
            .position(|&b| b == b':')
            .ok_or(ImaError::DigestPrefix { index })?;
        let (algo_name, rest) = d_ng
            .split_at_checked(colon)
            .ok_or(ImaError::DigestPrefix { index })?;
        let digest = rest
            .strip_prefix(b":\0")
            .ok_or(ImaError::DigestPrefix { index })?;
        if algo_name.is_empty()
            || algo_name.len() > MAX_ALGO_NAME
            || !algo_name.iter().all(u8::is_ascii_graphic)
        {
            return Err(ImaError::DigestAlgorithm { index });
        }
        let algo = HashAlgo::from_name(algo_name);
        let violation_digest =
            digest.len() == VIOLATION_DIGEST_LEN && digest.iter().all(|&b| b == 0);
        match algo {
            _ if self.is_violation() && violation_digest => {}
            Some(algo) if digest.len() != algo.digest_size() => {
                return Err(ImaError::DigestLength {
                    index,
                    algo,
                    len: digest.len(),
                });
            }
            Some(_) => {}
            None if digest.is_empty() => {
                return Err(ImaError::Truncated {
                    index,
                    field: ImaField::FileDigest,
                });
            }
            None if digest.len() > MAX_DIGEST => {
                return Err(ImaError::TooLarge {
                    index,
                    field: ImaField::FileDigest,
                    len: digest.len(),
                    max: MAX_DIGEST,
                });
            }
            None => {}
        }
        Ok(FileDigest {
            algo_name,
            algo,
            digest,
        })
    }

    /// The file name (n-ng, the second field of `ima-ng` and `ima-sig`) without its NUL. The
    /// kernel writes it NUL-terminated (`ima_write_template_field_data`, `DATA_FMT_STRING`)
    /// with every space replaced by `_`; it is a path, or `boot_aggregate` for the first entry.
    pub fn file_name(&self) -> Result<&'a [u8], ImaError> {
        let [_, n_ng, _] = self.decoded_fields()?;
        self.name_field(n_ng)
    }

    fn name_field(&self, n_ng: &'a [u8]) -> Result<&'a [u8], ImaError> {
        match n_ng.split_last() {
            Some((0, name)) if !name.contains(&0) => Ok(name),
            _ => Err(ImaError::FileName { index: self.index }),
        }
    }

    /// The signature (sig, the third field of `ima-sig`; `ima_eventsig_init`): the
    /// `security.ima` xattr when it holds a signature (type `EVM_IMA_XATTR_DIGSIG`), or the
    /// portable `security.evm` signature, as raw bytes; `None` when the field is empty (no
    /// signature) and for `ima-ng`.
    pub fn signature(&self) -> Result<Option<&'a [u8]>, ImaError> {
        let [_, _, sig] = self.decoded_fields()?;
        Ok(Some(sig).filter(|s| !s.is_empty()))
    }

    /// Everything [`ImaLog::parse`] checks beyond the framing.
    fn check(&self) -> Result<(), ImaError> {
        if self.template() == Template::Other {
            for field in self.fields() {
                field?;
            }
        } else {
            // Walks every field too, reporting the first bad one as the loop above would.
            self.ng_fields()?;
        }
        Ok(())
    }
}

/// `security.ima` xattr type of a file signature (`EVM_IMA_XATTR_DIGSIG`, Linux
/// `security/integrity/integrity.h`, `enum evm_ima_xattr_type`).
pub const XATTR_DIGSIG: u8 = 3;
/// `security.evm` xattr type of a portable signature (`EVM_XATTR_PORTABLE_DIGSIG`), which
/// `ima-sig` also shows.
pub const XATTR_PORTABLE_DIGSIG: u8 = 5;
/// The only signature format the kernel verifies with asymmetric keys (`DIGSIG_VERSION_2`).
pub const SIGNATURE_VERSION_2: u8 = 2;

/// The header of a version 2 file signature, the `sig` field of an `ima-sig` entry
/// (`struct signature_v2_hdr`, Linux `security/integrity/integrity.h`; verified by
/// `asymmetric_verify`, `security/integrity/digsig_asymmetric.c`): packed, 9 bytes, big-endian.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SignatureV2Header {
    /// [`XATTR_DIGSIG`] or [`XATTR_PORTABLE_DIGSIG`].
    pub xattr_type: u8,
    /// [`SIGNATURE_VERSION_2`].
    pub version: u8,
    /// The hash algorithm of the signed file digest (`enum hash_algo`).
    pub hash_algo: u8,
    /// The signing key's id: the low 32 bits of SHA-1 over its public key bits (the X.509
    /// subject key identifier of `evmctl`).
    pub keyid: U32,
    /// Length of the signature that follows.
    pub sig_size: U16,
}
assert_layout!(
    SignatureV2Header,
    size = 9,
    xattr_type = 0,
    version = 1,
    hash_algo = 2,
    keyid = 3,
    sig_size = 7
);

/// A decoded version 2 file signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSignature<'a> {
    /// The algorithm of the file digest that was signed.
    pub hash_algo: HashAlgo,
    /// The signing key's id (see [`SignatureV2Header::keyid`]).
    pub keyid: u32,
    /// The signature: RSASSA-PKCS1-v1_5 bytes or a DER ECDSA-Sig-Value, over the file digest.
    pub signature: &'a [u8],
}

/// Why an `ima-sig` signature field is not a version 2 file signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Shorter than the 9-byte header.
    #[error("the signature is {0} bytes, shorter than its 9-byte header")]
    Truncated(usize),
    /// Not a file signature xattr type.
    #[error("the signature xattr type is {0}, expected 3 (digsig) or 5 (portable digsig)")]
    XattrType(u8),
    /// Not version 2.
    #[error("the signature is version {0}; only version 2 is verified")]
    Version(u8),
    /// A hash algorithm id this module does not know.
    #[error("the signature names hash algorithm {0}, which is not supported")]
    HashAlgorithm(u8),
    /// The declared size is not what follows the header.
    #[error("the signature header declares {declared} bytes, but {actual} follow it")]
    Size {
        /// `sig_size`.
        declared: u16,
        /// Bytes after the header.
        actual: usize,
    },
}

impl<'a> FileSignature<'a> {
    /// Decodes an `ima-sig` signature field ([`ImaEntry::signature`]).
    pub fn parse(field: &'a [u8]) -> Result<Self, SignatureError> {
        let (header, signature) = SignatureV2Header::read_from_prefix(field)
            .map_err(|_| SignatureError::Truncated(field.len()))?;
        if header.xattr_type != XATTR_DIGSIG && header.xattr_type != XATTR_PORTABLE_DIGSIG {
            return Err(SignatureError::XattrType(header.xattr_type));
        }
        if header.version != SIGNATURE_VERSION_2 {
            return Err(SignatureError::Version(header.version));
        }
        let hash_algo = HashAlgo::from_kernel_id(header.hash_algo)
            .ok_or(SignatureError::HashAlgorithm(header.hash_algo))?;
        if usize::from(header.sig_size.get()) != signature.len() {
            return Err(SignatureError::Size {
                declared: header.sig_size.get(),
                actual: signature.len(),
            });
        }
        Ok(FileSignature {
            hash_algo,
            keyid: header.keyid.get(),
            signature,
        })
    }
}
