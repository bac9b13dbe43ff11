//! The local socket between a guest app's vault tools and the guest agent (`svsm-agent`):
//! "provision the key named NAME for me". One JSON line each way on a UNIX socket:
//! `{"provision":"payments"}` → `{"key":7}` or `{"error":"…"}`. The agent attests, has the
//! broker release the key wrapped for this boot, instance and VMPL, and imports it into the
//! vault; the app never sees the broker or the key, only the key's id in its own vault.
//! Requests come from any local process, so both sides parse strictly and bound the line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::string::{String, ToString};
use std::time::Duration;

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/svsm-agent.sock";
/// Longest line either side accepts.
pub const MAX_LINE: usize = 4096;
/// How long an app waits for a provisioning (an attestation and a release).
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a provisioning through the agent failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentSocketError {
    /// No agent listens there, or the exchange broke off.
    #[error("agent socket {path}: {error}")]
    Io {
        /// The socket.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A line that is not the protocol's.
    #[error("malformed {0} on the agent socket")]
    Malformed(&'static str),
    /// The agent could not provision the key.
    #[error("the agent could not provision it: {0}")]
    Refused(String),
}

/// Reads one line of at most [`MAX_LINE`] bytes.
fn read_line(stream: impl Read, what: &'static str) -> Result<String, AgentSocketError> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(MAX_LINE as u64 + 1));
    reader
        .read_line(&mut line)
        .map_err(|_| AgentSocketError::Malformed(what))?;
    if line.len() > MAX_LINE || !line.ends_with('\n') {
        return Err(AgentSocketError::Malformed(what));
    }
    Ok(line)
}

/// Asks the agent at `socket` to provision the key `name`; returns its id in the caller's
/// vault.
pub fn ask_provision(socket: &Path, name: &str) -> Result<u32, AgentSocketError> {
    let io = |error| AgentSocketError::Io {
        path: socket.display().to_string(),
        error,
    };
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream
        .set_read_timeout(Some(PROVISION_TIMEOUT))
        .map_err(io)?;
    let request = serde_json::json!({ "provision": name }).to_string() + "\n";
    stream.write_all(request.as_bytes()).map_err(io)?;
    let line = read_line(&stream, "answer")?;
    parse_answer(&line)
}

/// Decodes the agent's answer.
pub fn parse_answer(line: &str) -> Result<u32, AgentSocketError> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|_| AgentSocketError::Malformed("answer"))?;
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or(AgentSocketError::Malformed("answer"))?;
    if let Some(key) = obj.get("key") {
        return key
            .as_u64()
            .and_then(|k| u32::try_from(k).ok())
            .ok_or(AgentSocketError::Malformed("answer"));
    }
    match obj.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(AgentSocketError::Refused(e.to_string())),
        None => Err(AgentSocketError::Malformed("answer")),
    }
}

/// Reads and decodes one request from an app: the name of the key it wants.
pub fn read_request(stream: impl Read) -> Result<String, AgentSocketError> {
    let line = read_line(stream, "request")?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|_| AgentSocketError::Malformed("request"))?;
    let name = v
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("provision"))
        .and_then(|n| n.as_str())
        .ok_or(AgentSocketError::Malformed("request"))?;
    if !svsm_abi::vault::valid_key_name(name.as_bytes()) {
        return Err(AgentSocketError::Malformed("request"));
    }
    Ok(name.to_string())
}

/// The answer line for a provisioned key, or for a failure.
pub fn answer(result: Result<u32, String>) -> String {
    match result {
        Ok(key) => serde_json::json!({ "key": key }),
        Err(e) => serde_json::json!({ "error": e }),
    }
    .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_and_malformed_lines_are_refused() {
        assert_eq!(
            read_request(&b"{\"provision\":\"payments\"}\n"[..]).unwrap(),
            "payments"
        );
        for bad in [
            &b"{\"provision\":\"payments\"}"[..],
            b"{\"provision\":\"pay ments\"}\n",
            b"{\"provision\":\"a\",\"x\":1}\n",
            b"{\"provision\":7}\n",
            b"[]\n",
            b"\xff\n",
        ] {
            assert!(read_request(bad).is_err(), "{bad:?}");
        }
        let long = std::format!("{{\"provision\":\"{}\"}}\n", "a".repeat(MAX_LINE));
        assert!(read_request(long.as_bytes()).is_err());
        assert_eq!(parse_answer(&answer(Ok(7))).unwrap(), 7);
        assert!(matches!(
            parse_answer(&answer(Err("refused: vtpm.ima_policy".into()))),
            Err(AgentSocketError::Refused(e)) if e.contains("vtpm.ima_policy")
        ));
        assert!(parse_answer("{\"key\":-1}").is_err());
        assert!(parse_answer("{\"key\":1,\"error\":\"x\"}").is_err());
    }
}
