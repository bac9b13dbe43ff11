//! Continuous attestation: what the broker keeps per node between rounds (the IMA position of
//! the boot it last appraised, the reputation of [`super::reputation`], when the next round is
//! due) and how a round, a missed round and a release read and change it.
//!
//! An attestation under a policy that names a runtime policy (`ima_policy`) is a round. The
//! node's kept position is used only for the boot it was kept for: the quote's resetCount
//! (TPM2 clockInfo, which changes at every TPM reset, i.e. every boot) names the boot, and a
//! new boot starts from entry 0. The position and the trust are also bound to the runtime
//! policy that appraised them (the SHA-256 of its body): a round under another runtime policy,
//! or under a changed one, appraises the boot's log from entry 0 again, and a release whose
//! policy names a runtime policy trusts only rounds under that same one, so a node cannot
//! pass an entry under a looser policy and keep the credit under a strict one. Nothing here trusts the claim before the appraisal: the
//! appraisal verifies the quote that carries the resetCount and the IMA entries that continue
//! the position, and a round is recorded only for evidence whose signatures all verified
//! under a policy that pins the SVSM image, so nobody can spend another node's reputation.
//!
//! Every change is a compare-and-set on the row's `round_version`, retried on conflict, so two
//! rounds of one node on two replicas at once cannot lose an update or move the IMA position
//! backwards.

use super::reputation::{self, RoundEvent};
use super::store::{Store, StoreError};
use crate::measured::ima_rounds::ImaPosition;
use sqlx::Row;

/// Compare-and-set attempts before a round gives up.
const CAS_ATTEMPTS: u64 = 64;

/// What the broker keeps of one node for continuous attestation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoundState {
    /// Reputation, 0..=100.
    pub reputation: u32,
    /// The last round was good (a missed round also clears it).
    pub trusted: bool,
    /// resetCount of the boot the IMA position belongs to.
    pub boot: Option<u32>,
    /// IMA entries appraised this boot, and the PCR 10 they replay to.
    pub ima: Option<ImaPosition>,
    /// SHA-256 of the runtime policy of the last good round (what `ima` was appraised under).
    pub ima_policy: Option<[u8; 32]>,
    /// Unix seconds of the last round.
    pub last_round_at: Option<i64>,
    /// Seconds from the last round to the next.
    pub interval: Option<u64>,
    /// Unix seconds a missed round was last counted.
    pub missed_at: Option<i64>,
    /// Good rounds.
    pub rounds_good: u64,
    /// Failed rounds.
    pub rounds_failed: u64,
    /// Missed rounds.
    pub rounds_missed: u64,
    /// Why the last failed or missed round counted against it.
    pub last_failure: Option<String>,
    #[serde(skip)]
    version: i64,
}

impl RoundState {
    /// A node before its first round.
    #[cfg(test)]
    fn new() -> RoundState {
        RoundState {
            reputation: reputation::START,
            trusted: false,
            boot: None,
            ima: None,
            ima_policy: None,
            last_round_at: None,
            interval: None,
            missed_at: None,
            rounds_good: 0,
            rounds_failed: 0,
            rounds_missed: 0,
            last_failure: None,
            version: 0,
        }
    }

    /// Unix seconds after which the next round counts as missed, once a round happened.
    pub fn overdue_at(&self) -> Option<i64> {
        let (last, interval) = (self.last_round_at?, self.interval?);
        let grace = i64::try_from(reputation::missed_after(interval)).unwrap_or(i64::MAX);
        Some(last.saturating_add(grace))
    }

    /// Trusted now: the last round was good and the next is not overdue.
    pub fn trusted_at(&self, now: i64) -> bool {
        self.trusted && self.overdue_at().is_some_and(|t| now <= t)
    }

    /// The IMA position to continue from for the boot with `reset_count` under the runtime
    /// policy with SHA-256 `runtime_policy`.
    pub fn ima_position_for(&self, reset_count: u32, runtime_policy: &[u8; 32]) -> ImaPosition {
        match (self.boot, self.ima, &self.ima_policy) {
            (Some(boot), Some(p), Some(kept)) if boot == reset_count && kept == runtime_policy => p,
            _ => ImaPosition::START,
        }
    }
}

/// How a round ended, for [`Store::record_round`].
#[derive(Clone, Debug)]
pub enum RoundResult {
    /// Affirmed: keep the new position for this boot.
    Good {
        /// resetCount of the quoted boot.
        boot: u32,
        /// Where the IMA replay reached.
        ima: ImaPosition,
        /// SHA-256 of the runtime policy it was appraised under.
        ima_policy: [u8; 32],
    },
    /// Refused, with the failed checks' names (`RolledBack` for a sealed state rolled back or
    /// re-created).
    Failed {
        /// The event to apply.
        event: RoundEvent,
        /// The failed checks, for the record.
        why: String,
    },
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: Option<i64>, what: &'static str) -> Result<Option<u64>, StoreError> {
    v.map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(what)))
        .transpose()
}

fn state_from_row(r: &sqlx::any::AnyRow) -> Result<RoundState, StoreError> {
    let reputation: Option<i64> = r.try_get("reputation")?;
    let trusted: Option<i64> = r.try_get("trusted")?;
    let boot: Option<i64> = r.try_get("boot_reset_count")?;
    let entries: Option<i64> = r.try_get("ima_entries")?;
    let pcr10: Option<Vec<u8>> = r.try_get("ima_pcr10")?;
    let ima_policy: Option<Vec<u8>> = r.try_get("round_ima_policy")?;
    let ima = match (to_u64(entries, "IMA position")?, pcr10) {
        (Some(entries), Some(pcr)) => Some(ImaPosition {
            entries,
            pcr10: pcr
                .try_into()
                .map_err(|_| StoreError::Corrupt("IMA PCR 10"))?,
        }),
        _ => None,
    };
    let count = |c: &str| -> Result<u64, StoreError> {
        let v: Option<i64> = r.try_get(c)?;
        Ok(to_u64(v, "round count")?.unwrap_or(0))
    };
    Ok(RoundState {
        reputation: match reputation {
            Some(v) => u32::try_from(v).map_err(|_| StoreError::Corrupt("reputation"))?,
            None => reputation::START,
        },
        trusted: trusted == Some(1),
        boot: boot
            .map(|b| u32::try_from(b).map_err(|_| StoreError::Corrupt("boot")))
            .transpose()?,
        ima,
        ima_policy: ima_policy
            .map(|d| {
                <[u8; 32]>::try_from(d).map_err(|_| StoreError::Corrupt("round runtime policy"))
            })
            .transpose()?,
        last_round_at: r.try_get("last_round_at")?,
        interval: to_u64(r.try_get("round_interval")?, "round interval")?,
        missed_at: r.try_get("missed_at")?,
        rounds_good: count("rounds_good")?,
        rounds_failed: count("rounds_failed")?,
        rounds_missed: count("rounds_missed")?,
        last_failure: r.try_get("last_failure")?,
        version: r.try_get::<Option<i64>, _>("round_version")?.unwrap_or(0),
    })
}

const STATE_COLUMNS: &str = "instance_id, reputation, trusted, boot_reset_count, ima_entries, \
     ima_pcr10, last_round_at, round_interval, missed_at, rounds_good, rounds_failed, \
     rounds_missed, last_failure, round_version, round_ima_policy";

impl Store {
    /// The round state of `instance`; `None` when the broker never recorded the instance (a
    /// recorded instance that never had a round has the starting state).
    pub async fn round_state(&self, instance: &[u8]) -> Result<Option<RoundState>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM instances WHERE instance_id = $1"
        ))
        .bind(instance.to_vec())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(state_from_row).transpose()
    }

    /// Writes `new` over the row if it is still at `old.version`; false when another round got
    /// there first.
    async fn swap_round_state(
        &self,
        instance: &[u8],
        old: &RoundState,
        new: &RoundState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE instances SET reputation = $1, trusted = $2, boot_reset_count = $3,
                 ima_entries = $4, ima_pcr10 = $5, last_round_at = $6, round_interval = $7,
                 missed_at = $8, rounds_good = $9, rounds_failed = $10, rounds_missed = $11,
                 last_failure = $12, round_version = $13, round_ima_policy = $14
             WHERE instance_id = $15 AND COALESCE(round_version, 0) = $16",
        )
        .bind(i64::from(new.reputation))
        .bind(i64::from(new.trusted))
        .bind(new.boot.map(i64::from))
        .bind(new.ima.map(|p| to_i64(p.entries)))
        .bind(new.ima.map(|p| p.pcr10.to_vec()))
        .bind(new.last_round_at)
        .bind(new.interval.map(to_i64))
        .bind(new.missed_at)
        .bind(to_i64(new.rounds_good))
        .bind(to_i64(new.rounds_failed))
        .bind(to_i64(new.rounds_missed))
        .bind(new.last_failure.clone())
        .bind(old.version.saturating_add(1))
        .bind(new.ima_policy.map(|d| d.to_vec()))
        .bind(instance.to_vec())
        .bind(old.version)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a round of `instance` (whose row exists: the epoch record made it) at `now`
    /// under a policy with round interval `base`; returns the state after it. A good round
    /// never moves the IMA position of the same boot backwards (a slower concurrent round with
    /// an older quote keeps the newer position).
    pub async fn record_round(
        &self,
        instance: &[u8],
        result: &RoundResult,
        base: u64,
        now: i64,
    ) -> Result<Option<RoundState>, StoreError> {
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 0 {
                // Another replica's round got there first: back off a little before rereading.
                tokio::time::sleep(std::time::Duration::from_millis(attempt.min(20))).await;
            }
            let Some(old) = self.round_state(instance).await? else {
                return Ok(None);
            };
            let mut new = old.clone();
            if old.last_round_at.is_none() {
                new.reputation = reputation::START;
            }
            match result {
                RoundResult::Good {
                    boot,
                    ima,
                    ima_policy,
                } => {
                    // A slower round of the same boot and runtime policy never moves the
                    // position back. A late round of an older boot does replace a newer one:
                    // that costs the next round a full appraisal, never trust, and a TPM
                    // cleared by its owner (resetCount back to 0) keeps incremental rounds.
                    let same = old.boot == Some(*boot) && old.ima_policy == Some(*ima_policy);
                    let behind = old.ima.is_some_and(|p| p.entries > ima.entries);
                    if !(same && behind) {
                        new.boot = Some(*boot);
                        new.ima = Some(*ima);
                        new.ima_policy = Some(*ima_policy);
                    }
                    new.reputation = reputation::apply(new.reputation, RoundEvent::Good);
                    new.trusted = true;
                    new.rounds_good += 1;
                    new.last_failure = None;
                    new.missed_at = None;
                }
                RoundResult::Failed { event, why } => {
                    new.reputation = reputation::apply(new.reputation, *event);
                    new.trusted = false;
                    new.rounds_failed += 1;
                    new.last_failure = Some(why.clone());
                    // A round happened: what counts now is that it failed.
                    new.missed_at = None;
                }
            }
            new.last_round_at = Some(now);
            new.interval = Some(reputation::interval(base, new.reputation));
            if self.swap_round_state(instance, &old, &new).await? {
                new.version = old.version.saturating_add(1);
                return Ok(Some(new));
            }
        }
        Err(StoreError::Corrupt(
            "round state (too many concurrent rounds)",
        ))
    }

    /// Counts a missed round for every node whose next round is overdue at `now` and was not
    /// counted in the last interval; returns those nodes (instance id, state after). Every
    /// replica runs this; the compare-and-set counts each miss once.
    pub async fn sweep_missed_rounds(
        &self,
        now: i64,
    ) -> Result<Vec<(Vec<u8>, RoundState)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM instances
             WHERE last_round_at IS NOT NULL AND round_interval IS NOT NULL
               AND last_round_at + round_interval < $1"
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let mut missed = Vec::new();
        for r in &rows {
            let instance: Vec<u8> = r.try_get("instance_id")?;
            let old = state_from_row(r)?;
            let (Some(overdue), Some(interval)) = (old.overdue_at(), old.interval) else {
                continue;
            };
            let again_after = old.missed_at.map(|m| m.saturating_add(to_i64(interval)));
            if now <= overdue || again_after.is_some_and(|t| now <= t) {
                continue;
            }
            // A node gone for good: once its reputation is 0 and the miss is on record, there
            // is nothing left to lower, and rewriting its row every interval forever is waste.
            if old.reputation == 0 && old.missed_at.is_some() {
                continue;
            }
            let mut new = old.clone();
            new.reputation = reputation::apply(old.reputation, RoundEvent::Missed);
            new.trusted = false;
            new.rounds_missed += 1;
            new.missed_at = Some(now);
            let last = old.last_round_at.unwrap_or(0);
            new.last_failure = Some(format!(
                "no round since {last} (due every {interval} s; missed at {now})"
            ));
            if self.swap_round_state(&instance, &old, &new).await? {
                missed.push((instance, new));
            }
        }
        Ok(missed)
    }

    /// Nodes that had a round: (trusted now, not trusted now).
    pub async fn round_census(&self, now: i64) -> Result<(u64, u64), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM instances WHERE last_round_at IS NOT NULL"
        ))
        .fetch_all(self.pool())
        .await?;
        let mut census = (0, 0);
        for r in &rows {
            if state_from_row(r)?.trusted_at(now) {
                census.0 += 1;
            } else {
                census.1 += 1;
            }
        }
        Ok(census)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_lapses_after_the_grace_period() {
        let mut s = RoundState::new();
        assert!(!s.trusted_at(0));
        s.trusted = true;
        s.last_round_at = Some(1000);
        s.interval = Some(100);
        assert_eq!(s.overdue_at(), Some(1150));
        assert!(s.trusted_at(1150));
        assert!(!s.trusted_at(1151));
        s.boot = Some(3);
        s.ima = Some(ImaPosition {
            entries: 9,
            pcr10: [1; 32],
        });
        s.ima_policy = Some([7; 32]);
        assert_eq!(s.ima_position_for(3, &[7; 32]).entries, 9);
        assert_eq!(s.ima_position_for(4, &[7; 32]), ImaPosition::START);
        // The same boot under another (or a changed) runtime policy starts over.
        assert_eq!(s.ima_position_for(3, &[8; 32]), ImaPosition::START);
    }
}
