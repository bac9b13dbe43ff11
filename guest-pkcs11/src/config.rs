//! Where the module finds the vault: read from the environment at `C_Initialize`.
//!
//! - `SVSM_VAULT_TPM=PATH`: the TPM vendor command through a TPM device (`/dev/tpmrm0`,
//!   `/dev/tpm0`), or `mssim:host=H,port=P` for a TPM simulator's command port on a host.
//! - `SVSM_VAULT_CONNECT=HOST:PORT` or `SVSM_VAULT_DEVICE=PATH`: the SVSM call channel
//!   (`svsm-sim tpm-server --guest-port`, or its serial line in a guest), at
//!   `SVSM_VAULT_VMPL` (default 1).
//! - Nothing set: `/dev/tpmrm0`, and `/dev/tpm0` when the kernel's resource manager refuses
//!   vendor commands (Linux before 6.4 masks the vendor bit: docs/tpm-vendor-command.md).

use guest_driver::channel::{ChannelArgs, VaultTransport};
use guest_driver::tpm_vault::{TpmDevice, TpmVaultTransport};
use guest_driver::vault::{VaultClient, VaultClientError};
use std::path::PathBuf;

/// Why the vault could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is malformed.
    #[error("{name}: {why}")]
    Setting {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The channel or device could not be opened.
    #[error("{0}")]
    Open(String),
    /// It opened but no vault answered.
    #[error("no vault at {at}: {error}")]
    NoVault {
        /// Where.
        at: String,
        /// Why.
        error: VaultClientError,
    },
}

/// Where the vault is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A TPM device or simulator (`SVSM_VAULT_TPM`); `fallback` is tried when the first
    /// refuses vendor commands.
    Tpm {
        /// What to open.
        spec: String,
        /// Tried next.
        fallback: Option<String>,
    },
    /// The SVSM call channel.
    Channel {
        /// TCP address.
        connect: Option<String>,
        /// Character device.
        device: Option<PathBuf>,
        /// The VMPL.
        vmpl: u8,
    },
}

impl Endpoint {
    /// The endpoint the environment names.
    pub fn from_env() -> Result<Endpoint, ConfigError> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tpm = var("SVSM_VAULT_TPM");
        let connect = var("SVSM_VAULT_CONNECT");
        let device = var("SVSM_VAULT_DEVICE").map(PathBuf::from);
        if tpm.is_some() && (connect.is_some() || device.is_some()) {
            return Err(ConfigError::Setting {
                name: "SVSM_VAULT_TPM",
                why: "set either the TPM or the call channel, not both".into(),
            });
        }
        if let Some(spec) = tpm {
            return Ok(Endpoint::Tpm {
                spec,
                fallback: None,
            });
        }
        if connect.is_some() || device.is_some() {
            let vmpl = match var("SVSM_VAULT_VMPL") {
                None => 1,
                Some(v) => v.parse::<u8>().ok().filter(|v| *v <= 3).ok_or_else(|| {
                    ConfigError::Setting {
                        name: "SVSM_VAULT_VMPL",
                        why: format!("`{v}` is not a VMPL (0..=3)"),
                    }
                })?,
            };
            return Ok(Endpoint::Channel {
                connect,
                device,
                vmpl,
            });
        }
        Ok(Endpoint::Tpm {
            spec: "/dev/tpmrm0".into(),
            fallback: Some("/dev/tpm0".into()),
        })
    }

    /// Opens the vault; returns it with a description of the way to it.
    pub fn open(&self) -> Result<(VaultClient<VaultTransport>, String), ConfigError> {
        match self {
            Endpoint::Tpm { spec, fallback } => match (open_tpm(spec), fallback) {
                (Ok(v), _) => Ok((v, format!("SVSM vault via {spec}"))),
                // Both failures are reported: the first is usually the one to fix.
                (Err(first), Some(next)) => match open_tpm(next) {
                    Ok(v) => Ok((v, format!("SVSM vault via {next}"))),
                    Err(second) => Err(ConfigError::Open(format!("{first}; then {second}"))),
                },
                (Err(e), None) => Err(e),
            },
            Endpoint::Channel {
                connect,
                device,
                vmpl,
            } => {
                let args = ChannelArgs {
                    connect: connect.clone().unwrap_or_default(),
                    device: device.clone(),
                    buffer_pages: 40,
                    vmpl: *vmpl,
                };
                let at = match device {
                    Some(d) => d.display().to_string(),
                    None => args.connect.clone(),
                };
                let transport = args
                    .open_vault(None)
                    .map_err(|e| ConfigError::Open(e.to_string()))?;
                let vault =
                    VaultClient::probe(transport).map_err(|error| ConfigError::NoVault {
                        at: at.clone(),
                        error,
                    })?;
                Ok((
                    vault,
                    format!("SVSM vault via call channel {at} (VMPL{vmpl})"),
                ))
            }
        }
    }
}

/// Opens the vault through a TPM and checks that a vault request gets through (a resource
/// manager may list the vendor command yet refuse to send it).
fn open_tpm(spec: &str) -> Result<VaultClient<VaultTransport>, ConfigError> {
    let device = TpmDevice::open_spec(spec)
        .map_err(|e| ConfigError::Open(format!("cannot open the TPM {spec}: {e}")))?;
    let mut vault = VaultClient::probe(VaultTransport::Tpm(TpmVaultTransport::new(device)))
        .map_err(|error| ConfigError::NoVault {
            at: spec.into(),
            error,
        })?;
    vault
        .random(&mut [0u8; 1])
        .map_err(|error| ConfigError::NoVault {
            at: spec.into(),
            error,
        })?;
    Ok(vault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fallback_reports_both_devices() {
        let e = Endpoint::Tpm {
            spec: "/nonexistent/tpmrm0".into(),
            fallback: Some("/nonexistent/tpm0".into()),
        };
        match e.open() {
            Ok(_) => panic!("opened a missing device"),
            Err(err) => {
                let text = err.to_string();
                assert!(
                    text.contains("/nonexistent/tpmrm0") && text.contains("/nonexistent/tpm0"),
                    "{text}"
                );
            }
        }
    }
}
