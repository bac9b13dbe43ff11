//! Malformed firmware → typed errors, one test per way to break an image: truncation, footer
//! GUID and lengths, entry lengths, duplicate entries, the ASEV block (offset, signature,
//! version, lengths that overflow), and sections (unknown, unaligned, out of range,
//! overlapping, overlapping the firmware, wrong size). Built on synthetic images so each case
//! changes exactly one thing; the real image is also truncated.

mod common;
use common::*;
use ovmf::{
    snp_launch_digest, Firmware, FirmwareError, LaunchParams, MeasureError, SectionKind, SevHashes,
};
use svsm_abi::Guid;

fn parse(img: &[u8]) -> Result<Firmware<'_>, FirmwareError> {
    Firmware::parse(img)
}

fn measure(img: &[u8], p: &LaunchParams) -> Result<ovmf::Measurement, MeasureError> {
    snp_launch_digest(&Firmware::parse(img)?, p)
}

fn p1() -> LaunchParams {
    LaunchParams::new(2, 0x800F12, 1)
}

fn g(text: &str) -> Guid {
    Guid(guid(text))
}

#[test]
fn well_formed_synthetic_images_measure() {
    for size in [0x1000, 0x4000, 0x20_0000] {
        let mut s = Synth::sid_like(size);
        s.asev_from_end = 0x400;
        s.entries[3].1 = 0x400u32.to_le_bytes().to_vec();
        let img = s.build();
        let fw = parse(&img).unwrap();
        assert_eq!(fw.sections().unwrap().len(), 7);
        assert!(fw.has_section(SectionKind::SnpKernelHashes));
        assert_eq!(fw.hash_table_area().unwrap(), (0x810C00, 0x400));
        measure(&img, &p1()).unwrap();
    }
}

fn small() -> Synth {
    let mut s = Synth::sid_like(0x2000);
    s.asev_from_end = 0x400;
    s.entries[3].1 = 0x400u32.to_le_bytes().to_vec();
    s
}

#[test]
fn truncated_or_misaligned_images() {
    for len in [0usize, 1, 49, 50, 4095, 4097, 0x2000 - 1] {
        let img = vec![0u8; len];
        assert_eq!(
            parse(&img).unwrap_err(),
            FirmwareError::Size { len },
            "{len}"
        );
    }
    // A real image cut in half keeps page alignment but loses its footer.
    let real = ovmf_fd();
    let half = &real[..real.len() / 2];
    assert!(matches!(
        parse(half).unwrap_err(),
        FirmwareError::FooterGuid { .. }
    ));
    let odd = &real[..real.len() - 1];
    assert_eq!(
        parse(odd).unwrap_err(),
        FirmwareError::Size {
            len: real.len() - 1
        }
    );
    assert_eq!(
        ovmf::ovmf_hash(odd).unwrap_err(),
        FirmwareError::Size {
            len: real.len() - 1
        }
    );
}

#[test]
fn bad_footer_guid() {
    let mut img = small().build();
    let at = img.len() - 32 - 16;
    img[at] ^= 1;
    let mut want = guid(FOOTER);
    want[0] ^= 1;
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::FooterGuid { found: Guid(want) }
    );
    // An all-zero page is not firmware either.
    assert_eq!(
        parse(&[0u8; 4096]).unwrap_err(),
        FirmwareError::FooterGuid {
            found: Guid([0; 16])
        }
    );
}

fn set_footer_len(img: &mut [u8], len: u16) {
    let at = img.len() - 32 - 18;
    img[at..at + 2].copy_from_slice(&len.to_le_bytes());
}

#[test]
fn footer_length_out_of_range() {
    let mut img = small().build();
    let available = img.len() - 50;
    for len in [0u16, 17, 0xFFFF] {
        set_footer_len(&mut img, len);
        assert_eq!(
            parse(&img).unwrap_err(),
            FirmwareError::FooterLength {
                length: len,
                available
            },
            "{len}"
        );
    }
    // Exactly the footer: an empty table parses, but has nothing to measure with.
    set_footer_len(&mut img, 18);
    let fw = parse(&img).unwrap();
    assert!(fw.entries().is_empty());
    assert_eq!(
        snp_launch_digest(&fw, &p1()).unwrap_err(),
        MeasureError::NoSevMetadata
    );
}

#[test]
fn entry_length_too_small_or_too_large() {
    let s = small();
    let base = s.build();
    let table_len = s.table().len();
    // The entry nearest the footer ends at len-50; its u16 length sits 18 bytes before that.
    let len_at = base.len() - 50 - 18;
    for bad in [0u16, 17, (table_len - 18 + 1) as u16, 0xFFFF] {
        let mut img = base.clone();
        img[len_at..len_at + 2].copy_from_slice(&bad.to_le_bytes());
        let err = parse(&img).unwrap_err();
        assert!(
            matches!(err, FirmwareError::EntryLength { length, offset, .. }
                if length == bad && offset == len_at),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn stray_bytes_before_the_first_entry() {
    let s = small();
    let mut img = s.build();
    // Claim 5 more table bytes than the entries use.
    let total = s.table().len() as u16 + 5;
    set_footer_len(&mut img, total);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::EntryTruncated { left: 5 }
    );
}

#[test]
fn duplicate_entry() {
    let mut s = small();
    s.entry(RESET, &0x80B004u32.to_le_bytes());
    assert_eq!(
        parse(&s.build()).unwrap_err(),
        FirmwareError::DuplicateEntry { guid: g(RESET) }
    );
}

#[test]
fn metadata_entry_too_short() {
    let mut s = small();
    s.entries[3].1 = vec![0x00, 0x04];
    assert_eq!(
        parse(&s.build()).unwrap_err(),
        FirmwareError::EntryData {
            guid: g(METADATA),
            len: 2,
            need: 4
        }
    );
}

#[test]
fn metadata_offset_outside_the_image() {
    let s = small();
    for off in [0u32, 8, 0x2001, 0xFFFF_FFFF] {
        let mut t = s.clone();
        t.entries[3].1 = off.to_le_bytes().to_vec();
        assert_eq!(
            parse(&t.build()).unwrap_err(),
            FirmwareError::MetadataOffset {
                offset: off,
                image_len: 0x2000
            },
            "{off:#x}"
        );
    }
}

fn patch_asev(s: &Synth, f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut img = s.build();
    let at = img.len() - s.asev_from_end;
    f(&mut img[at..]);
    img
}

#[test]
fn metadata_signature_and_version() {
    let s = small();
    let img = patch_asev(&s, |a| a[0] = b'B');
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::MetadataSignature { found: *b"BSEV" }
    );
    let img = patch_asev(&s, |a| a[8] = 2);
    assert_eq!(parse(&img).unwrap_err(), FirmwareError::MetadataVersion(2));
}

#[test]
fn metadata_lengths_that_overflow_or_disagree() {
    let s = small();
    let cases: [(u32, u32); 5] = [
        (16 + 12 * 7 + 1, 7),       // length ≠ 16 + 12n
        (16 + 12 * 6, 7),           // too short for n
        (0xFFFF_FFFF, 7),           // huge length
        (16, 0xFFFF_FFFF),          // 12n overflows 32 bits
        (0xFFFF_FFF4, 0x1555_5553), // consistent, but far past the image end
    ];
    for (length, sections) in cases {
        let img = patch_asev(&s, |a| {
            a[4..8].copy_from_slice(&length.to_le_bytes());
            a[12..16].copy_from_slice(&sections.to_le_bytes());
        });
        assert_eq!(
            parse(&img).unwrap_err(),
            FirmwareError::MetadataLength { length, sections },
            "{length:#x}/{sections:#x}"
        );
    }
    // A consistent header in the last 32 bytes whose sections would run past the image end.
    let mut t = small();
    t.entries[3].1 = 0x20u32.to_le_bytes().to_vec();
    let mut img = t.build();
    let at = img.len() - 0x20;
    let hdr = [
        *b"ASEV",
        100u32.to_le_bytes(),
        1u32.to_le_bytes(),
        7u32.to_le_bytes(),
    ]
    .concat();
    img[at..at + 16].copy_from_slice(&hdr);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::MetadataLength {
            length: 100,
            sections: 7
        }
    );
}

#[test]
fn too_many_sections() {
    let mut s = Synth::sid_like(0x4000);
    s.sections = (0..300u32).map(|i| (i * 0x1000, 0x1000, SEC_MEM)).collect();
    s.asev_from_end = 0x3000;
    s.entries[3].1 = 0x3000u32.to_le_bytes().to_vec();
    assert_eq!(
        parse(&s.build()).unwrap_err(),
        FirmwareError::TooManySections {
            count: 300,
            max: 256
        }
    );
    // 256 disjoint sections are fine.
    s.sections.truncate(256);
    parse(&s.build()).unwrap();
}

fn with_sections(sections: &[(u32, u32, u32)]) -> Vec<u8> {
    let mut s = small();
    s.sections = sections.to_vec();
    s.build()
}

#[test]
fn unknown_section_type() {
    let img = with_sections(&[(0x800000, 0x1000, 1), (0x801000, 0x1000, 5)]);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::SectionKind { index: 1, kind: 5 }
    );
}

#[test]
fn unaligned_or_empty_sections() {
    for (gpa, size) in [(0x800001, 0x1000), (0x800000, 0x1001), (0x800000, 0)] {
        let img = with_sections(&[(gpa, size, SEC_MEM)]);
        assert_eq!(
            parse(&img).unwrap_err(),
            FirmwareError::SectionAlignment {
                index: 0,
                gpa,
                size
            }
        );
    }
}

#[test]
fn section_past_4gib() {
    let img = with_sections(&[(0xFFFF_F000, 0x2000, SEC_MEM)]);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::SectionRange {
            index: 0,
            gpa: 0xFFFF_F000,
            size: 0x2000
        }
    );
}

#[test]
fn overlapping_sections() {
    let img = with_sections(&[
        (0x800000, 0x9000, SEC_MEM),
        (0x80D000, 0x1000, SECRETS),
        (0x808000, 0x1000, CPUID),
    ]);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::SectionOverlap {
            first: 0,
            second: 2
        }
    );
    let img = with_sections(&[(0x800000, 0x1000, SEC_MEM), (0x800000, 0x1000, CAA)]);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::SectionOverlap {
            first: 0,
            second: 1
        }
    );
}

#[test]
fn section_over_the_firmware() {
    // The 0x2000-byte image sits at 0xFFFFE000..4 GiB.
    let img = with_sections(&[(0x800000, 0x1000, SEC_MEM), (0xFFFF_F000, 0x1000, SEC_MEM)]);
    assert_eq!(
        parse(&img).unwrap_err(),
        FirmwareError::SectionOverlapsFirmware {
            index: 1,
            firmware_gpa: 0xFFFF_E000
        }
    );
}

#[test]
fn single_page_sections_of_another_size() {
    for (kind, k) in [
        (SECRETS, SectionKind::SnpSecrets),
        (CPUID, SectionKind::Cpuid),
        (KERNEL_HASHES, SectionKind::SnpKernelHashes),
    ] {
        let img = with_sections(&[(0x800000, 0x2000, kind)]);
        assert_eq!(
            parse(&img).unwrap_err(),
            FirmwareError::SectionSize {
                index: 0,
                kind: k,
                size: 0x2000
            }
        );
    }
}

#[test]
fn missing_or_short_reset_block() {
    let mut s = small();
    s.entries.remove(0);
    assert_eq!(
        measure(&s.build(), &p1()).unwrap_err(),
        MeasureError::Firmware(FirmwareError::MissingEntry {
            name: "SEV-ES AP reset block",
            guid: g(RESET)
        })
    );
    let mut s = small();
    s.entries[0].1 = vec![4, 0xB0];
    assert_eq!(
        measure(&s.build(), &p1()).unwrap_err(),
        MeasureError::Firmware(FirmwareError::EntryData {
            guid: g(RESET),
            len: 2,
            need: 4
        })
    );
}

#[test]
fn no_metadata_no_vcpus() {
    let mut s = small();
    s.entries.remove(3);
    assert_eq!(
        measure(&s.build(), &p1()).unwrap_err(),
        MeasureError::NoSevMetadata
    );
    let mut p = p1();
    p.vcpus = 0;
    assert_eq!(
        measure(&small().build(), &p).unwrap_err(),
        MeasureError::NoVcpus
    );
}

#[test]
fn hash_table_area_unusable_or_missing() {
    let hashes = Some(SevHashes::new(b"k", None, None));
    let mut p = p1();
    p.hashes = hashes;
    for (base, size) in [(0u32, 0x400u32), (0x810C00, 0x10), (0x810FF0, 0x400)] {
        let mut s = small();
        s.entries[2].1 = [base.to_le_bytes(), size.to_le_bytes()].concat();
        assert_eq!(
            measure(&s.build(), &p).unwrap_err(),
            MeasureError::HashTableArea {
                base,
                size,
                need: 176
            }
        );
    }
    let mut s = small();
    s.entries.remove(2);
    assert_eq!(
        measure(&s.build(), &p).unwrap_err(),
        MeasureError::Firmware(FirmwareError::MissingEntry {
            name: "SEV hash table",
            guid: g(HASHES)
        })
    );
}
