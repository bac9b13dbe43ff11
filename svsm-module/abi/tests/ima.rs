//! The IMA measurement list parser on a real list (Debian's 6.1 kernel booted by OVMF on the
//! svsm-vhsm vTPM with `ima_policy=tcb`; provenance in tests/data/qemu-ovmf-linux6.1/README.md)
//! and on that list mutated, truncated and rebuilt to hit every refusal.

use sha1::Sha1;
use sha2::{Digest, Sha256};
use svsm_abi::ima::{
    FileSignature, HashAlgo, ImaError, ImaField, ImaLog, SignatureError, Template, MAX_ENTRIES,
    MAX_LOG, MAX_TEMPLATE_DATA, MAX_TEMPLATE_NAME,
};

const LOG: &[u8] = include_bytes!("data/qemu-ovmf-linux6.1/ima-binary_runtime_measurements.bin");
const QUOTED_PCRS: &str = include_str!("data/qemu-ovmf-linux6.1/quoted-pcrs-sha256.txt");

/// Entries in the captured list.
const ENTRIES: usize = 56;
/// Entries whose replay gives the quoted PCR 10 (the list grew after the quote).
const COVERED: usize = 50;

/// Offsets in the real list: entry 0 is `ima-sig`, 67 bytes of template data at 39: d-ng
/// length at 39 ("sha256:\0" at 43, the digest at 51), n-ng at 87 after its length, sig
/// length at 102.
const D_NG_LEN_AT: usize = 39;
const DIGEST_AT: usize = 51;
const N_NG_AT: usize = 87;

fn quoted_pcr(pcr: u32) -> [u8; 32] {
    let line = QUOTED_PCRS
        .lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(&pcr.to_string()))
        .unwrap();
    let hex = line.split("0x").nth(1).unwrap().trim();
    hex::decode(hex).unwrap().try_into().unwrap()
}

/// Byte offset where each entry ends.
fn entry_ends(log: &[u8]) -> Vec<usize> {
    let base = log.as_ptr() as usize;
    ImaLog::parse(log)
        .unwrap()
        .entries()
        .map(|e| e.template_data.as_ptr() as usize - base + e.template_data.len())
        .collect()
}

fn set_u32(log: &mut [u8], at: usize, value: u32) {
    log[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// One entry in the kernel's binary form, template data built from `fields`.
fn entry(pcr: u32, sha1: [u8; 20], name: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut data = Vec::new();
    for f in fields {
        data.extend_from_slice(&(f.len() as u32).to_le_bytes());
        data.extend_from_slice(f);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&pcr.to_le_bytes());
    out.extend_from_slice(&sha1);
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

fn d_ng(algo: &str, digest: &[u8]) -> Vec<u8> {
    [algo.as_bytes(), b":\0", digest].concat()
}

#[test]
fn the_real_list_parses_entry_by_entry() {
    let log = ImaLog::parse(LOG).unwrap();
    assert_eq!(log.len(), ENTRIES);
    assert_eq!(log.entries().len(), ENTRIES);
    for (i, e) in log.entries().enumerate() {
        assert_eq!(e.index, i);
        assert_eq!(e.pcr, 10, "entry {i}");
        assert_eq!(e.template_name, b"ima-sig", "entry {i}");
        assert_eq!(e.template(), Template::ImaSig);
        assert!(!e.is_violation(), "entry {i}");
        assert_eq!(e.fields().count(), 3);
        let digest = e.file_digest().unwrap();
        assert_eq!(
            (digest.algo_name, digest.algo, digest.digest.len()),
            (&b"sha256"[..], Some(HashAlgo::Sha256), 32)
        );
        // Nothing on the ramfs root carries security.ima or security.evm.
        assert_eq!(e.signature().unwrap(), None, "entry {i}");
    }
    let names: Vec<&[u8]> = log.entries().map(|e| e.file_name().unwrap()).collect();
    assert_eq!(names[0], b"boot_aggregate");
    assert_eq!(names[1], b"/init");
    assert_eq!(names[2], b"/bin/busybox");
    assert_eq!(names[COVERED - 1], b"/tmp/quote.pcrs");
    assert_eq!(names[ENTRIES - 1], b"/tmp/quote.pcrs");
    let first = log.entries().next().unwrap();
    assert_eq!(
        hex::encode(first.file_digest().unwrap().digest),
        "711203d137e65d3dad100fff89c2a7cbd89bc1d76b0471b6a995fad99461ead9"
    );
}

/// The independent proof that `template_data` is the span the kernel hashes: SHA-1 of it is
/// the SHA-1 template digest the kernel logged, for every entry.
#[test]
fn sha1_of_template_data_is_the_logged_template_digest() {
    for e in ImaLog::parse(LOG).unwrap().entries() {
        let sha1: [u8; 20] = Sha1::digest(e.template_data).into();
        assert_eq!(&sha1, e.sha1_template_digest, "entry {}", e.index);
    }
}

/// The same span, hashed with SHA-256 and extended in order, reaches the quoted PCR 10 after
/// exactly `COVERED` entries; the boot_aggregate is SHA-256 of the quoted PCRs 0-9 (PCR 8 is
/// not in the quote; OVMF's log has no PCR 8 event, so it is taken as zero).
#[test]
fn sha256_replay_reaches_the_quoted_pcr10() {
    let mut pcr10 = [0u8; 32];
    let mut matched = Vec::new();
    for e in ImaLog::parse(LOG).unwrap().entries() {
        let ext = Sha256::digest(e.template_data);
        pcr10 = Sha256::new()
            .chain_update(pcr10)
            .chain_update(ext)
            .finalize()
            .into();
        if pcr10 == quoted_pcr(10) {
            matched.push(e.index + 1);
        }
    }
    assert_eq!(matched, [COVERED]);
    let mut aggregate = Sha256::new();
    for pcr in 0..10 {
        aggregate.update(if pcr == 8 { [0; 32] } else { quoted_pcr(pcr) });
    }
    let first = ImaLog::parse(LOG).unwrap().entries().next().unwrap();
    assert_eq!(
        first.file_digest().unwrap().digest,
        &aggregate.finalize()[..]
    );
}

#[test]
fn every_truncation_is_an_error_or_a_shorter_list() {
    let ends = entry_ends(LOG);
    assert_eq!(ends.len(), ENTRIES);
    assert_eq!(ends[..3], [106, 203, 307]);
    assert_eq!(*ends.last().unwrap(), LOG.len());
    for len in 0..=ends[3] {
        match ImaLog::parse(&LOG[..len]) {
            Ok(log) => {
                let n = ends.iter().position(|&e| e == len).map_or(0, |i| i + 1);
                assert!(len == 0 || ends.contains(&len), "len {len}");
                assert_eq!(log.len(), n, "len {len}");
            }
            Err(ImaError::Truncated { index, .. }) => {
                assert_eq!(
                    index,
                    ends.iter().filter(|&&e| e <= len).count(),
                    "len {len}"
                )
            }
            Err(e) => panic!("len {len}: {e}"),
        }
    }
}

#[test]
fn oversized_lengths() {
    let mut log = LOG.to_vec();
    set_u32(&mut log, 24, u32::MAX);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::TooLarge {
            index: 0,
            field: ImaField::TemplateNameLength,
            len: u32::MAX as usize,
            max: MAX_TEMPLATE_NAME,
        }
    );
    let mut log = LOG.to_vec();
    set_u32(&mut log, 35, MAX_TEMPLATE_DATA as u32 + 1);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::TooLarge {
            index: 0,
            field: ImaField::TemplateDataLength,
            len: MAX_TEMPLATE_DATA + 1,
            max: MAX_TEMPLATE_DATA,
        }
    );
    // Within the bound but past the end of the list.
    let mut log = LOG.to_vec();
    set_u32(&mut log, 35, MAX_TEMPLATE_DATA as u32);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::Truncated {
            index: 0,
            field: ImaField::TemplateData
        }
    );
    let big = vec![0u8; MAX_LOG + 1];
    assert_eq!(
        ImaLog::parse(&big).unwrap_err(),
        ImaError::LogTooLarge(MAX_LOG + 1)
    );
}

#[test]
fn too_many_entries() {
    let one = entry(10, [1; 20], b"x", &[b""]);
    let log = one.repeat(MAX_ENTRIES + 1);
    assert_eq!(ImaLog::parse(&log).unwrap_err(), ImaError::TooManyEntries);
    assert_eq!(
        ImaLog::parse(&log[..one.len() * MAX_ENTRIES])
            .unwrap()
            .len(),
        MAX_ENTRIES
    );
}

#[test]
fn field_lengths_that_overrun_the_template_data() {
    // d-ng claims more than the template data holds.
    let mut log = LOG.to_vec();
    set_u32(&mut log, D_NG_LEN_AT, u32::MAX);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::Truncated {
            index: 0,
            field: ImaField::FieldData
        }
    );
    // The template data ends one byte into the last field's length.
    let mut log = entry(10, [1; 20], b"ima-ng", &[&d_ng("sha1", &[7; 20]), b"/a\0"]);
    log.push(0);
    let len_at = 4 + 20 + 4 + 6;
    let data_len = u32::from_le_bytes(log[len_at..len_at + 4].try_into().unwrap());
    set_u32(&mut log, len_at, data_len + 1);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::Truncated {
            index: 0,
            field: ImaField::FieldLength
        }
    );
    // Empty template data: a template has at least one field.
    let log = entry(10, [1; 20], b"ima-ng", &[]);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::Truncated {
            index: 0,
            field: ImaField::FieldLength
        }
    );
    // Sixteen fields.
    let sixteen = [&b""[..]; 16];
    let log = entry(10, [1; 20], b"custom", &sixteen);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::TooManyFields { index: 0 }
    );
}

#[test]
fn template_names() {
    let fields: [&[u8]; 2] = [&d_ng("sha1", &[7; 20]), b"/a\0"];
    let log = entry(10, [1; 20], b"", &fields);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::TemplateName { index: 0 }
    );
    let log = entry(10, [1; 20], b"ima ng", &fields);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::TemplateName { index: 0 }
    );
    let log = entry(10, [1; 20], b"ima", &fields);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::LegacyTemplate { index: 0 }
    );
    // A custom template is named by its format string; these two are ima-ng and ima-sig.
    let log = entry(10, [1; 20], b"d-ng|n-ng", &fields);
    let e = ImaLog::parse(&log).unwrap().entries().next().unwrap();
    assert_eq!(
        (e.template(), e.file_name().unwrap()),
        (Template::ImaNg, &b"/a"[..])
    );
    assert_eq!(Template::from_name(b"d-ng|n-ng|sig"), Template::ImaSig);
}

#[test]
fn unknown_templates_are_framed_but_not_decoded() {
    let buf: &[u8] = b"console=ttyS0";
    let mut log = LOG[..106].to_vec();
    log.extend(entry(
        10,
        [2; 20],
        b"ima-buf",
        &[&d_ng("sha256", &[3; 32]), b"kexec-cmdline\0", buf],
    ));
    let parsed = ImaLog::parse(&log).unwrap();
    assert_eq!(parsed.len(), 2);
    let e = parsed.entries().nth(1).unwrap();
    assert_eq!((e.index, e.template()), (1, Template::Other));
    let fields: Vec<&[u8]> = e.fields().map(Result::unwrap).collect();
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[2], buf);
    let unsupported = ImaError::UnsupportedTemplate { index: 1 };
    assert_eq!(e.file_name().unwrap_err(), unsupported);
    assert_eq!(e.file_digest().unwrap_err(), unsupported);
    assert_eq!(e.signature().unwrap_err(), unsupported);
}

#[test]
fn field_counts_of_decoded_templates() {
    let log = entry(
        10,
        [1; 20],
        b"ima-ng",
        &[&d_ng("sha1", &[7; 20]), b"/a\0", b""],
    );
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::FieldCount {
            index: 0,
            template: Template::ImaNg,
            found: 3,
            expected: 2
        }
    );
    let log = entry(10, [1; 20], b"ima-sig", &[&d_ng("sha1", &[7; 20]), b"/a\0"]);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::FieldCount {
            index: 0,
            template: Template::ImaSig,
            found: 2,
            expected: 3
        }
    );
}

#[test]
fn malformed_d_ng() {
    let name: &[u8] = b"/a\0";
    let cases: [(Vec<u8>, ImaError); 7] = [
        // No ':' at all: the legacy "d" form.
        ([9u8; 20].to_vec(), ImaError::DigestPrefix { index: 0 }),
        // ':' not followed by NUL.
        (
            b"sha1:".iter().chain(&[9; 20]).copied().collect(),
            ImaError::DigestPrefix { index: 0 },
        ),
        (d_ng("", &[9; 20]), ImaError::DigestAlgorithm { index: 0 }),
        (
            d_ng("sha 1", &[9; 20]),
            ImaError::DigestAlgorithm { index: 0 },
        ),
        (
            d_ng("sha256", &[9; 20]),
            ImaError::DigestLength {
                index: 0,
                algo: HashAlgo::Sha256,
                len: 20,
            },
        ),
        (
            d_ng("whirl", &[]),
            ImaError::Truncated {
                index: 0,
                field: ImaField::FileDigest,
            },
        ),
        (
            d_ng("whirl", &[9; 65]),
            ImaError::TooLarge {
                index: 0,
                field: ImaField::FileDigest,
                len: 65,
                max: 64,
            },
        ),
    ];
    for (field, err) in cases {
        let log = entry(10, [1; 20], b"ima-ng", &[&field, name]);
        assert_eq!(ImaLog::parse(&log).unwrap_err(), err, "{field:02x?}");
    }
    // An algorithm the parser does not know, with a digest of plausible size, is kept.
    let log = entry(10, [1; 20], b"ima-ng", &[&d_ng("wp256", &[9; 32]), name]);
    let e = ImaLog::parse(&log).unwrap().entries().next().unwrap();
    let d = e.file_digest().unwrap();
    assert_eq!(
        (d.algo_name, d.algo, d.digest),
        (&b"wp256"[..], None, &[9u8; 32][..])
    );
    // The real first entry with ':' overwritten.
    let mut log = LOG.to_vec();
    log[DIGEST_AT - 2] = b'-';
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::DigestPrefix { index: 0 }
    );
}

#[test]
fn violations() {
    // ima_add_violation: zero SHA-1 template digest and a d-ng of 20 zero bytes whatever the
    // algorithm; only a violation may carry that digest.
    let fields: [&[u8]; 3] = [&d_ng("sha256", &[0; 20]), b"/etc/shadow\0", b""];
    let log = entry(10, [0; 20], b"ima-sig", &fields);
    let e = ImaLog::parse(&log).unwrap().entries().next().unwrap();
    assert!(e.is_violation());
    let d = e.file_digest().unwrap();
    assert_eq!((d.algo, d.digest), (Some(HashAlgo::Sha256), &[0u8; 20][..]));
    assert_eq!(e.file_name().unwrap(), b"/etc/shadow");
    let log = entry(10, [1; 20], b"ima-sig", &fields);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::DigestLength {
            index: 0,
            algo: HashAlgo::Sha256,
            len: 20
        }
    );
}

#[test]
fn malformed_n_ng() {
    // The real boot_aggregate name without its NUL.
    let mut log = LOG.to_vec();
    log[N_NG_AT + 14] = b'!';
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::FileName { index: 0 }
    );
    // A NUL inside the name.
    let mut log = LOG.to_vec();
    log[N_NG_AT + 4] = 0;
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::FileName { index: 0 }
    );
    // An empty n-ng (the kernel always writes at least the NUL).
    let log = entry(10, [1; 20], b"ima-ng", &[&d_ng("sha1", &[7; 20]), b""]);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::FileName { index: 0 }
    );
}

#[test]
fn pcrs_beyond_63_are_refused() {
    let mut log = LOG.to_vec();
    set_u32(&mut log, entry_ends(LOG)[0], 64);
    assert_eq!(
        ImaLog::parse(&log).unwrap_err(),
        ImaError::Pcr { index: 1, pcr: 64 }
    );
    set_u32(&mut log, entry_ends(LOG)[0], 11);
    assert_eq!(
        ImaLog::parse(&log).unwrap().entries().nth(1).unwrap().pcr,
        11
    );
}

#[test]
fn signatures_are_returned_raw() {
    let sig: &[u8] = &[3, 2, 0, 0, 0, 0, 1, 0, 0xAA];
    let log = entry(
        10,
        [1; 20],
        b"ima-sig",
        &[&d_ng("sha1", &[7; 20]), b"/a\0", sig],
    );
    let e = ImaLog::parse(&log).unwrap().entries().next().unwrap();
    assert_eq!(e.signature().unwrap(), Some(sig));
    let log = entry(10, [1; 20], b"ima-ng", &[&d_ng("sha1", &[7; 20]), b"/a\0"]);
    let e = ImaLog::parse(&log).unwrap().entries().next().unwrap();
    assert_eq!(e.signature().unwrap(), None);
}

#[test]
fn every_byte_flip_of_the_first_entries_is_handled() {
    // No panic whatever a byte of the first three entries becomes; lists that still parse
    // keep their entry count or fail.
    let end = entry_ends(LOG)[2];
    let mut log = LOG.to_vec();
    for at in 0..end {
        let orig = log[at];
        for v in [0u8, 1, 0x3A, 0x7F, 0xFF, orig ^ 0x80] {
            log[at] = v;
            if let Ok(parsed) = ImaLog::parse(&log) {
                for e in parsed.entries() {
                    let _ = (e.file_digest(), e.file_name(), e.signature());
                }
            }
        }
        log[at] = orig;
    }
}

#[test]
fn file_signatures_decode_and_malformed_ones_are_named() {
    let mut sig = vec![3u8, 2, 4, 0xDE, 0xAD, 0xBE, 0xEF, 0, 3, 9, 9, 9];
    let s = FileSignature::parse(&sig).unwrap();
    assert_eq!(
        (s.hash_algo, s.keyid, s.signature),
        (HashAlgo::Sha256, 0xDEAD_BEEF, &[9u8, 9, 9][..])
    );
    // A portable EVM signature (type 5) is read the same way.
    sig[0] = 5;
    assert!(FileSignature::parse(&sig).is_ok());
    for (mutate, expected) in [
        (
            (|s: &mut Vec<u8>| s.truncate(8)) as fn(&mut Vec<u8>),
            SignatureError::Truncated(8),
        ),
        (|s| s[0] = 4, SignatureError::XattrType(4)),
        (|s| s[1] = 1, SignatureError::Version(1)),
        (|s| s[2] = 3, SignatureError::HashAlgorithm(3)),
        (
            |s| s.push(0),
            SignatureError::Size {
                declared: 3,
                actual: 4,
            },
        ),
        (
            |s| {
                s.pop();
            },
            SignatureError::Size {
                declared: 3,
                actual: 2,
            },
        ),
    ] {
        let mut bad = sig.clone();
        mutate(&mut bad);
        assert_eq!(FileSignature::parse(&bad), Err(expected));
    }
    assert_eq!(FileSignature::parse(&[]), Err(SignatureError::Truncated(0)));
    // Every kernel id this module knows maps to the algorithm of that size.
    for (id, algo) in [
        (2, HashAlgo::Sha1),
        (5, HashAlgo::Sha384),
        (6, HashAlgo::Sha512),
    ] {
        assert_eq!(HashAlgo::from_kernel_id(id), Some(algo));
    }
}

#[test]
fn the_list_from_an_entry_on_is_a_list_of_the_rest() {
    let log = ImaLog::parse(LOG).unwrap();
    assert_eq!(log.bytes_from(0), Some(LOG));
    assert_eq!(log.bytes_from(ENTRIES), Some(&[][..]));
    assert_eq!(log.bytes_from(ENTRIES + 1), None);
    let rest = ImaLog::parse(log.bytes_from(50).unwrap()).unwrap();
    assert_eq!(rest.len(), ENTRIES - 50);
    assert_eq!(
        rest.entries().next().unwrap().template_data,
        log.entries().nth(50).unwrap().template_data
    );
}
