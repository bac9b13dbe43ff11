//! QEMU's TPM emulator backend (`-tpmdev emulator`): the control channel on a UNIX socket that
//! QEMU connects to (format: `svsm_abi::swtpm`), and the data channel QEMU hands over with
//! SET_DATAFD, on which raw TPM commands arrive. Every command goes to a [`TpmBackend`]: the full
//! SVSM vTPM protocol path of the simulated machine, or the freestanding image.
//!
//! What QEMU sees: the capabilities it requires (and no others), INIT as a platform reset (PCRs
//! and volatile state lost, NV kept, no `TPM2_Startup`: the firmware sends it), STOP and
//! SET_BUFFERSIZE in the order QEMU uses them, the TPM-established bit (never set: no locality-4
//! dynamic root here), SHUTDOWN with the state already persisted (the module seals every NV
//! change). Before INIT, or after STOP, a TPM command gets a well-formed TPM 2.0 error response
//! (QEMU probes the TPM version that way). Everything QEMU sends is untrusted: a malformed
//! control message is answered with an error or ends the control connection; it never panics.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use svsm_abi::swtpm::{
    buffer_size_response, payload_len, tpm_established_response, CtrlCommand, RESULT_BAD_ORDINAL,
    RESULT_BAD_PARAMETER, RESULT_FAIL, RESULT_SUCCESS, SUPPORTED_CAPABILITIES,
};
use test_harness::mssim::TpmBackend;

/// Largest TPM command or response (the SVSM vTPM protocol's buffer).
pub const MAX_BUFFER: u32 = 4096;
/// Smallest buffer size granted.
pub const MIN_BUFFER: u32 = 128;
/// TPM 2.0 response header length.
const HEADER: usize = 10;
/// `TPM_RC_INITIALIZE`: the TPM is not initialised (before INIT or after STOP).
const TPM_RC_INITIALIZE: u32 = 0x100;
/// `TPM_RC_FAILURE`: the backend could not run the command.
const TPM_RC_FAILURE: u32 = 0x101;
/// `TPM_RC_COMMAND_SIZE`: the header's size is out of range.
const TPM_RC_COMMAND_SIZE: u32 = 0x142;

/// The emulator's state as QEMU drives it.
struct Shared {
    backend: Box<dyn TpmBackend>,
    /// Between INIT and STOP/SHUTDOWN.
    running: bool,
    locality: u8,
    buffer_size: u32,
    established: bool,
    /// Control commands seen, by code (for tests and diagnostics).
    log: Vec<u32>,
    commands: u64,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(s: &SharedState) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running backend. Dropping it stops serving and removes the socket.
pub struct QemuTpmServer {
    path: PathBuf,
    state: SharedState,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl QemuTpmServer {
    /// Listens on the UNIX socket `path` (created; an existing socket file is replaced).
    pub fn start(path: &Path, backend: Box<dyn TpmBackend>) -> io::Result<Self> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(Shared {
            backend,
            running: false,
            locality: 0,
            buffer_size: MAX_BUFFER,
            established: false,
            log: Vec::new(),
            commands: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, state, stop))
        };
        Ok(QemuTpmServer {
            path: path.to_owned(),
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The control socket's path (QEMU: `-chardev socket,id=chrtpm,path=PATH`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The control commands received so far, in order.
    pub fn control_log(&self) -> Vec<u32> {
        lock(&self.state).log.clone()
    }

    /// TPM commands carried so far.
    pub fn commands(&self) -> u64 {
        lock(&self.state).commands
    }

    /// Whether the TPM is between INIT and STOP/SHUTDOWN.
    pub fn running(&self) -> bool {
        lock(&self.state).running
    }
}

impl Drop for QemuTpmServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, state: SharedState, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                // One QEMU at a time; a connection that misbehaves ends, the server goes on.
                let _ = serve_control(stream, &state, &stop);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads the 4-byte command code with `recvmsg`, collecting a file descriptor passed with it.
/// `Ok(None)` on a clean EOF.
fn read_code(stream: &UnixStream, fd: &mut Option<OwnedFd>) -> io::Result<Option<u32>> {
    let mut code = [0u8; 4];
    let mut got = 0;
    while got < code.len() {
        let rest = code.get_mut(got..).unwrap_or_default();
        let (n, passed) = svsm_process::recv_with_fd(stream, rest)?;
        if passed.is_some() {
            // A later descriptor replaces an earlier one (which is closed).
            *fd = passed;
        }
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    Ok(Some(u32::from_be_bytes(code)))
}

fn serve_control(
    mut stream: UnixStream,
    state: &SharedState,
    stop: &Arc<AtomicBool>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut data_thread: Option<JoinHandle<()>> = None;
    let conn_stop = Arc::new(AtomicBool::new(false));
    let result = (|| -> io::Result<()> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut fd = None;
            let code = match read_code(&stream, &mut fd) {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(()),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            lock(state).log.push(code);
            let Some(len) = payload_len(code) else {
                // Its length is unknown: refuse and end the connection rather than guess.
                stream.write_all(&RESULT_BAD_ORDINAL.to_be_bytes())?;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unsupported control command {code:#x}"),
                ));
            };
            let mut payload = [0u8; 4];
            let payload = payload.get_mut(..len).unwrap_or_default();
            stream.set_read_timeout(None)?;
            stream.read_exact(payload)?;
            stream.set_read_timeout(Some(Duration::from_millis(200)))?;
            let answer = match CtrlCommand::parse(code, payload) {
                Ok(CtrlCommand::SetDataFd) => match fd.take() {
                    Some(fd) => {
                        conn_stop.store(true, Ordering::SeqCst);
                        if let Some(t) = data_thread.take() {
                            let _ = t.join();
                        }
                        conn_stop.store(false, Ordering::SeqCst);
                        let (state, cs) = (state.clone(), conn_stop.clone());
                        let data = UnixStream::from(fd);
                        data_thread = Some(std::thread::spawn(move || {
                            let _ = serve_data(data, &state, &cs);
                        }));
                        RESULT_SUCCESS.to_be_bytes().to_vec()
                    }
                    None => RESULT_BAD_PARAMETER.to_be_bytes().to_vec(),
                },
                Ok(cmd) => control(state, cmd),
                Err(_) => RESULT_BAD_PARAMETER.to_be_bytes().to_vec(),
            };
            stream.write_all(&answer)?;
        }
    })();
    conn_stop.store(true, Ordering::SeqCst);
    if let Some(t) = data_thread.take() {
        let _ = t.join();
    }
    result
}

/// Runs one control command; returns its fixed-size answer.
fn control(state: &SharedState, cmd: CtrlCommand) -> Vec<u8> {
    let mut s = lock(state);
    let result = |ok: bool| if ok { RESULT_SUCCESS } else { RESULT_FAIL };
    match cmd {
        CtrlCommand::GetCapability => SUPPORTED_CAPABILITIES.to_be_bytes().to_vec(),
        CtrlCommand::Init { .. } => {
            // Volatile state is always discarded at a reset: the flag changes nothing here.
            let ok = s.backend.reset().is_ok();
            s.running = ok;
            s.locality = 0;
            result(ok).to_be_bytes().to_vec()
        }
        CtrlCommand::Shutdown => {
            // Every NV change was sealed and stored when it happened.
            s.running = false;
            RESULT_SUCCESS.to_be_bytes().to_vec()
        }
        CtrlCommand::Stop => {
            s.running = false;
            RESULT_SUCCESS.to_be_bytes().to_vec()
        }
        CtrlCommand::GetTpmEstablished => {
            tpm_established_response(RESULT_SUCCESS, s.established).to_vec()
        }
        CtrlCommand::ResetTpmEstablished { locality } => {
            // TPM 2.0: only localities 3 and 4 may reset the bit.
            let ok = locality >= 3;
            if ok {
                s.established = false;
            }
            result(ok).to_be_bytes().to_vec()
        }
        CtrlCommand::SetLocality { locality } => {
            s.locality = locality;
            RESULT_SUCCESS.to_be_bytes().to_vec()
        }
        CtrlCommand::SetBufferSize { size } => {
            if size == 0 {
                return buffer_size_response(RESULT_SUCCESS, s.buffer_size, MIN_BUFFER, MAX_BUFFER)
                    .to_vec();
            }
            if s.running {
                // Only a stopped TPM may change its buffer size.
                return buffer_size_response(RESULT_FAIL, s.buffer_size, MIN_BUFFER, MAX_BUFFER)
                    .to_vec();
            }
            s.buffer_size = size.clamp(MIN_BUFFER, MAX_BUFFER);
            buffer_size_response(RESULT_SUCCESS, s.buffer_size, MIN_BUFFER, MAX_BUFFER).to_vec()
        }
        CtrlCommand::SetDataFd => RESULT_BAD_PARAMETER.to_be_bytes().to_vec(),
    }
}

fn error_response(rc: u32) -> [u8; HEADER] {
    let mut r = [0u8; HEADER];
    let [a, b] = svsm_core::tpm2::command::TPM_ST_NO_SESSIONS.to_be_bytes();
    let [c, d, e, f] = (HEADER as u32).to_be_bytes();
    let [g, h, i, j] = rc.to_be_bytes();
    r.copy_from_slice(&[a, b, c, d, e, f, g, h, i, j]);
    r
}

/// Raw TPM commands on the data channel: the 10-byte header, then the rest it declares; each
/// response goes back in one write.
fn serve_data(mut data: UnixStream, state: &SharedState, stop: &AtomicBool) -> io::Result<()> {
    data.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut command = vec![0u8; MAX_BUFFER as usize];
    let mut response = vec![0u8; MAX_BUFFER as usize];
    loop {
        let mut header = [0u8; HEADER];
        // Wait for the first byte of a command, checking for shutdown now and then.
        let first = loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match data.read(&mut header) {
                Ok(0) => return Ok(()),
                Ok(n) => break n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
            }
        };
        data.set_read_timeout(Some(Duration::from_secs(5)))?;
        data.read_exact(header.get_mut(first..).unwrap_or_default())?;
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let answer: Vec<u8> = {
            let mut s = lock(state);
            let limit = s.buffer_size.min(MAX_BUFFER);
            if !(HEADER as u32..=limit).contains(&size) {
                // The rest cannot be trusted to be there: answer and drop the connection.
                data.write_all(&error_response(TPM_RC_COMMAND_SIZE))?;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TPM command size {size} outside {HEADER}..={limit}"),
                ));
            }
            let cmd = command.get_mut(..size as usize).unwrap_or_default();
            cmd.get_mut(..HEADER)
                .unwrap_or_default()
                .copy_from_slice(&header);
            data.read_exact(cmd.get_mut(HEADER..).unwrap_or_default())?;
            s.commands += 1;
            if !s.running {
                error_response(TPM_RC_INITIALIZE).to_vec()
            } else {
                let locality = s.locality;
                match s.backend.send_command(locality, cmd, &mut response) {
                    Ok(n) => response.get(..n).unwrap_or_default().to_vec(),
                    Err(_) => error_response(TPM_RC_FAILURE).to_vec(),
                }
            }
        };
        data.write_all(&answer)?;
        data.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
}
