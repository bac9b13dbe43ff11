//! `svsm-sim tpm-server` as a child process, for the tests and benchmarks that drive real
//! clients against it: started on free loopback ports, its ports read from the status lines it
//! prints, killed with its process group when dropped (`svsm_process`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// A running `svsm-sim tpm-server`.
pub struct TpmServerProcess {
    _child: svsm_process::Child,
    /// The mssim command port (the platform port is one above).
    pub tpm_port: u16,
    /// The SVSM call channel's port (`--guest-port 0`).
    pub channel_port: u16,
    /// What it said before it listened: where its state came from, its EK certificates.
    pub status: String,
}

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerStartError {
    /// The process could not be spawned.
    #[error("cannot start {0}: {1}")]
    Spawn(String, svsm_process::ProcessError),
    /// It ended, or its status lines could not be read, before it named both ports.
    #[error("svsm-sim tpm-server ended before naming its ports; it said: {0}")]
    NoPorts(String),
}

/// The port after "127.0.0.1:" on a status line.
fn port_in(line: &str) -> Option<u16> {
    line.split("127.0.0.1:")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

impl TpmServerProcess {
    /// Starts `exe tpm-server --port 0 --guest-port 0` with `extra` arguments.
    pub fn start(exe: &Path, extra: &[&str]) -> Result<TpmServerProcess, ServerStartError> {
        let mut child = svsm_process::spawn(
            Command::new(exe)
                .args(["tpm-server", "--port", "0", "--guest-port", "0"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| ServerStartError::Spawn(exe.display().to_string(), e))?;
        let stderr = child
            .inner_mut()
            .stderr
            .take()
            .ok_or_else(|| ServerStartError::NoPorts("(no stderr)".into()))?;
        let mut stderr = BufReader::new(stderr);
        let (mut tpm, mut channel) = (None, None);
        let mut said = String::new();
        let mut line = String::new();
        while tpm.is_none() || channel.is_none() {
            line.clear();
            match stderr.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return Err(ServerStartError::NoPorts(said)),
            }
            said.push_str(&line);
            if line.contains("call channel") {
                channel = port_in(&line);
            } else if line.contains("listening") {
                tpm = port_in(&line);
            }
        }
        Ok(TpmServerProcess {
            _child: child,
            tpm_port: tpm.unwrap_or(0),
            channel_port: channel.unwrap_or(0),
            status: said,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_read_from_status_lines() {
        assert_eq!(
            super::port_in("svsm-sim: SVSM call channel on 127.0.0.1:40123"),
            Some(40123)
        );
        assert_eq!(
            super::port_in("listening on 127.0.0.1:2321 (platform 2322); TCTI"),
            Some(2321)
        );
        assert_eq!(super::port_in("no address"), None);
    }
}
