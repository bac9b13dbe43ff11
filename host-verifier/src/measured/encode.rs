//! Writes IMA list entries the way the kernel prints them (`ima_measurements_show` for the
//! binary list, `ima_ascii_measurements_show` for the text one), for tests, benchmarks and
//! simulated guests. The appraisal never uses this: it reads lists with
//! [`svsm_abi::ima::ImaLog`].

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One `ima-ng` (no signature) or `ima-sig` entry on PCR 10, measuring `path` with a SHA-256
/// `file_digest`; `None` as the digest writes a violation (zero digests, as
/// `ima_add_violation` does).
#[derive(Clone, Debug)]
pub struct EntrySpec<'a> {
    /// The measured path.
    pub path: &'a str,
    /// The file's SHA-256 digest, or `None` for a violation.
    pub file_digest: Option<[u8; 32]>,
    /// `Some` makes an `ima-sig` entry with this signature field (empty for none).
    pub signature: Option<&'a [u8]>,
}

impl EntrySpec<'_> {
    /// The template data: each field's u32 length and bytes.
    pub fn template_data(&self) -> Vec<u8> {
        let digest = self.file_digest.unwrap_or([0; 32]);
        let d_ng: Vec<u8> = [&b"sha256:\0"[..], &digest[..]].concat();
        let n_ng: Vec<u8> = [self.path.as_bytes(), b"\0"].concat();
        let mut data = Vec::new();
        let mut field = |f: &[u8]| {
            data.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_le_bytes());
            data.extend_from_slice(f);
        };
        field(&d_ng);
        field(&n_ng);
        if let Some(sig) = self.signature {
            field(sig);
        }
        data
    }

    fn template_name(&self) -> &'static str {
        if self.signature.is_some() {
            "ima-sig"
        } else {
            "ima-ng"
        }
    }

    /// The SHA-1 template digest the list logs (all zero for a violation).
    pub fn sha1_template_digest(&self) -> [u8; 20] {
        if self.file_digest.is_none() {
            return [0; 20];
        }
        Sha1::digest(self.template_data()).into()
    }

    /// What PCR 10's SHA-256 bank is extended with.
    pub fn sha256_template_digest(&self) -> [u8; 32] {
        if self.file_digest.is_none() {
            return [0xFF; 32];
        }
        Sha256::digest(self.template_data()).into()
    }

    /// Appends the binary form (`binary_runtime_measurements`).
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        let data = self.template_data();
        let name = self.template_name();
        out.extend_from_slice(&10u32.to_le_bytes());
        out.extend_from_slice(&self.sha1_template_digest());
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&data);
    }

    /// Appends the text form (`ascii_runtime_measurements`), one line.
    pub fn write_ascii(&self, out: &mut String) {
        let digest = self.file_digest.unwrap_or([0; 32]);
        out.push_str(&format!(
            "10 {} {} sha256:{} {}",
            hex::encode(self.sha1_template_digest()),
            self.template_name(),
            hex::encode(digest),
            self.path
        ));
        if let Some(sig) = self.signature {
            out.push(' ');
            out.push_str(&hex::encode(sig));
        }
        out.push('\n');
    }
}
