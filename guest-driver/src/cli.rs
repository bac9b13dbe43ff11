//! `svsm-vault`: the guest app's command line for the vault (and attestation). Every command
//! runs through an [`SvsmTransport`]; the binary uses a [`crate::framed::FramedTransport`] to
//! `svsm-sim tpm-server --guest-port`, and tests call [`run`] with any transport.

use crate::attest::{attest, Scope};
use crate::transport::SvsmTransport;
use crate::vault::{VaultClient, VaultClientError};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::string::{String, ToString};
use std::vec::Vec;
#[allow(unused_imports)]
use std::{boxed::Box, format, vec};
use svsm_abi::vault::{KeyKind, Usage};

/// Use the svsm-vhsm vault from a guest: keys stay inside VMPL0, only results come back.
#[derive(Parser, Debug)]
#[command(name = "svsm-vault", version, about, long_about = None)]
pub struct Cli {
    /// The SVSM call channel.
    #[command(flatten)]
    pub channel: crate::channel::ChannelArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The guest agent's socket: a `name:NAME` key the vault does not hold is provisioned
    /// through it (the agent attests, the broker releases, the vault imports).
    #[arg(long, global = true, default_value = crate::agent_socket::DEFAULT_SOCKET)]
    pub agent: PathBuf,
    /// Reach the vault through this TPM device instead of the call channel (`/dev/tpm0`, or
    /// `/dev/tpmrm0` on kernels whose resource manager passes vendor commands): each request
    /// travels as the vTPM's vendor command through the stock Linux TPM driver
    /// (docs/tpm-vendor-command.md). `mssim:host=H,port=P` reaches a TPM simulator's command
    /// port instead (`svsm-sim tpm-server`). The vault only: `attest` needs the call channel.
    #[arg(long, value_name = "PATH", global = true)]
    pub tpm: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Key kinds on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// ECDSA P-256 / SHA-256.
    P256,
    /// ECDSA P-384 / SHA-384.
    P384,
    /// AES-256-GCM.
    Aes,
    /// HMAC-SHA-384.
    Hmac,
    /// HMAC-SHA-256.
    Hmac256,
    /// ECDH P-384.
    Ecdh,
    /// ECDH P-256.
    Ecdh256,
    /// An opaque 32-byte secret the vault hands back with `reveal` (a disk key).
    Secret,
}

impl Kind {
    fn key_kind(self) -> KeyKind {
        match self {
            Kind::P256 => KeyKind::EcdsaP256,
            Kind::P384 => KeyKind::EcdsaP384,
            Kind::Aes => KeyKind::Aes256Gcm,
            Kind::Hmac => KeyKind::HmacSha384,
            Kind::Hmac256 => KeyKind::HmacSha256,
            Kind::Ecdh => KeyKind::EcdhP384,
            Kind::Ecdh256 => KeyKind::EcdhP256,
            Kind::Secret => KeyKind::Secret256,
        }
    }

    /// The usages a key of this kind gets unless told otherwise.
    fn default_usage(self) -> Usage {
        match self {
            Kind::P256 | Kind::P384 => Usage::SIGN | Usage::VERIFY,
            Kind::Aes => Usage::ENCRYPT | Usage::DECRYPT,
            Kind::Hmac | Kind::Hmac256 => Usage::MAC | Usage::VERIFY,
            Kind::Ecdh | Kind::Ecdh256 => Usage::DERIVE,
            Kind::Secret => Usage::REVEAL,
        }
    }
}

/// A key on the command line: its id (`7`), or `name:NAME` for a key a broker provisioned
/// under that name (resolved with `list`; when the vault does not hold it, `svsm-vault` asks
/// the guest agent to provision it: `--agent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A key id.
    Id(u32),
    /// An imported key's name.
    Name(String),
}

impl core::str::FromStr for KeyRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("name:") {
            if svsm_abi::vault::valid_key_name(name.as_bytes()) {
                return Ok(KeyRef::Name(name.to_string()));
            }
            return Err(std::format!(
                "{name:?} is not a key name (1..64 printable ASCII)"
            ));
        }
        s.parse()
            .map(KeyRef::Id)
            .map_err(|_| std::format!("{s:?} is neither a key id nor name:NAME"))
    }
}

impl core::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyRef::Id(id) => write!(f, "{id}"),
            KeyRef::Name(n) => write!(f, "name:{n}"),
        }
    }
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a key inside the vault; prints its id and public key.
    Create {
        /// Key kind.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Usages (comma separated: sign,verify,encrypt,decrypt,mac,derive); default by kind.
        #[arg(long, value_delimiter = ',')]
        usage: Vec<String>,
        /// A name for it (1..=64 printable ASCII bytes, no spaces; unique among this VMPL's
        /// keys): later commands can say `--key name:NAME`, PKCS#11 shows it as CKA_LABEL.
        #[arg(long)]
        name: Option<String>,
    },
    /// List this VMPL's keys.
    List,
    /// Print a key's public part (SEC1 uncompressed, hex).
    Public {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
    },
    /// Sign a file (ECDSA with the curve's hash); prints r||s hex or writes it to --out.
    Sign {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
        /// File to sign.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the signature.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a signature (or HMAC tag) over a file.
    Verify {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
        /// The signed file.
        #[arg(long = "in")]
        input: PathBuf,
        /// The signature file.
        #[arg(long)]
        sig: PathBuf,
    },
    /// Encrypt a file with AES-256-GCM (output: IV || ciphertext || tag).
    Encrypt {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
        /// Plaintext file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Additional authenticated data.
        #[arg(long, default_value = "")]
        aad: String,
    },
    /// Decrypt a file made by `encrypt`.
    Decrypt {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
        /// Encrypted file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Additional authenticated data.
        #[arg(long, default_value = "")]
        aad: String,
    },
    /// HMAC-SHA-384 of a file (hex).
    Mac {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
        /// Input file.
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Seal a file to this launch (and with --pcrs to the current SHA-256 PCR values).
    Seal {
        /// Input file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// PCR indexes to bind to, e.g. 16,23.
        #[arg(long, value_delimiter = ',')]
        pcrs: Vec<u32>,
        /// Additional authenticated data.
        #[arg(long, default_value = "")]
        aad: String,
    },
    /// Unseal a file made by `seal`.
    Unseal {
        /// Sealed file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Additional authenticated data.
        #[arg(long, default_value = "")]
        aad: String,
    },
    /// Import a key a provider (key broker) wrapped for this boot, instance and VMPL: the import
    /// package file exactly as received (see docs/provisioning.md); prints the new key's id.
    Import {
        /// The package file.
        #[arg(long)]
        package: std::path::PathBuf,
    },
    /// Write a secret's bytes (kind `secret`, usage `reveal`: a disk key the broker released
    /// to this VMPL) to a file made readable by its owner only, or with `--out -` to standard
    /// output, for example `svsm-vault reveal --key name:disk --out - | cryptsetup open
    /// --key-file - /dev/vda data`. Every other kind's secret never leaves the vault.
    Reveal {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
        /// Output file (created with mode 0600; it must not exist), or `-`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Destroy a key.
    Destroy {
        /// Key id, or name:NAME.
        #[arg(long)]
        key: KeyRef,
    },
    /// Get attestation evidence bound to a nonce: writes report.bin, manifest.bin, certs.bin.
    Attest {
        /// The verifier's nonce (hex).
        #[arg(long)]
        nonce: String,
        /// Directory for the three files.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

impl Command {
    /// The key the command works on, if it names one.
    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            Command::Public { key }
            | Command::Sign { key, .. }
            | Command::Verify { key, .. }
            | Command::Encrypt { key, .. }
            | Command::Decrypt { key, .. }
            | Command::Mac { key, .. }
            | Command::Reveal { key, .. }
            | Command::Destroy { key } => Some(key),
            _ => None,
        }
    }
}

/// The id of the caller's key named `name`, if the vault holds one.
pub fn find_named<T: SvsmTransport>(
    vault: &mut VaultClient<T>,
    name: &str,
) -> Result<Option<u32>, CliError> {
    Ok(vault.list()?.iter().find(|k| k.name == name).map(|k| k.id))
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The vault refused or the call failed.
    #[error("{0}")]
    Vault(#[from] VaultClientError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// No key of that name, and it could not be provisioned.
    #[error("the vault holds no key named {name:?}{why}")]
    NoSuchName {
        /// The name.
        name: String,
        /// What was tried (the agent's answer), or empty.
        why: String,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        path: path.clone(),
        source,
    })
}

fn write(path: &PathBuf, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|source| CliError::Io {
        path: path.clone(),
        source,
    })
}

/// Writes a secret to a new file only its owner can read.
fn write_private(path: &PathBuf, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
    file.write_all(bytes).map_err(|source| {
        // Never leave part of a secret behind.
        let _ = std::fs::remove_file(path);
        CliError::Io {
            path: path.clone(),
            source,
        }
    })
}

fn usage_of(names: &[String], kind: Kind) -> Result<Usage, CliError> {
    if names.is_empty() {
        return Ok(kind.default_usage());
    }
    names.iter().try_fold(Usage::empty(), |acc, n| {
        let u = match n.as_str() {
            "sign" => Usage::SIGN,
            "verify" => Usage::VERIFY,
            "encrypt" => Usage::ENCRYPT,
            "decrypt" => Usage::DECRYPT,
            "mac" => Usage::MAC,
            "derive" => Usage::DERIVE,
            "reveal" => Usage::REVEAL,
            other => return Err(CliError::Usage(std::format!("unknown usage {other:?}"))),
        };
        Ok(acc | u)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

/// Runs one command over `transport`; returns what to print (JSON when `json`).
pub fn run<T: SvsmTransport>(cli: &Cli, transport: T) -> Result<String, CliError> {
    let json = |v: serde_json::Value| v.to_string();
    let mut vault = VaultClient::probe(transport)?;
    let key = match cli.command.key() {
        Some(KeyRef::Id(id)) => *id,
        Some(KeyRef::Name(name)) => {
            find_named(&mut vault, name)?.ok_or_else(|| CliError::NoSuchName {
                name: name.clone(),
                why: String::new(),
            })?
        }
        None => 0,
    };
    Ok(match &cli.command {
        Command::Create { kind, usage, name } => {
            let name = name.as_deref().unwrap_or_default().as_bytes();
            if !name.is_empty() && !svsm_abi::vault::valid_key_name(name) {
                return Err(CliError::Usage(
                    "--name must be 1..=64 printable ASCII bytes without spaces".into(),
                ));
            }
            let created = vault.create_named_key(kind.key_kind(), usage_of(usage, *kind)?, name)?;
            if cli.json {
                json(serde_json::json!({"key": created.id, "public": hex(&created.public)}))
            } else {
                std::format!("key {} {}", created.id, hex(&created.public))
            }
        }
        Command::List => {
            let keys = vault.list()?;
            if cli.json {
                json(serde_json::json!(keys
                    .iter()
                    .map(|k| serde_json::json!({"key": k.id, "kind": k.kind, "usage": k.usage, "name": k.name}))
                    .collect::<Vec<_>>()))
            } else {
                keys.iter()
                    .map(|k| {
                        std::format!(
                            "key {} kind {} usage {:#06x} {}",
                            k.id,
                            k.kind,
                            k.usage,
                            k.name
                        )
                        .trim_end()
                        .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Command::Public { .. } => hex(&vault.export_public(key)?),
        Command::Sign { input, out, .. } => {
            let sig = vault.sign(key, &read(input)?)?;
            match out {
                Some(path) => {
                    write(path, &sig)?;
                    std::format!("wrote {} bytes to {}", sig.len(), path.display())
                }
                None => hex(&sig),
            }
        }
        Command::Verify { input, sig, .. } => {
            let ok = vault.verify(key, &read(sig)?, &read(input)?)?;
            if !ok {
                return Err(CliError::Usage("signature does NOT verify".to_string()));
            }
            "signature verifies".to_string()
        }
        Command::Encrypt {
            input, out, aad, ..
        } => {
            let ct = vault.encrypt(key, aad.as_bytes(), &read(input)?)?;
            write(out, &ct)?;
            std::format!("wrote {} bytes to {}", ct.len(), out.display())
        }
        Command::Decrypt {
            input, out, aad, ..
        } => {
            let pt = vault.decrypt(key, aad.as_bytes(), &read(input)?)?;
            write(out, &pt)?;
            std::format!("wrote {} bytes to {}", pt.len(), out.display())
        }
        Command::Mac { input, .. } => hex(&vault.mac(key, &read(input)?)?),
        Command::Seal {
            input,
            out,
            pcrs,
            aad,
        } => {
            let mut mask = 0u32;
            for &p in pcrs {
                if p > 23 {
                    return Err(CliError::Usage(std::format!("PCR {p} is not 0..23")));
                }
                mask |= 1 << p;
            }
            let blob = vault.seal((mask != 0).then_some(mask), aad.as_bytes(), &read(input)?)?;
            write(out, &blob)?;
            std::format!("wrote {} bytes to {}", blob.len(), out.display())
        }
        Command::Unseal { input, out, aad } => {
            let data = vault.unseal(aad.as_bytes(), &read(input)?)?;
            write(out, &data)?;
            std::format!("wrote {} bytes to {}", data.len(), out.display())
        }
        Command::Import { package } => {
            let id = vault.import_key(&read(package)?)?;
            if cli.json {
                json(serde_json::json!({ "key": id }))
            } else {
                std::format!("imported key {id}")
            }
        }
        Command::Reveal { out, .. } => {
            let secret = vault.reveal_secret(key)?;
            if out.as_os_str() == "-" {
                // Unbuffered: the standard output's buffer would keep a copy of the secret.
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/proc/self/fd/1")
                    .and_then(|mut f| f.write_all(&secret))
                    .map_err(|source| CliError::Io {
                        path: out.clone(),
                        source,
                    })?;
                String::new()
            } else {
                write_private(out, &secret)?;
                std::format!("wrote {} bytes to {}", secret.len(), out.display())
            }
        }
        Command::Destroy { .. } => {
            vault.destroy(key)?;
            std::format!("destroyed key {key}")
        }
        Command::Attest { nonce, out_dir } => {
            let nonce = (0..nonce.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(nonce.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| CliError::Usage("--nonce must be hex".to_string()))?;
            let e = attest(vault.transport_mut(), Scope::AllServices, &nonce, true)
                .map_err(VaultClientError::from)?;
            std::fs::create_dir_all(out_dir).map_err(|source| CliError::Io {
                path: out_dir.clone(),
                source,
            })?;
            write(&out_dir.join("report.bin"), &e.report)?;
            write(&out_dir.join("manifest.bin"), &e.manifest)?;
            write(&out_dir.join("certs.bin"), &e.certs)?;
            std::format!(
                "wrote report.bin, manifest.bin, certs.bin to {}",
                out_dir.display()
            )
        }
    })
}
