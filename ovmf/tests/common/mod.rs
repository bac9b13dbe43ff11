//! Shared test helpers: the Debian images (required, never skipped), hex, and a builder for
//! synthetic OVMF images with any footer table and SEV metadata.
#![allow(dead_code)]

/// bookworm `ovmf` 2022.11-6+deb12u2.
pub const OVMF_FD: &str = "/usr/share/ovmf/OVMF.fd";
pub const OVMF_FD_SHA256: &str = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773";
pub const OVMF_CODE_FD: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_CODE_FD_SHA256: &str =
    "d9b568def24088c92f34b5479e0ed7e44d0a4d4cea8a0f5716719180bba48106";

/// Reads a Debian firmware image and checks it is the one the reference digests were made
/// from. Missing or different → the test FAILS with the command that fixes it.
pub fn debian_image(path: &str, sha256: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}. These tests need Debian bookworm's OVMF images: run \
             `apt-get install ovmf` (or scripts/bootstrap.sh)"
        )
    });
    let got = hex::encode(ovmf::hashes::sha256(&bytes));
    assert_eq!(
        got, sha256,
        "{path} is not bookworm's ovmf 2022.11-6+deb12u2 (sha256 {got}); the reference digests \
         were made from that package: `apt-get install ovmf=2022.11-6+deb12u2`"
    );
    bytes
}

pub fn ovmf_fd() -> Vec<u8> {
    debian_image(OVMF_FD, OVMF_FD_SHA256)
}

pub fn ovmf_code_fd() -> Vec<u8> {
    debian_image(OVMF_CODE_FD, OVMF_CODE_FD_SHA256)
}

pub fn hex48(s: &str) -> [u8; 48] {
    let mut out = [0u8; 48];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

/// GUID bytes (UEFI mixed-endian) from the text form.
pub fn guid(text: &str) -> [u8; 16] {
    let h: Vec<u8> = hex::decode(text.replace('-', "")).unwrap();
    let mut g = [0u8; 16];
    g[0..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
    g[4..6].copy_from_slice(&[h[5], h[4]]);
    g[6..8].copy_from_slice(&[h[7], h[6]]);
    g[8..16].copy_from_slice(&h[8..16]);
    g
}

pub const FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
pub const RESET: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
pub const SECRET: &str = "4c2eb361-7d9b-4cc3-8081-127c90d3d294";
pub const HASHES: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
pub const METADATA: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";

/// Section types.
pub const SEC_MEM: u32 = 1;
pub const SECRETS: u32 = 2;
pub const CPUID: u32 = 3;
pub const CAA: u32 = 4;
pub const KERNEL_HASHES: u32 = 0x10;

/// sid `OVMF.amdsev.fd`'s section list, in its table order.
pub const SID_SECTIONS: &[(u32, u32, u32)] = &[
    (0x800000, 0x9000, SEC_MEM),
    (0x80A000, 0x3000, SEC_MEM),
    (0x80D000, 0x1000, SECRETS),
    (0x80E000, 0x1000, CPUID),
    (0x80F000, 0x1000, CAA),
    (0x811000, 0x1F000, SEC_MEM),
    (0x810000, 0x1000, KERNEL_HASHES),
];

/// bookworm OVMF.fd's section list.
pub const BOOKWORM_SECTIONS: &[(u32, u32, u32)] = &[
    (0x800000, 0x9000, SEC_MEM),
    (0x80A000, 0x3000, SEC_MEM),
    (0x80D000, 0x1000, SECRETS),
    (0x80E000, 0x1000, CPUID),
    (0x80F000, 0x11000, SEC_MEM),
];

/// A synthetic OVMF-like image: `size` bytes of a deterministic pattern, an ASEV block placed
/// `asev_from_end` bytes before the end, and a footer table (entries listed nearest-footer
/// first) ending 32 bytes before the end.
#[derive(Clone)]
pub struct Synth {
    pub size: usize,
    /// (GUID text, data) in table order, nearest the footer first.
    pub entries: Vec<(String, Vec<u8>)>,
    pub sections: Vec<(u32, u32, u32)>,
    pub asev_from_end: usize,
    pub seed: u8,
}

impl Synth {
    /// An SNP-capable image like sid's amdsev build: reset block 0x80B004, secrets
    /// 0x810000/0xC00, hash table 0x810C00/0x400, sid sections.
    pub fn sid_like(size: usize) -> Self {
        let mut s = Synth {
            size,
            entries: Vec::new(),
            sections: SID_SECTIONS.to_vec(),
            asev_from_end: 0x5C4,
            seed: 7,
        };
        s.entry(RESET, &0x80B004u32.to_le_bytes());
        s.entry(
            SECRET,
            &[0x810000u32.to_le_bytes(), 0xC00u32.to_le_bytes()].concat(),
        );
        s.entry(
            HASHES,
            &[0x810C00u32.to_le_bytes(), 0x400u32.to_le_bytes()].concat(),
        );
        s.entry(METADATA, &(0x5C4u32).to_le_bytes());
        s
    }

    pub fn entry(&mut self, g: &str, data: &[u8]) -> &mut Self {
        self.entries.push((g.to_string(), data.to_vec()));
        self
    }

    /// The ASEV block bytes.
    pub fn asev(&self) -> Vec<u8> {
        let mut a = b"ASEV".to_vec();
        a.extend_from_slice(&(16 + 12 * self.sections.len() as u32).to_le_bytes());
        a.extend_from_slice(&1u32.to_le_bytes());
        a.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (gpa, size, kind) in &self.sections {
            a.extend_from_slice(&gpa.to_le_bytes());
            a.extend_from_slice(&size.to_le_bytes());
            a.extend_from_slice(&kind.to_le_bytes());
        }
        a
    }

    /// The footer table bytes (entries, then the footer entry).
    pub fn table(&self) -> Vec<u8> {
        let mut body = Vec::new();
        // Entries are walked backwards from the footer: the first listed sits nearest it.
        for (g, data) in self.entries.iter().rev() {
            body.extend_from_slice(data);
            body.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
            body.extend_from_slice(&guid(g));
        }
        let total = (body.len() + 18) as u16;
        body.extend_from_slice(&total.to_le_bytes());
        body.extend_from_slice(&guid(FOOTER));
        body
    }

    pub fn build(&self) -> Vec<u8> {
        let mut img: Vec<u8> = (0..self.size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(self.seed) ^ (i >> 12) as u8)
            .collect();
        let table = self.table();
        let end = self.size - 32;
        img[end - table.len()..end].copy_from_slice(&table);
        let asev = self.asev();
        let at = self.size - self.asev_from_end;
        img[at..at + asev.len()].copy_from_slice(&asev);
        img
    }
}
