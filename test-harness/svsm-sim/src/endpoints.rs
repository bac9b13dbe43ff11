//! What `svsm-sim tpm-server` serves for one machine (the simulated one or the freestanding
//! image): the mssim ports for TPM clients, the SVSM call channel for guest processes, and
//! QEMU's TPM emulator control socket, all in front of the same vTPM.

use crate::qemu_tpm::QemuTpmServer;
use std::path::PathBuf;
use test_harness::guest_channel::GuestChannel;
use test_harness::image::{
    CallLine, ImageBackend, ImageError, ImageGuestChannel, ImageMachine, ImageOptions,
    StateBacking, EXIT_CLEAN,
};
use test_harness::mssim::MssimServer;
use test_harness::tpm_backend::{boot_machine, SvsmBackend};

/// What `svsm-sim tpm-server` serves for one simulated machine.
pub struct Endpoints {
    /// The mssim ports (tpm2-tools, tss-esapi).
    pub mssim: MssimServer,
    /// Where the sealed state came from, in words.
    pub status: String,
    /// The SVSM call channel for guest processes, if asked for.
    pub channel: Option<GuestChannel>,
    /// QEMU's TPM emulator backend, if asked for.
    pub qemu: Option<QemuTpmServer>,
}

/// Boots a simulated machine (sealed state in `state_dir`, if given) and serves its vTPM on
/// the mssim ports, with `guest_port` its SVSM call channel for guest processes, and with
/// `qemu_ctrl` QEMU's TPM emulator control socket at that path.
pub fn start_machine_endpoints(
    port: u16,
    state_dir: Option<PathBuf>,
    guest_port: Option<u16>,
    qemu_ctrl: Option<PathBuf>,
) -> Result<Endpoints, Box<dyn std::error::Error>> {
    let (machine, status) = boot_machine(state_dir)?;
    let channel = guest_port
        .map(|p| GuestChannel::start(p, machine.clone()))
        .transpose()?;
    let qemu = qemu_ctrl
        .map(|path| -> Result<_, Box<dyn std::error::Error>> {
            Ok(QemuTpmServer::start(
                &path,
                Box::new(SvsmBackend::new(&machine)?),
            )?)
        })
        .transpose()?;
    let backend = SvsmBackend::new(&machine)?;
    Ok(Endpoints {
        mssim: MssimServer::start(port, Box::new(backend))?,
        status,
        channel,
        qemu,
    })
}

/// Boots the image and serves its vTPM to TPM clients on the mssim ports (`svsm-sim tpm-server
/// --image`). Returns when a client sends TPM_STOP; then shuts the image down and checks its
/// exit status.
pub fn serve_tpm(
    port: u16,
    image: PathBuf,
    state: Option<PathBuf>,
    guest_port: Option<u16>,
    qemu_ctrl: Option<PathBuf>,
    line: CallLine,
    term: &svsm_process::Termination,
) -> Result<Option<i32>, ImageError> {
    let mut options = ImageOptions::new(image);
    options.line = line;
    if let Some(dir) = state {
        options.state = StateBacking::Dir(dir);
    }
    let machine = ImageMachine::boot(&options)?;
    if let Some(pid) = machine.qemu_pid() {
        eprintln!("svsm-sim: QEMU pid {pid} (process group {pid})");
    }
    let stats = machine.stats()?;
    let status = match stats.state_status {
        0 => format!("fresh vTPM, sealed state epoch {}", stats.state_epoch),
        1 => format!("restored sealed state epoch {}", stats.state_epoch),
        _ => "EPHEMERAL vTPM (state not persisted)".to_owned(),
    };
    eprintln!(
        "svsm-sim: SVSM image booted under QEMU in {:.1} s (EMULATED platform: test PSP key); {status}",
        machine.boot_time.as_secs_f64()
    );
    let backend = ImageBackend::new(&machine)?;
    let server = MssimServer::start(port, Box::new(backend))?;
    eprintln!(
        "svsm-sim: vTPM (inside the image, calls over {line:?}) listening on 127.0.0.1:{} (platform {}); TCTI {}",
        server.command_port(),
        server.command_port() + 1,
        server.tcti()
    );
    let channel = guest_port
        .map(|p| ImageGuestChannel::start(p, machine.clone()))
        .transpose()?;
    if let Some(ch) = &channel {
        eprintln!(
            "svsm-sim: SVSM call channel (relayed to the image's call line) on 127.0.0.1:{}",
            ch.port()
        );
    }
    let qemu = match qemu_ctrl {
        Some(path) => {
            let backend = ImageBackend::new(&machine)?;
            let q = QemuTpmServer::start(&path, Box::new(backend))?;
            eprintln!(
                "svsm-sim: QEMU TPM emulator control channel on {} (-chardev \
                 socket,id=chrtpm,path={} -tpmdev emulator,id=tpm0,chardev=chrtpm)",
                path.display(),
                path.display()
            );
            Some(q)
        }
        None => None,
    };
    let signal = server.wait_or_signal(term);
    drop(qemu);
    drop(channel);
    // A clean shutdown: the image seals and stores its state, then QEMU exits.
    match machine.shutdown()? {
        EXIT_CLEAN => Ok(signal),
        code => Err(ImageError::Image(format!(
            "QEMU exited with status {code}, not {EXIT_CLEAN}; image log:\n{}",
            machine.log()
        ))),
    }
}
