//! Starting a broker replica: the data directory, the database, the service and TLS together.

use super::{config, server, service, store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` needs besides the data directory's files.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The data directory (`host-verifier broker init`).
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database URL (default: SQLite `broker.db` in the data directory).
    pub database: Option<String>,
    /// Connections to the database (PostgreSQL; SQLite uses one writer).
    pub max_connections: u32,
    /// The TLS certificate chain (default `tls-cert.pem` in the data directory).
    pub tls_cert: Option<PathBuf>,
    /// The TLS key (default `tls-key.pem` in the data directory).
    pub tls_key: Option<PathBuf>,
    /// The roots SNP reports must chain to.
    pub trust: Arc<crate::TrustStore>,
    /// How long a nonce lives.
    pub nonce_ttl: Duration,
    /// Largest request body.
    pub max_body: usize,
    /// The longest a request may take.
    pub request_timeout: Duration,
    /// The longest a TLS handshake, or a request head, may take.
    pub handshake_timeout: Duration,
    /// A DER CRL from AMD's KDS (`/vcek/v1/<Product>/crl`): revoked certificates are refused.
    pub crl: Option<PathBuf>,
    /// How often overdue rounds of continuous attestation are looked for.
    pub round_sweep: Duration,
}

impl ServeOptions {
    /// Defaults: 127.0.0.1:8443, SQLite in the data directory, 16 database connections,
    /// nonces valid 300 s, bodies up to 12 MiB (an evidence bundle with logs), 30 s per
    /// request, 10 s for a TLS handshake or a request head, missed rounds looked for every
    /// 10 s.
    pub fn new(data_dir: PathBuf, trust: Arc<crate::TrustStore>) -> ServeOptions {
        ServeOptions {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            database: None,
            max_connections: 16,
            tls_cert: None,
            tls_key: None,
            trust,
            nonce_ttl: Duration::from_secs(300),
            max_body: 12 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            handshake_timeout: server::HANDSHAKE_TIMEOUT,
            crl: None,
            round_sweep: Duration::from_secs(10),
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite:{}?mode=rwc",
                self.data_dir.join(config::SQLITE_FILE).display()
            )
        })
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The database.
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    /// The service.
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    /// TLS or the listener.
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

/// Opens the database (migrating it), reads the data directory and starts serving on the
/// current tokio runtime.
pub async fn start(options: &ServeOptions) -> Result<server::RunningBroker, StartError> {
    let dir = &options.data_dir;
    let master_key = config::load_master_key(&dir.join(config::MASTER_KEY))?;
    let ear_key_pem = config::read_private(&dir.join(config::EAR_KEY))?;
    let admin_token_sha256 = config::read_admin_hash(&dir.join(config::ADMIN_TOKEN_HASH))?;
    let tls_key = match &options.tls_key {
        Some(k) => k.clone(),
        None => {
            // The data directory's key is held to the same mode as the other private files;
            // a key given by path is the operator's to protect (e.g. group ssl-cert).
            let k = dir.join(config::TLS_KEY);
            config::read_private(&k)?;
            k
        }
    };
    let tls = server::tls_config(
        &options
            .tls_cert
            .clone()
            .unwrap_or_else(|| dir.join(config::TLS_CERT)),
        &tls_key,
    )?;
    let crl = options
        .crl
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|source| config::ConfigError::Io {
                path: p.clone(),
                source,
            })
        })
        .transpose()?;
    let store = store::Store::open(&options.database_url(), options.max_connections).await?;
    let pruner = tokio::spawn(prune_nonces(store.clone()));
    let service = service::build(service::ServiceConfig {
        store,
        master_key,
        ear_key_pem,
        admin_token_sha256,
        trust: options.trust.clone(),
        nonce_ttl: options.nonce_ttl,
        max_body: options.max_body,
        request_timeout: options.request_timeout,
        crl,
        round_sweep: options.round_sweep,
        ak_ca: std::sync::Arc::new(super::ak::AkCa::load_or_create(dir)?),
    })?;
    let sweeper = tokio::spawn(service.sweeper);
    let mut running = server::start(
        options.listen,
        tls,
        service.router,
        options.handshake_timeout,
    )
    .await?;
    running.attach(pruner);
    running.attach(sweeper);
    Ok(running)
}

/// How often expired nonces are deleted, and how long after expiry (a redeemed or expired
/// nonce is refused either way; a deleted one is refused as unknown).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_AFTER: i64 = 3600;

async fn prune_nonces(store: store::Store) {
    loop {
        tokio::time::sleep(PRUNE_EVERY).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        match store.prune_nonces(now.saturating_sub(PRUNE_AFTER)).await {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "expired nonces deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning nonces failed"),
        }
    }
}
