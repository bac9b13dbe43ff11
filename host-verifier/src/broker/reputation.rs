//! A node's reputation under continuous attestation: the written rules, as pure functions the
//! broker's store applies in its statements (`docs/agent.md`, "Reputation").
//!
//! - A node starts at [`START`] (of 0..=[`MAX`]) at its first round.
//! - A good round (an affirming attestation under a policy with a runtime policy) raises it by
//!   [`GOOD_ROUND`]; a failed round lowers it by [`FAILED_ROUND`], or by [`ROLLBACK`] when the
//!   failure is a rolled-back or re-created sealed state (`broker.epoch`); every interval that
//!   passes without a round once the grace period is over lowers it by [`MISSED_ROUND`].
//! - The next round is due after [`interval`]: the policy's base interval at full reputation,
//!   shorter as the score falls, never below a quarter of it — a node that misbehaved is
//!   watched more closely.
//! - A node is trusted only while its last round was good and the next one is not overdue
//!   ([`GRACE_PERCENT`] of the interval past its due time); release policies may also ask for
//!   a minimum score.

/// The score of a node at its first round.
pub const START: u32 = 50;
/// The highest score.
pub const MAX: u32 = 100;
/// Added for a good round.
pub const GOOD_ROUND: u32 = 5;
/// Taken for a failed round.
pub const FAILED_ROUND: u32 = 25;
/// Taken for a rolled-back or re-created sealed state.
pub const ROLLBACK: u32 = 50;
/// Taken for every interval missed.
pub const MISSED_ROUND: u32 = 10;
/// How late a round may be, in percent of the interval, before it counts as missed.
pub const GRACE_PERCENT: u64 = 50;

/// What a round did to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundEvent {
    /// An affirming round.
    Good,
    /// A refused round.
    Failed,
    /// A refused round whose sealed state was rolled back or re-created.
    RolledBack,
    /// An interval passed without a round.
    Missed,
}

/// The score after `event`.
pub fn apply(score: u32, event: RoundEvent) -> u32 {
    let score = score.min(MAX);
    match event {
        RoundEvent::Good => (score + GOOD_ROUND).min(MAX),
        RoundEvent::Failed => score.saturating_sub(FAILED_ROUND),
        RoundEvent::RolledBack => score.saturating_sub(ROLLBACK),
        RoundEvent::Missed => score.saturating_sub(MISSED_ROUND),
    }
}

/// Seconds until the next round is due at `score`, for a policy's `base` interval: `base` at
/// full reputation, proportionally shorter below, at least a quarter of `base` (and 1 s).
pub fn interval(base: u64, score: u32) -> u64 {
    let scaled = u128::from(base) * u128::from(score.min(MAX)) / u128::from(MAX);
    u64::try_from(scaled)
        .unwrap_or(u64::MAX)
        .max(base / 4)
        .max(1)
}

/// Seconds after the last round at which it counts as missed.
pub fn missed_after(interval: u64) -> u64 {
    interval.saturating_add(interval.saturating_mul(GRACE_PERCENT) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_as_written() {
        assert_eq!(apply(START, RoundEvent::Good), 55);
        assert_eq!(apply(98, RoundEvent::Good), MAX);
        assert_eq!(apply(START, RoundEvent::Failed), 25);
        assert_eq!(apply(20, RoundEvent::Failed), 0);
        assert_eq!(apply(START, RoundEvent::RolledBack), 0);
        assert_eq!(apply(START, RoundEvent::Missed), 40);
        assert_eq!(apply(500, RoundEvent::Missed), 90);
        // Five good rounds after a failure bring a node back to where it was.
        let after = (0..5).fold(apply(START, RoundEvent::Failed), |s, _| {
            apply(s, RoundEvent::Good)
        });
        assert_eq!(after, START);
    }

    #[test]
    fn the_interval_shortens_as_the_score_falls() {
        assert_eq!(interval(300, 100), 300);
        assert_eq!(interval(300, 50), 150);
        assert_eq!(interval(300, 10), 75);
        assert_eq!(interval(300, 0), 75);
        assert_eq!(interval(2, 0), 1);
        assert_eq!(interval(u64::MAX, 100), u64::MAX);
        assert_eq!(interval(u64::MAX, 50), u64::MAX / 2);
        assert_eq!(missed_after(100), 150);
        assert_eq!(missed_after(1), 1);
    }
}
