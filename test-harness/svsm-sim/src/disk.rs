//! An encrypted data disk for the real guest, made on the host the way an operator would with
//! Debian's tools: an ext4 filesystem holding the given files (`mke2fs -d`), encrypted in place
//! into a LUKS2 volume (`cryptsetup reencrypt --encrypt`, offline, so neither root nor the
//! host's device-mapper is needed). Its key is a 32-byte secret: the broker releases it to an
//! attested guest, whose vault hands it to cryptsetup there.
//!
//! The keyslot uses PBKDF2 at cryptsetup's minimum cost: the key is 256 random bits, not a
//! passphrase, so a slow KDF buys nothing and would cost seconds inside a TCG guest.

use crate::guest::GuestError;
use std::path::Path;
use std::process::Command;

/// Size of the volume file.
pub const VOLUME_MIB: u64 = 40;
/// Size of the filesystem inside (the rest holds the LUKS2 header).
const FILESYSTEM_MIB: u64 = 32;

fn missing_or_io(name: &str, e: std::io::Error) -> GuestError {
    if e.kind() == std::io::ErrorKind::NotFound {
        GuestError::Missing(format!(
            "{name}: not installed (apt-get install cryptsetup-bin e2fsprogs; \
             scripts/bootstrap.sh does)"
        ))
    } else {
        GuestError::Io(e)
    }
}

/// `cryptsetup reencrypt --encrypt` of `volume` with `key` given on standard input.
fn encrypt_in_place(volume: &Path, key: &[u8; 32]) -> Result<(), GuestError> {
    use std::io::Write;
    let mut child = Command::new("cryptsetup")
        .args(["reencrypt", "--encrypt", "--type", "luks2"])
        .args(["--reduce-device-size", "8M", "--key-file", "-"])
        .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
        .args(["--disable-locks", "--force-offline-reencrypt", "-q"])
        .arg(volume)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| missing_or_io("cryptsetup", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(key)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(GuestError::Command {
            command: "cryptsetup reencrypt --encrypt".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), GuestError> {
    let name = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| missing_or_io(&name, e))?;
    if !out.status.success() {
        return Err(GuestError::Command {
            command: name,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Writes a LUKS2 volume to `volume` (replaced) holding an ext4 filesystem with `files`
/// (relative paths, contents), openable with `key`.
pub fn make_luks_volume(
    volume: &Path,
    key: &[u8; 32],
    files: &[(&str, &[u8])],
) -> Result<(), GuestError> {
    let scratch = volume.with_extension("work");
    let _ = std::fs::remove_dir_all(&scratch);
    let content = scratch.join("content");
    std::fs::create_dir_all(&content)?;
    let result = (|| {
        for (path, data) in files {
            let target = content.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(target, data)?;
        }
        let _ = std::fs::remove_file(volume);
        std::fs::File::create(volume)?.set_len(VOLUME_MIB << 20)?;
        run(Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-F", "-d"])
            .arg(&content)
            .arg(volume)
            .arg(format!("{FILESYSTEM_MIB}M")))?;
        // The key on standard input: it is never written to a file.
        encrypt_in_place(volume, key)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(volume);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_is_luks2_and_the_file_is_not_in_the_clear() {
        let dir = std::env::temp_dir().join(format!("svsm-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let volume = dir.join("data.img");
        let marker = b"a line only the attested guest reads";
        make_luks_volume(&volume, &[7; 32], &[("hello.txt", marker)]).unwrap();
        let bytes = std::fs::read(&volume).unwrap();
        assert_eq!(&bytes[..6], b"LUKS\xba\xbe");
        assert_eq!(bytes.len() as u64, VOLUME_MIB << 20);
        assert!(!bytes.windows(marker.len()).any(|w| w == marker));
        // The key opens a keyslot, another does not (no device-mapper needed to check).
        let opens = |key: &[u8]| {
            use std::io::Write;
            let mut child = Command::new("cryptsetup")
                .args([
                    "open",
                    "--test-passphrase",
                    "--key-file",
                    "-",
                    "--disable-locks",
                ])
                .arg(&volume)
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(key).unwrap();
            child.wait().unwrap().success()
        };
        assert!(opens(&[7; 32]));
        assert!(!opens(&[8; 32]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
