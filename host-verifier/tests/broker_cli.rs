//! `host-verifier broker init` and `host-verifier serve` as an operator runs them: a first run
//! on the embedded SQLite default, clear refusals (an existing data directory, a key readable by
//! others, a database URL of another engine), slow clients cut off (a TLS handshake that never
//! comes, a body that stops), JSON errors for unknown paths and bad queries, and a clean stop
//! on SIGTERM.

#![cfg(feature = "broker")]

use host_verifier::broker::client::BrokerClient;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_host-verifier")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("svsm-broker-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn init(dir: &Path) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["broker", "init", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `serve`; returns the process and its URL.
fn serve(dir: &Path, extra: &[&str]) -> (svsm_process::Child, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = svsm_process::spawn(&mut cmd).unwrap();
    let stdout = child.inner_mut().stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{line:?}");
    (child, url)
}

#[test]
fn a_first_run_serves_on_sqlite_refuses_what_it_must_and_stops_cleanly() {
    let dir = scratch("first");
    let report = init(&dir);
    let token = report["admin_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);

    // A second init refuses to overwrite.
    let again = Command::new(bin())
        .args(["broker", "init", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));

    // Another engine's URL.
    let bad = Command::new(bin())
        .args([
            "serve",
            "--database",
            "mysql://admin:hunter2@x/y",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("must start with sqlite: or postgres:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is echoed: {stderr}"
    );

    // A CRL that cannot be read stops the start, naming the file.
    let no_crl = Command::new(bin())
        .args(["serve", "--crl", "/nonexistent/vcek.crl", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(no_crl.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_crl.stderr);
    assert!(stderr.contains("/nonexistent/vcek.crl"), "{stderr}");

    // A private key others can read: the EAR signing key, the TLS key.
    for name in ["ear-key.pem", "tls-key.pem"] {
        let key = dir.join(name);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = Command::new(bin())
            .args(["serve", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(open.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&open.stderr);
        assert!(
            stderr.contains("readable by group or others"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(name), "{stderr}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // The first start creates and migrates the SQLite database in the data directory.
    let (mut child, url) = serve(
        &dir,
        &["--request-timeout", "2", "--handshake-timeout", "2"],
    );
    assert!(dir.join("broker.db").is_file());
    let ca = std::fs::read(dir.join("tls-cert.pem")).unwrap();
    let client = BrokerClient::new(&url, &ca)
        .unwrap()
        .with_admin_token(&token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let get = |path: &str| {
            let c = client.clone();
            let path = path.to_owned();
            async move { c.http().get(c.url(&path)).send().await.unwrap() }
        };
        assert_eq!(get("/healthz").await.status().as_u16(), 200);
        let key = client.ear_key().await.unwrap();
        assert_eq!(key.alg, "ES256");
        assert_eq!(key.jwk["crv"], "P-256");
        let missing = get("/v2/release").await;
        assert_eq!(missing.status().as_u16(), 404);
        let body: serde_json::Value = missing.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
        let bad_query = client
            .http()
            .get(client.url("/v1/admin/audit?since=yesterday"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(bad_query.status().as_u16(), 400);
        let body: serde_json::Value = bad_query.json().await.unwrap();
        assert_eq!(body["field"], "query");
        assert!(client.audit(0).await.unwrap().is_empty());
    });

    // A client that never starts its TLS handshake is disconnected.
    let addr = url.trim_start_matches("https://").to_owned();
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the connection");
    assert!(start.elapsed() < Duration::from_secs(8));

    // A client whose body stops halfway gets 408.
    let status_line = rt.block_on(async {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        for cert in tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(
            b"POST /v1/release HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"resource\":",
        )
        .await
        .unwrap();
        tls.flush().await.unwrap();
        // Head and JSON body, however the reads split them.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&answer).trim_end().ends_with('}') {
            let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
                .await
                .expect("answered before the test's own timeout")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    assert!(
        status_line.starts_with("HTTP/1.1 408 Request Timeout"),
        "{status_line}"
    );
    assert!(
        status_line.contains("\"error\":\"timeout\""),
        "{status_line}"
    );

    // SIGTERM: a clean stop.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child
        .wait_timeout(Duration::from_secs(15))
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&dir);
}
