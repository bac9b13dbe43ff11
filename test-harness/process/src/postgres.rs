//! A throwaway PostgreSQL cluster for tests and benchmarks: Debian's server binaries
//! (`apt-get install postgresql`; `scripts/bootstrap.sh` does), a fresh data directory under a
//! directory the caller owns, trust authentication for the user `svsm`, listening on a UNIX
//! socket in that directory only (no TCP), run as the `postgres` user (PostgreSQL refuses
//! root) and tied to its parent like every [`Child`]: dropping the [`Cluster`] stops it.

use crate::{spawn, Child, ProcessError};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No `postgres` user or no server binaries.
    #[error(
        "PostgreSQL is not installed: {0} (apt-get install postgresql; scripts/bootstrap.sh does)"
    )]
    NotInstalled(&'static str),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// `initdb` failed.
    #[error("initdb failed: {0}")]
    Initdb(String),
    /// The server could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The server did not open its socket in time.
    #[error("PostgreSQL did not accept connections within {0:?}")]
    Timeout(Duration),
}

/// A running cluster.
pub struct Cluster {
    server: Child,
    dir: PathBuf,
    bin: PathBuf,
    uid: u32,
    gid: u32,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ClusterError {
    move |source| ClusterError::Io { what, source }
}

impl Cluster {
    /// Creates and starts a cluster in `dir` (created if missing; its socket lives there).
    pub fn start(dir: &Path) -> Result<Cluster, ClusterError> {
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(ClusterError::NotInstalled("no postgres user"))?;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| ClusterError::NotInstalled("no /usr/lib/postgresql"))?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("postgres").is_file())
            .ok_or(ClusterError::NotInstalled("no server binaries"))?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io("creating the data directory"))?;
        for d in [dir, &data] {
            nix::unistd::chown(d, Some(user.uid), Some(user.gid)).map_err(|e| {
                ClusterError::Io {
                    what: "handing the directory to postgres",
                    source: e.into(),
                }
            })?;
        }
        let init = Command::new(bin.join("initdb"))
            .args(["-A", "trust", "-U", "svsm", "-D"])
            .arg(&data)
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .output()
            .map_err(io("running initdb"))?;
        if !init.status.success() {
            return Err(ClusterError::Initdb(
                String::from_utf8_lossy(&init.stderr).into_owned(),
            ));
        }
        let mut cluster = Cluster {
            server: Cluster::spawn_server(&bin, dir, user.uid.as_raw(), user.gid.as_raw())?,
            dir: dir.to_path_buf(),
            bin,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn spawn_server(bin: &Path, dir: &Path, uid: u32, gid: u32) -> Result<Child, ClusterError> {
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(dir.join("data"))
            .arg("-k")
            .arg(dir)
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Ok(spawn(&mut cmd)?)
    }

    fn wait_ready(&mut self) -> Result<(), ClusterError> {
        let socket = self.dir.join(".s.PGSQL.5432");
        let limit = Duration::from_secs(30);
        let deadline = Instant::now() + limit;
        while !socket.exists() {
            if Instant::now() > deadline {
                return Err(ClusterError::Timeout(limit));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server the way an operator's fast shutdown does (SIGINT: open sessions are
    /// cut), waiting for it to exit; the data directory stays for [`Cluster::restart`].
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if let Ok(pid) = i32::try_from(self.server.pid()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        if self.server.wait_timeout(Duration::from_secs(30))?.is_none() {
            self.server.kill()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and socket.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.server = Cluster::spawn_server(&self.bin, &self.dir, self.uid, self.gid)?;
        self.wait_ready()
    }

    /// The server process.
    pub fn server(&self) -> &Child {
        &self.server
    }

    /// The server process, to stop it on purpose.
    pub fn server_mut(&mut self) -> &mut Child {
        &mut self.server
    }

    /// The directory holding the socket (and the data directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A connection URL for database `postgres` as user `svsm` over the socket.
    pub fn url(&self) -> String {
        format!(
            "postgres://svsm@localhost/postgres?host={}",
            self.dir.display()
        )
    }
}
