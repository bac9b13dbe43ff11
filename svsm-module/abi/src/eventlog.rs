//! The TCG crypto-agile event log (TCG PC Client Platform Firmware Profile, "Crypto Agile Log
//! Entry Format"; TCG EFI Protocol Specification §5), as the module keeps it for the components
//! it measures and the verifier replays it.
//!
//! The log starts with one SHA-1-format `TCG_PCR_EVENT` of type EV_NO_ACTION whose data is the
//! `TCG_EfiSpecIDEvent` ("Spec ID Event03") naming the banks; every later entry is a
//! `TCG_PCR_EVENT2`: u32 PCR index, u32 event type, u32 digest count, then (u16 algorithm,
//! digest) pairs, u32 event size, event data. All integers little-endian. This module parses
//! with hard bounds (entries, event size, banks) and never reads out of bounds; writing is done
//! by the module with [`write_spec_id_event`] and [`write_event`].

/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_SHA384.
pub const ALG_SHA384: u16 = 0x000C;
/// EV_NO_ACTION (not extended).
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// EV_SEPARATOR.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// EV_EVENT_TAG (Linux uses it for the initrd).
pub const EV_EVENT_TAG: u32 = 0x0000_0006;
/// EV_IPL (command line).
pub const EV_IPL: u32 = 0x0000_000D;
/// EV_EFI_BOOT_SERVICES_APPLICATION (kernel).
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
/// EV_EFI_PLATFORM_FIRMWARE_BLOB (firmware volume).
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;

/// A launch component the module measures before the guest runs, and where (TCG PC Client
/// Platform Firmware Profile PCR usage; Linux's conventions for the initrd and command line):
/// firmware -> PCR 0 (EV_EFI_PLATFORM_FIRMWARE_BLOB), kernel -> 4
/// (EV_EFI_BOOT_SERVICES_APPLICATION), command line -> 8 (EV_IPL), initrd -> 9 (EV_EVENT_TAG).
/// Each is extended with the digest of its bytes; the event data names the component. The
/// module and a verifier computing reference PCRs from the files both read this one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchComponent {
    /// The guest firmware image.
    Firmware,
    /// The kernel.
    Kernel,
    /// The initial ramdisk.
    Initrd,
    /// The kernel command line (its bytes as given to the module).
    CommandLine,
}

impl LaunchComponent {
    /// PCR and event type.
    pub const fn pcr_and_event(self) -> (u32, u32) {
        match self {
            LaunchComponent::Firmware => (0, EV_EFI_PLATFORM_FIRMWARE_BLOB),
            LaunchComponent::Kernel => (4, EV_EFI_BOOT_SERVICES_APPLICATION),
            LaunchComponent::CommandLine => (8, EV_IPL),
            LaunchComponent::Initrd => (9, EV_EVENT_TAG),
        }
    }

    /// The event data recorded for it.
    pub const fn name(self) -> &'static [u8] {
        match self {
            LaunchComponent::Firmware => b"svsm-vhsm: guest firmware",
            LaunchComponent::Kernel => b"svsm-vhsm: kernel",
            LaunchComponent::CommandLine => b"svsm-vhsm: command line",
            LaunchComponent::Initrd => b"svsm-vhsm: initrd",
        }
    }
}

/// Most entries the parser accepts.
pub const MAX_EVENTS: usize = 4096;
/// Largest event data the parser accepts.
pub const MAX_EVENT_DATA: usize = 64 * 1024;
/// Largest log the parser accepts.
pub const MAX_LOG: usize = 4 * 1024 * 1024;
/// Highest PCR index.
pub const MAX_PCR: u32 = 23;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// Why a log was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// Shorter than a field it declares.
    #[error("event log truncated at {0}")]
    Truncated(&'static str),
    /// Larger than the bounds allow.
    #[error("event log exceeds a bound: {0}")]
    TooLarge(&'static str),
    /// The first event is not a Spec ID Event03 header.
    #[error("event log does not start with a Spec ID Event03 header")]
    NoSpecId,
    /// An entry's digests do not match the header's banks.
    #[error("event {index}: digest list does not match the log's banks")]
    Banks {
        /// Entry index.
        index: usize,
    },
    /// A PCR index above 23.
    #[error("event {index}: PCR {pcr} does not exist")]
    Pcr {
        /// Entry index.
        index: usize,
        /// The PCR.
        pcr: u32,
    },
    /// A bank the parser does not know the digest size of.
    #[error("event log bank {0:#06x} is not supported")]
    UnknownAlgorithm(u16),
}

/// One entry of a parsed log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// PCR index.
    pub pcr: u32,
    /// Event type.
    pub event_type: u32,
    /// SHA-256 digest (if the log has that bank).
    pub sha256: Option<&'a [u8; 32]>,
    /// SHA-384 digest (if the log has that bank).
    pub sha384: Option<&'a [u8; 48]>,
    /// Event data.
    pub data: &'a [u8],
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EventLogError> {
        let (h, t) = self
            .data
            .split_at_checked(n)
            .ok_or(EventLogError::Truncated(what))?;
        self.data = t;
        Ok(h)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, EventLogError> {
        self.take(1, what)?
            .first()
            .copied()
            .ok_or(EventLogError::Truncated(what))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, EventLogError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, EventLogError> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }
}

/// A log whose header and every entry were checked.
#[derive(Clone, Copy, Debug)]
pub struct EventLog<'a> {
    /// Whether the SHA-256 bank is recorded.
    pub has_sha256: bool,
    /// Whether the SHA-384 bank is recorded.
    pub has_sha384: bool,
    entries: &'a [u8],
    count: usize,
}

fn digest_size(alg: u16) -> Option<usize> {
    match alg {
        0x0004 => Some(20), // SHA-1
        ALG_SHA256 => Some(32),
        ALG_SHA384 => Some(48),
        0x000D => Some(64), // SHA-512
        _ => None,
    }
}

impl<'a> EventLog<'a> {
    /// Parses and bounds-checks a whole log.
    pub fn parse(log: &'a [u8]) -> Result<Self, EventLogError> {
        if log.len() > MAX_LOG {
            return Err(EventLogError::TooLarge("log size"));
        }
        let mut r = Reader { data: log };
        let (pcr, ty) = (r.u32("header pcr")?, r.u32("header type")?);
        let _sha1 = r.take(20, "header digest")?;
        let size = r.u32("header size")? as usize;
        let spec = r.take(size, "spec id event")?;
        if pcr != 0 || ty != EV_NO_ACTION {
            return Err(EventLogError::NoSpecId);
        }
        let mut s = Reader { data: spec };
        if s.take(16, "signature")? != SPEC_ID_SIGNATURE {
            return Err(EventLogError::NoSpecId);
        }
        let _platform_class = s.u32("platformClass")?;
        let _minor = s.u8("specVersionMinor")?;
        let _major = s.u8("specVersionMajor")?;
        let _errata = s.u8("specErrata")?;
        let _uintn = s.u8("uintnSize")?;
        let algorithms = s.u32("numberOfAlgorithms")?;
        if algorithms == 0 || algorithms > 8 {
            return Err(EventLogError::TooLarge("numberOfAlgorithms"));
        }
        let (mut has_sha256, mut has_sha384) = (false, false);
        for _ in 0..algorithms {
            let alg = s.u16("algorithmId")?;
            let size = usize::from(s.u16("digestSize")?);
            if digest_size(alg) != Some(size) {
                return Err(EventLogError::UnknownAlgorithm(alg));
            }
            has_sha256 |= alg == ALG_SHA256;
            has_sha384 |= alg == ALG_SHA384;
        }
        let entries = r.data;
        let mut log = EventLog {
            has_sha256,
            has_sha384,
            entries,
            count: 0,
        };
        let mut walk = Reader { data: entries };
        while !walk.data.is_empty() {
            if log.count >= MAX_EVENTS {
                return Err(EventLogError::TooLarge("events"));
            }
            Self::next(&mut walk, log.count, has_sha256, has_sha384)?;
            log.count += 1;
        }
        Ok(log)
    }

    fn next(
        r: &mut Reader<'a>,
        index: usize,
        want256: bool,
        want384: bool,
    ) -> Result<Event<'a>, EventLogError> {
        let pcr = r.u32("pcr")?;
        if pcr > MAX_PCR {
            return Err(EventLogError::Pcr { index, pcr });
        }
        let event_type = r.u32("event type")?;
        let count = r.u32("digest count")?;
        if count > 8 {
            return Err(EventLogError::Banks { index });
        }
        let (mut sha256, mut sha384) = (None, None);
        for _ in 0..count {
            let alg = r.u16("digest algorithm")?;
            let size = digest_size(alg).ok_or(EventLogError::UnknownAlgorithm(alg))?;
            let d = r.take(size, "digest")?;
            match alg {
                ALG_SHA256 => sha256 = d.try_into().ok(),
                ALG_SHA384 => sha384 = d.try_into().ok(),
                _ => {}
            }
        }
        if want256 != sha256.is_some() || want384 != sha384.is_some() {
            return Err(EventLogError::Banks { index });
        }
        let size = r.u32("event size")? as usize;
        if size > MAX_EVENT_DATA {
            return Err(EventLogError::TooLarge("event data"));
        }
        let data = r.take(size, "event data")?;
        Ok(Event {
            pcr,
            event_type,
            sha256,
            sha384,
            data,
        })
    }

    /// Number of entries after the header.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when only the header is present.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in order.
    pub fn events(&self) -> impl Iterator<Item = Event<'a>> + '_ {
        let mut r = Reader { data: self.entries };
        let (want256, want384) = (self.has_sha256, self.has_sha384);
        (0..self.count).map_while(move |i| Self::next(&mut r, i, want256, want384).ok())
    }
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) -> Option<()> {
    let end = at.checked_add(bytes.len())?;
    out.get_mut(*at..end)?.copy_from_slice(bytes);
    *at = end;
    Some(())
}

/// Length of the header [`write_spec_id_event`] writes.
pub const SPEC_ID_EVENT_LEN: usize = 32 + 16 + 4 + 4 + 4 + 2 * 4 + 1;

/// Writes the log header for the SHA-256 and SHA-384 banks; returns its length.
pub fn write_spec_id_event(out: &mut [u8]) -> Option<usize> {
    let mut at = 0;
    let body_len: u32 = 16 + 4 + 4 + 4 + 2 * 4 + 1;
    put(out, &mut at, &0u32.to_le_bytes())?;
    put(out, &mut at, &EV_NO_ACTION.to_le_bytes())?;
    put(out, &mut at, &[0; 20])?;
    put(out, &mut at, &body_len.to_le_bytes())?;
    put(out, &mut at, SPEC_ID_SIGNATURE)?;
    put(out, &mut at, &0u32.to_le_bytes())?; // platformClass: client
    put(out, &mut at, &[0, 2, 0, 2])?; // version 2.0, errata 0, UINTN = 64 bit
    put(out, &mut at, &2u32.to_le_bytes())?;
    put(out, &mut at, &ALG_SHA256.to_le_bytes())?;
    put(out, &mut at, &32u16.to_le_bytes())?;
    put(out, &mut at, &ALG_SHA384.to_le_bytes())?;
    put(out, &mut at, &48u16.to_le_bytes())?;
    put(out, &mut at, &[0])?; // vendorInfoSize
    Some(at)
}

/// Length of an entry with `data_len` bytes of event data (both banks).
pub const fn event_len(data_len: usize) -> usize {
    4 + 4 + 4 + (2 + 32) + (2 + 48) + 4 + data_len
}

/// Writes one TCG_PCR_EVENT2 with SHA-256 and SHA-384 digests; returns its length.
pub fn write_event(
    out: &mut [u8],
    pcr: u32,
    event_type: u32,
    sha256: &[u8; 32],
    sha384: &[u8; 48],
    data: &[u8],
) -> Option<usize> {
    let mut at = 0;
    put(out, &mut at, &pcr.to_le_bytes())?;
    put(out, &mut at, &event_type.to_le_bytes())?;
    put(out, &mut at, &2u32.to_le_bytes())?;
    put(out, &mut at, &ALG_SHA256.to_le_bytes())?;
    put(out, &mut at, sha256)?;
    put(out, &mut at, &ALG_SHA384.to_le_bytes())?;
    put(out, &mut at, sha384)?;
    put(out, &mut at, &u32::try_from(data.len()).ok()?.to_le_bytes())?;
    put(out, &mut at, data)?;
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn sample() -> std::vec::Vec<u8> {
        let mut log = vec![0u8; SPEC_ID_EVENT_LEN + 2 * event_len(5)];
        let mut at = write_spec_id_event(&mut log).unwrap();
        at += write_event(
            &mut log[at..],
            4,
            EV_EFI_BOOT_SERVICES_APPLICATION,
            &[1; 32],
            &[2; 48],
            b"linux",
        )
        .unwrap();
        at += write_event(&mut log[at..], 8, EV_IPL, &[3; 32], &[4; 48], b"quiet").unwrap();
        assert_eq!(at, log.len());
        log
    }

    #[test]
    fn written_logs_parse_back() {
        let log = sample();
        let parsed = EventLog::parse(&log).unwrap();
        assert!(parsed.has_sha256 && parsed.has_sha384);
        let events: std::vec::Vec<_> = parsed.events().collect();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].pcr, events[0].data, events[0].sha256),
            (4, &b"linux"[..], Some(&[1u8; 32]))
        );
        assert_eq!(events[1].sha384, Some(&[4u8; 48]));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_log() {
        let log = sample();
        for len in 0..log.len() {
            match EventLog::parse(&log[..len]) {
                Err(_) => {}
                Ok(l) => assert!(
                    len == SPEC_ID_EVENT_LEN || len == SPEC_ID_EVENT_LEN + event_len(5),
                    "len {len}: {}",
                    l.len()
                ),
            }
        }
    }

    #[test]
    fn hostile_fields() {
        let mut log = sample();
        log[SPEC_ID_EVENT_LEN] = 24; // PCR 24
        assert_eq!(
            EventLog::parse(&log).unwrap_err(),
            EventLogError::Pcr { index: 0, pcr: 24 }
        );
        let mut log = sample();
        log[SPEC_ID_EVENT_LEN + 8] = 1; // digest count 1: banks missing
        assert!(EventLog::parse(&log).is_err());
        let mut log = sample();
        let size_at = SPEC_ID_EVENT_LEN + 12 + 34 + 50;
        log[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            EventLog::parse(&log).unwrap_err(),
            EventLogError::TooLarge("event data")
        );
        let mut log = sample();
        log[32] = b'X';
        assert_eq!(EventLog::parse(&log).unwrap_err(), EventLogError::NoSpecId);
    }
}
