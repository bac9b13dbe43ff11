//! HTTPS in front of the service: rustls (ring provider, TLS 1.2 and 1.3, ALPN h2 and
//! http/1.1) on a TCP listener, hyper serving each connection. A client that does not finish
//! its TLS handshake or its request head in time is dropped, so slow clients cannot hold
//! connections open; the request timeout and body limit are the service's.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish the TLS handshake, by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A certificate or key file does not read or parse.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The address could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A TLS server configuration from PEM files: a certificate chain (leaf first) and its key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let pem_err = |path: &Path| {
        let path = path.display().to_string();
        move |e: rustls::pki_types::pem::Error| ServerError::Pem {
            path,
            detail: e.to_string(),
        }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    if chain.is_empty() {
        return Err(ServerError::Pem {
            path: cert.display().to_string(),
            detail: "no certificate".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A broker serving on a bound address until [`RunningBroker::shutdown`] (or drop).
pub struct RunningBroker {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningBroker {
    /// Ties a background task (maintenance) to the broker: it is aborted when the broker stops.
    pub fn attach(&mut self, task: tokio::task::JoinHandle<()>) {
        self.background.push(task);
    }

    /// Stops accepting, lets requests in flight finish (at most 5 s), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.background.drain(..) {
            t.abort();
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.background.drain(..) {
            t.abort();
        }
    }
}

/// Binds `addr` and serves `app` over TLS on the current tokio runtime; a client has
/// `handshake_timeout` for its TLS handshake and again for each request head.
pub async fn start(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    handshake_timeout: Duration,
) -> Result<RunningBroker, ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        app,
        stopped,
        handshake_timeout,
    ));
    Ok(RunningBroker {
        addr: bound,
        stop,
        task: Some(task),
        background: Vec::new(),
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stopped: watch::Receiver<bool>,
    handshake_timeout: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(handshake_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
