//! The certificate table of the SNP extended guest request (GHCB spec §4.1.8.1): 24-byte
//! entries `{GUID (text byte order), u32 offset, u32 length}` ended by an all-zero entry, then the
//! DER blobs. Offsets count from the start of the table. The host supplies it: untrusted.

use crate::{assert_layout, Guid};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// One table entry.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CertTableEntry {
    /// GUID, text byte order.
    pub guid: [u8; 16],
    /// Offset of the blob from the start of the table.
    pub offset: U32,
    /// Length of the blob.
    pub length: U32,
}
assert_layout!(
    CertTableEntry,
    size = 24,
    guid = 0,
    offset = 16,
    length = 20
);
const ENTRY_LEN: usize = 24;

/// Most entries accepted; the table defines five kinds.
pub const MAX_CERT_ENTRIES: usize = 64;

/// What a table entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertKind {
    /// c0b406a4-a803-4952-9743-3fb6014cd0ae: AMD Root Key.
    Ark,
    /// 4ab7b379-bbac-4fe4-a02f-05aef327c782: AMD SEV Key (also used for the ASVK).
    Ask,
    /// 63da758d-e664-4564-adc5-f4b93be8accd: VCEK.
    Vcek,
    /// a8074bc2-a25a-483e-aae6-39c045a0b8a1: VLEK.
    Vlek,
    /// 92f81bc3-5811-4d3d-97ff-d19f88dc67ea: CRL.
    Crl,
    /// Anything else.
    Other(Guid),
}

const fn text_guid(a: u32, b: u16, c: u16, tail: [u8; 8]) -> [u8; 16] {
    Guid::from_fields(a, b, c, tail).to_text_order_bytes()
}

const ARK: [u8; 16] = text_guid(
    0xc0b4_06a4,
    0xa803,
    0x4952,
    [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
);
const ASK: [u8; 16] = text_guid(
    0x4ab7_b379,
    0xbbac,
    0x4fe4,
    [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
);
const VCEK: [u8; 16] = text_guid(
    0x63da_758d,
    0xe664,
    0x4564,
    [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
);
const VLEK: [u8; 16] = text_guid(
    0xa807_4bc2,
    0xa25a,
    0x483e,
    [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
);
const CRL: [u8; 16] = text_guid(
    0x92f8_1bc3,
    0x5811,
    0x4d3d,
    [0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67, 0xea],
);

impl CertKind {
    /// Classifies a text-order GUID.
    pub fn from_text_order(guid: [u8; 16]) -> Self {
        match guid {
            ARK => CertKind::Ark,
            ASK => CertKind::Ask,
            VCEK => CertKind::Vcek,
            VLEK => CertKind::Vlek,
            CRL => CertKind::Crl,
            other => CertKind::Other(Guid::from_text_order_bytes(other)),
        }
    }

    /// The text-order GUID of this kind.
    pub fn text_order_guid(self) -> [u8; 16] {
        match self {
            CertKind::Ark => ARK,
            CertKind::Ask => ASK,
            CertKind::Vcek => VCEK,
            CertKind::Vlek => VLEK,
            CertKind::Crl => CRL,
            CertKind::Other(g) => g.to_text_order_bytes(),
        }
    }
}

/// Why a certificate table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// No all-zero terminator within the buffer.
    #[error("certificate table has no terminating entry within {0} bytes")]
    Unterminated(usize),
    /// More entries than [`MAX_CERT_ENTRIES`].
    #[error("certificate table has more than {MAX_CERT_ENTRIES} entries")]
    TooManyEntries,
    /// An entry's blob overlaps the entry area or runs past the buffer.
    #[error("certificate table entry {index}: blob {offset:#x}+{length:#x} outside the data area")]
    EntryOutOfRange {
        /// Entry index.
        index: usize,
        /// Declared offset.
        offset: u32,
        /// Declared length.
        length: u32,
    },
    /// The output buffer is too small.
    #[error("certificate table needs {0} bytes")]
    BufferTooSmall(usize),
}

/// A parsed certificate table: all entries checked to lie in the buffer after the entries.
#[derive(Clone, Copy, Debug)]
pub struct CertTable<'a> {
    bytes: &'a [u8],
    count: usize,
}

/// One certificate of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cert<'a> {
    /// Its kind.
    pub kind: CertKind,
    /// The DER bytes.
    pub der: &'a [u8],
}

impl<'a> CertTable<'a> {
    /// Parses a table. An all-zero first entry is an empty table (the host gave none).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CertTableError> {
        let mut count = 0;
        loop {
            let start = count * ENTRY_LEN;
            let entry = bytes
                .get(start..)
                .and_then(|tail| CertTableEntry::ref_from_prefix(tail).ok())
                .map(|(e, _)| e)
                .ok_or(CertTableError::Unterminated(bytes.len()))?;
            if entry.as_bytes().iter().all(|&b| b == 0) {
                break;
            }
            count += 1;
            if count > MAX_CERT_ENTRIES {
                return Err(CertTableError::TooManyEntries);
            }
        }
        let data_start = (count + 1) * ENTRY_LEN;
        let table = CertTable { bytes, count };
        for (index, entry) in table.entries().enumerate() {
            let (offset, length) = (entry.offset.get(), entry.length.get());
            let ok = (offset as usize)
                .checked_add(length as usize)
                .is_some_and(|end| end <= bytes.len() && offset as usize >= data_start);
            if !ok {
                return Err(CertTableError::EntryOutOfRange {
                    index,
                    offset,
                    length,
                });
            }
        }
        Ok(table)
    }

    fn entries(&self) -> impl Iterator<Item = &'a CertTableEntry> + '_ {
        let bytes = self.bytes;
        (0..self.count).filter_map(move |i| {
            let tail = bytes.get(i * ENTRY_LEN..)?;
            CertTableEntry::ref_from_prefix(tail).ok().map(|(e, _)| e)
        })
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the table lists nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The certificates in table order.
    pub fn certs(&self) -> impl Iterator<Item = Cert<'a>> + '_ {
        let bytes = self.bytes;
        self.entries().filter_map(move |e| {
            let start = e.offset.get() as usize;
            let der = bytes.get(start..start.checked_add(e.length.get() as usize)?)?;
            Some(Cert {
                kind: CertKind::from_text_order(e.guid),
                der,
            })
        })
    }

    /// The first certificate of a kind.
    pub fn find(&self, kind: CertKind) -> Option<&'a [u8]> {
        self.certs().find(|c| c.kind == kind).map(|c| c.der)
    }
}

/// Length of the table [`write_cert_table`] builds.
pub fn cert_table_len(certs: &[(CertKind, &[u8])]) -> Option<usize> {
    certs
        .iter()
        .try_fold((certs.len() + 1) * ENTRY_LEN, |acc, (_, der)| {
            acc.checked_add(der.len())
        })
        .filter(|&n| u32::try_from(n).is_ok())
}

/// Writes a certificate table into `out`; returns its length.
pub fn write_cert_table(
    certs: &[(CertKind, &[u8])],
    out: &mut [u8],
) -> Result<usize, CertTableError> {
    if certs.len() > MAX_CERT_ENTRIES {
        return Err(CertTableError::TooManyEntries);
    }
    let total = cert_table_len(certs).ok_or(CertTableError::TooManyEntries)?;
    let out = out
        .get_mut(..total)
        .ok_or(CertTableError::BufferTooSmall(total))?;
    out.fill(0);
    let (mut head, mut data) = out.split_at_mut((certs.len() + 1) * ENTRY_LEN);
    let mut offset = (certs.len() + 1) * ENTRY_LEN;
    for (kind, der) in certs {
        let entry = CertTableEntry {
            guid: kind.text_order_guid(),
            offset: U32::new(offset as u32),
            length: U32::new(der.len() as u32),
        };
        let (slot, rest) = head.split_at_mut(ENTRY_LEN);
        slot.copy_from_slice(entry.as_bytes());
        head = rest;
        let (blob, rest) = data.split_at_mut(der.len());
        blob.copy_from_slice(der);
        data = rest;
        offset += der.len();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn round_trip_and_guid_bytes() {
        let certs: [(CertKind, &[u8]); 3] = [
            (CertKind::Vcek, b"vcek-der"),
            (CertKind::Ask, b"ask"),
            (CertKind::Ark, b"ark!"),
        ];
        let mut out = vec![0u8; cert_table_len(&certs).unwrap()];
        let n = write_cert_table(&certs, &mut out).unwrap();
        assert_eq!(n, 4 * 24 + 15);
        // VCEK GUID in text order: 63 da 75 8d ...
        assert_eq!(&out[..4], &[0x63, 0xda, 0x75, 0x8d]);
        let table = CertTable::parse(&out).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.find(CertKind::Vcek), Some(&b"vcek-der"[..]));
        assert_eq!(table.find(CertKind::Ark), Some(&b"ark!"[..]));
        assert_eq!(table.find(CertKind::Vlek), None);
    }

    #[test]
    fn empty_table() {
        let zero = [0u8; 24];
        assert!(CertTable::parse(&zero).unwrap().is_empty());
        for len in 0..24 {
            assert_eq!(
                CertTable::parse(&zero[..len]).unwrap_err(),
                CertTableError::Unterminated(len)
            );
        }
    }

    #[test]
    fn hostile_tables() {
        let certs: [(CertKind, &[u8]); 1] = [(CertKind::Vcek, b"0123456789")];
        let mut good = vec![0u8; cert_table_len(&certs).unwrap()];
        write_cert_table(&certs, &mut good).unwrap();
        for len in 0..good.len() {
            assert!(CertTable::parse(&good[..len]).is_err(), "len {len}");
        }
        let mut t = good.clone();
        t[16..20].copy_from_slice(&8u32.to_le_bytes()); // into the entry area
        assert!(matches!(
            CertTable::parse(&t),
            Err(CertTableError::EntryOutOfRange { .. })
        ));
        let mut t = good.clone();
        t[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            CertTable::parse(&t),
            Err(CertTableError::EntryOutOfRange { .. })
        ));
        // No terminator: a buffer full of non-zero entries.
        let ones = vec![1u8; 24 * (MAX_CERT_ENTRIES + 2)];
        assert_eq!(
            CertTable::parse(&ones).unwrap_err(),
            CertTableError::TooManyEntries
        );
        let ones = vec![1u8; 24 * 3];
        assert_eq!(
            CertTable::parse(&ones).unwrap_err(),
            CertTableError::Unterminated(72)
        );
    }
}
