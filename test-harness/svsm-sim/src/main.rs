//! `svsm-sim`: the simulated SNP machine's command line: the mssim TPM endpoint in front of the
//! vTPM, and the demo.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use test_harness::vectors::{default_vectors_dir, summarize, vector_reports, ReportSummary};

use test_harness::image;

/// The svsm-vhsm simulator and demo driver.
#[derive(Parser)]
#[command(name = "svsm-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The flow the project exists for, end to end on the simulated SNP machine.
    ///
    /// A reference launch digest from Debian's OVMF.fd; a launch whose SVSM measures the guest
    /// components; an app that needs a key the vault does not have; one evidence bundle (SNP
    /// report + vTPM manifest + quote + PCRs + event log) appraised by host-verifier; the key
    /// wrapped to the attested vault transport key and used inside VMPL0. Then the same with a
    /// tampered firmware: the appraisal says no and no key is released.
    ///
    /// Then the same in the real guest (Debian's kernel under QEMU + OVMF, IMA on) against the
    /// broker on SQLite: an app that needs a key gets it through the guest agent and signs; the
    /// disk key is refused before the first round of continuous attestation and released after
    /// it, and the LUKS2 disk opens with cryptsetup in the guest; a tampered binary makes the
    /// next round contraindicated and the next key refused; a launch with a changed kernel gets
    /// nothing. Exit code 0 only when every outcome is the expected one.
    Demo {
        /// Only the simulated part (no guest boots).
        #[arg(long)]
        no_guest: bool,
        /// Where the guest is built (default target/guest).
        #[arg(long, value_name = "DIR")]
        guest_dir: Option<PathBuf>,
    },
    /// Decode every real SEV-SNP report in the repository's vectors (parsing only; `host-verifier
    /// snp verify` checks them).
    Vectors {
        /// The vectors folder (default: $SVSM_VECTORS, else the repository's vectors/).
        #[arg(long)]
        vectors: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the vTPM to real TPM clients over the TCG simulator ("mssim") TCP protocol.
    ///
    /// Listens on 127.0.0.1:PORT (commands) and PORT+1 (platform signals) only, in front of a
    /// freshly manufactured vTPM on a simulated SNP machine. Every TPM command goes the full
    /// SVSM path: guest-driver frames it as TPM_SEND_COMMAND, issues the SVSM vTPM call from
    /// VMPL1, svsm-core copies and validates it, and the engine runs it. Runs until a client
    /// sends TPM_STOP or the process is stopped. Point tpm2-tools at it with
    /// `TPM2TOOLS_TCTI=mssim:host=127.0.0.1,port=PORT`.
    TpmServer {
        /// Command port; the platform port is PORT+1.
        #[arg(long, default_value_t = 2321)]
        port: u16,
        /// Bypass the SVSM protocol and call the engine directly (for comparisons only).
        #[arg(long)]
        direct: bool,
        /// Keep the module's sealed state (vTPM and vault, AES-256-GCM under a key only this
        /// launch's VMPL0 can derive) in DIR, as two slot files. A restart with the same launch
        /// unseals it; state that does not unseal is left alone and the vTPM runs ephemeral.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Also serve the SVSM call channel for guest processes (`svsm-vault`) on
        /// 127.0.0.1:GUEST_PORT: framed SVSM calls into the same simulated machine.
        #[arg(long, value_name = "GUEST_PORT")]
        guest_port: Option<u16>,
        /// Serve the vTPM of the freestanding SVSM image (`make image`) booted under QEMU
        /// instead of the simulated machine: commands reach it as framed SVSM calls on its COM1;
        /// `--state DIR` keeps its sealed state (served to it on COM2); `--guest-port` relays
        /// guest processes' framed calls to it. The image's platform is EMULATED (test PSP key).
        #[arg(long, value_name = "PATH")]
        image: Option<PathBuf>,
        /// With --image: carry the calls on a virtio console instead of COM1 (~100x faster).
        #[arg(long, requires = "image")]
        virtio: bool,
        /// Also be QEMU's TPM emulator backend: serve the swtpm control channel on the UNIX
        /// socket PATH (QEMU: `-chardev socket,id=chrtpm,path=PATH -tpmdev
        /// emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0`); every TPM command of
        /// the guest goes through the full SVSM vTPM protocol path.
        /// With --image, the guest's commands reach the vTPM inside the image.
        #[arg(long, value_name = "PATH", conflicts_with = "direct")]
        qemu_ctrl: Option<PathBuf>,
    },
    /// A real Linux guest on the vTPM (Debian's kernel and OVMF under QEMU): build it, run it.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// Decode one ATTESTATION_REPORT (raw 1184 bytes, or an Azure HCL blob) and print its
    /// fields. Decoding is not verification: nothing here checks the signature.
    Inspect {
        /// The report file.
        report: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GuestCommand {
    /// Build the guest: Debian's cloud kernel and busybox-static (`apt-get download`, cached in
    /// DIR/debs), tpm2-tools and its libraries from this host, and the task scripts, packed into
    /// a reproducible initramfs. Prints the files and the initramfs SHA-256.
    Build {
        /// Output and cache directory (default: target/guest of the workspace).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// More host binaries to put in the guest's /usr/bin (with their libraries); svsm-vault
        /// and svsm-attest from svsm-sim's own target directory are always added.
        #[arg(long = "add", value_name = "BINARY")]
        add: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Boot the guest with QEMU + OVMF (TCG), its TPM device backed by a simulated SNP machine's
    /// vTPM (every command through the SVSM vTPM protocol path), run a task, print its output.
    /// The exit status is the task's.
    Run {
        /// The directory `guest build` wrote (built first if needed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The tasks, comma-separated: `tpm` (driver bound, tpm2-tools: random, PCRs, EK, AK,
        /// quote, event logs), `attest` (svsm-attest bundle: an evidence bundle bound to
        /// `svsm.nonce=`), `vault` (svsm-vault over the call channel: sign/verify,
        /// encrypt/decrypt), `tpm-bench` (svsm-attest tpm-bench through /dev/tpmrm0),
        /// `agent` (svsm-agent against the broker of --broker-port: a round, a key by name,
        /// and with `svsm.tamper=1` a program not in the image, another round and key; needs
        /// `svsm.policy=` and `svsm.broker_pem=` (base64 DER) on --append).
        #[arg(long, default_value = "tpm")]
        task: String,
        /// More kernel command line (e.g. `svsm.nonce=HEX` for the quote).
        #[arg(long, default_value = "")]
        append: String,
        /// Give the guest a TIS TPM instead of CRB.
        #[arg(long)]
        tis: bool,
        /// Keep the machine's sealed state in DIR across runs.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Use the vTPM (and vault) inside the freestanding SVSM image (`make image`, booted
        /// under its own QEMU) instead of the simulated machine; its platform is EMULATED (test
        /// PSP key). The image's calls travel on a virtio console.
        #[arg(long)]
        image: bool,
        /// With --image: the image to boot (default: the one `make image` builds).
        #[arg(long, value_name = "PATH", requires = "image")]
        image_path: Option<PathBuf>,
        /// Give the guest a virtio-net NIC on QEMU's user network, where 10.0.2.2 is this
        /// host's loopback, for the `agent` task and a broker on 127.0.0.1:PORT (pass
        /// `svsm.broker=10.0.2.2:PORT` on --append).
        #[arg(long, value_name = "PORT")]
        broker_port: Option<u16>,
        /// Attach this raw disk image as the guest's /dev/vda (virtio-blk), e.g. a LUKS2
        /// volume for the `agent` task's `svsm.disk=NAME`.
        #[arg(long, value_name = "PATH")]
        disk: Option<PathBuf>,
    },
}

/// svsm-vault and svsm-attest from the target directory this svsm-sim was built in.
fn own_guest_binaries() -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("svsm-sim has no directory")?;
    Ok(svsm_sim::guest::guest_binaries(dir)?)
}

fn guest(cmd: GuestCommand) -> Result<(), Box<dyn std::error::Error>> {
    use svsm_sim::guest::{
        build, default_guest_dir, run_guest, CallTarget, GuestTpm, RunOptions, TpmDevice,
    };
    match cmd {
        GuestCommand::Build { dir, add, json } => {
            let mut binaries = own_guest_binaries()?;
            binaries.extend(add);
            let image = build(&dir.unwrap_or_else(default_guest_dir), &binaries)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "kernel": image.kernel,
                        "initrd": image.initrd,
                        "kernel_package": image.kernel_package,
                        "initrd_sha256": image.initrd_sha256,
                    })
                );
            } else {
                println!(
                    "kernel  {} ({})",
                    image.kernel.display(),
                    image.kernel_package
                );
                println!("initrd  {}", image.initrd.display());
                println!("sha256  {}", image.initrd_sha256);
            }
            Ok(())
        }
        GuestCommand::Run {
            dir,
            task,
            append,
            tis,
            state,
            timeout,
            image: use_image,
            image_path,
            broker_port,
            disk,
        } => {
            let image = build(
                &dir.unwrap_or_else(default_guest_dir),
                &own_guest_binaries()?,
            )?;
            let options = RunOptions {
                task,
                append,
                device: if tis { TpmDevice::Tis } else { TpmDevice::Crb },
                timeout: std::time::Duration::from_secs(timeout),
                broker_port,
                disk,
            };
            if use_image {
                let path = image_path.unwrap_or_else(image::default_image_path);
                let mut opts = image::ImageOptions::new(path);
                opts.line = image::CallLine::Virtio;
                if let Some(d) = state {
                    opts.state = image::StateBacking::Dir(d);
                }
                let machine = image::ImageMachine::boot(&opts)?;
                let backend = Box::new(image::ImageBackend::new(&machine)?);
                eprintln!(
                    "svsm-sim: booting {} (TCG; 10-20 s) with a {} TPM on the SVSM image's vTPM \
                     (EMULATED platform)",
                    image.kernel_package,
                    if tis { "TIS" } else { "CRB" }
                );
                let run = run_guest(
                    &image,
                    GuestTpm::Backend(backend),
                    Some(CallTarget::Image(&machine)),
                    &options,
                );
                let _ = machine.shutdown();
                return finish(run?);
            }
            let store = match state {
                Some(d) => test_harness::sim::store::AnyStore::File(
                    test_harness::sim::store::FileStore::new(d)?,
                ),
                None => test_harness::sim::store::AnyStore::Memory(Default::default()),
            };
            let machine = test_harness::sim::SimMachine::boot(
                test_harness::sim::psp::LaunchConfig::genoa([0x11; 48]),
                store,
                None,
            )?;
            let backend = Box::new(test_harness::tpm_backend::SvsmBackend::new(&machine)?);
            eprintln!(
                "svsm-sim: booting {} (TCG; 10-20 s) with a {} TPM on the simulated machine's vTPM",
                image.kernel_package,
                if tis { "TIS" } else { "CRB" }
            );
            let run = run_guest(
                &image,
                GuestTpm::Backend(backend),
                Some(CallTarget::Sim(&machine)),
                &options,
            )?;
            finish(run)
        }
    }
}

/// Prints a guest run's output; its task status becomes the result.
fn finish(run: svsm_sim::guest::GuestRun) -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", run.output);
    eprintln!("svsm-sim: guest ran {:.1} s", run.elapsed.as_secs_f64());
    match run.status {
        Some(0) => Ok(()),
        Some(code) => Err(format!("the guest task exited with {code}").into()),
        None => Err(format!("the guest reported no result; console:\n{}", run.console).into()),
    }
}

fn print_summary(s: &ReportSummary) {
    println!("{}", s.source);
    println!(
        "  version {}  product {}  signed by {}  VMPL {}",
        s.version,
        s.product.unwrap_or("(not in v2 reports)"),
        s.signing_key,
        s.vmpl
    );
    println!(
        "  policy {} (debug {})  platform_info {} (unknown bits {})",
        s.policy,
        if s.debug_allowed {
            "ALLOWED"
        } else {
            "forbidden"
        },
        s.platform_info,
        s.platform_info_unknown_bits
    );
    println!("  measurement {}", s.measurement);
    println!(
        "  reported TCB {}{}  chip id {}…",
        s.reported_tcb,
        s.reported_tcb_decoded
            .as_deref()
            .map(|d| format!(" = {d}"))
            .unwrap_or_default(),
        s.chip_id_prefix
    );
    println!("  reserved fields: {}", s.reserved_fields);
}

/// The real-guest part of the demo.
fn guest_demo(dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== the real guest: the agent, continuous attestation, IMA, disk keys");
    let started = std::time::Instant::now();
    let image = svsm_sim::guest::build(
        &dir.unwrap_or_else(svsm_sim::guest::default_guest_dir),
        &own_guest_binaries()?,
    )?;
    println!(
        "0. guest: {} + initramfs {} (built in {:.1} s)",
        image.kernel_package,
        &image.initrd_sha256[..16],
        started.elapsed().as_secs_f64()
    );
    let work = svsm_sim::guest_demo::WorkDir::new()?;
    let demo = svsm_sim::guest_demo::run(&image, &work.0, &mut |line| println!("{line}"))?;
    let verdict = demo.check();
    println!(
        "\nWhat this shows: a key reaches the app's vault only through an attested node (the disk key was refused before the first round), an IMA entry outside the image's runtime policy makes the next round fail by name and stops further releases, and a launch whose kernel differs gets nothing. {} ({:.0} s)",
        match &verdict {
            Ok(()) => "Every outcome as expected.".to_owned(),
            Err(e) => format!("UNEXPECTED OUTCOME: {e}."),
        },
        demo.elapsed.as_secs_f64()
    );
    verdict.map_err(|e| e.into())
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Demo {
            no_guest,
            guest_dir,
        } => {
            println!("svsm-vhsm demo: one guest, its vTPM and vault at VMPL0, a broker that releases a key only to an appraised launch");
            let (_, ok) = test_harness::demo::run_all(|line| println!("{line}"))?;
            println!(
                "\nWhat this shows: keys reach VMPL0 only after CPU (SNP report, AMD-shaped chain, MEASUREMENT), vTPM (quote, PCRs against values computed from the files, event log) and SVSM (manifest binding, requester VMPL) evidence is appraised together; the key is wrapped for that one boot, instance and VMPL, so a changed firmware or kernel gets nothing, and a package captured by the host is refused by any other launch. {}",
                if ok { "Every outcome as expected." } else { "UNEXPECTED OUTCOME." }
            );
            if !ok {
                return Err("the demo did not behave as expected".into());
            }
            if !no_guest {
                guest_demo(guest_dir)?;
            }
        }
        Command::Vectors { vectors, json } => {
            let dir = vectors.unwrap_or_else(default_vectors_dir);
            let summaries = vector_reports(&dir)?
                .iter()
                .map(|p| summarize(p))
                .collect::<Result<Vec<_>, _>>()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summaries)?);
                return Ok(());
            }
            println!(
                "decoding {} real SEV-SNP reports from {}\n",
                summaries.len(),
                dir.display()
            );
            for s in &summaries {
                print_summary(s);
            }
            println!(
                "\nDecoding only: `host-verifier snp verify` checks signatures, chains and policy."
            );
        }
        Command::TpmServer {
            port,
            direct,
            state,
            guest_port,
            image,
            virtio,
            qemu_ctrl,
        } => {
            if let Some(image) = image {
                if direct {
                    return Err("--image always takes the SVSM path; drop --direct".into());
                }
                let line = if virtio {
                    image::CallLine::Virtio
                } else {
                    image::CallLine::Com1
                };
                let term = svsm_process::Termination::install()?;
                return Ok(stopped_by(svsm_sim::endpoints::serve_tpm(
                    port, image, state, guest_port, qemu_ctrl, line, &term,
                )?)?);
            }
            use test_harness::tpm_backend as backend;
            let mut channel = None;
            let mut qemu = None;
            let (server, status) = if direct {
                if state.is_some() || guest_port.is_some() {
                    return Err(
                        "--state needs the SVSM path (the module seals it); drop --direct".into(),
                    );
                }
                let tpm = vtpm::Vtpm::manufacture(Default::default())?;
                let direct_backend = Box::new(backend::DirectBackend(tpm));
                let server = test_harness::mssim::MssimServer::start(port, direct_backend)?;
                (server, "fresh vTPM, not persisted".to_owned())
            } else {
                let e = svsm_sim::endpoints::start_machine_endpoints(
                    port, state, guest_port, qemu_ctrl,
                )?;
                channel = e.channel;
                qemu = e.qemu;
                (e.mssim, e.status)
            };
            let term = svsm_process::Termination::install()?;
            eprintln!("svsm-sim: {status}");
            eprintln!(
                "svsm-sim: vTPM ({}) listening on 127.0.0.1:{} (platform {}); TCTI {}",
                if direct {
                    "engine direct"
                } else {
                    "full SVSM vTPM protocol path"
                },
                server.command_port(),
                server.command_port() + 1,
                server.tcti()
            );
            if let Some(ch) = &channel {
                eprintln!("svsm-sim: SVSM call channel on 127.0.0.1:{}", ch.port());
            }
            if let Some(q) = &qemu {
                eprintln!(
                    "svsm-sim: QEMU TPM emulator control socket {} (-tpmdev emulator)",
                    q.path().display()
                );
            }
            // Sealed state is written after every change, so stopping here loses nothing.
            let signal = server.wait_or_signal(&term);
            drop(channel);
            drop(qemu);
            stopped_by(signal)?;
        }
        Command::Guest(cmd) => guest(cmd)?,
        Command::Inspect { report, json } => {
            let s = summarize(&report)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_summary(&s);
            }
        }
    }
    Ok(())
}

/// Ended by SIGINT or SIGTERM: after a clean shutdown, the exit status names the signal.
#[derive(Debug)]
struct Stopped(i32);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by {}: sealed state persisted, child processes stopped",
            svsm_process::Termination::name(self.0)
        )
    }
}

impl std::error::Error for Stopped {}

fn stopped_by(signal: Option<i32>) -> Result<(), Stopped> {
    match signal {
        Some(s) => Err(Stopped(s)),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svsm-sim: {e}");
            match e.downcast_ref::<Stopped>() {
                Some(Stopped(s)) => ExitCode::from(svsm_process::Termination::exit_code(*s)),
                None => ExitCode::FAILURE,
            }
        }
    }
}
