//! The broker's data directory: what `host-verifier broker init` creates for a first run and
//! what `host-verifier serve` reads. Every private file is created mode 0600 and refused when
//! group or others can read it; nothing secret is ever printed except the admin token, once, by
//! `init` (only its SHA-256 is kept).
//!
//! | file | content |
//! |---|---|
//! | `tls-cert.pem`, `tls-key.pem` | the HTTPS certificate chain and key (self-signed by `init`; replace with real ones, or pass `--tls-cert/--tls-key`) |
//! | `ear-key.pem` | the P-256 key (PKCS#8) that signs EAR tokens |
//! | `master.key` | the 32-byte master key sealing secrets at rest, 64 hex digits (or `HOST_VERIFIER_MASTER_KEY`) |
//! | `admin-token.sha256` | SHA-256 of the admin bearer token, hex |
//! | `broker.db` | the SQLite database (when no `--database` URL is given) |

use super::secrets::{MasterKey, SecretError};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File names inside the data directory.
pub const TLS_CERT: &str = "tls-cert.pem";
/// See [`TLS_CERT`].
pub const TLS_KEY: &str = "tls-key.pem";
/// See [`TLS_CERT`].
pub const EAR_KEY: &str = "ear-key.pem";
/// See [`TLS_CERT`].
pub const MASTER_KEY: &str = "master.key";
/// See [`TLS_CERT`].
pub const ADMIN_TOKEN_HASH: &str = "admin-token.sha256";
/// See [`TLS_CERT`].
pub const SQLITE_FILE: &str = "broker.db";
/// The environment variable that may hold the master key (64 hex digits) instead of the file.
pub const MASTER_KEY_ENV: &str = "HOST_VERIFIER_MASTER_KEY";

/// Why the data directory could not be created or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `init` found an existing file it would overwrite.
    #[error("{0} exists: the data directory is already initialised (remove it to start over)")]
    Exists(PathBuf),
    /// A private file is readable by group or others.
    #[error("{path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Key or certificate generation failed.
    #[error("generating {what}: {detail}")]
    Generate {
        /// What.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A file does not hold what it should.
    #[error("{path}: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The master key.
    #[error("master key: {0}")]
    MasterKey(#[from] SecretError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `init` made.
#[derive(Debug, serde::Serialize)]
pub struct InitReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The admin bearer token (shown once; only its hash is stored).
    pub admin_token: String,
    /// The self-signed certificate, for clients to pin (`--ca`).
    pub tls_cert: PathBuf,
    /// The names the certificate is valid for.
    pub tls_names: Vec<String>,
}

pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ConfigError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ConfigError::Exists(path.to_owned())
            } else {
                ConfigError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        })?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, ConfigError> {
    use rand_core::RngCore;
    let mut out = Zeroizing::new([0u8; N]);
    rand_core::OsRng
        .try_fill_bytes(out.as_mut())
        .map_err(|e| ConfigError::Generate {
            what: "randomness",
            detail: e.to_string(),
        })?;
    Ok(out)
}

/// Creates the data directory's keys, certificate and admin token. `names` are the DNS names
/// and IP addresses the certificate covers (`localhost`, `127.0.0.1` and `::1` are added).
pub fn init(data_dir: &Path, names: &[String]) -> Result<InitReport, ConfigError> {
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(data_dir))?;
    for f in [TLS_CERT, TLS_KEY, EAR_KEY, MASTER_KEY, ADMIN_TOKEN_HASH] {
        let p = data_dir.join(f);
        if p.exists() {
            return Err(ConfigError::Exists(p));
        }
    }
    let mut tls_names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !tls_names.contains(n) {
            tls_names.push(n.clone());
        }
    }
    let gen = |what: &'static str| {
        move |e: rcgen::Error| ConfigError::Generate {
            what,
            detail: e.to_string(),
        }
    };
    let tls_key = rcgen::KeyPair::generate().map_err(gen("the TLS key"))?;
    let mut params =
        rcgen::CertificateParams::new(tls_names.clone()).map_err(gen("the TLS certificate"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "svsm-vhsm key broker");
    let cert = params
        .self_signed(&tls_key)
        .map_err(gen("the TLS certificate"))?;
    let ear_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(gen("the EAR signing key"))?;
    let master = MasterKey::generate()?;
    let token = random::<32>()?;
    let token_hex = hex::encode(token.as_ref());

    write_new(
        &data_dir.join(TLS_KEY),
        tls_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&data_dir.join(TLS_CERT), cert.pem().as_bytes(), 0o644)?;
    write_new(
        &data_dir.join(EAR_KEY),
        Zeroizing::new(ear_key.serialize_pem()).as_bytes(),
        0o600,
    )?;
    write_new(
        &data_dir.join(MASTER_KEY),
        master.to_hex().as_bytes(),
        0o600,
    )?;
    let hash = hex::encode(Sha256::digest(token_hex.as_bytes()));
    write_new(&data_dir.join(ADMIN_TOKEN_HASH), hash.as_bytes(), 0o600)?;
    Ok(InitReport {
        data_dir: data_dir.to_owned(),
        admin_token: token_hex,
        tls_cert: data_dir.join(TLS_CERT),
        tls_names,
    })
}

/// Reads a private file, refusing one that group or others can read.
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(Zeroizing::new(std::fs::read(path).map_err(io(path))?))
}

/// The admin token hash from its file.
pub fn read_admin_hash(path: &Path) -> Result<[u8; 32], ConfigError> {
    let text = read_private(path)?;
    let text = std::str::from_utf8(&text).map_err(|_| ConfigError::Malformed {
        path: path.to_owned(),
        detail: "not text".into(),
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| ConfigError::Malformed {
        path: path.to_owned(),
        detail: "not hex".into(),
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ConfigError::Malformed {
        path: path.to_owned(),
        detail: "a SHA-256 is 32 bytes".into(),
    })
}

/// The master key: from [`MASTER_KEY_ENV`] if set, else from the file.
pub fn load_master_key(path: &Path) -> Result<MasterKey, ConfigError> {
    if let Ok(hex_key) = std::env::var(MASTER_KEY_ENV) {
        let hex_key = Zeroizing::new(hex_key);
        return Ok(MasterKey::from_bytes(hex_key.as_bytes())?);
    }
    Ok(MasterKey::from_file(path)?)
}

/// A database URL fit for a log line: the password of its user part and any `password=`
/// parameter masked.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// The SHA-256 an admin token is compared by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_logged_without_passwords() {
        for (url, shown) in [
            (
                "postgres://broker:s3cret@db/broker",
                "postgres://broker:***@db/broker",
            ),
            (
                "postgres://broker:p@ss@db/broker",
                "postgres://broker:***@db/broker",
            ),
            (
                "postgres://broker@db/b?password=x&sslmode=require",
                "postgres://broker@db/b?password=***&sslmode=require",
            ),
            (
                "sqlite:/var/lib/b/broker.db?mode=rwc",
                "sqlite:/var/lib/b/broker.db?mode=rwc",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn init_makes_private_files_once() {
        let dir = std::env::temp_dir().join(format!("broker-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = init(&dir, &["broker.example".into()]).unwrap();
        assert_eq!(r.admin_token.len(), 64);
        assert!(r.tls_names.contains(&"broker.example".to_owned()));
        for f in [TLS_KEY, EAR_KEY, MASTER_KEY, ADMIN_TOKEN_HASH] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert_eq!(
            read_admin_hash(&dir.join(ADMIN_TOKEN_HASH)).unwrap(),
            token_hash(&r.admin_token)
        );
        assert!(load_master_key(&dir.join(MASTER_KEY)).is_ok());
        assert!(matches!(init(&dir, &[]), Err(ConfigError::Exists(_))));
        std::fs::set_permissions(dir.join(EAR_KEY), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(matches!(
            read_private(&dir.join(EAR_KEY)),
            Err(ConfigError::Permissions { mode: 0o644, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
