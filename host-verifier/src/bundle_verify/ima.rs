//! Replay of a Linux IMA runtime measurement list ([`svsm_abi::ima`], which frames and decodes
//! it) to a quoted SHA-256 PCR 10, and the check of its `boot_aggregate` against the quoted
//! PCRs 0-9. Pure functions on parsed values: no I/O.
//!
//! The kernel extends PCR 10 once per entry, in list order, with the bank's digest of the
//! entry's template data (`ima_calc_field_array_hash`, `ima_add_template_entry` in Linux
//! `security/integrity/ima/`), or with all-0xFF bytes for a violation. The list is read after
//! the quote, so it may hold entries the quote does not cover: the quote covers the shortest
//! prefix that replays to the quoted value, and only that prefix is evidence. Inside it, what
//! is bound is each entry's template data (file digest, path, signature) and position; the
//! logged SHA-1 template digest is not trusted, and a violation entry binds nothing but the
//! fact that a violation happened there.

use sha2::{Digest, Sha256};
use svsm_abi::ima::{HashAlgo, ImaError, ImaLog, BOOT_AGGREGATE};

/// The PCR IMA extends (`CONFIG_IMA_MEASURE_PCR_IDX`, 10 in every distribution kernel).
pub const IMA_PCR: u32 = 10;
/// PCRs the boot_aggregate of a non-SHA-1 bank covers: 0-9 (`ima_calc_boot_aggregate_tfm`
/// adds PCRs 8 and 9, the kernel command line and image, to 0-7 for every bank but SHA-1,
/// since Linux 5.8).
pub const BOOT_AGGREGATE_PCRS: usize = 10;

/// What the quote covers of a replayed list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImaReplay {
    /// Entries the quote covers: the shortest prefix that replays to the quoted PCR 10.
    pub covered: usize,
    /// Entries in the list; those after `covered` were measured after the quote.
    pub total: usize,
    /// The quoted PCR 10, which the covered prefix replays to.
    pub pcr10: [u8; 32],
    /// The SHA-256 boot_aggregate the first entry logs, when the first entry is a
    /// `boot_aggregate` with a SHA-256 digest (it is then covered: `covered` is at least 1).
    /// Compare it with the quoted PCRs 0-9 by [`check_boot_aggregate`].
    pub boot_aggregate: Option<[u8; 32]>,
}

/// Why an IMA list does not match a quote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImaFailure {
    /// The list does not parse within its bounds, or an entry's fields do not decode.
    #[error("IMA log: {0}")]
    Parse(#[from] ImaError),
    /// The list has no entry.
    #[error("the IMA log has no entries: there is nothing to replay to PCR {IMA_PCR}")]
    EmptyLog,
    /// The quoted PCR 10 was never extended.
    #[error(
        "the quoted PCR {IMA_PCR} is all zero: IMA had measured nothing when the quote was taken"
    )]
    Pcr10Unextended,
    /// An entry extends another PCR than 10 (a policy rule with `pcr=`), which this replay
    /// does not follow.
    #[error("IMA entry {index} extends PCR {pcr}; only PCR {IMA_PCR} is replayed")]
    WrongPcr {
        /// Entry index.
        index: usize,
        /// The PCR it names.
        pcr: u32,
    },
    /// No prefix of the list replays to the quoted PCR 10.
    #[error(
        "no prefix of the {entries}-entry IMA log replays to the quoted PCR {IMA_PCR} {}; the \
         whole log replays to {} (an entry was altered, dropped or reordered, or the log is \
         from another boot)",
        hex::encode(.quoted),
        hex::encode(.replayed)
    )]
    NoPrefixMatches {
        /// Entries replayed.
        entries: usize,
        /// PCR 10 after replaying every entry.
        replayed: [u8; 32],
        /// The quoted PCR 10.
        quoted: [u8; 32],
    },
    /// Fewer than the ten PCR values the boot_aggregate covers.
    #[error("the boot_aggregate covers SHA-256 PCRs 0-9, but {supplied} PCR values were supplied")]
    PcrsMissing {
        /// Values supplied.
        supplied: usize,
    },
    /// The first entry is not the boot_aggregate.
    #[error("IMA entry 0 measures \"{name}\", expected \"boot_aggregate\"")]
    NotBootAggregate {
        /// Its file name (lossy UTF-8).
        name: String,
    },
    /// The first entry is a violation, whose content no PCR binds.
    #[error("IMA entry 0 is a violation record; its boot_aggregate is not measured")]
    BootAggregateViolation,
    /// The boot_aggregate is not a SHA-256 digest (the kernel reads the bank of its hash
    /// algorithm, or SHA-1 when that bank is missing).
    #[error("the boot_aggregate is a {algo} digest, expected sha256 (the quoted bank)")]
    BootAggregateAlgorithm {
        /// The d-ng algorithm name (lossy UTF-8).
        algo: String,
    },
    /// The boot_aggregate is not SHA-256 of the quoted PCRs 0-9.
    #[error(
        "the boot_aggregate is {}, but SHA-256 of the quoted PCRs 0-9 is {} (firmware, \
         bootloader, kernel or command line differ from what IMA saw, or PCRs 0-9 were \
         extended after IMA started)",
        hex::encode(.logged),
        hex::encode(.computed)
    )]
    BootAggregateMismatch {
        /// The logged digest.
        logged: [u8; 32],
        /// SHA-256(PCR0 ‖ … ‖ PCR9) of the supplied values.
        computed: [u8; 32],
    },
}

/// PCR 10 extended with `digest` (TPM2_PCR_Extend on the SHA-256 bank).
pub fn extend(pcr: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(pcr)
        .chain_update(digest)
        .finalize()
        .into()
}

/// Replays the list to the SHA-256 bank of PCR 10, from zero: each entry extends SHA-256 of
/// its template data, a violation all-0xFF bytes (`ima_add_template_entry` extends the
/// `digests` array `ima_init_digests` fills with 0xFF). Every entry must name PCR 10. Returns
/// the shortest prefix whose replay equals `quoted_pcr10`.
pub fn replay_sha256(log: &ImaLog<'_>, quoted_pcr10: &[u8; 32]) -> Result<ImaReplay, ImaFailure> {
    if log.is_empty() {
        return Err(ImaFailure::EmptyLog);
    }
    if quoted_pcr10 == &[0; 32] {
        return Err(ImaFailure::Pcr10Unextended);
    }
    let mut pcr10 = [0u8; 32];
    let mut covered = None;
    for entry in log.entries() {
        if entry.pcr != IMA_PCR {
            return Err(ImaFailure::WrongPcr {
                index: entry.index,
                pcr: entry.pcr,
            });
        }
        pcr10 = extend(&pcr10, &entry_digest(&entry));
        if covered.is_none() && &pcr10 == quoted_pcr10 {
            covered = Some(entry.index + 1);
        }
    }
    let covered = covered.ok_or(ImaFailure::NoPrefixMatches {
        entries: log.len(),
        replayed: pcr10,
        quoted: *quoted_pcr10,
    })?;
    Ok(ImaReplay {
        covered,
        total: log.len(),
        pcr10: *quoted_pcr10,
        boot_aggregate: logged_boot_aggregate(log),
    })
}

/// What the kernel extends the SHA-256 bank of PCR 10 with for `entry`: SHA-256 of its
/// template data, or all-0xFF bytes for a violation.
pub fn entry_digest(entry: &svsm_abi::ima::ImaEntry<'_>) -> [u8; 32] {
    if entry.is_violation() {
        [0xFF; 32]
    } else {
        Sha256::digest(entry.template_data).into()
    }
}

/// The first entry's SHA-256 boot_aggregate, if it is one.
fn logged_boot_aggregate(log: &ImaLog<'_>) -> Option<[u8; 32]> {
    let first = log.entries().next()?;
    if first.is_violation() || first.file_name().ok()? != BOOT_AGGREGATE {
        return None;
    }
    let digest = first.file_digest().ok()?;
    if digest.algo != Some(HashAlgo::Sha256) {
        return None;
    }
    digest.digest.try_into().ok()
}

/// Checks that the list's first entry is the `boot_aggregate` and that its SHA-256 digest is
/// SHA-256(PCR0 ‖ … ‖ PCR9) over `pcrs_sha256` (indexed by PCR; at least ten values), as
/// `ima_calc_boot_aggregate` computed it when IMA started. Pass the quoted values, and run
/// [`replay_sha256`] first: only a covered first entry is evidence. PCRs 0-9 extended after
/// IMA started make this fail although nothing is wrong with the boot.
pub fn check_boot_aggregate(log: &ImaLog<'_>, pcrs_sha256: &[[u8; 32]]) -> Result<(), ImaFailure> {
    let pcrs = pcrs_sha256
        .get(..BOOT_AGGREGATE_PCRS)
        .ok_or(ImaFailure::PcrsMissing {
            supplied: pcrs_sha256.len(),
        })?;
    let first = log.entries().next().ok_or(ImaFailure::EmptyLog)?;
    if first.is_violation() {
        return Err(ImaFailure::BootAggregateViolation);
    }
    let name = first.file_name()?;
    if name != BOOT_AGGREGATE {
        return Err(ImaFailure::NotBootAggregate {
            name: String::from_utf8_lossy(name).into_owned(),
        });
    }
    let digest = first.file_digest()?;
    let logged: [u8; 32] = match (digest.algo, <[u8; 32]>::try_from(digest.digest)) {
        (Some(HashAlgo::Sha256), Ok(logged)) => logged,
        _ => {
            return Err(ImaFailure::BootAggregateAlgorithm {
                algo: String::from_utf8_lossy(digest.algo_name).into_owned(),
            })
        }
    };
    let computed: [u8; 32] = pcrs
        .iter()
        .fold(Sha256::new(), |h, pcr| h.chain_update(pcr))
        .finalize()
        .into();
    if logged != computed {
        return Err(ImaFailure::BootAggregateMismatch { logged, computed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/"
    );
    /// The real list (Debian 6.1, OVMF, the svsm-vhsm vTPM, `ima_policy=tcb`): 56 entries.
    const LOG: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/ima-binary_runtime_measurements.bin"
    ));
    const QUOTED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/quoted-pcrs-sha256.txt"
    ));
    /// Entries the quote covers.
    const COVERED: usize = 50;

    /// The quoted SHA-256 PCRs by index; PCRs the quote does not select are None.
    fn quoted() -> [Option<[u8; 32]>; 24] {
        let mut pcrs = [None; 24];
        for line in QUOTED.lines() {
            let (pcr, value) = line.split_once(':').unwrap();
            let value = value.trim().trim_start_matches("0x");
            pcrs[pcr.trim().parse::<usize>().unwrap()] =
                Some(hex::decode(value).unwrap().try_into().unwrap());
        }
        pcrs
    }

    /// PCRs 0-9 for the boot_aggregate. The guest's quote selects 0-7, 9 and 10, not 8; OVMF's
    /// log (next to the IMA log) has no PCR 8 event, so PCR 8 is taken as zero.
    fn pcrs_0_to_9() -> Vec<[u8; 32]> {
        let q = quoted();
        assert_eq!(q[8], None, "{DATA}quoted-pcrs-sha256.txt");
        (0..10).map(|i| q[i].unwrap_or([0; 32])).collect()
    }

    fn pcr10() -> [u8; 32] {
        quoted()[10].unwrap()
    }

    /// Byte offset where entry `i` ends.
    fn end_of(log: &[u8], i: usize) -> usize {
        let e = ImaLog::parse(log).unwrap().entries().nth(i).unwrap();
        e.template_data.as_ptr() as usize - log.as_ptr() as usize + e.template_data.len()
    }

    #[test]
    fn the_quote_covers_a_prefix_and_the_boot_aggregate_matches() {
        let log = ImaLog::parse(LOG).unwrap();
        let replay = replay_sha256(&log, &pcr10()).unwrap();
        assert_eq!((replay.covered, replay.total), (COVERED, 56));
        assert_eq!(replay.pcr10, pcr10());
        let aggregate = replay.boot_aggregate.unwrap();
        assert_eq!(
            hex::encode(aggregate),
            "711203d137e65d3dad100fff89c2a7cbd89bc1d76b0471b6a995fad99461ead9"
        );
        check_boot_aggregate(&log, &pcrs_0_to_9()).unwrap();
        // A longer slice of PCR values (0-23) works the same.
        let mut all = pcrs_0_to_9();
        all.resize(24, [0; 32]);
        check_boot_aggregate(&log, &all).unwrap();
    }

    #[test]
    fn a_flipped_file_digest_byte_matches_no_prefix() {
        let mut bytes = LOG.to_vec();
        let log = ImaLog::parse(LOG).unwrap();
        let entry = log.entries().nth(2).unwrap(); // /bin/busybox
        let at =
            entry.template_data.as_ptr() as usize - LOG.as_ptr() as usize + 4 + b"sha256:\0".len();
        bytes[at] ^= 1;
        let tampered = ImaLog::parse(&bytes).unwrap();
        assert_eq!(
            tampered.entries().nth(2).unwrap().file_name().unwrap(),
            b"/bin/busybox"
        );
        let err = replay_sha256(&tampered, &pcr10()).unwrap_err();
        let ImaFailure::NoPrefixMatches {
            entries,
            replayed,
            quoted,
        } = err.clone()
        else {
            panic!("{err}");
        };
        assert_eq!((entries, quoted), (56, pcr10()));
        assert_ne!(replayed, pcr10());
        assert!(err.to_string().contains(&hex::encode(pcr10())), "{err}");
    }

    #[test]
    fn a_wrong_pcr9_breaks_the_boot_aggregate() {
        let log = ImaLog::parse(LOG).unwrap();
        let mut pcrs = pcrs_0_to_9();
        pcrs[9][0] ^= 1;
        let err = check_boot_aggregate(&log, &pcrs).unwrap_err();
        let ImaFailure::BootAggregateMismatch { logged, computed } = err else {
            panic!("{err}");
        };
        assert_eq!(
            Some(logged),
            replay_sha256(&log, &pcr10()).unwrap().boot_aggregate
        );
        assert_ne!(logged, computed);
        // PCR 8 and 9 are in the aggregate: the SHA-1-style aggregate of PCRs 0-7 is not it.
        let pcrs = pcrs_0_to_9();
        let only_0_7: [u8; 32] = pcrs[..8]
            .iter()
            .fold(Sha256::new(), |h, p| h.chain_update(p))
            .finalize()
            .into();
        assert_ne!(
            Some(only_0_7),
            replay_sha256(&log, &pcr10()).unwrap().boot_aggregate
        );
        assert_eq!(
            check_boot_aggregate(&log, &pcrs[..9]).unwrap_err(),
            ImaFailure::PcrsMissing { supplied: 9 }
        );
    }

    #[test]
    fn a_log_shorter_than_the_covered_prefix_matches_nothing() {
        let short = &LOG[..end_of(LOG, COVERED - 2)];
        let log = ImaLog::parse(short).unwrap();
        assert_eq!(log.len(), COVERED - 1);
        assert!(matches!(
            replay_sha256(&log, &pcr10()),
            Err(ImaFailure::NoPrefixMatches { entries, .. }) if entries == COVERED - 1
        ));
        // Exactly the covered prefix is enough.
        let exact = ImaLog::parse(&LOG[..end_of(LOG, COVERED - 1)]).unwrap();
        assert_eq!(replay_sha256(&exact, &pcr10()).unwrap().covered, COVERED);
    }

    #[test]
    fn entries_on_other_pcrs_and_empty_logs_are_refused() {
        let mut bytes = LOG.to_vec();
        let at = end_of(LOG, 0);
        bytes[at] = 11;
        let log = ImaLog::parse(&bytes).unwrap();
        assert_eq!(
            replay_sha256(&log, &pcr10()).unwrap_err(),
            ImaFailure::WrongPcr { index: 1, pcr: 11 }
        );
        let empty = ImaLog::parse(&[]).unwrap();
        assert_eq!(
            replay_sha256(&empty, &pcr10()).unwrap_err(),
            ImaFailure::EmptyLog
        );
        assert_eq!(
            check_boot_aggregate(&empty, &pcrs_0_to_9()).unwrap_err(),
            ImaFailure::EmptyLog
        );
        let log = ImaLog::parse(LOG).unwrap();
        assert_eq!(
            replay_sha256(&log, &[0; 32]).unwrap_err(),
            ImaFailure::Pcr10Unextended
        );
    }

    #[test]
    fn a_first_entry_that_is_not_the_boot_aggregate_is_refused() {
        // Drop entry 0: the list now starts with /init.
        let rest = &LOG[end_of(LOG, 0)..];
        let log = ImaLog::parse(rest).unwrap();
        assert_eq!(
            check_boot_aggregate(&log, &pcrs_0_to_9()).unwrap_err(),
            ImaFailure::NotBootAggregate {
                name: "/init".into()
            }
        );
        assert!(matches!(
            replay_sha256(&log, &pcr10()),
            Err(ImaFailure::NoPrefixMatches { entries: 55, .. })
        ));
        // A boot_aggregate recorded as a violation binds nothing.
        let mut bytes = LOG.to_vec();
        bytes[4..24].fill(0);
        let log = ImaLog::parse(&bytes).unwrap();
        assert_eq!(
            check_boot_aggregate(&log, &pcrs_0_to_9()).unwrap_err(),
            ImaFailure::BootAggregateViolation
        );
        assert_eq!(
            replay_sha256(&log, &pcr10()).map(|r| r.boot_aggregate),
            Err(ImaFailure::NoPrefixMatches {
                entries: 56,
                replayed: replay_all(&bytes),
                quoted: pcr10()
            })
        );
    }

    /// PCR 10 after every entry, by hand.
    fn replay_all(bytes: &[u8]) -> [u8; 32] {
        ImaLog::parse(bytes)
            .unwrap()
            .entries()
            .fold([0; 32], |pcr, e| {
                let d = if e.is_violation() {
                    [0xFF; 32]
                } else {
                    Sha256::digest(e.template_data).into()
                };
                extend(&pcr, &d)
            })
    }

    #[test]
    fn violations_extend_all_ff() {
        // The real boot_aggregate followed by a violation (zero SHA-1 digest, 20 zero bytes
        // as the d-ng digest); the quote below is what the kernel would have extended.
        let mut bytes = LOG[..end_of(LOG, 0)].to_vec();
        let name = b"ima-ng";
        let d_ng = [&b"sha256:\0"[..], &[0; 20]].concat();
        let n_ng = b"/etc/shadow\0";
        let mut data = Vec::new();
        for f in [&d_ng[..], &n_ng[..]] {
            data.extend_from_slice(&(f.len() as u32).to_le_bytes());
            data.extend_from_slice(f);
        }
        bytes.extend_from_slice(&IMA_PCR.to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&data);
        let log = ImaLog::parse(&bytes).unwrap();
        let first = ImaLog::parse(&LOG[..end_of(LOG, 0)]).unwrap();
        let after_first = replay_all(&LOG[..end_of(LOG, 0)]);
        assert_eq!(replay_sha256(&first, &after_first).unwrap().covered, 1);
        let quoted = extend(&after_first, &[0xFF; 32]);
        let replay = replay_sha256(&log, &quoted).unwrap();
        assert_eq!((replay.covered, replay.total), (2, 2));
        // Hashing the violation's template data instead would not reach it.
        let hashed = extend(&after_first, &Sha256::digest(&data).into());
        assert!(replay_sha256(&log, &hashed).is_err());
    }
}
