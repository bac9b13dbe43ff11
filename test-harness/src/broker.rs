//! The key broker on the test bed: a broker service (`host_verifier::broker`) started in this
//! process over HTTPS on loopback, with a fresh data directory (`broker init`), trusting the
//! simulated PSP's TEST chain, on SQLite or on a PostgreSQL URL. The demo and the broker tests
//! use it; replicas share one data directory and database.

use host_verifier::broker::client::BrokerClient;
use host_verifier::broker::server::RunningBroker;
use host_verifier::broker::{config, ServeOptions, StartError};
use host_verifier::TrustStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use svsm_evidence::{Bundle, BundleJson};

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerHarnessError {
    /// The data directory.
    #[error("broker init: {0}")]
    Init(#[from] config::ConfigError),
    /// The service.
    #[error("broker start: {0}")]
    Start(#[from] StartError),
    /// The client.
    #[error("broker client: {0}")]
    Client(#[from] host_verifier::broker::client::ClientError),
    /// The runtime or a file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The simulated chain's roots.
    #[error("TEST roots: {0}")]
    Trust(#[from] host_verifier::trust::TrustError),
}

/// A data directory made by `broker init`, removed on drop.
pub struct DataDir {
    /// Its path.
    pub path: PathBuf,
    /// The admin token `init` printed.
    pub admin_token: String,
    /// The broker's self-signed certificate (what clients pin).
    pub ca_pem: Vec<u8>,
}

impl DataDir {
    /// A fresh data directory under the system temp dir.
    pub fn init(tag: &str) -> Result<DataDir, BrokerHarnessError> {
        DataDir::init_with_names(tag, &[])
    }

    /// A fresh data directory whose certificate also names `names` (an address a guest
    /// reaches the broker at).
    pub fn init_with_names(tag: &str, names: &[String]) -> Result<DataDir, BrokerHarnessError> {
        let path = std::env::temp_dir().join(format!(
            "svsm-broker-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let report = config::init(&path, names)?;
        let ca_pem = std::fs::read(&report.tls_cert)?;
        Ok(DataDir {
            path,
            admin_token: report.admin_token,
            ca_pem,
        })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The simulated PSP's TEST roots for every product (what `--trust-ark/--trust-ask` give the
/// command-line broker).
pub fn sim_trust() -> Result<Arc<TrustStore>, BrokerHarnessError> {
    let psp = crate::sim::psp::SimPsp::new(
        crate::sim::psp::LaunchConfig::genoa([0; 48]),
        crate::sim::DEFAULT_CHIP_SEED,
        svsm_core::platform::Vmpl::ZERO,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let chain = psp.chain().clone();
    Ok(Arc::new(TrustStore::custom(
        &chain.ark_der,
        &chain.ask_der,
        None,
    )?))
}

/// A tokio runtime for brokers and clients in a synchronous test or the demo.
pub fn runtime() -> Result<tokio::runtime::Runtime, BrokerHarnessError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A broker replica serving in this process.
pub struct LocalBroker {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its database URL.
    pub database: String,
    running: Option<RunningBroker>,
}

impl LocalBroker {
    /// Starts a replica on `rt` for `data_dir` on `database` (None: SQLite in the data
    /// directory), trusting `trust`, with nonces valid `nonce_ttl`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        data_dir: &Path,
        database: Option<String>,
        trust: Arc<TrustStore>,
        nonce_ttl: Duration,
    ) -> Result<LocalBroker, BrokerHarnessError> {
        Self::start_configured(rt, data_dir, database, trust, |o| o.nonce_ttl = nonce_ttl)
    }

    /// Starts a replica whose options `configure` adjusts (a CRL, a shorter request timeout).
    pub fn start_configured(
        rt: &tokio::runtime::Runtime,
        data_dir: &Path,
        database: Option<String>,
        trust: Arc<TrustStore>,
        configure: impl FnOnce(&mut ServeOptions),
    ) -> Result<LocalBroker, BrokerHarnessError> {
        let mut options = ServeOptions::new(data_dir.to_owned(), trust);
        options.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        options.database = database;
        configure(&mut options);
        let database = options.database_url();
        let running = rt.block_on(host_verifier::broker::start(&options))?;
        Ok(LocalBroker {
            url: format!("https://{}", running.addr),
            database,
            running: Some(running),
        })
    }

    /// A client of this replica trusting `dir`'s certificate, with its admin token.
    pub fn client(&self, dir: &DataDir) -> Result<BrokerClient, BrokerHarnessError> {
        Ok(BrokerClient::new(&self.url, &dir.ca_pem)?.with_admin_token(&dir.admin_token))
    }

    /// Stops the replica (requests in flight finish).
    pub fn stop(mut self, rt: &tokio::runtime::Runtime) {
        if let Some(r) = self.running.take() {
            rt.block_on(r.shutdown());
        }
    }
}

/// The JSON form of a bundle, as a request carries it.
pub fn bundle_json(bundle: &Bundle) -> Result<BundleJson, BrokerHarnessError> {
    let text = bundle
        .to_json()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| BrokerHarnessError::Io(std::io::Error::other(e)))
}

/// The MEASUREMENT the simulated node launches with.
pub const NODE_MEASUREMENT: [u8; 48] = [0x5a; 48];
const NODE_FIRMWARE: &[u8] = b"node firmware";
const NODE_KERNEL: &[u8] = b"node kernel";
const NODE_INITRD: &[u8] = b"node initrd";
const NODE_CMDLINE: &[u8] = b"console=ttyS0\0";

/// A simulated node: a machine launched with [`NODE_MEASUREMENT`] whose SVSM measured a fixed
/// firmware, kernel, initrd and command line, and an app at VMPL1 that attests.
pub struct SimNode {
    /// The machine.
    pub machine: crate::sim::SimMachine,
    /// What its kernel's IMA measured this boot (empty until [`SimNode::ima_start`]).
    ima: std::sync::Mutex<Vec<u8>>,
}

fn sim_err(e: impl std::fmt::Display) -> BrokerHarnessError {
    BrokerHarnessError::Io(std::io::Error::other(e.to_string()))
}

/// VMPL1: the app that asks for keys.
pub fn app_vmpl() -> svsm_core::platform::Vmpl {
    svsm_core::platform::Vmpl::new(1).unwrap_or(svsm_core::platform::Vmpl::ZERO)
}

impl SimNode {
    /// Launches a node on `store` (a reboot when it holds sealed state) or on a fresh one.
    pub fn launch(
        store: Option<crate::sim::store::SimStore>,
    ) -> Result<SimNode, BrokerHarnessError> {
        use svsm_core::measure::{Component, ComponentKind};
        let config = crate::sim::psp::LaunchConfig::genoa(NODE_MEASUREMENT);
        let machine = match store {
            Some(s) => {
                crate::sim::SimMachine::boot(config, crate::sim::store::AnyStore::Memory(s), None)
            }
            None => crate::sim::SimMachine::new(config),
        }
        .map_err(sim_err)?;
        let components = [
            (ComponentKind::Firmware, NODE_FIRMWARE),
            (ComponentKind::Kernel, NODE_KERNEL),
            (ComponentKind::Initrd, NODE_INITRD),
            (ComponentKind::CommandLine, NODE_CMDLINE),
        ];
        machine
            .module()
            .measure_launch(&components.map(|(kind, bytes)| Component { kind, bytes }))
            .map_err(sim_err)?;
        Ok(SimNode {
            machine,
            ima: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Starts the node's simulated kernel IMA as Linux does at boot: the first entry is the
    /// `boot_aggregate`, SHA-256 of PCRs 0-9 as the vTPM holds them, extended into PCR 10.
    pub fn ima_start(&self) -> Result<(), BrokerHarnessError> {
        use sha2::Digest;
        let mut tpm = guest_driver::vtpm::VtpmClient::probe(self.machine.transport(app_vmpl()))
            .map_err(sim_err)?;
        let pcrs = guest_driver::evidence::read_pcrs(&mut tpm, 0x3FF).map_err(sim_err)?;
        let values = pcrs.get(..10).unwrap_or_default();
        let aggregate: [u8; 32] = values
            .iter()
            .fold(sha2::Sha256::new(), |h, v| h.chain_update(v))
            .finalize()
            .into();
        self.ima_extend("boot_aggregate", aggregate)
    }

    /// The simulated kernel measures a file it executes: appends an `ima-ng` entry and extends
    /// PCR 10 of the vTPM with it.
    pub fn ima_measure(&self, path: &str, content: &[u8]) -> Result<(), BrokerHarnessError> {
        use sha2::Digest;
        self.ima_extend(path, sha2::Sha256::digest(content).into())
    }

    fn ima_extend(&self, path: &str, file_digest: [u8; 32]) -> Result<(), BrokerHarnessError> {
        let spec = host_verifier::measured::encode::EntrySpec {
            path,
            file_digest: Some(file_digest),
            signature: None,
        };
        let mut tpm = guest_driver::vtpm::VtpmClient::probe(self.machine.transport(app_vmpl()))
            .map_err(sim_err)?;
        let mut response = vec![0u8; guest_driver::evidence::TPM_RESPONSE_MAX];
        let command = svsm_tpm2::command::pcr_extend_sha256(10, &spec.sha256_template_digest())
            .map_err(sim_err)?;
        guest_driver::evidence::run_tpm(&mut tpm, "PCR_Extend", &command, &mut response)
            .map_err(sim_err)?;
        let mut log = self.ima.lock().map_err(|_| sim_err("IMA log lock"))?;
        spec.write_binary(&mut log);
        Ok(())
    }

    /// The node's IMA list so far (binary_runtime_measurements).
    pub fn ima_list(&self) -> Result<Vec<u8>, BrokerHarnessError> {
        Ok(self
            .ima
            .lock()
            .map_err(|_| sim_err("IMA log lock"))?
            .clone())
    }

    /// A bundle for `nonce` carrying the node's IMA entries from `first` on, as an agent sends
    /// them in a round of continuous attestation.
    pub fn bundle_with_ima(&self, nonce: &[u8], first: u64) -> Result<Bundle, BrokerHarnessError> {
        let list = self.ima_list()?;
        let parsed = svsm_abi::ima::ImaLog::parse(&list).map_err(sim_err)?;
        let from = usize::try_from(first).map_err(sim_err)?;
        let tail = parsed
            .bytes_from(from)
            .ok_or_else(|| sim_err("the IMA list has fewer entries"))?
            .to_vec();
        let mut vault = guest_driver::vault::VaultClient::probe(self.machine.transport(app_vmpl()))
            .map_err(sim_err)?;
        let mut tpm = guest_driver::vtpm::VtpmClient::probe(self.machine.transport(app_vmpl()))
            .map_err(sim_err)?;
        let mut bundle = guest_driver::evidence::collect(&mut vault, &mut tpm, nonce, &[], || {
            Ok(guest_driver::evidence::GuestLogs {
                firmware: None,
                ima: Some(tail),
            })
        })
        .map_err(sim_err)?;
        bundle.ima_offset = first;
        Ok(bundle)
    }

    /// The node's evidence bundle for `nonce`, asked for by the app at VMPL1.
    pub fn bundle(&self, nonce: &[u8]) -> Result<Bundle, BrokerHarnessError> {
        crate::evidence::collect(
            self.machine.transport(app_vmpl()),
            self.machine.transport(app_vmpl()),
            nonce,
            &[],
        )
        .map_err(sim_err)
    }

    /// The release policy of the node's reference values: its MEASUREMENT, the PCRs its
    /// files give, the app's VMPL.
    pub fn policy() -> host_verifier::broker::policy::PolicyDocument {
        use svsm_core::measure::ComponentKind;
        let pcrs = host_verifier::reference::launch_pcrs(&[
            (ComponentKind::Firmware, NODE_FIRMWARE),
            (ComponentKind::Kernel, NODE_KERNEL),
            (ComponentKind::Initrd, NODE_INITRD),
            (ComponentKind::CommandLine, NODE_CMDLINE),
        ]);
        let mut snp = serde_json::Map::new();
        snp.insert(
            "measurements".into(),
            serde_json::json!([hex::encode(NODE_MEASUREMENT)]),
        );
        host_verifier::broker::policy::PolicyDocument {
            snp,
            reference_pcrs: pcrs
                .iter()
                .map(|(i, v)| (i.to_string(), hex::encode(v)))
                .collect(),
            requester_vmpl: Some(1),
            min_epoch: None,
            ..Default::default()
        }
    }
}

/// The simulated PSP's TEST ARK and ASK as DER files in `dir`, for `serve --trust-ark/--trust-ask`.
pub fn write_sim_roots(dir: &Path) -> Result<(PathBuf, PathBuf), BrokerHarnessError> {
    let psp = crate::sim::psp::SimPsp::new(
        crate::sim::psp::LaunchConfig::genoa([0; 48]),
        crate::sim::DEFAULT_CHIP_SEED,
        svsm_core::platform::Vmpl::ZERO,
    )
    .map_err(sim_err)?;
    let (ark, ask) = (dir.join("test-ark.der"), dir.join("test-ask.der"));
    std::fs::write(&ark, &psp.chain().ark_der)?;
    std::fs::write(&ask, &psp.chain().ask_der)?;
    Ok((ark, ask))
}

/// A `host-verifier serve` process (tied to this process: it dies with it).
pub struct ServeProcess {
    /// The process.
    pub child: svsm_process::Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl ServeProcess {
    /// Starts `bin serve` for `data_dir` on `database`, trusting the simulated roots, on a free
    /// loopback port; returns once it listens. `extra` are more `serve` options.
    pub fn spawn(
        bin: &Path,
        data_dir: &Path,
        database: &str,
        extra: &[&str],
    ) -> Result<ServeProcess, BrokerHarnessError> {
        use std::io::BufRead;
        let (ark, ask) = write_sim_roots(data_dir)?;
        let log = data_dir.join(format!("serve-{}.log", rand::random::<u32>()));
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--database", database])
            .arg("--trust-ark")
            .arg(&ark)
            .arg("--trust-ask")
            .arg(&ask)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        let mut child = svsm_process::spawn(&mut cmd).map_err(sim_err)?;
        let stdout = child
            .inner_mut()
            .stdout
            .take()
            .ok_or_else(|| sim_err("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the broker never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| {
            sim_err(format!(
                "host-verifier serve did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        })?;
        let url = line
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("https://"))
            .ok_or_else(|| sim_err(format!("unexpected first line {line:?}")))?
            .to_owned();
        Ok(ServeProcess { child, url, log })
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Answered 200.
    pub released: usize,
    /// Answered 403.
    pub refused: usize,
    /// Answered 503 (the database was unreachable).
    pub unavailable: usize,
    /// Transport errors and other answers.
    pub errors: usize,
    /// Latency of every 200.
    pub latencies: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The nonce (hex) of every 200, in answer order.
    pub released_nonces: Vec<String>,
    /// The reasons of 403s.
    pub refusals: Vec<String>,
}

impl LoadReport {
    /// Releases per second.
    pub fn rate(&self) -> f64 {
        self.released as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (0..=100) of release latency.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
}

/// How a load run treats failures.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Retry a bundle answered 503 (after 100 ms) until this deadline passes.
    pub retry_unavailable_for: Option<Duration>,
    /// On a transport error, move to the next replica and retry the bundle there.
    pub failover: bool,
}

/// Releases `resource` once per bundle with `options.concurrency` clients spread over the
/// replicas `clients`. `done` counts answered bundles as the run goes.
pub async fn release_load(
    clients: Vec<BrokerClient>,
    resource: &str,
    bundles: Vec<BundleJson>,
    options: LoadOptions,
    done: Arc<std::sync::atomic::AtomicUsize>,
) -> LoadReport {
    use host_verifier::broker::client::ClientError;
    use std::sync::atomic::Ordering;
    let queue = Arc::new(std::sync::Mutex::new(
        bundles
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let report = Arc::new(std::sync::Mutex::new(LoadReport::default()));
    let start = std::time::Instant::now();
    let mut workers = Vec::new();
    for w in 0..options.concurrency.max(1) {
        let queue = queue.clone();
        let report = report.clone();
        let clients = clients.clone();
        let resource = resource.to_owned();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut replica = w % clients.len().max(1);
            loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(bundle) = next else { break };
                let nonce = hex::encode(
                    base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        &bundle.nonce,
                    )
                    .unwrap_or_default(),
                );
                let first = std::time::Instant::now();
                while let Some(client) = clients.get(replica) {
                    let t = std::time::Instant::now();
                    let answer = client.release(&resource, bundle.clone()).await;
                    let latency = t.elapsed();
                    let retry = {
                        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                        match answer {
                            Ok(_) => {
                                r.released += 1;
                                r.latencies.push(latency);
                                r.released_nonces.push(nonce.clone());
                                false
                            }
                            Err(e @ ClientError::Api { status: 403, .. }) => {
                                r.refused += 1;
                                r.refusals.push(
                                    e.failed_checks()
                                        .iter()
                                        .map(|f| format!("{}: {}", f.check, f.reason))
                                        .collect::<Vec<_>>()
                                        .join("; "),
                                );
                                false
                            }
                            Err(ClientError::Api { status: 503, .. }) => {
                                r.unavailable += 1;
                                options
                                    .retry_unavailable_for
                                    .is_some_and(|d| first.elapsed() < d)
                            }
                            Err(ClientError::Http(_)) if options.failover && clients.len() > 1 => {
                                r.errors += 1;
                                replica = (replica + 1) % clients.len();
                                first.elapsed() < Duration::from_secs(60)
                            }
                            Err(_) => {
                                r.errors += 1;
                                false
                            }
                        }
                    };
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut r = std::mem::take(&mut *report.lock().unwrap_or_else(|p| p.into_inner()));
    r.elapsed = start.elapsed();
    r
}

/// `count` challenges spread over `clients`, then a bundle from `node` for each nonce.
pub fn challenged_bundles(
    rt: &tokio::runtime::Runtime,
    clients: &[BrokerClient],
    node: &SimNode,
    count: usize,
) -> Result<Vec<BundleJson>, BrokerHarnessError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let client = &clients[i % clients.len().max(1)];
        let ch = rt.block_on(client.challenge())?;
        let nonce = hex::decode(&ch.nonce).map_err(sim_err)?;
        out.push(bundle_json(&node.bundle(&nonce)?)?);
    }
    Ok(out)
}
