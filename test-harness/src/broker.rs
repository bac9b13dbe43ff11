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
        let path = std::env::temp_dir().join(format!(
            "svsm-broker-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let report = config::init(&path, &[])?;
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
        let mut options = ServeOptions::new(data_dir.to_owned(), trust);
        options.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        options.database = database;
        options.nonce_ttl = nonce_ttl;
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
        Ok(SimNode { machine })
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
        }
    }
}
