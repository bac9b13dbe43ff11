//! Incremental appraisal of an IMA measurement list, one attestation round at a time.
//!
//! A verifier keeps, per boot of a node, an [`ImaPosition`]: how many entries it has appraised
//! and the SHA-256 PCR 10 they replay to. Each round the guest sends the entries from an offset
//! (normally that position; 0 when it lost track, for example after the agent restarted) and a
//! fresh quote of PCR 10. The round is accepted only if
//! - the entries continue what was appraised: an offset past the position leaves a gap, an
//!   offset between 0 and the position cannot be checked against anything kept, and a resend
//!   from 0 must replay to the kept PCR 10 at the position (else it rewrote an entry already
//!   appraised) and be at least that long (else it was truncated);
//! - the kept PCR 10 extended by the new entries reaches the quoted value at or after the
//!   position (entries after that prefix were measured after the quote and wait for the next
//!   round);
//! - the boot_aggregate, when this round covers entry 0, is SHA-256 of the quoted PCRs 0-9;
//! - every newly covered entry is allowed by the [`RuntimePolicy`]; a violation (a file
//!   measured while open for writing, or opened for writing while mapped) and a template this
//!   appraisal does not decode fail by name, as Keylime 7.14 does by default.
//!
//! A failed round does not move the position, so the next round sees the same entries again:
//! a node stays failed until it reboots. The cost of a round is one SHA-256 per new entry plus
//! a hash-table lookup per path; nothing before the position is hashed unless the guest resends
//! from 0.

use super::runtime_policy::{Admission, FileFailure, RuntimePolicy};
use crate::bundle_verify::ima::{check_boot_aggregate, entry_digest, extend, ImaFailure, IMA_PCR};
use serde::{Deserialize, Serialize};
use std::fmt;
use svsm_abi::ima::{ImaError, ImaLog, Template};

/// Failures listed by name in one [`PolicyFailures`]; the rest are counted.
pub const MAX_LISTED_FAILURES: usize = 32;

/// What a verifier keeps between rounds for one boot of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaPosition {
    /// Entries appraised, from the start of the list.
    pub entries: u64,
    /// The SHA-256 PCR 10 those entries replay to.
    #[serde(with = "hex::serde")]
    pub pcr10: [u8; 32],
}

impl ImaPosition {
    /// Nothing appraised yet.
    pub const START: ImaPosition = ImaPosition {
        entries: 0,
        pcr10: [0; 32],
    };
}

/// One round's evidence: the caller has checked the quote's signature and nonce.
#[derive(Clone, Copy, Debug)]
pub struct Round<'a> {
    /// Index in the kernel's list of the first entry of `log`.
    pub offset: u64,
    /// The entries sent.
    pub log: &'a ImaLog<'a>,
    /// The quoted SHA-256 PCR 10.
    pub quoted_pcr10: [u8; 32],
    /// The quoted SHA-256 PCRs 0-9 (at least ten, by index), to check the boot_aggregate when
    /// this round covers entry 0; without them entry 0 must be allowed by the policy like any
    /// other (Keylime's `boot_aggregate` digests).
    pub pcrs_0_to_9: Option<&'a [[u8; 32]]>,
}

/// An accepted round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RoundOutcome {
    /// The position to keep for the next round.
    pub position: ImaPosition,
    /// Entries appraised this round.
    pub appraised: u64,
    /// Of those, admitted because their path is excluded.
    pub excluded: u64,
    /// Of those, admitted by a signature.
    pub signed: u64,
    /// Entries sent that the quote does not cover yet (appraised next round).
    pub pending: u64,
}

/// Why one entry is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The file is not allowed by the policy.
    #[error("{0}")]
    File(FileFailure),
    /// A violation: the file was measured while open for writing, or opened for writing while
    /// mapped, so its digest may not be what ran.
    #[error("a measurement violation (time-of-measure/time-of-use or open writers)")]
    Violation,
    /// The entry's template is not one this appraisal decodes.
    #[error("template {0:?} is not appraised (only ima-ng and ima-sig are)")]
    Template(String),
    /// The entry's fields do not decode.
    #[error("{0}")]
    Decode(ImaError),
}

/// One entry that failed the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFailure {
    /// Its index in the kernel's list.
    pub index: u64,
    /// The measured path (lossy UTF-8), or empty when it does not decode.
    pub path: String,
    /// Why.
    pub problem: EntryProblem,
}

impl fmt::Display for EntryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IMA entry {} {}: {}",
            self.index, self.path, self.problem
        )
    }
}

/// The entries of a round that the policy refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFailures {
    /// The first [`MAX_LISTED_FAILURES`].
    pub listed: Vec<EntryFailure>,
    /// How many failed in all.
    pub total: usize,
}

impl fmt::Display for PolicyFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.listed.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        if self.total > self.listed.len() {
            write!(f, "; and {} more", self.total - self.listed.len())?;
        }
        Ok(())
    }
}

/// Why a round was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoundFailure {
    /// The entries start after the position: some were never sent.
    #[error(
        "the IMA entries sent start at {offset}, but only {appraised} were appraised: entries \
         {appraised}..{offset} are missing"
    )]
    Gap {
        /// Entries appraised.
        appraised: u64,
        /// The first entry sent.
        offset: u64,
    },
    /// The entries start inside what was appraised, where nothing kept can check them.
    #[error(
        "the IMA entries sent start at {offset}, inside the {appraised} already appraised; \
         send from {appraised}, or the whole list from 0"
    )]
    Overlap {
        /// Entries appraised.
        appraised: u64,
        /// The first entry sent.
        offset: u64,
    },
    /// A whole list shorter than what was appraised.
    #[error(
        "the IMA list sent has {entries} entries, fewer than the {appraised} already appraised: \
         it was truncated"
    )]
    Truncated {
        /// Entries appraised.
        appraised: u64,
        /// Entries sent.
        entries: u64,
    },
    /// A whole list whose first entries do not replay to what was appraised.
    #[error(
        "the first {appraised} IMA entries sent replay PCR {IMA_PCR} to {}, but they were \
         appraised as {}: an entry already appraised was rewritten",
        hex::encode(.replayed), hex::encode(.appraised_pcr10)
    )]
    Rewritten {
        /// Entries appraised.
        appraised: u64,
        /// PCR 10 kept for them.
        appraised_pcr10: [u8; 32],
        /// PCR 10 the entries sent replay to.
        replayed: [u8; 32],
    },
    /// An entry extends another PCR.
    #[error("IMA entry {index} extends PCR {pcr}; only PCR {IMA_PCR} is replayed")]
    WrongPcr {
        /// Its index in the kernel's list.
        index: u64,
        /// The PCR.
        pcr: u32,
    },
    /// The quote of PCR 10 is all zero.
    #[error("the quoted PCR {IMA_PCR} is all zero: IMA measured nothing")]
    Pcr10Unextended,
    /// No prefix at or past the position replays to the quoted PCR 10.
    #[error(
        "no prefix of the IMA list from entry {appraised} to {entries} replays to the quoted \
         PCR {IMA_PCR} {}; the entries sent end at {} (an entry was altered, dropped or \
         reordered, the list is truncated, or it is from another boot)",
        hex::encode(.quoted), hex::encode(.replayed)
    )]
    NoPrefixMatches {
        /// Entries appraised before this round.
        appraised: u64,
        /// Entries up to the end of what was sent.
        entries: u64,
        /// The quoted PCR 10.
        quoted: [u8; 32],
        /// PCR 10 after every entry sent.
        replayed: [u8; 32],
    },
    /// The boot_aggregate does not match the quoted PCRs 0-9.
    #[error("{0}")]
    BootAggregate(ImaFailure),
    /// Entries the policy does not allow.
    #[error("{0}")]
    Policy(PolicyFailures),
}

/// Where a round's replay reached: the entries it covers, from the kept position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Entries appraised before this round (the kept position).
    pub from: u64,
    /// Entries the quote covers: the position to keep once the round is accepted.
    pub covered: u64,
    /// Entries up to the end of what was sent.
    pub end: u64,
    /// The quoted PCR 10, which the covered prefix replays to.
    #[serde(with = "hex::serde")]
    pub pcr10: [u8; 32],
}

impl Replayed {
    /// The position to keep once the whole round is accepted.
    pub fn position(&self) -> ImaPosition {
        ImaPosition {
            entries: self.covered,
            pcr10: self.pcr10,
        }
    }

    /// True when this round covers entry 0, the boot_aggregate.
    pub fn covers_boot_aggregate(&self) -> bool {
        self.from == 0 && self.covered > 0
    }
}

/// Appraises one round from `position` (see the module documentation): the replay, the
/// boot_aggregate (when the round covers entry 0 and `pcrs_0_to_9` are given), then every newly
/// covered entry against `policy`.
pub fn appraise_round(
    policy: &RuntimePolicy,
    position: &ImaPosition,
    round: &Round<'_>,
) -> Result<RoundOutcome, RoundFailure> {
    let replayed = replay_round(position, round)?;
    let check_aggregate = replayed.covers_boot_aggregate() && round.pcrs_0_to_9.is_some();
    if let (true, Some(pcrs)) = (check_aggregate, round.pcrs_0_to_9) {
        check_boot_aggregate(round.log, pcrs).map_err(RoundFailure::BootAggregate)?;
    }
    let counts =
        admit_entries(policy, round, &replayed, check_aggregate).map_err(RoundFailure::Policy)?;
    Ok(RoundOutcome {
        position: replayed.position(),
        appraised: replayed.covered - replayed.from,
        excluded: counts.excluded,
        signed: counts.signed,
        pending: replayed.end - replayed.covered,
    })
}

/// The replay step alone: checks that the entries sent continue `position` and finds the
/// prefix that reaches the quoted PCR 10. Policy failures are not among its errors.
pub fn replay_round(position: &ImaPosition, round: &Round<'_>) -> Result<Replayed, RoundFailure> {
    let appraised = position.entries;
    let offset = round.offset;
    if offset > appraised {
        return Err(RoundFailure::Gap { appraised, offset });
    }
    if offset != appraised && offset != 0 {
        return Err(RoundFailure::Overlap { appraised, offset });
    }
    let sent = u64::try_from(round.log.len()).unwrap_or(u64::MAX);
    let end = offset.saturating_add(sent);
    if end < appraised {
        return Err(RoundFailure::Truncated {
            appraised,
            entries: end,
        });
    }
    if round.quoted_pcr10 == [0; 32] {
        return Err(RoundFailure::Pcr10Unextended);
    }
    // Replay: from the kept value when continuing, from zero (checked at the position) when
    // the whole list was resent.
    let mut pcr = if offset == 0 { [0; 32] } else { position.pcr10 };
    let mut covered = (offset == appraised && pcr == round.quoted_pcr10).then_some(appraised);
    for (index, entry) in (offset..).zip(round.log.entries()) {
        if entry.pcr != IMA_PCR {
            return Err(RoundFailure::WrongPcr {
                index,
                pcr: entry.pcr,
            });
        }
        pcr = extend(&pcr, &entry_digest(&entry));
        let after = index + 1;
        if after == appraised && offset == 0 && pcr != position.pcr10 {
            return Err(RoundFailure::Rewritten {
                appraised,
                appraised_pcr10: position.pcr10,
                replayed: pcr,
            });
        }
        if covered.is_none() && after >= appraised && pcr == round.quoted_pcr10 {
            covered = Some(after);
        }
    }
    let covered = covered.ok_or(RoundFailure::NoPrefixMatches {
        appraised,
        entries: end,
        quoted: round.quoted_pcr10,
        replayed: pcr,
    })?;
    Ok(Replayed {
        from: appraised,
        covered,
        end,
        pcr10: round.quoted_pcr10,
    })
}

/// How the entries a round covers were admitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Admitted {
    /// Entries checked against the policy.
    pub checked: u64,
    /// Of those, admitted because their path is excluded.
    pub excluded: u64,
    /// Of those, admitted by a signature.
    pub signed: u64,
}

/// The policy step alone: every entry `replayed` newly covers against `policy`; entry 0 is
/// skipped when `boot_aggregate_checked` (its digest is then checked against the quoted PCRs,
/// not listed in a policy).
pub fn admit_entries(
    policy: &RuntimePolicy,
    round: &Round<'_>,
    replayed: &Replayed,
    boot_aggregate_checked: bool,
) -> Result<Admitted, PolicyFailures> {
    let mut counts = Admitted::default();
    let mut failures = PolicyFailures {
        listed: Vec::new(),
        total: 0,
    };
    let new = round
        .log
        .entries()
        .skip(usize::try_from(replayed.from - round.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(replayed.covered - replayed.from).unwrap_or(usize::MAX));
    for (index, entry) in (replayed.from..).zip(new) {
        if index == 0 && boot_aggregate_checked {
            continue;
        }
        counts.checked += 1;
        match admit_entry(policy, &entry) {
            Ok(Admission::Digest) => {}
            Ok(Admission::Excluded) => counts.excluded += 1,
            Ok(Admission::Signature) => counts.signed += 1,
            Err((path, problem)) => {
                failures.total += 1;
                if failures.listed.len() < MAX_LISTED_FAILURES {
                    failures.listed.push(EntryFailure {
                        index,
                        path,
                        problem,
                    });
                }
            }
        }
    }
    if failures.total > 0 {
        return Err(failures);
    }
    Ok(counts)
}

/// One entry against the policy; the error carries the path for the report.
fn admit_entry(
    policy: &RuntimePolicy,
    entry: &svsm_abi::ima::ImaEntry<'_>,
) -> Result<Admission, (String, EntryProblem)> {
    let template = entry.template();
    if template == Template::Other {
        return Err((
            String::new(),
            EntryProblem::Template(String::from_utf8_lossy(entry.template_name).into_owned()),
        ));
    }
    let fields = entry
        .ng_fields()
        .map_err(|e| (String::new(), EntryProblem::Decode(e)))?;
    let path = || String::from_utf8_lossy(fields.name).into_owned();
    if entry.is_violation() {
        return Err((path(), EntryProblem::Violation));
    }
    policy
        .admit(fields.name, &fields.digest, fields.signature)
        .map_err(|f| (path(), EntryProblem::File(f)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measured::encode::EntrySpec;
    use crate::measured::runtime_policy::RuntimePolicyDocument;
    use sha2::{Digest, Sha256};

    /// An ima-ng entry (or a violation) measuring `path` with SHA-256 `content`.
    fn entry(path: &str, content: &[u8], violation: bool) -> Vec<u8> {
        let mut out = Vec::new();
        EntrySpec {
            path,
            file_digest: (!violation).then(|| Sha256::digest(content).into()),
            signature: None,
        }
        .write_binary(&mut out);
        out
    }

    fn files(n: usize) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    format!("/usr/bin/tool{i}"),
                    format!("content {i}").into_bytes(),
                )
            })
            .collect()
    }

    fn policy_for(files: &[(String, Vec<u8>)]) -> RuntimePolicy {
        let mut doc = RuntimePolicyDocument::default();
        for (path, content) in files {
            doc.digests
                .insert(path.clone(), vec![hex::encode(Sha256::digest(content))]);
        }
        doc.excludes = vec!["/tmp/".into()];
        RuntimePolicy::compile(&doc).unwrap()
    }

    fn log_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        files.iter().flat_map(|(p, c)| entry(p, c, false)).collect()
    }

    fn pcr_after(log: &[u8]) -> [u8; 32] {
        ImaLog::parse(log)
            .unwrap()
            .entries()
            .fold([0; 32], |pcr, e| extend(&pcr, &entry_digest(&e)))
    }

    fn round<'a>(offset: u64, log: &'a ImaLog<'a>, quoted: [u8; 32]) -> Round<'a> {
        Round {
            offset,
            log,
            quoted_pcr10: quoted,
            pcrs_0_to_9: None,
        }
    }

    #[test]
    fn rounds_continue_from_the_kept_position() {
        let all = files(10);
        let policy = policy_for(&all);
        let bytes = log_of(&all);
        let first = log_of(&all[..6]);
        let log = ImaLog::parse(&first).unwrap();
        // The quote was taken after 4 of the 6 entries sent.
        let q4 = pcr_after(&log_of(&all[..4]));
        let out = appraise_round(&policy, &ImaPosition::START, &round(0, &log, q4)).unwrap();
        assert_eq!(
            (out.position.entries, out.appraised, out.pending),
            (4, 4, 2)
        );
        assert_eq!(out.position.pcr10, q4);
        // Next round: entries 4.. with a quote after all ten.
        let rest = log_of(&all[4..]);
        let log = ImaLog::parse(&rest).unwrap();
        let q10 = pcr_after(&bytes);
        let out2 = appraise_round(&policy, &out.position, &round(4, &log, q10)).unwrap();
        assert_eq!(
            (out2.position.entries, out2.appraised, out2.pending),
            (10, 6, 0)
        );
        // The whole list resent from 0 is accepted too, appraising only what is new.
        let log = ImaLog::parse(&bytes).unwrap();
        let again = appraise_round(&policy, &out.position, &round(0, &log, q10)).unwrap();
        assert_eq!(again.position, out2.position);
        assert_eq!(again.appraised, 6);
        // A round with nothing new and an unchanged PCR 10 is a good round.
        let empty = ImaLog::parse(&[]).unwrap();
        let idle = appraise_round(&policy, &out2.position, &round(10, &empty, q10)).unwrap();
        assert_eq!((idle.appraised, idle.position), (0, out2.position));
    }

    #[test]
    fn an_unknown_or_changed_binary_fails_by_path_and_the_position_stays() {
        let all = files(4);
        let policy = policy_for(&all);
        let mut tampered = all.clone();
        tampered.push(("/usr/bin/evil".into(), b"evil".to_vec()));
        tampered.push(("/usr/bin/tool1".into(), b"patched".to_vec()));
        tampered.push(("/tmp/scratch".into(), b"anything".to_vec()));
        let bytes = log_of(&tampered);
        let log = ImaLog::parse(&bytes).unwrap();
        let err = appraise_round(
            &policy,
            &ImaPosition::START,
            &round(0, &log, pcr_after(&bytes)),
        )
        .unwrap_err();
        let RoundFailure::Policy(failures) = &err else {
            panic!("{err}");
        };
        assert_eq!(failures.total, 2);
        assert_eq!(failures.listed[0].index, 4);
        assert_eq!(failures.listed[0].path, "/usr/bin/evil");
        assert_eq!(
            failures.listed[0].problem,
            EntryProblem::File(FileFailure::NotInPolicy)
        );
        assert_eq!(failures.listed[1].path, "/usr/bin/tool1");
        assert!(matches!(
            failures.listed[1].problem,
            EntryProblem::File(FileFailure::DigestMismatch { .. })
        ));
        let text = err.to_string();
        assert!(
            text.contains("IMA entry 4 /usr/bin/evil: not in the runtime policy"),
            "{text}"
        );
        assert!(
            text.contains("IMA entry 5 /usr/bin/tool1: its sha256 digest"),
            "{text}"
        );
    }

    #[test]
    fn truncated_rewritten_gapped_and_unreplayable_lists_are_refused_by_name() {
        let all = files(8);
        let policy = policy_for(&all);
        let bytes = log_of(&all);
        let log = ImaLog::parse(&bytes).unwrap();
        let q8 = pcr_after(&bytes);
        let kept = appraise_round(&policy, &ImaPosition::START, &round(0, &log, q8))
            .unwrap()
            .position;
        // Resent from 0 but shorter than what was appraised.
        let short = log_of(&all[..5]);
        let short = ImaLog::parse(&short).unwrap();
        assert_eq!(
            appraise_round(&policy, &kept, &round(0, &short, q8)).unwrap_err(),
            RoundFailure::Truncated {
                appraised: 8,
                entries: 5
            }
        );
        // Resent from 0 with entry 2 rewritten (and the kernel's PCR 10 is what it was).
        let mut rewritten = all.clone();
        rewritten[2].1 = b"other".to_vec();
        let rewritten = log_of(&rewritten);
        let rewritten = ImaLog::parse(&rewritten).unwrap();
        assert!(matches!(
            appraise_round(&policy, &kept, &round(0, &rewritten, q8)).unwrap_err(),
            RoundFailure::Rewritten { appraised: 8, .. }
        ));
        // A gap and an overlap.
        let more = log_of(&files(12)[9..]);
        let more = ImaLog::parse(&more).unwrap();
        assert_eq!(
            appraise_round(&policy, &kept, &round(9, &more, q8)).unwrap_err(),
            RoundFailure::Gap {
                appraised: 8,
                offset: 9
            }
        );
        assert_eq!(
            appraise_round(&policy, &kept, &round(3, &more, q8)).unwrap_err(),
            RoundFailure::Overlap {
                appraised: 8,
                offset: 3
            }
        );
        // New entries that do not reach the quoted PCR 10 (one was dropped before sending).
        let twelve = files(12);
        let q12 = pcr_after(&log_of(&twelve));
        let dropped = [&twelve[8..9], &twelve[10..]].concat();
        let dropped = log_of(&dropped);
        let dropped = ImaLog::parse(&dropped).unwrap();
        let err = appraise_round(&policy, &kept, &round(8, &dropped, q12)).unwrap_err();
        assert!(
            matches!(
                err,
                RoundFailure::NoPrefixMatches {
                    appraised: 8,
                    entries: 11,
                    ..
                }
            ),
            "{err}"
        );
        // A quote older than the position (PCR 10 went back) matches no prefix either.
        let q5 = pcr_after(&log_of(&all[..5]));
        let empty = ImaLog::parse(&[]).unwrap();
        assert!(matches!(
            appraise_round(&policy, &kept, &round(8, &empty, q5)),
            Err(RoundFailure::NoPrefixMatches { .. })
        ));
        assert_eq!(
            appraise_round(&policy, &kept, &round(8, &empty, [0; 32])).unwrap_err(),
            RoundFailure::Pcr10Unextended
        );
    }

    #[test]
    fn violations_other_templates_and_other_pcrs_fail_by_name() {
        let all = files(2);
        let policy = policy_for(&all);
        let mut bytes = log_of(&all);
        bytes.extend_from_slice(&entry("/etc/shadow", b"", true));
        let log = ImaLog::parse(&bytes).unwrap();
        let err = appraise_round(
            &policy,
            &ImaPosition::START,
            &round(0, &log, pcr_after(&bytes)),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("IMA entry 2 /etc/shadow: a measurement violation"),
            "{err}"
        );
        // An ima-buf entry (template data: two fields).
        let mut buf = log_of(&all);
        let fields = [&b"sha256:\0"[..], &[9; 32][..]].concat();
        let mut data = Vec::new();
        for f in [&fields[..], b"kernel_version\0"] {
            data.extend_from_slice(&(f.len() as u32).to_le_bytes());
            data.extend_from_slice(f);
        }
        buf.extend_from_slice(&10u32.to_le_bytes());
        buf.extend_from_slice(&[2; 20]);
        buf.extend_from_slice(&7u32.to_le_bytes());
        buf.extend_from_slice(b"ima-buf");
        buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
        buf.extend_from_slice(&data);
        let log = ImaLog::parse(&buf).unwrap();
        let err = appraise_round(
            &policy,
            &ImaPosition::START,
            &round(0, &log, pcr_after(&buf)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("template \"ima-buf\""), "{err}");
        // An entry on PCR 11.
        let mut other = log_of(&all);
        let at = entry(&all[0].0, &all[0].1, false).len();
        other[at] = 11;
        let log = ImaLog::parse(&other).unwrap();
        assert_eq!(
            appraise_round(&policy, &ImaPosition::START, &round(0, &log, [1; 32])).unwrap_err(),
            RoundFailure::WrongPcr { index: 1, pcr: 11 }
        );
    }

    /// The real guest's list (56 entries, the quote covers 50), in two rounds: the
    /// boot_aggregate against the quoted PCRs, a policy from the list's own entries.
    #[test]
    fn the_real_list_in_two_rounds() {
        const LOG: &[u8] = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/ima-binary_runtime_measurements.bin"
        ));
        const QUOTED: &str = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/quoted-pcrs-sha256.txt"
        ));
        let mut pcrs = [[0u8; 32]; 24];
        for line in QUOTED.lines() {
            let (pcr, value) = line.split_once(':').unwrap();
            pcrs[pcr.trim().parse::<usize>().unwrap()] =
                hex::decode(value.trim().trim_start_matches("0x"))
                    .unwrap()
                    .try_into()
                    .unwrap();
        }
        let log = ImaLog::parse(LOG).unwrap();
        let mut doc = RuntimePolicyDocument::default();
        for e in log.entries().skip(1) {
            let name = String::from_utf8(e.file_name().unwrap().to_vec()).unwrap();
            let digest = hex::encode(e.file_digest().unwrap().digest);
            doc.digests.entry(name).or_default().push(digest);
        }
        let policy = RuntimePolicy::compile(&doc).unwrap();
        // Round 1: the first 30 entries, quoted after 30.
        let end30 = {
            let e = log.entries().nth(29).unwrap();
            e.template_data.as_ptr() as usize - LOG.as_ptr() as usize + e.template_data.len()
        };
        let first = ImaLog::parse(&LOG[..end30]).unwrap();
        let q30 = pcr_after(&LOG[..end30]);
        let r1 = Round {
            offset: 0,
            log: &first,
            quoted_pcr10: q30,
            pcrs_0_to_9: Some(&pcrs[..10]),
        };
        let p1 = appraise_round(&policy, &ImaPosition::START, &r1).unwrap();
        assert_eq!(p1.position.entries, 30);
        // Round 2: the rest, against the real quote.
        let rest = ImaLog::parse(&LOG[end30..]).unwrap();
        let r2 = Round {
            offset: 30,
            log: &rest,
            quoted_pcr10: pcrs[10],
            pcrs_0_to_9: Some(&pcrs[..10]),
        };
        let p2 = appraise_round(&policy, &p1.position, &r2).unwrap();
        assert_eq!((p2.position.entries, p2.appraised, p2.pending), (50, 20, 6));
        // The boot_aggregate is checked against the quoted PCRs when entry 0 is covered.
        let mut wrong = pcrs;
        wrong[9][0] ^= 1;
        let r1_wrong = Round {
            pcrs_0_to_9: Some(&wrong[..10]),
            ..r1
        };
        assert!(matches!(
            appraise_round(&policy, &ImaPosition::START, &r1_wrong),
            Err(RoundFailure::BootAggregate(
                ImaFailure::BootAggregateMismatch { .. }
            ))
        ));
        // Without PCRs, entry 0 must be in the policy, and is not.
        let r1_nopcrs = Round {
            pcrs_0_to_9: None,
            ..r1
        };
        let err = appraise_round(&policy, &ImaPosition::START, &r1_nopcrs).unwrap_err();
        assert!(
            err.to_string().contains("IMA entry 0 boot_aggregate"),
            "{err}"
        );
    }
}
