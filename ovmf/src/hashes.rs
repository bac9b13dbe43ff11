//! The SEV kernel/initrd/cmdline hash table QEMU writes into the SNP_KERNEL_HASHES page for a
//! measured direct boot (QEMU `target/i386/sev.c` `SevHashTable`/`PaddedSevHashTable`; OVMF
//! `OvmfPkg/AmdSev/BlobVerifierLib`; sev-snp-measure `sev_hashes.py`). All three
//! entries are always present: an absent initrd hashes the empty input, an absent command line
//! hashes a single NUL; the command line is hashed with its terminating NUL.

use crate::error::MeasureError;
use crate::{Page, PAGE_SIZE};
use sha2::{Digest as _, Sha256};
use svsm_abi::Guid;
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Table header GUID 9438d606-4f22-4cc9-b479-a793d411fd21.
pub const TABLE_GUID: Guid = Guid::from_fields(
    0x9438_d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
/// Command-line entry GUID 97d02dd8-bd20-4c94-aa78-e7714d36ab2a.
pub const CMDLINE_GUID: Guid = Guid::from_fields(
    0x97d0_2dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);
/// Initrd entry GUID 44baf731-3a2f-4bd7-9af1-41e29169781d.
pub const INITRD_GUID: Guid = Guid::from_fields(
    0x44ba_f731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
/// Kernel entry GUID 4de79437-abd2-427f-b835-d5b172d2045b.
pub const KERNEL_GUID: Guid = Guid::from_fields(
    0x4de7_9437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);

/// One table entry: GUID, u16 length (0x32), SHA-256.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HashTableEntry {
    /// Entry GUID.
    pub guid: Guid,
    /// Entry length, 0x32.
    pub length: U16,
    /// SHA-256 of the blob.
    pub hash: [u8; 32],
}
assert_layout!(
    HashTableEntry,
    size = 0x32,
    guid = 0,
    length = 0x10,
    hash = 0x12
);

/// The table padded to a 16-byte multiple (176 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PaddedHashTable {
    /// Table GUID.
    pub guid: Guid,
    /// Length of the unpadded table, 0xA8.
    pub length: U16,
    /// Command line.
    pub cmdline: HashTableEntry,
    /// Initrd.
    pub initrd: HashTableEntry,
    /// Kernel.
    pub kernel: HashTableEntry,
    /// Zero padding.
    pub padding: [u8; 8],
}
assert_layout!(
    PaddedHashTable,
    size = 0xB0,
    guid = 0,
    length = 0x10,
    cmdline = 0x12,
    initrd = 0x44,
    kernel = 0x76,
    padding = 0xA8
);

/// Unpadded table length.
pub const TABLE_LEN: u16 = 0xA8;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The three SHA-256 values of a measured direct boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevHashes {
    /// SHA-256 of the kernel file as passed to `-kernel`.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of nothing when absent).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line plus NUL (of one NUL when absent).
    pub cmdline: [u8; 32],
}

impl SevHashes {
    /// Hashes the blobs of a direct boot.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Self {
        let mut c = Sha256::new();
        c.update(cmdline.unwrap_or("").as_bytes());
        c.update([0u8]);
        SevHashes {
            kernel: sha256(kernel),
            initrd: sha256(initrd.unwrap_or(&[])),
            cmdline: c.finalize().into(),
        }
    }

    /// The padded table.
    pub fn table(&self) -> PaddedHashTable {
        let entry = |guid, hash| HashTableEntry {
            guid,
            length: U16::new(core::mem::size_of::<HashTableEntry>() as u16),
            hash,
        };
        PaddedHashTable {
            guid: TABLE_GUID,
            length: U16::new(TABLE_LEN),
            cmdline: entry(CMDLINE_GUID, self.cmdline),
            initrd: entry(INITRD_GUID, self.initrd),
            kernel: entry(KERNEL_GUID, self.kernel),
            padding: [0; 8],
        }
    }

    /// The hashes page: zeros with the padded table at `area_base & 0xFFF`. The area (from the
    /// footer's hash-table entry) must be non-zero, hold the padded table, and not cross a page.
    pub fn page(&self, area_base: u32, area_size: u32) -> Result<Page, MeasureError> {
        let need = core::mem::size_of::<PaddedHashTable>();
        let err = MeasureError::HashTableArea {
            base: area_base,
            size: area_size,
            need,
        };
        if area_base == 0 || (area_size as usize) < need {
            return Err(err);
        }
        let offset = area_base as usize % PAGE_SIZE;
        let mut page = [0u8; PAGE_SIZE];
        let slot = page.get_mut(offset..offset + need).ok_or(err)?;
        self.table()
            .write_to(slot)
            .map_err(|_| MeasureError::HashTableArea {
                base: area_base,
                size: area_size,
                need,
            })?;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_inputs_hash_as_documented() {
        let h = SevHashes::new(b"k", None, None);
        assert_eq!(
            hex::encode(h.initrd),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(h.cmdline),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(SevHashes::new(b"k", None, Some("")), h);
    }

    #[test]
    fn page_bounds() {
        let h = SevHashes::new(b"k", None, None);
        assert!(h.page(0x810C00, 0x400).is_ok());
        assert!(h.page(0x810F50, 0xB0).is_ok());
        assert!(matches!(
            h.page(0x810F51, 0xB0),
            Err(MeasureError::HashTableArea { .. })
        ));
        assert!(matches!(
            h.page(0, 0x400),
            Err(MeasureError::HashTableArea { .. })
        ));
        assert!(matches!(
            h.page(0x810C00, 0xAF),
            Err(MeasureError::HashTableArea { .. })
        ));
    }
}
