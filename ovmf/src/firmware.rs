//! The OVMF image as the launch sees it: the footer GUID table at the end of the image (edk2
//! `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`) and the SEV metadata block it points to
//! ("ASEV", edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`), as QEMU `target/i386/sev.c`
//! and sev-snp-measure `ovmf.py` read them; everything little-endian, GUIDs in UEFI mixed-endian
//! byte order.
//!
//! Footer table: the last 32 bytes of the image are the reset vector area; the 18 bytes before
//! them are the footer entry — u16 total table length (footer entry included), then the footer
//! GUID. Walking backwards from the footer, each entry ends with `[u16 length][GUID]`, `length`
//! covers data plus the 18-byte header, and its data precedes the header.

use crate::error::FirmwareError;
use crate::PAGE_SIZE;
use svsm_abi::Guid;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// 4 GiB: the firmware image is mapped to end here.
pub const FOUR_GIB: u64 = 1 << 32;

/// Footer entry of the table, 96b582de-1fb2-45f7-baea-a366c55a082d.
pub const FOOTER_GUID: Guid = Guid::from_fields(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// SEV-ES AP reset block (u32 reset address), 00f771de-1a7e-4fcb-890e-68c77e2fb44e.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::from_fields(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// SEV launch-secret area (u32 base, u32 size), 4c2eb361-7d9b-4cc3-8081-127c90d3d294.
pub const SEV_SECRET_GUID: Guid = Guid::from_fields(
    0x4c2e_b361,
    0x7d9b,
    0x4cc3,
    [0x80, 0x81, 0x12, 0x7c, 0x90, 0xd3, 0xd2, 0x94],
);
/// Kernel hash-table area (u32 base, u32 size), 7255371f-3a3b-4b04-927b-1da6efa8d454.
pub const SEV_HASH_TABLE_GUID: Guid = Guid::from_fields(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// SEV metadata (u32 offset of the ASEV block from the image end),
/// dc886566-984a-4798-a75e-5585a7bf67cc.
pub const SEV_METADATA_GUID: Guid = Guid::from_fields(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);

/// Header that ends every footer-table entry (18 bytes; data precedes it).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EntryHeader {
    /// Entry length: data plus this header.
    pub length: U16,
    /// Entry GUID.
    pub guid: Guid,
}
assert_layout!(EntryHeader, size = 18, length = 0, guid = 2);

/// The reset-vector area after the table (bytes from the image end to the footer entry's end).
pub const RESET_AREA: usize = 32;

/// SEV metadata header ("ASEV", OvmfSevMetadata.asm `OvmfSevMetadataGuid` block).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct MetadataHeader {
    /// "ASEV".
    pub signature: [u8; 4],
    /// Total length: 16 + 12 × sections.
    pub length: U32,
    /// 1.
    pub version: U32,
    /// Section count.
    pub sections: U32,
}
assert_layout!(
    MetadataHeader,
    size = 16,
    signature = 0,
    length = 4,
    version = 8,
    sections = 12
);

/// One SEV metadata section descriptor.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SectionDesc {
    /// Guest physical address.
    pub gpa: U32,
    /// Size in bytes.
    pub size: U32,
    /// [`SectionKind`] value.
    pub kind: U32,
}
assert_layout!(SectionDesc, size = 12, gpa = 0, size = 4, kind = 8);

/// "ASEV".
pub const METADATA_SIGNATURE: [u8; 4] = *b"ASEV";
/// Bound on the section count (real images list 5 to 7).
pub const MAX_SECTIONS: u32 = 256;

/// SEV metadata section types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// Pre-validated memory (SNP_SEC_MEM).
    SnpSecMem = 1,
    /// The SNP secrets page.
    SnpSecrets = 2,
    /// The CPUID page.
    Cpuid = 3,
    /// The SVSM calling area (SVSM-aware edk2).
    SvsmCaa = 4,
    /// The kernel/initrd/cmdline hashes page (measured direct boot).
    SnpKernelHashes = 0x10,
}

impl SectionKind {
    /// Decodes a type value.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => SectionKind::SnpSecMem,
            2 => SectionKind::SnpSecrets,
            3 => SectionKind::Cpuid,
            4 => SectionKind::SvsmCaa,
            0x10 => SectionKind::SnpKernelHashes,
            _ => return None,
        })
    }

    /// The name edk2 and the tools use.
    pub const fn name(self) -> &'static str {
        match self {
            SectionKind::SnpSecMem => "SNP_SEC_MEM",
            SectionKind::SnpSecrets => "SNP_SECRETS",
            SectionKind::Cpuid => "CPUID",
            SectionKind::SvsmCaa => "SVSM_CAA",
            SectionKind::SnpKernelHashes => "SNP_KERNEL_HASHES",
        }
    }
}

/// A validated SEV metadata section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address (4 KiB aligned).
    pub gpa: u32,
    /// Size in bytes (non-zero, 4 KiB multiple, ends at or below 4 GiB).
    pub size: u32,
    /// Type.
    pub kind: SectionKind,
}

impl Section {
    /// Pages covered.
    pub const fn pages(&self) -> u64 {
        self.size as u64 / PAGE_SIZE as u64
    }
}

/// One footer-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FooterEntry<'a> {
    /// Entry GUID.
    pub guid: Guid,
    /// Entry data (before its header).
    pub data: &'a [u8],
}

/// A parsed, validated OVMF image.
#[derive(Clone, Debug)]
pub struct Firmware<'a> {
    image: &'a [u8],
    entries: Vec<FooterEntry<'a>>,
    sections: Option<Vec<Section>>,
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b = data.get(at..end)?;
    U32::read_from_bytes(b).ok().map(|v| v.get())
}

/// Checks the image size: non-empty, whole pages, at most 4 GiB.
pub fn check_image_size(image: &[u8]) -> Result<(), FirmwareError> {
    let len = image.len();
    if len == 0 || len % PAGE_SIZE != 0 || len as u64 > FOUR_GIB {
        return Err(FirmwareError::Size { len });
    }
    Ok(())
}

/// Parses the footer table of `image` (entries in table order, walking backwards from the
/// footer).
pub fn parse_footer_table(image: &[u8]) -> Result<Vec<FooterEntry<'_>>, FirmwareError> {
    let hdr_len = core::mem::size_of::<EntryHeader>();
    let footer_start = image
        .len()
        .checked_sub(RESET_AREA + hdr_len)
        .ok_or(FirmwareError::Size { len: image.len() })?;
    let footer = image
        .get(footer_start..footer_start + hdr_len)
        .and_then(|b| EntryHeader::read_from_bytes(b).ok())
        .ok_or(FirmwareError::Size { len: image.len() })?;
    if footer.guid != FOOTER_GUID {
        return Err(FirmwareError::FooterGuid { found: footer.guid });
    }
    let total = footer.length.get();
    let table_len = usize::from(total)
        .checked_sub(hdr_len)
        .filter(|&l| l <= footer_start)
        .ok_or(FirmwareError::FooterLength {
            length: total,
            available: footer_start,
        })?;
    let table_start = footer_start - table_len;
    let mut rest = image
        .get(table_start..footer_start)
        .ok_or(FirmwareError::FooterLength {
            length: total,
            available: footer_start,
        })?;
    let mut entries: Vec<FooterEntry<'_>> = Vec::new();
    while !rest.is_empty() {
        let left = rest.len();
        let hdr_at = left
            .checked_sub(hdr_len)
            .ok_or(FirmwareError::EntryTruncated { left })?;
        let hdr = rest
            .get(hdr_at..)
            .and_then(|b| EntryHeader::read_from_bytes(b).ok())
            .ok_or(FirmwareError::EntryTruncated { left })?;
        let length = hdr.length.get();
        let entry_start = left
            .checked_sub(usize::from(length))
            .filter(|_| usize::from(length) >= hdr_len)
            .ok_or(FirmwareError::EntryLength {
                offset: table_start + hdr_at,
                length,
                available: left,
            })?;
        let data = rest
            .get(entry_start..hdr_at)
            .ok_or(FirmwareError::EntryTruncated { left })?;
        if entries.iter().any(|e| e.guid == hdr.guid) {
            return Err(FirmwareError::DuplicateEntry { guid: hdr.guid });
        }
        entries.push(FooterEntry {
            guid: hdr.guid,
            data,
        });
        rest = rest
            .get(..entry_start)
            .ok_or(FirmwareError::EntryTruncated { left })?;
    }
    Ok(entries)
}

/// Parses and validates the SEV metadata block `offset` bytes before the end of `image`.
pub fn parse_sev_metadata(image: &[u8], offset: u32) -> Result<Vec<Section>, FirmwareError> {
    let image_len = image.len();
    let bad_offset = FirmwareError::MetadataOffset { offset, image_len };
    let start = image_len
        .checked_sub(offset as usize)
        .ok_or(bad_offset.clone())?;
    let hdr_len = core::mem::size_of::<MetadataHeader>();
    let hdr = start
        .checked_add(hdr_len)
        .and_then(|end| image.get(start..end))
        .and_then(|b| MetadataHeader::read_from_bytes(b).ok())
        .ok_or(bad_offset)?;
    if hdr.signature != METADATA_SIGNATURE {
        return Err(FirmwareError::MetadataSignature {
            found: hdr.signature,
        });
    }
    if hdr.version.get() != 1 {
        return Err(FirmwareError::MetadataVersion(hdr.version.get()));
    }
    let (length, count) = (hdr.length.get(), hdr.sections.get());
    let bad_len = FirmwareError::MetadataLength {
        length,
        sections: count,
    };
    let expected = u64::from(count)
        .checked_mul(core::mem::size_of::<SectionDesc>() as u64)
        .and_then(|n| n.checked_add(hdr_len as u64))
        .ok_or(bad_len.clone())?;
    if u64::from(length) != expected {
        return Err(bad_len);
    }
    let descs = start
        .checked_add(hdr_len)
        .zip(start.checked_add(length as usize))
        .and_then(|(a, b)| image.get(a..b))
        .ok_or(bad_len)?;
    if count > MAX_SECTIONS {
        return Err(FirmwareError::TooManySections {
            count,
            max: MAX_SECTIONS,
        });
    }
    let descs =
        <[SectionDesc]>::ref_from_bytes(descs).map_err(|_| FirmwareError::MetadataLength {
            length,
            sections: count,
        })?;
    let mut sections = Vec::with_capacity(descs.len());
    for (index, d) in descs.iter().enumerate() {
        let (gpa, size, kind) = (d.gpa.get(), d.size.get(), d.kind.get());
        let kind = SectionKind::from_u32(kind).ok_or(FirmwareError::SectionKind { index, kind })?;
        if size == 0 || gpa as usize % PAGE_SIZE != 0 || size as usize % PAGE_SIZE != 0 {
            return Err(FirmwareError::SectionAlignment { index, gpa, size });
        }
        if u64::from(gpa) + u64::from(size) > FOUR_GIB {
            return Err(FirmwareError::SectionRange { index, gpa, size });
        }
        if matches!(
            kind,
            SectionKind::SnpSecrets | SectionKind::Cpuid | SectionKind::SnpKernelHashes
        ) && size as usize != PAGE_SIZE
        {
            return Err(FirmwareError::SectionSize { index, kind, size });
        }
        sections.push(Section { gpa, size, kind });
    }
    // Overlaps: sort by start and compare neighbours (O(n log n) on hostile counts).
    let mut order: Vec<usize> = (0..sections.len()).collect();
    order.sort_by_key(|&i| sections.get(i).map(|s| s.gpa));
    for pair in order.windows(2) {
        if let (Some(&a), Some(&b)) = (pair.first(), pair.get(1)) {
            if let (Some(sa), Some(sb)) = (sections.get(a), sections.get(b)) {
                if u64::from(sa.gpa) + u64::from(sa.size) > u64::from(sb.gpa) {
                    return Err(FirmwareError::SectionOverlap {
                        first: a.min(b),
                        second: a.max(b),
                    });
                }
            }
        }
    }
    let firmware_gpa = FOUR_GIB - image_len as u64;
    for (index, s) in sections.iter().enumerate() {
        if u64::from(s.gpa) + u64::from(s.size) > firmware_gpa {
            return Err(FirmwareError::SectionOverlapsFirmware {
                index,
                firmware_gpa,
            });
        }
    }
    Ok(sections)
}

impl<'a> Firmware<'a> {
    /// Parses an OVMF image: size, footer table, and (if the table points to one) the SEV
    /// metadata. An image whose table has no SEV metadata entry parses, with
    /// [`Firmware::sections`] `None` (it cannot launch as SNP).
    pub fn parse(image: &'a [u8]) -> Result<Self, FirmwareError> {
        check_image_size(image)?;
        let entries = parse_footer_table(image)?;
        let sections = match entries.iter().find(|e| e.guid == SEV_METADATA_GUID) {
            None => None,
            Some(e) => {
                let offset = read_u32(e.data, 0).ok_or(FirmwareError::EntryData {
                    guid: e.guid,
                    len: e.data.len(),
                    need: 4,
                })?;
                Some(parse_sev_metadata(image, offset)?)
            }
        };
        Ok(Firmware {
            image,
            entries,
            sections,
        })
    }

    /// The whole image.
    pub fn image(&self) -> &'a [u8] {
        self.image
    }

    /// GPA of the first byte: 4 GiB − image size.
    pub fn gpa(&self) -> u64 {
        FOUR_GIB - self.image.len() as u64
    }

    /// Footer-table entries in table order (nearest the footer first).
    pub fn entries(&self) -> &[FooterEntry<'a>] {
        &self.entries
    }

    /// The data of the entry with `guid`.
    pub fn entry(&self, guid: Guid) -> Option<&'a [u8]> {
        self.entries.iter().find(|e| e.guid == guid).map(|e| e.data)
    }

    /// SEV metadata sections in table order, if the image has SEV metadata.
    pub fn sections(&self) -> Option<&[Section]> {
        self.sections.as_deref()
    }

    /// Whether a section of `kind` exists.
    pub fn has_section(&self, kind: SectionKind) -> bool {
        self.sections
            .as_deref()
            .is_some_and(|s| s.iter().any(|s| s.kind == kind))
    }

    fn u32_field(&self, guid: Guid, name: &'static str, at: usize) -> Result<u32, FirmwareError> {
        let data = self
            .entry(guid)
            .ok_or(FirmwareError::MissingEntry { name, guid })?;
        read_u32(data, at).ok_or(FirmwareError::EntryData {
            guid,
            len: data.len(),
            need: at + 4,
        })
    }

    /// The SEV-ES AP reset address (first u32 of the 00f771de… entry).
    pub fn sev_es_reset_address(&self) -> Result<u32, FirmwareError> {
        self.u32_field(SEV_ES_RESET_BLOCK_GUID, "SEV-ES AP reset block", 0)
    }

    /// The kernel hash-table area (base, size) from the 7255371f… entry.
    pub fn hash_table_area(&self) -> Result<(u32, u32), FirmwareError> {
        let name = "SEV hash table";
        Ok((
            self.u32_field(SEV_HASH_TABLE_GUID, name, 0)?,
            self.u32_field(SEV_HASH_TABLE_GUID, name, 4)?,
        ))
    }
}
