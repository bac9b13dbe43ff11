//! The launch-digest chain (SNP Firmware ABI, SNP_LAUNCH_UPDATE, PAGE_INFO table; as cited by
//! sev-snp-measure "8.17.2 Table 67"). The digest starts as 48 zero bytes; for every 4 KiB page
//! the PSP measures it builds a 0x70-byte PAGE_INFO (`svsm_abi::launch::PageInfo`) from the
//! current digest, the page's CONTENTS (SHA-384 of the page for NORMAL and VMSA pages, zero
//! otherwise), the page type and the GPA, and the new digest is SHA-384 of that record.

use crate::error::DigestHexError;
use crate::{Page, PAGE_SIZE};
use core::fmt;
use core::str::FromStr;
use sha2::{Digest as _, Sha384};
use svsm_abi::launch::{PageInfo, PageType, VMSA_GPA};
use zerocopy::IntoBytes;

/// A 48-byte SHA-384 launch digest (the report's MEASUREMENT). `Display` is 96 lower-case hex
/// digits; `FromStr` accepts 96 hex digits of either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement(pub [u8; 48]);

impl Measurement {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

impl FromStr for Measurement {
    type Err = DigestHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(DigestHexError::Digit(c));
        }
        if s.len() != 96 {
            return Err(DigestHexError::Length(s.len()));
        }
        let mut out = [0u8; 48];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestHexError::Length(s.len()))?;
        Ok(Measurement(out))
    }
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// Below this many pages the content hashes are computed on the calling thread.
const PARALLEL_MIN_PAGES: usize = 64;

/// SHA-384 of every page, on up to `available_parallelism` threads for large ranges (the chain
/// itself is sequential; the page hashes are independent and dominate the cost).
pub fn page_hashes(pages: &[Page]) -> Vec<[u8; 48]> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads <= 1 || pages.len() < PARALLEL_MIN_PAGES {
        return pages.iter().map(|p| sha384(p)).collect();
    }
    let per = pages.len().div_ceil(threads);
    let mut out = vec![[0u8; 48]; pages.len()];
    let work = |src: &[Page], dst: &mut [[u8; 48]]| {
        for (p, d) in src.iter().zip(dst.iter_mut()) {
            *d = sha384(p);
        }
    };
    std::thread::scope(|s| {
        let mut chunks = pages.chunks(per).zip(out.chunks_mut(per));
        // The calling thread takes the first chunk; the others go to workers.
        let first = chunks.next();
        for (src, dst) in chunks {
            s.spawn(move || work(src, dst));
        }
        if let Some((src, dst)) = first {
            work(src, dst);
        }
    });
    out
}

/// The running launch digest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LaunchDigest {
    ld: [u8; 48],
}

impl Default for LaunchDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl LaunchDigest {
    /// The initial value: 48 zero bytes.
    pub const fn new() -> Self {
        LaunchDigest { ld: [0; 48] }
    }

    /// Resumes a chain from an earlier value (for example the firmware-only digest that
    /// `snp:ovmf-hash` prints).
    pub const fn from_seed(ld: [u8; 48]) -> Self {
        LaunchDigest { ld }
    }

    /// The current value.
    pub const fn value(&self) -> Measurement {
        Measurement(self.ld)
    }

    /// One PAGE_INFO step with the given CONTENTS.
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: [u8; 48]) {
        let info = PageInfo::new(self.ld, contents, page_type, gpa);
        self.ld = sha384(info.as_bytes());
    }

    /// NORMAL pages at `gpa`, `gpa + 0x1000`, … (firmware bytes, the hashes page).
    pub fn update_normal_pages(&mut self, gpa: u64, pages: &[Page]) {
        let hashes = page_hashes(pages);
        let mut at = gpa;
        for h in hashes {
            self.update(PageType::Normal, at, h);
            at = at.wrapping_add(PAGE_SIZE as u64);
        }
    }

    /// `count` pages of a type whose CONTENTS is zero (ZERO, UNMEASURED, SECRETS, CPUID).
    pub fn update_empty_pages(&mut self, page_type: PageType, gpa: u64, count: u64) {
        let mut at = gpa;
        for _ in 0..count {
            self.update(page_type, at, [0; 48]);
            at = at.wrapping_add(PAGE_SIZE as u64);
        }
    }

    /// One VMSA page at KVM's fixed VMSA GPA (0xFFFFFFFFF000).
    pub fn update_vmsa_page(&mut self, vmsa: &Page) {
        self.update(PageType::Vmsa, VMSA_GPA, sha384(vmsa));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let m = Measurement([0xab; 48]);
        let s = m.to_string();
        assert_eq!(s.len(), 96);
        assert_eq!(s.parse::<Measurement>().unwrap(), m);
        assert_eq!(s.to_uppercase().parse::<Measurement>().unwrap(), m);
        assert_eq!(format!("0x{s}").parse::<Measurement>().unwrap(), m);
        assert_eq!(
            s[..94].parse::<Measurement>(),
            Err(DigestHexError::Length(94))
        );
        assert_eq!(
            format!("{}g", &s[..95]).parse::<Measurement>(),
            Err(DigestHexError::Digit('g'))
        );
    }

    #[test]
    fn parallel_hashes_equal_sequential() {
        let pages: Vec<Page> = (0..200u32)
            .map(|i| {
                let mut p = [0u8; PAGE_SIZE];
                p[..4].copy_from_slice(&i.to_le_bytes());
                p
            })
            .collect();
        let seq: Vec<_> = pages.iter().map(|p| sha384(p)).collect();
        assert_eq!(page_hashes(&pages), seq);
    }

    #[test]
    fn one_step_matches_the_record() {
        let mut ld = LaunchDigest::new();
        ld.update(PageType::Zero, 0x800000, [0; 48]);
        let mut rec = [0u8; 0x70];
        rec[0x60] = 0x70;
        rec[0x62] = 3;
        rec[0x68..0x70].copy_from_slice(&0x800000u64.to_le_bytes());
        assert_eq!(ld.value().0, sha384(&rec));
    }
}
