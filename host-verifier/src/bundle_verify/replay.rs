//! The exact replay of a bundle's TCG logs onto the SHA-256 PCR bank: first the SVSM's own log
//! (what VMPL0 measured at launch, before any guest firmware ran), then the guest firmware's
//! log (what OVMF and the Linux EFI stub measured afterwards), both from PCR values of zero, in
//! log order, one extend per non-`EV_NO_ACTION` event. The two logs may extend the same PCR:
//! the order is fixed by who runs first, so the replay is still one linear chain per PCR.
//!
//! Both logs are parsed with the hard bounds of `svsm_abi::eventlog` before anything is hashed.
//! This module only computes; the caller decides when (after every signature) and compares.

use sha2::{Digest, Sha256};
use svsm_abi::eventlog::{EventLog, EventLogError, EV_NO_ACTION};

/// PCRs in a bank.
pub const PCR_COUNT: usize = 24;

/// `TCG_EfiStartupLocalityEvent` signature (PC Client PFP §10.4.5.3): an `EV_NO_ACTION` event
/// that sets PCR 0's initial value to the startup locality.
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

/// Which log an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// The SVSM's own log (bound by the manifest).
    Svsm,
    /// The guest firmware's log (bound only by the replay).
    Firmware,
}

impl LogSource {
    /// Its name in messages.
    pub const fn name(self) -> &'static str {
        match self {
            LogSource::Svsm => "SVSM event log",
            LogSource::Firmware => "firmware event log",
        }
    }
}

/// Why a replay could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A log does not parse within its bounds.
    #[error("{}: {error}", .log.name())]
    Parse {
        /// Which log.
        log: LogSource,
        /// Why.
        error: EventLogError,
    },
    /// A log has no SHA-256 bank.
    #[error("the {} records no SHA-256 digests", .0.name())]
    NoSha256(LogSource),
    /// A firmware log declares a startup locality for PCR 0 after the SVSM extended it, or a
    /// locality the replay does not model.
    #[error("the firmware event log declares startup locality {0}, which this replay does not model (PCR 0 would not start at zero)")]
    StartupLocality(u8),
}

/// The replayed bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Every PCR's replayed value (zero when nothing extended it).
    pub pcrs: [[u8; 32]; PCR_COUNT],
    /// The PCRs the SVSM log extends, ascending.
    pub svsm_pcrs: Vec<usize>,
    /// Entries of the SVSM log after its header.
    pub svsm_events: usize,
    /// The PCRs the firmware log extends, ascending (empty without one).
    pub firmware_pcrs: Vec<usize>,
    /// Entries of the firmware log after its header (`None` without one).
    pub firmware_events: Option<usize>,
}

impl Replayed {
    /// Every PCR either log extends, ascending.
    pub fn extended(&self) -> Vec<usize> {
        (0..PCR_COUNT)
            .filter(|i| self.svsm_pcrs.contains(i) || self.firmware_pcrs.contains(i))
            .collect()
    }
}

fn extend(
    source: LogSource,
    log: &[u8],
    pcrs: &mut [[u8; 32]; PCR_COUNT],
) -> Result<(Vec<usize>, usize), ReplayError> {
    let parsed = EventLog::parse(log).map_err(|error| ReplayError::Parse { log: source, error })?;
    if !parsed.has_sha256 {
        return Err(ReplayError::NoSha256(source));
    }
    let mut touched = [false; PCR_COUNT];
    let mut events = 0usize;
    for e in parsed.events() {
        events += 1;
        // TCG: EV_NO_ACTION events are informational and never extended.
        if e.event_type == EV_NO_ACTION {
            if e.data.starts_with(STARTUP_LOCALITY_SIGNATURE) {
                let locality = e.data.get(16).copied().unwrap_or(0);
                return Err(ReplayError::StartupLocality(locality));
            }
            continue;
        }
        let d = e.sha256.ok_or(ReplayError::NoSha256(source))?;
        let i = usize::try_from(e.pcr).unwrap_or(usize::MAX);
        let (Some(slot), Some(t)) = (pcrs.get_mut(i), touched.get_mut(i)) else {
            return Err(ReplayError::Parse {
                log: source,
                error: EventLogError::Pcr {
                    index: events - 1,
                    pcr: e.pcr,
                },
            });
        };
        *slot = Sha256::new()
            .chain_update(*slot)
            .chain_update(d)
            .finalize()
            .into();
        *t = true;
    }
    if events != parsed.len() {
        return Err(ReplayError::Parse {
            log: source,
            error: EventLogError::Truncated("events"),
        });
    }
    Ok((
        (0..PCR_COUNT)
            .filter(|&i| touched.get(i) == Some(&true))
            .collect(),
        events,
    ))
}

/// Replays the SVSM log and then, if given, the firmware log.
pub fn replay(svsm_log: &[u8], firmware_log: Option<&[u8]>) -> Result<Replayed, ReplayError> {
    let mut pcrs = [[0u8; 32]; PCR_COUNT];
    let (svsm_pcrs, svsm_events) = extend(LogSource::Svsm, svsm_log, &mut pcrs)?;
    let (firmware_pcrs, firmware_events) = match firmware_log {
        Some(log) => {
            let (p, n) = extend(LogSource::Firmware, log, &mut pcrs)?;
            (p, Some(n))
        }
        None => (Vec::new(), None),
    };
    Ok(Replayed {
        pcrs,
        svsm_pcrs,
        svsm_events,
        firmware_pcrs,
        firmware_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVMF_LOG: &[u8] = include_bytes!(
        "../../../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/ovmf-binary_bios_measurements.bin"
    );
    const QUOTED: &str = include_str!(
        "../../../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/quoted-pcrs-sha256.txt"
    );

    fn quoted() -> Vec<(usize, [u8; 32])> {
        QUOTED
            .lines()
            .filter_map(|l| {
                let (i, v) = l.split_once(':')?;
                let v = hex::decode(v.trim().trim_start_matches("0x")).ok()?;
                Some((i.trim().parse().ok()?, v.try_into().ok()?))
            })
            .collect()
    }

    fn empty_svsm_log() -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let n = svsm_abi::eventlog::write_spec_id_event(&mut out).expect("header fits");
        out.truncate(n);
        out
    }

    #[test]
    fn the_real_ovmf_log_replays_to_the_quoted_pcrs_after_an_empty_svsm_log() {
        let r = replay(&empty_svsm_log(), Some(OVMF_LOG)).expect("replays");
        assert_eq!(r.svsm_events, 0);
        assert_eq!(r.firmware_events, Some(24));
        assert_eq!(r.extended(), vec![0, 1, 2, 3, 4, 5, 6, 7, 9]);
        let q = quoted();
        assert_eq!(q.len(), 10, "PCR 0-7, 9, 10 were quoted");
        for (pcr, value) in q.iter().filter(|(p, _)| *p != 10) {
            assert_eq!(&r.pcrs[*pcr], value, "PCR {pcr}");
        }
    }

    #[test]
    fn a_changed_firmware_event_changes_its_pcr_only() {
        let mut log = OVMF_LOG.to_vec();
        let good = replay(&empty_svsm_log(), Some(&log)).expect("replays");
        // The last event is PCR 5's "Exit Boot Services Returned with Success": flip its
        // SHA-256 digest's first byte, found by searching the log for it.
        let digest =
            hex::decode("b54f7542cbd872a81a9d9dea839b2b8d747c7ebd5ea6615c40f42f44a6dbeba0")
                .expect("hex");
        let at = log
            .windows(32)
            .position(|w| w == digest.as_slice())
            .expect("digest present");
        log[at] ^= 1;
        let bad = replay(&empty_svsm_log(), Some(&log)).expect("replays");
        let changed: Vec<usize> = (0..PCR_COUNT)
            .filter(|&i| good.pcrs[i] != bad.pcrs[i])
            .collect();
        assert_eq!(changed, vec![5]);
    }

    #[test]
    fn malformed_logs_are_named_errors() {
        assert!(matches!(
            replay(&empty_svsm_log(), Some(&OVMF_LOG[..OVMF_LOG.len() - 3])),
            Err(ReplayError::Parse {
                log: LogSource::Firmware,
                ..
            })
        ));
        assert!(matches!(
            replay(b"not a log", Some(OVMF_LOG)),
            Err(ReplayError::Parse {
                log: LogSource::Svsm,
                ..
            })
        ));
    }
}
