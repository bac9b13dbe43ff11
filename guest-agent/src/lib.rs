//! `svsm-agent`: the guest side of continuous attestation and of keys on demand (issue 17,
//! `docs/agent.md`). It owns the loop a node runs against the key broker: ask for a challenge,
//! gather an evidence bundle for it (the SVSM's quote of every PCR through the TPM, IMA's list
//! from the entry the broker appraised last, the SNP report over the vTPM manifest), send it as
//! a round, and come back when the broker says; and it provisions keys on demand for the apps
//! of this guest (a local socket, [`guest_driver::agent_socket`]): attest, have the broker
//! release the key wrapped for this boot, instance and VMPL, import it into the vault.
//!
//! What it trusts: the broker's certificate it was given (pinned: the system store is never
//! used), and nothing else it receives — a released package is opened only by the vault in
//! VMPL0, which checks its binding. It holds no secret: keys go from the broker to VMPL0.

#![forbid(unsafe_code)]

use guest_driver::channel::{ChannelArgs, ChannelError};
use guest_driver::evidence::{CharDevice, EvidenceError, GuestLogs, TpmDevice};
use guest_driver::vault::{VaultClient, VaultClientError};
use guest_driver::vtpm::VtpmClient;
use host_verifier::broker::api;
use host_verifier::broker::client::{BrokerClient, ClientError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use svsm_abi::ima::ImaLog;
use svsm_evidence::{Bundle, BundleJson};

/// Where Linux exposes IMA's measurement list.
pub const IMA_LOG: &str = "/sys/kernel/security/ima/binary_runtime_measurements";
/// Where Linux exposes the firmware's TCG event log.
pub const FIRMWARE_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// How long to wait before the next round after one that could not be made.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long a local app may take to send its request on the agent's socket.
const SOCKET_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the agent reaches the TPM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmPath {
    /// A TPM character device (`/dev/tpmrm0`: Linux owns the TPM).
    Device(PathBuf),
    /// The SVSM vTPM protocol over the call channel (no Linux TPM driver).
    Svsm,
}

/// What the agent needs to run.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The SVSM call channel.
    pub channel: ChannelArgs,
    /// The TPM.
    pub tpm: TpmPath,
    /// IMA's binary list (left out when it does not exist).
    pub ima_log: PathBuf,
    /// The firmware's TCG log (left out when `None` or missing).
    pub firmware_log: Option<PathBuf>,
    /// The broker's base URL.
    pub broker: String,
    /// The broker's certificate (PEM): the only one trusted.
    pub ca_pem: Vec<u8>,
    /// The broker policy rounds are attested under.
    pub policy: Option<String>,
}

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The call channel.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// Gathering evidence.
    #[error("evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// The vault.
    #[error("vault: {0}")]
    Vault(#[from] VaultClientError),
    /// The broker.
    #[error("broker: {0}")]
    Broker(#[from] ClientError),
    /// The TPM device.
    #[error("cannot open the TPM device {path}: {error}")]
    TpmOpen {
        /// The device.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The bundle could not be encoded.
    #[error("evidence bundle: {0}")]
    Bundle(String),
    /// A nonce or package from the broker does not decode.
    #[error("the broker's {0} does not decode")]
    Decode(&'static str),
    /// The async runtime for the HTTPS client.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// The local socket.
    #[error("agent socket {path}: {error}")]
    Socket {
        /// The socket.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// A provisioned key.
#[derive(Clone, Debug)]
pub struct Provisioned {
    /// Its id in the vault (of the agent's VMPL).
    pub key: u32,
    /// The broker's answer (kind, owner, instance, public key).
    pub released: api::Released,
}

/// The agent.
pub struct Agent {
    config: AgentConfig,
    client: BrokerClient,
    rt: tokio::runtime::Runtime,
    /// The IMA entry the broker appraised last (where the next bundle's list starts).
    ima_offset: Mutex<u64>,
    /// One operation at a time on the call channel and the TPM.
    turn: Mutex<()>,
}

impl Agent {
    /// An agent for `config`.
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let client = BrokerClient::new(&config.broker, &config.ca_pem)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AgentError::Runtime)?;
        Ok(Agent {
            config,
            client,
            rt,
            ima_offset: Mutex::new(0),
            turn: Mutex::new(()),
        })
    }

    /// The IMA entry the next round's list starts at.
    pub fn ima_offset(&self) -> u64 {
        self.ima_offset.lock().map_or(0, |o| *o)
    }

    /// Starts the next round's list at entry `n` (what a previous agent process was told).
    pub fn set_ima_offset(&self, n: u64) {
        if let Ok(mut o) = self.ima_offset.lock() {
            *o = n;
        }
    }

    fn open_tpm(&self) -> Result<Box<dyn TpmDevice>, AgentError> {
        Ok(match &self.config.tpm {
            TpmPath::Device(path) => Box::new(CharDevice(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|error| AgentError::TpmOpen {
                        path: path.display().to_string(),
                        error,
                    })?,
            )),
            TpmPath::Svsm => Box::new(
                VtpmClient::probe(self.config.channel.open()?)
                    .map_err(|e| AgentError::Evidence(EvidenceError::Driver(e)))?,
            ),
        })
    }

    /// A bundle for `nonce` with IMA's list from entry `from` (from 0 when the list is shorter:
    /// the guest rebooted, the broker will see it), and the offset it was made with.
    fn bundle(&self, nonce: &[u8], from: u64) -> Result<Bundle, AgentError> {
        let mut vault = VaultClient::probe(self.config.channel.open()?)?;
        let mut tpm = self.open_tpm()?;
        let offset = std::cell::Cell::new(0u64);
        let ima_path = self.config.ima_log.clone();
        let firmware_path = self.config.firmware_log.clone();
        let mut bundle =
            guest_driver::evidence::collect(&mut vault, &mut *tpm, nonce, &[], || {
                let firmware = match &firmware_path {
                    Some(p) => guest_driver::evidence::read_optional_log(
                        "firmware log",
                        &p.display().to_string(),
                    )?,
                    None => None,
                };
                let whole = guest_driver::evidence::read_optional_log(
                    "IMA log",
                    &ima_path.display().to_string(),
                )?;
                let ima = whole.map(|list| tail(&list, from, &offset));
                Ok(GuestLogs { firmware, ima })
            })?;
        bundle.ima_offset = offset.get();
        Ok(bundle)
    }

    fn challenge(&self) -> Result<Vec<u8>, AgentError> {
        let ch = self.rt.block_on(self.client.challenge())?;
        hex::decode(ch.nonce).map_err(|_| AgentError::Decode("nonce"))
    }

    /// One round of continuous attestation under the configured policy: returns the broker's
    /// answer (affirming or not) and keeps the IMA offset it gives for the next round.
    pub fn round(&self) -> Result<api::AttestResponse, AgentError> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let nonce = self.challenge()?;
        let bundle = self.bundle(&nonce, self.ima_offset())?;
        let answer = self.rt.block_on(
            self.client
                .attest(bundle_json(&bundle)?, self.config.policy.as_deref()),
        )?;
        if let (Some(r), Ok(mut offset)) = (&answer.round, self.ima_offset.lock()) {
            *offset = r.ima_offset;
        }
        Ok(answer)
    }

    /// Provisions the broker's resource `name` into the vault: attest, release, import.
    pub fn provision(&self, name: &str) -> Result<Provisioned, AgentError> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let nonce = self.challenge()?;
        let bundle = self.bundle(&nonce, self.ima_offset())?;
        let released = self
            .rt
            .block_on(self.client.release(name, bundle_json(&bundle)?))?;
        use base64::Engine;
        let package = base64::engine::general_purpose::STANDARD
            .decode(&released.package)
            .map_err(|_| AgentError::Decode("package"))?;
        let mut vault = VaultClient::probe(self.config.channel.open()?)?;
        let key = vault.import_key(&package)?;
        Ok(Provisioned { key, released })
    }

    /// Serves provisioning requests of local apps on `socket` (a stale socket file is
    /// replaced) in a thread of its own; each request is answered after its release.
    pub fn serve(
        self: &Arc<Self>,
        socket: &Path,
    ) -> Result<std::thread::JoinHandle<()>, AgentError> {
        let err = |error| AgentError::Socket {
            path: socket.display().to_string(),
            error,
        };
        if socket.exists() {
            std::fs::remove_file(socket).map_err(err)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(socket).map_err(err)?;
        let agent = Arc::clone(self);
        Ok(std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // A client that connects and sends nothing must not hold the socket forever.
                let _ = stream.set_read_timeout(Some(SOCKET_READ_TIMEOUT));
                let answer = match guest_driver::agent_socket::read_request(&stream) {
                    Ok(name) => guest_driver::agent_socket::answer(
                        agent
                            .provision(&name)
                            .map(|p| p.key)
                            .map_err(|e| describe(&e)),
                    ),
                    Err(e) => guest_driver::agent_socket::answer(Err(e.to_string())),
                };
                let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
            }
        }))
    }
}

/// An error in words, with the failed checks of a refusal (for an app that asked for a key).
pub fn describe(e: &AgentError) -> String {
    match e {
        AgentError::Broker(c) if !c.failed_checks().is_empty() => {
            let checks: Vec<String> = c
                .failed_checks()
                .iter()
                .map(|f| format!("{}: {}", f.check, f.reason))
                .collect();
            format!("{e} — {}", checks.join("; "))
        }
        _ => e.to_string(),
    }
}

/// The list from entry `from`, recording in `offset` where it really starts.
fn tail(list: &[u8], from: u64, offset: &std::cell::Cell<u64>) -> Vec<u8> {
    let Ok(parsed) = ImaLog::parse(list) else {
        // Sent whole: the broker names what is wrong with it.
        offset.set(0);
        return list.to_vec();
    };
    match usize::try_from(from)
        .ok()
        .and_then(|f| parsed.bytes_from(f))
    {
        Some(rest) => {
            offset.set(from);
            rest.to_vec()
        }
        None => {
            offset.set(0);
            list.to_vec()
        }
    }
}

/// The JSON form of a bundle, as a request carries it.
pub fn bundle_json(bundle: &Bundle) -> Result<BundleJson, AgentError> {
    let text = bundle
        .to_json()
        .map_err(|e| AgentError::Bundle(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| AgentError::Bundle(e.to_string()))
}

/// When to make the next round after `answer`: what the broker said, at most `cap`.
pub fn next_round(
    answer: &Result<api::AttestResponse, AgentError>,
    cap: Option<Duration>,
) -> Duration {
    let wait = match answer {
        Ok(a) => a
            .round
            .as_ref()
            .map_or(RETRY_AFTER, |r| Duration::from_secs(r.next_round_in_s)),
        Err(_) => RETRY_AFTER,
    };
    cap.map_or(wait, |c| wait.min(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_starts_where_the_broker_left_off_or_at_zero() {
        let list = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/ima-binary_runtime_measurements.bin"
        ))
        .unwrap();
        let offset = std::cell::Cell::new(99);
        let rest = tail(&list, 50, &offset);
        assert_eq!((offset.get(), ImaLog::parse(&rest).unwrap().len()), (50, 6));
        // Past the end (the guest rebooted): the whole list, from 0.
        assert_eq!(tail(&list, 500, &offset), list);
        assert_eq!(offset.get(), 0);
        assert_eq!(tail(b"junk", 3, &offset), b"junk");
        assert_eq!(offset.get(), 0);
    }
}
