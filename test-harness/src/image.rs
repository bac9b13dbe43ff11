//! The host side of the freestanding SVSM image (`svsm-module/image`): boots it under QEMU
//! (`-kernel`, PVH) and connects to its two serial ports.
//!
//! - **COM1** (or, with [`CallLine::Virtio`], a virtio console: the same byte stream, ~100x
//!   faster) carries framed SVSM calls (`svsm_abi::frame`, the same format as the simulator's
//!   call channel): guest-driver's [`FramedTransport`] sends a call frame (registers, VMPL, the
//!   guest buffer with its GPA) and reads the reply frame (result registers, the buffer as the
//!   SVSM left it). [`ImageTransport`] wraps it so several clients (the mssim endpoint, a vault
//!   client, the control calls) share the one line, one whole call at a time.
//! - **COM2** carries the module's state store: the image asks (read/write a slot), this side
//!   answers from an in-memory [`SimStore`] or a directory of slot files ([`FileStore`]). The
//!   protocol (16-byte headers, `"SVSQ"` requests and `"SVSA"` replies) is documented in the
//!   image's `store_proto.rs`; [`parse_store_request`] is this side's strict decoder.
//! - QEMU's debug console (port 0xe9) is the image's log, kept in a file next to the sockets.
//!
//! Both lines are QEMU `socket` chardevs on Unix sockets this side listens on. The image
//! prints [`READY_MARKER`] on its call line once its module has booted; everything before it (firmware
//! output) is discarded. QEMU's exit status is checked: 33 is the image's clean shutdown, and a
//! triple fault exits with 0, which is never accepted as success.
//!
//! The platform inside the image is EMULATED (test PSP key, no SEV-SNP): its attestation
//! reports are signed by a test key anyone can derive ([`test_vcek`]), never by AMD's.

use crate::mssim::{BackendError, TpmBackend};
use crate::sim::store::{FileStore, SimStore};
use guest_driver::framed::FramedTransport;
use guest_driver::transport::{SvsmTransport, TransportError};
use guest_driver::vtpm::VtpmClient;
use sha2::{Digest, Sha384};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use svsm_abi::svsm::{CallId, CallRegisters};
use svsm_core::platform::{StateStore, StoreError};
use svsm_process::Child;

#[path = "image_store.rs"]
pub mod store_codec;
use store_codec::{
    encode_store_reply, parse_store_request, StoreOp, STORE_HEADER_LEN, STORE_MAX_BLOB,
};

/// The QEMU binary (Debian package `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";
/// What the image prints on COM1 when its module is up.
pub const READY_MARKER: &[u8] = b"\nSVSM-IMAGE-READY\n";
/// QEMU's exit status after the image's clean shutdown (isa-debug-exit code 0x10).
pub const EXIT_CLEAN: i32 = 33;
/// The image's emulation-only control protocol (answered by the image, not the module).
pub const CONTROL_PROTOCOL: u32 = 0xE000_0001;
/// Control call 4: reset the vTPM engine as a platform reset does (as in the image).
pub const CONTROL_TPM_RESET: u32 = 4;
/// GPA of the driver buffer the host's clients use (inside the image's 4 MiB guest memory).
pub const DRIVER_BUFFER_GPA: u64 = 0x20_0000;
/// The label whose SHA-384 is the emulated PSP's test signing key (as in the image).
pub const TEST_VCEK_LABEL: &[u8] = b"svsm-vhsm EMULATED PSP test VCEK v1 - NOT AN AMD KEY";

/// The emulated PSP's report-signing key: derived from a public label, so anyone can forge
/// reports with it. Only tests use it to check reports from the image.
pub fn test_vcek() -> p384::ecdsa::VerifyingKey {
    let secret = Sha384::digest(TEST_VCEK_LABEL);
    let sk = p384::ecdsa::SigningKey::from_slice(&secret).expect("valid test scalar");
    *sk.verifying_key()
}

/// Where `make image` puts the image: `$SVSM_IMAGE`, or the workspace's
/// `target/image/x86_64-unknown-none/release/svsm-image`.
pub fn default_image_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SVSM_IMAGE") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/image/x86_64-unknown-none/release/svsm-image")
}

/// Why the image could not be booted or driven.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A prerequisite is missing (QEMU, the image); the message says how to get it.
    #[error("{0}")]
    Missing(String),
    /// Local I/O (sockets, files, spawning QEMU).
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The image did not come up, or stopped, or answered wrongly.
    #[error("image: {0}")]
    Image(String),
    /// Starting or waiting for QEMU failed.
    #[error("{0}")]
    Process(#[from] svsm_process::ProcessError),
}

/// Prefix of the per-machine temporary directories (QEMU's output and the image log).
const DIR_PREFIX: &str = "svsm-image-";

fn abstract_listener(name: &str) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixListener::bind_addr(&addr)
}

/// Removes the directories of machines whose process is gone (a process killed with SIGKILL
/// cannot remove its own).
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !svsm_process::alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Where the module's sealed state lives on the host.
#[derive(Clone)]
pub enum StateBacking {
    /// In memory (shared: boot another image on the same store to test a restart).
    Memory(SimStore),
    /// Two slot files in a directory.
    Dir(PathBuf),
}

/// The device the framed calls travel on. Both carry the same byte stream to the same Unix
/// socket; the image uses the virtio console when QEMU has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallLine {
    /// COM1 (a 16550 UART): what every QEMU has; slow (the emulated UART takes at most 14
    /// received bytes per QEMU main-loop iteration, so a 4 KiB frame takes ~25 ms).
    Com1,
    /// A virtio console (`virtio-serial-pci` with a `virtconsole`, legacy interface): a whole
    /// frame per main-loop iteration.
    Virtio,
}

/// How to boot the image.
#[derive(Clone)]
pub struct ImageOptions {
    /// The call line.
    pub line: CallLine,
    /// The ELF image.
    pub image: PathBuf,
    /// The state store.
    pub state: StateBacking,
    /// Kernel command line (`-append`), e.g. `fault=entropy`.
    pub append: Option<String>,
    /// How long the module may take to boot (manufacture under TCG takes seconds).
    pub boot_timeout: Duration,
}

impl ImageOptions {
    /// The default image with an in-memory store.
    pub fn new(image: PathBuf) -> Self {
        ImageOptions {
            line: CallLine::Com1,
            image,
            state: StateBacking::Memory(SimStore::new()),
            append: None,
            boot_timeout: Duration::from_secs(180),
        }
    }
}

/// The image's statistics (control call 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageStats {
    /// Heap size.
    pub heap_size: u64,
    /// Heap high-water mark (Rust and C together).
    pub heap_peak: u64,
    /// Heap bytes in use now.
    pub heap_in_use: u64,
    /// Failed heap allocations.
    pub heap_failures: u64,
    /// High-water mark of the C heap (libtpms + OpenSSL).
    pub c_heap_peak: u64,
    /// Largest single C allocation.
    pub c_heap_largest: u64,
    /// Failed C allocations.
    pub c_alloc_failures: u64,
    /// Boot stack size.
    pub stack_size: u64,
    /// Stack high-water mark.
    pub stack_peak: u64,
    /// Bytes of the loaded image including `.bss`.
    pub image_bytes: u64,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Calls answered.
    pub calls: u64,
    /// The entropy source failed (latched).
    pub entropy_failed: bool,
    /// Calls to libc functions that can only fail in the image.
    pub failing_stub_calls: u64,
    /// 0 fresh, 1 restored, 2 ephemeral.
    pub state_status: u64,
    /// Sealed-state epoch.
    pub state_epoch: u64,
    /// Store requests made.
    pub store_requests: u64,
    /// Store requests that failed.
    pub store_failures: u64,
    /// A vTPM engine exists.
    pub tpm_present: bool,
    /// The entropy guard stopped the engine.
    pub tpm_stopped: bool,
    /// Malformed frames refused.
    pub malformed_frames: u64,
    /// TSC ticks of the last module call.
    pub last_call_ticks: u64,
}

impl ImageStats {
    fn parse(b: &[u8]) -> Option<Self> {
        let v: Vec<u64> = b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        if v.len() < 22 || v[0] != u64::from_le_bytes(*b"SVIMSTAT") {
            return None;
        }
        Some(ImageStats {
            heap_size: v[1],
            heap_peak: v[2],
            heap_in_use: v[3],
            heap_failures: v[4],
            c_heap_peak: v[5],
            c_heap_largest: v[6],
            c_alloc_failures: v[7],
            stack_size: v[8],
            stack_peak: v[9],
            image_bytes: v[10],
            tsc_hz: v[11],
            calls: v[12],
            entropy_failed: v[13] != 0,
            failing_stub_calls: v[14],
            state_status: v[15],
            state_epoch: v[16],
            store_requests: v[17],
            store_failures: v[18],
            tpm_present: v[19] & 1 != 0,
            tpm_stopped: v[19] & 2 != 0,
            malformed_frames: v[20],
            last_call_ticks: v[21],
        })
    }
}

static MACHINES: AtomicU64 = AtomicU64::new(0);

/// A running image.
pub struct ImageMachine {
    child: Mutex<Option<Child>>,
    /// COM1; every whole call holds this lock.
    link: Mutex<UnixStream>,
    dir: PathBuf,
    store_thread: Mutex<Option<JoinHandle<()>>>,
    /// Time from spawning QEMU to the ready marker.
    pub boot_time: Duration,
}

fn accept_until(
    listener: &UnixListener,
    deadline: Instant,
    child: &mut Child,
) -> Result<UnixStream, ImageError> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    return Err(ImageError::Image(format!(
                        "QEMU exited ({status}) before connecting its serial ports"
                    )));
                }
                if Instant::now() > deadline {
                    return Err(ImageError::Image("QEMU did not connect".into()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl ImageMachine {
    /// Boots the image and waits until its module is up.
    pub fn boot(options: &ImageOptions) -> Result<Arc<Self>, ImageError> {
        if !options.image.is_file() {
            return Err(ImageError::Missing(format!(
                "the SVSM image {} does not exist: build it with `make image` \
                 (or set SVSM_IMAGE to its path)",
                options.image.display()
            )));
        }
        let n = MACHINES.fetch_add(1, Ordering::SeqCst);
        sweep_stale_dirs();
        let name = format!("{DIR_PREFIX}{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        // Abstract sockets: they vanish with the last process holding them, so nothing is left
        // in the file system even if this process is killed.
        let calls_name = format!("{name}-calls");
        let com2_name = format!("{name}-com2");
        let com1 = abstract_listener(&calls_name)?;
        let com2 = abstract_listener(&com2_name)?;
        let log = dir.join("debugcon.log");
        let mut cmd = Command::new(QEMU);
        cmd.args(["-machine", "pc", "-cpu", "max", "-m", "128M", "-kernel"])
            .arg(&options.image)
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
                "-nodefaults",
            ])
            .arg("-chardev")
            .arg(format!("socket,id=calls,path={calls_name},abstract=on"));
        match options.line {
            CallLine::Com1 => cmd.args(["-serial", "chardev:calls"]),
            CallLine::Virtio => cmd.args([
                "-serial",
                "null",
                "-device",
                "virtio-serial-pci,disable-modern=on",
                "-device",
                "virtconsole,chardev=calls",
            ]),
        };
        cmd.arg("-chardev")
            .arg(format!("socket,id=com2,path={com2_name},abstract=on"))
            .args(["-serial", "chardev:com2"])
            .arg("-debugcon")
            .arg(format!("file:{}", log.display()))
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(dir.join("qemu.out"))?))
            .stderr(Stdio::from(std::fs::File::create(dir.join("qemu.err"))?));
        if let Some(append) = &options.append {
            cmd.args(["-append", append]);
        }
        let start = Instant::now();
        // QEMU runs in its own process group, dies with the thread that started it, and is
        // killed and reaped when the machine is dropped (svsm_process).
        let mut child = svsm_process::spawn(&mut cmd).map_err(|e| match e {
            svsm_process::ProcessError::Spawn { source, .. }
                if source.kind() == io::ErrorKind::NotFound =>
            {
                ImageError::Missing(format!(
                    "{QEMU} is not installed: run scripts/bootstrap.sh \
                     (apt-get install qemu-system-x86)"
                ))
            }
            other => ImageError::Process(other),
        })?;
        let deadline = start + options.boot_timeout;
        let connected = accept_until(&com1, deadline, &mut child)
            .and_then(|c1| Ok((c1, accept_until(&com2, deadline, &mut child)?)));
        let (mut link, store_link) = match connected {
            Ok(pair) => pair,
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        let store: Box<dyn StateStore + Send> = match &options.state {
            StateBacking::Memory(s) => Box::new(s.clone()),
            StateBacking::Dir(d) => Box::new(FileStore::new(d)?),
        };
        let store_thread = std::thread::spawn(move || serve_store(store_link, store));

        // Wait for the ready marker (the module boot manufactures or restores the vTPM).
        let mut seen = Vec::new();
        link.set_read_timeout(Some(Duration::from_millis(200)))?;
        let ready = loop {
            let mut b = [0u8; 256];
            match link.read(&mut b) {
                Ok(0) => break Err("COM1 closed before the image was ready".to_owned()),
                Ok(n) => {
                    seen.extend_from_slice(&b[..n]);
                    if let Some(at) = find(&seen, READY_MARKER) {
                        if at + READY_MARKER.len() != seen.len() {
                            break Err("bytes after the ready marker".to_owned());
                        }
                        break Ok(());
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => break Err(e.to_string()),
            }
            if let Some(status) = child.try_wait()? {
                break Err(format!("QEMU exited ({status}) during boot"));
            }
            if Instant::now() > deadline {
                break Err("the image did not become ready in time".to_owned());
            }
        };
        if let Err(why) = ready {
            let _ = child.kill();
            return Err(ImageError::Image(format!(
                "{why}; image log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )));
        }
        // A hung image must fail the caller, not hang it.
        link.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Arc::new(ImageMachine {
            child: Mutex::new(Some(child)),
            link: Mutex::new(link),
            dir,
            store_thread: Mutex::new(Some(store_thread)),
            boot_time: start.elapsed(),
        }))
    }

    /// The serial line, locked for one whole exchange.
    pub fn lock_link(&self) -> MutexGuard<'_, UnixStream> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transport for a guest at `vmpl` with a `len`-byte driver buffer at
    /// [`DRIVER_BUFFER_GPA`].
    pub fn transport(self: &Arc<Self>, vmpl: u8, len: usize) -> io::Result<ImageTransport> {
        let stream = self.lock_link().try_clone()?;
        Ok(ImageTransport {
            machine: self.clone(),
            inner: FramedTransport::new(stream, vmpl, DRIVER_BUFFER_GPA, len),
        })
    }

    /// QEMU's pid (also its process group), while it runs.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Child::pid)
    }

    /// The names of the abstract sockets QEMU's serial lines connect to (for leak checks).
    pub fn socket_names(&self) -> [String; 2] {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        [format!("{name}-calls"), format!("{name}-com2")]
    }

    /// The machine's temporary directory (QEMU output, image log); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image log so far (QEMU's debug console).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("debugcon.log")).unwrap_or_default()
    }

    /// Statistics (control call 0).
    pub fn stats(self: &Arc<Self>) -> Result<ImageStats, ImageError> {
        let mut t = self.transport(1, 4096)?;
        let mut regs = CallRegisters {
            rax: CallId {
                protocol: CONTROL_PROTOCOL,
                call: 0,
            }
            .to_rax(),
            ..Default::default()
        };
        t.raw_call(&mut regs)
            .map_err(|e| ImageError::Image(format!("stats call: {e}")))?;
        if regs.rax != 0 {
            return Err(ImageError::Image(format!("stats call: {:#x}", regs.rax)));
        }
        let mut b = vec![0u8; 176];
        t.read_buffer(0, &mut b)
            .map_err(|e| ImageError::Image(e.to_string()))?;
        ImageStats::parse(&b).ok_or_else(|| ImageError::Image("malformed statistics".into()))
    }

    /// Sends one whole call frame on COM1 and returns the reply frame (both as bytes), holding
    /// the line for the exchange.
    pub fn exchange(&self, frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut line = self.lock_link();
        line.write_all(frame)?;
        let mut head = [0u8; 8];
        line.read_exact(&mut head)?;
        let total = svsm_abi::frame::declared_length(&head)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut reply = vec![0u8; total];
        reply[..8].copy_from_slice(&head);
        line.read_exact(&mut reply[8..])?;
        Ok(reply)
    }

    /// Sends a control call without waiting for a reply (the fault-injection calls, after which
    /// the image stops; it must be booted with `fault=control`).
    pub fn control_no_reply(&self, call: u32) -> io::Result<()> {
        let regs = CallRegisters {
            rax: CallId {
                protocol: CONTROL_PROTOCOL,
                call,
            }
            .to_rax(),
            ..Default::default()
        };
        let mut frame = [0u8; svsm_abi::frame::CALL_HEADER_LEN];
        let n = svsm_abi::frame::encode_call(&regs, 1, DRIVER_BUFFER_GPA, &[], &mut frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.lock_link().write_all(&frame[..n])
    }

    /// Asks the image to shut down and returns QEMU's exit status (33 when clean).
    pub fn shutdown(self: &Arc<Self>) -> Result<i32, ImageError> {
        let mut t = self.transport(1, 0)?;
        let mut regs = CallRegisters {
            rax: CallId {
                protocol: CONTROL_PROTOCOL,
                call: 1,
            }
            .to_rax(),
            ..Default::default()
        };
        t.raw_call(&mut regs)
            .map_err(|e| ImageError::Image(format!("shutdown call: {e}")))?;
        self.wait_exit(Duration::from_secs(60))
    }

    /// Waits for QEMU to exit; its exit status (a signal counts as -1).
    pub fn wait_exit(&self, timeout: Duration) -> Result<i32, ImageError> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some(child) = guard.as_mut() else {
            return Err(ImageError::Image("QEMU already reaped".into()));
        };
        loop {
            if let Some(status) = child.try_wait()? {
                *guard = None;
                if let Some(t) = self
                    .store_thread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    let _ = t.join();
                }
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                *guard = None;
                return Err(ImageError::Image("QEMU did not exit; killed".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ImageMachine {
    fn drop(&mut self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// guest-driver's [`FramedTransport`] over COM1, one whole call at a time.
pub struct ImageTransport {
    machine: Arc<ImageMachine>,
    inner: FramedTransport<UnixStream>,
}

impl ImageTransport {
    /// The machine behind the transport.
    pub fn machine(&self) -> &Arc<ImageMachine> {
        &self.machine
    }
}

impl SvsmTransport for ImageTransport {
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        let machine = self.machine.clone();
        let _line = machine.lock_link();
        self.inner.raw_call(regs)
    }
    fn buffer_gpa(&self) -> u64 {
        self.inner.buffer_gpa()
    }
    fn buffer_len(&self) -> usize {
        self.inner.buffer_len()
    }
    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        self.inner.write_buffer(offset, data)
    }
    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        self.inner.read_buffer(offset, out)
    }
}

// --- the state store on COM2 -----------------------------------------------------------------

fn store_status(e: StoreError) -> u8 {
    match e {
        StoreError::Empty(_) => 1,
        StoreError::Unavailable => 2,
        StoreError::TooLarge(_) => 3,
    }
}

/// Serves the image's store requests until COM2 closes (QEMU exited). A malformed request gets
/// an "unavailable" reply; the image then drains the line before its next request.
fn serve_store(mut link: UnixStream, mut store: Box<dyn StateStore + Send>) {
    loop {
        let mut head = [0u8; STORE_HEADER_LEN];
        if link.read_exact(&mut head).is_err() {
            return;
        }
        let reply = match parse_store_request(&head) {
            Err(_) => encode_store_reply(2, &[]),
            Ok(req) => {
                let mut blob = vec![0u8; req.len];
                if link.read_exact(&mut blob).is_err() {
                    return;
                }
                match req.op {
                    StoreOp::Read => match store.read(req.slot) {
                        Ok(data) if data.len() <= STORE_MAX_BLOB => encode_store_reply(0, &data),
                        Ok(_) => encode_store_reply(2, &[]),
                        Err(e) => encode_store_reply(store_status(e), &[]),
                    },
                    StoreOp::Write => match store.write(req.slot, &blob) {
                        Ok(()) => encode_store_reply(0, &[]),
                        Err(e) => encode_store_reply(store_status(e), &[]),
                    },
                }
            }
        };
        if link.write_all(&reply).is_err() {
            return;
        }
    }
}

// --- the SVSM call channel for guest processes ------------------------------------------------

/// Relays framed SVSM calls from guest processes (`svsm-vault --port`) on 127.0.0.1 to the
/// image's COM1, one whole exchange at a time. Each frame is decoded first (a malformed frame or
/// a VMPL0 caller closes that connection, as the simulator's channel does), so only well-formed
/// calls reach the line.
pub struct ImageGuestChannel {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ImageGuestChannel {
    /// Listens on 127.0.0.1:`port` (0 = any) in front of `machine`.
    pub fn start(port: u16, machine: Arc<ImageMachine>) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let machine = machine.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = relay(stream, &machine);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(ImageGuestChannel {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for ImageGuestChannel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one guest connection: relays each well-formed, non-VMPL0, non-control call frame
/// from `stream` to the image and its reply back, until the stream ends.
pub fn relay<S: Read + Write>(mut stream: S, machine: &ImageMachine) -> io::Result<()> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    loop {
        let mut head = [0u8; 8];
        if let Err(e) = stream.read_exact(&mut head) {
            return if e.kind() == io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(e)
            };
        }
        let total = svsm_abi::frame::declared_length(&head).map_err(|e| bad(e.to_string()))?;
        let mut frame = vec![0u8; total];
        frame[..8].copy_from_slice(&head);
        stream.read_exact(&mut frame[8..])?;
        let call = svsm_abi::frame::CallFrame::parse(&frame).map_err(|e| bad(e.to_string()))?;
        if call.vmpl == 0 {
            return Err(bad("VMPL0 calls are refused".into()));
        }
        if CallId::from_rax(call.regs.rax).protocol == CONTROL_PROTOCOL {
            return Err(bad("the image control protocol is not for guests".into()));
        }
        let reply = machine.exchange(&frame)?;
        stream.write_all(&reply)?;
    }
}

// --- the mssim endpoint in front of the image -----------------------------------------------

/// The vTPM inside the image, as an mssim backend: every TPM command goes guest-driver's vTPM
/// client -> framed SVSM call on COM1 -> the image's svsm-core -> libtpms.
pub struct ImageBackend {
    client: VtpmClient<ImageTransport>,
}

impl ImageBackend {
    /// Probes the image's vTPM protocol from VMPL1 (one 4 KiB page per call, as Linux uses).
    pub fn new(machine: &Arc<ImageMachine>) -> Result<Self, ImageError> {
        let t = machine.transport(1, svsm_abi::vtpm::VTPM_BUFFER_SIZE)?;
        let client = VtpmClient::probe(t)
            .map_err(|e| ImageError::Image(format!("the image serves no vTPM: {e}")))?;
        Ok(ImageBackend { client })
    }
}

impl TpmBackend for ImageBackend {
    fn send_command(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, BackendError> {
        if locality != 0 {
            return Err(BackendError::Transport(format!(
                "the SVSM vTPM protocol carries locality 0 only (asked for {locality})"
            )));
        }
        self.client
            .send_command(command, response)
            .map_err(|e| BackendError::Transport(e.to_string()))
    }
    /// The image's engine is powered on at boot and stays on: power-on is the no-op the mssim
    /// protocol allows for a TPM that is already on.
    fn power_on(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
    /// Not available: the engine's power is the VM's; reboot the image instead.
    fn power_off(&mut self) -> Result<(), BackendError> {
        Err(BackendError::Transport(
            "power off is not available through the image (reboot the VM)".into(),
        ))
    }
    /// The image's emulation-only control call 4: the engine restarts from its NV as at a
    /// platform reset (QEMU's TPM emulator backend sends INIT at every guest reset).
    fn reset(&mut self) -> Result<(), BackendError> {
        let mut regs = CallRegisters {
            rax: CallId {
                protocol: CONTROL_PROTOCOL,
                call: CONTROL_TPM_RESET,
            }
            .to_rax(),
            ..Default::default()
        };
        self.client
            .transport_mut()
            .raw_call(&mut regs)
            .map_err(|e| BackendError::Transport(format!("TPM reset call: {e}")))?;
        match regs.rax {
            0 => Ok(()),
            rax => Err(BackendError::Transport(format!(
                "the image refused the TPM reset (RAX {rax:#x})"
            ))),
        }
    }
}
