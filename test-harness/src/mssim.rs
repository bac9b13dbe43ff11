//! A TPM simulator endpoint speaking the TCG reference simulator's TCP protocol ("mssim"), so
//! unmodified clients (`tpm2-tools`, `tss-esapi` through the `mssim:` TCTI) drive our vTPM.
//!
//! Two listeners on loopback only: the command port `P` and the platform port `P + 1`.
//! Integers on the wire are big-endian (TCG `TpmTcpProtocol.h`):
//! - command port: `u32 command`; TPM_SEND_COMMAND (8) is followed by `u8 locality, u32 size,
//!   bytes` and answered with `u32 size, bytes`; every command ends with a `u32 0` acknowledgement.
//!   SESSION_END (20) or EOF ends the connection; STOP (21) stops the server. When a connection
//!   ends, the transient objects it loaded are flushed, as the kernel's `/dev/tpmrm0` does when
//!   a file descriptor closes, so clients that never flush (tpm2-tools) do not exhaust the
//!   TPM's three object slots.
//! - platform port: `u32 signal`, answered with `u32 0` (success) or non-zero (failure).
//!   POWER_ON is idempotent because tcti-mssim sends it on every context initialisation.
//!
//! The endpoint is generic over [`TpmBackend`], so the same server fronts the engine directly or
//! the whole SVSM vTPM protocol path.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest TPM command accepted on the command port (the SVSM protocol's 4 KiB buffer).
pub const MAX_COMMAND: usize = 4096;

/// mssim command-port commands and platform signals (TCG `TpmTcpProtocol.h`).
mod code {
    pub const POWER_ON: u32 = 1;
    pub const POWER_OFF: u32 = 2;
    pub const PHYS_PRES_ON: u32 = 3;
    pub const PHYS_PRES_OFF: u32 = 4;
    pub const SEND_COMMAND: u32 = 8;
    pub const CANCEL_ON: u32 = 9;
    pub const CANCEL_OFF: u32 = 10;
    pub const NV_ON: u32 = 11;
    pub const NV_OFF: u32 = 12;
    pub const KEY_CACHE_ON: u32 = 13;
    pub const KEY_CACHE_OFF: u32 = 14;
    pub const REMOTE_HANDSHAKE: u32 = 15;
    pub const RESET: u32 = 17;
    pub const RESTART: u32 = 18;
    pub const SESSION_END: u32 = 20;
    pub const STOP: u32 = 21;
    pub const GET_COMMAND_RESPONSE_SIZES: u32 = 25;
}

/// Server version answered to REMOTE_HANDSHAKE.
const SERVER_VERSION: u32 = 1;
/// Endpoint flags for REMOTE_HANDSHAKE: platform available (1) and physical presence (8).
const ENDPOINT_FLAGS: u32 = 1 | 8;

/// Why the backend could not carry out a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The TPM engine failed.
    #[error("TPM engine: {0}")]
    Engine(#[from] svsm_core::tpm::TpmEngineError),
    /// The path in front of the engine (e.g. the SVSM protocol) failed.
    #[error("TPM transport: {0}")]
    Transport(String),
}

/// What sits behind the endpoint.
pub trait TpmBackend: Send {
    /// Runs one TPM command; returns the response length written into `response`.
    fn send_command(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, BackendError>;
    /// Powers the TPM on; a no-op when it is already on.
    fn power_on(&mut self) -> Result<(), BackendError>;
    /// Powers the TPM off (state is kept for the next power-on).
    fn power_off(&mut self) -> Result<(), BackendError>;
    /// A platform reset (QEMU's INIT): volatile state and PCRs are lost, NV is kept, and no
    /// `TPM2_Startup` is sent: the firmware sends it.
    fn reset(&mut self) -> Result<(), BackendError>;
}

type SharedBackend = Arc<Mutex<Box<dyn TpmBackend>>>;

fn lock(backend: &SharedBackend) -> MutexGuard<'_, Box<dyn TpmBackend>> {
    // A panic while holding the lock cannot leave the engine half-updated from our side
    // (each call is one engine call), so recover the guard.
    backend
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running endpoint. Dropping it stops the server.
pub struct MssimServer {
    command_port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl MssimServer {
    /// Binds 127.0.0.1:`port` and `port + 1`; `port` 0 picks a free consecutive pair.
    pub fn start(port: u16, backend: Box<dyn TpmBackend>) -> io::Result<Self> {
        let (command, platform) = bind_pair(port)?;
        let command_port = command.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let backend: SharedBackend = Arc::new(Mutex::new(backend));
        let threads = vec![
            spawn_acceptor(command, backend.clone(), stop.clone(), serve_command),
            spawn_acceptor(platform, backend, stop.clone(), serve_platform),
        ];
        Ok(MssimServer {
            command_port,
            stop,
            threads,
        })
    }

    /// The command port; the platform port is one higher.
    pub fn command_port(&self) -> u16 {
        self.command_port
    }

    /// The TCTI configuration string for tpm2-tss clients.
    pub fn tcti(&self) -> String {
        format!("mssim:host=127.0.0.1,port={}", self.command_port)
    }

    /// Blocks until a client sends TPM_STOP (or [`MssimServer::stop`] is called elsewhere).
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Blocks until a client sends TPM_STOP or `term` records SIGINT/SIGTERM; returns the
    /// signal in the second case (the server is then stopped).
    pub fn wait_or_signal(self, term: &svsm_process::Termination) -> Option<i32> {
        let signal = term.wait_until(|| self.threads.iter().all(JoinHandle::is_finished));
        self.stop();
        signal
    }

    /// Stops accepting and returns once the acceptors have ended.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MssimServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bind_pair(port: u16) -> io::Result<(TcpListener, TcpListener)> {
    let bind = |p: u16| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
    if port != 0 {
        let next = port.checked_add(1).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "port 65535 leaves no platform port",
            )
        })?;
        return Ok((bind(port)?, bind(next)?));
    }
    for _ in 0..64 {
        let command = bind(0)?;
        let p = command.local_addr()?.port();
        if let Some(next) = p.checked_add(1) {
            if let Ok(platform) = bind(next) {
                return Ok((command, platform));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free consecutive port pair on 127.0.0.1",
    ))
}

type Handler = fn(TcpStream, &SharedBackend, &AtomicBool) -> io::Result<()>;

fn spawn_acceptor(
    listener: TcpListener,
    backend: SharedBackend,
    stop: Arc<AtomicBool>,
    handler: Handler,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let backend = backend.clone();
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_nodelay(true);
                        // A client that misbehaves only loses its own connection.
                        let _ = handler(stream, &backend, &stop);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

/// Reads a big-endian u32; `Ok(None)` on a clean EOF before the first byte.
fn read_u32(r: &mut impl Read) -> io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut b[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    Ok(Some(u32::from_be_bytes(b)))
}

fn require_u32(r: &mut impl Read) -> io::Result<u32> {
    read_u32(r)?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

fn protocol_error(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Command codes whose successful response starts with a new transient object handle.
const LOADS_OBJECT: [u32; 5] = [
    0x131, // TPM2_CreatePrimary
    0x157, // TPM2_Load
    0x161, // TPM2_ContextLoad
    0x167, // TPM2_LoadExternal
    0x191, // TPM2_CreateLoaded
];

/// The transient object handle a successful command created, if any.
fn loaded_object(command: &[u8], response: &[u8]) -> Option<u32> {
    let cc = u32::from_be_bytes(command.get(6..10)?.try_into().ok()?);
    let rc = u32::from_be_bytes(response.get(6..10)?.try_into().ok()?);
    let handle = u32::from_be_bytes(response.get(10..14)?.try_into().ok()?);
    (rc == 0 && LOADS_OBJECT.contains(&cc) && handle >> 24 == 0x80).then_some(handle)
}

/// Flushes the objects a closed connection left loaded (errors ignored: the client may have
/// flushed them itself).
fn flush_objects(backend: &SharedBackend, handles: &[u32]) {
    let mut response = [0u8; 64];
    for &handle in handles {
        let mut cmd = [0u8; 14];
        cmd[..2].copy_from_slice(&0x8001u16.to_be_bytes());
        cmd[2..6].copy_from_slice(&14u32.to_be_bytes());
        cmd[6..10].copy_from_slice(&0x165u32.to_be_bytes()); // TPM2_FlushContext
        cmd[10..].copy_from_slice(&handle.to_be_bytes());
        let _ = lock(backend).send_command(0, &cmd, &mut response);
    }
}

fn serve_command(stream: TcpStream, backend: &SharedBackend, stop: &AtomicBool) -> io::Result<()> {
    let mut loaded = Vec::new();
    let result = serve_command_loop(stream, backend, stop, &mut loaded);
    flush_objects(backend, &loaded);
    result
}

fn serve_command_loop(
    stream: TcpStream,
    backend: &SharedBackend,
    stop: &AtomicBool,
    loaded: &mut Vec<u32>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    let mut command = vec![0u8; MAX_COMMAND];
    let mut response = vec![0u8; MAX_COMMAND];
    while let Some(cmd) = read_u32(&mut reader)? {
        match cmd {
            code::SEND_COMMAND => {
                let mut locality = [0u8; 1];
                reader.read_exact(&mut locality)?;
                let size = require_u32(&mut reader)? as usize;
                if size > MAX_COMMAND {
                    return Err(protocol_error(format!("TPM command of {size} bytes")));
                }
                let command = &mut command[..size];
                reader.read_exact(command)?;
                let n = lock(backend)
                    .send_command(locality[0], command, &mut response)
                    .map_err(|e| protocol_error(e.to_string()))?;
                if let Some(handle) = loaded_object(command, &response[..n]) {
                    loaded.push(handle);
                }
                writer.write_all(&(n as u32).to_be_bytes())?;
                writer.write_all(&response[..n])?;
            }
            code::REMOTE_HANDSHAKE => {
                let _client_version = require_u32(&mut reader)?;
                writer.write_all(&SERVER_VERSION.to_be_bytes())?;
                writer.write_all(&ENDPOINT_FLAGS.to_be_bytes())?;
            }
            code::GET_COMMAND_RESPONSE_SIZES => {
                writer.write_all(&(MAX_COMMAND as u32).to_be_bytes())?;
                writer.write_all(&(MAX_COMMAND as u32).to_be_bytes())?;
            }
            code::SESSION_END => return Ok(()),
            code::STOP => {
                stop.store(true, Ordering::SeqCst);
                return Ok(());
            }
            other => {
                return Err(protocol_error(format!(
                    "unsupported command-port code {other}"
                )))
            }
        }
        writer.write_all(&0u32.to_be_bytes())?;
        writer.flush()?;
    }
    Ok(())
}

fn serve_platform(stream: TcpStream, backend: &SharedBackend, stop: &AtomicBool) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(signal) = read_u32(&mut reader)? {
        let result = match signal {
            code::POWER_ON => lock(backend).power_on(),
            code::POWER_OFF => lock(backend).power_off(),
            code::RESET | code::RESTART => {
                let mut b = lock(backend);
                b.power_off().and_then(|()| b.power_on())
            }
            // Signals with no effect on this vTPM: physical presence is not modelled, commands
            // are never cancellable mid-flight, NV is always available, the key cache is fixed.
            code::PHYS_PRES_ON
            | code::PHYS_PRES_OFF
            | code::CANCEL_ON
            | code::CANCEL_OFF
            | code::NV_ON
            | code::NV_OFF
            | code::KEY_CACHE_ON
            | code::KEY_CACHE_OFF => Ok(()),
            code::SESSION_END => return Ok(()),
            code::STOP => {
                stop.store(true, Ordering::SeqCst);
                return Ok(());
            }
            other => {
                return Err(protocol_error(format!(
                    "unsupported platform signal {other}"
                )))
            }
        };
        let status: u32 = if result.is_ok() { 0 } else { 1 };
        writer.write_all(&status.to_be_bytes())?;
    }
    Ok(())
}
