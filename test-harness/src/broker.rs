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
