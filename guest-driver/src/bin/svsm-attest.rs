//! `svsm-attest`: evidence from inside a guest. `bundle` gathers one evidence bundle (quote by
//! the SVSM's AK, PCRs, the firmware's and IMA's logs, the SVSM's log and the VMPL0 SNP report
//! over the vTPM manifest, with any GPU reports registered for it) for `host-verifier bundle
//! verify`; `gpu-nonce` derives the nonce a GPU report must carry for that; `tpm-bench` times
//! TPM commands as a guest process sees them.

use clap::{Parser, Subcommand};
use guest_driver::channel::ChannelArgs;
use guest_driver::evidence::{
    collect, read_optional_log, run_tpm, CharDevice, EvidenceError, GuestLogs, TpmDevice,
    TPM_RESPONSE_MAX,
};
use guest_driver::vault::VaultClient;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use svsm_tpm2::command as cmd;
use svsm_tpm2::templates::{ecc_p256_signing_template, AkCurve, KeyTemplate};

/// Where Linux exposes the firmware's TCG event log.
const FIRMWARE_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// Where Linux exposes IMA's measurement list.
const IMA_LOG: &str = "/sys/kernel/security/ima/binary_runtime_measurements";

/// Attestation evidence from inside an svsm-vhsm guest.
#[derive(Parser, Debug)]
#[command(name = "svsm-attest", version, about, long_about = None)]
struct Cli {
    /// The SVSM call channel (for the SNP report, the manifest and the SVSM's log).
    #[command(flatten)]
    channel: ChannelArgs,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gather an evidence bundle bound to NONCE and write it as JSON.
    ///
    /// Order: TPM2_Quote by the SVSM's AK (0x81000003) over all 24 SHA-256 PCRs with NONCE as
    /// qualifying data, the PCR values, then the firmware's and IMA's logs (read after the
    /// quote, so they cover at least what it quotes), the SVSM's event log, and last the VMPL0
    /// SNP report over the vTPM manifest with REPORT_DATA = SHA-512(NONCE ‖ manifest). Check it
    /// with `host-verifier bundle verify --bundle FILE --nonce NONCE`.
    Bundle {
        /// The relying party's nonce, hex (at most 64 bytes).
        #[arg(long)]
        nonce: String,
        /// The TPM device (the kernel's resource manager).
        #[arg(long, default_value = "/dev/tpmrm0")]
        tpm: PathBuf,
        /// The firmware's TCG log; left out when the file does not exist.
        #[arg(long, default_value = FIRMWARE_LOG)]
        firmware_log: String,
        /// IMA's binary measurement list; left out when the file does not exist.
        #[arg(long, default_value = IMA_LOG)]
        ima_log: String,
        /// Leave the firmware log out.
        #[arg(long)]
        no_firmware_log: bool,
        /// Leave the IMA log out.
        #[arg(long)]
        no_ima_log: bool,
        /// Write the bundle here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A GPU attestation report made for this attestation (SPDM GET_MEASUREMENTS request ‖
        /// MEASUREMENTS response, hex text or raw bytes, with the nonce `svsm-attest gpu-nonce`
        /// prints): registered with the vault so the manifest lists it, and carried in the
        /// bundle. Repeatable, one per GPU, each with its --gpu-chain.
        #[arg(long, requires = "gpu_chain")]
        gpu_report: Vec<PathBuf>,
        /// The certificate chain (PEM, leaf first) of the GPU of the --gpu-report at the same
        /// position.
        #[arg(long, requires = "gpu_report")]
        gpu_chain: Vec<PathBuf>,
    },
    /// Print the nonce to ask each GPU's attestation (e.g. NVIDIA's tools) for, so that its
    /// report belongs to the attestation answering NONCE: SHA-256("svsm-vhsm gpu-nonce v1" ‖
    /// NONCE), hex.
    GpuNonce {
        /// The relying party's nonce, hex (at most 64 bytes).
        #[arg(long)]
        nonce: String,
    },
    /// Time TPM commands through a TPM device, as a guest process sees them.
    ///
    /// GetRandom(32), PCR_Extend of PCR 16 (the debug PCR), Sign with an ECC P-256 key and
    /// Quote with a restricted P-256 key (both primaries it creates and flushes). Prints the
    /// median and mean per command in microseconds.
    TpmBench {
        /// The TPM device.
        #[arg(long, default_value = "/dev/tpmrm0")]
        tpm: PathBuf,
        /// Timed runs per command (after 5 untimed ones).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        iterations: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum AttestError {
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Channel(#[from] guest_driver::channel::ChannelError),
    #[error("--nonce must be 1 to 64 bytes of hex")]
    Nonce,
    #[error("give one --gpu-chain for each --gpu-report")]
    GpuPairs,
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("cannot open the TPM device {path}: {error}")]
    TpmOpen { path: String, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("evidence bundle: {0}")]
    Bundle(#[from] svsm_evidence::BundleError),
    #[error("vault: {0}")]
    Vault(#[from] guest_driver::vault::VaultClientError),
}

fn open_tpm(path: &PathBuf) -> Result<CharDevice<std::fs::File>, AttestError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(CharDevice)
        .map_err(|error| AttestError::TpmOpen {
            path: path.display().to_string(),
            error,
        })
}

fn parse_nonce(hex_text: &str) -> Result<Vec<u8>, AttestError> {
    let nonce = hex::decode(hex_text).map_err(|_| AttestError::Nonce)?;
    if nonce.is_empty() || nonce.len() > 64 {
        return Err(AttestError::Nonce);
    }
    Ok(nonce)
}

fn bundle(cli: &Cli) -> Result<(), AttestError> {
    let Command::Bundle {
        nonce,
        tpm,
        firmware_log,
        ima_log,
        no_firmware_log,
        no_ima_log,
        out,
        gpu_report,
        gpu_chain,
    } = &cli.command
    else {
        return Ok(());
    };
    let nonce = parse_nonce(nonce)?;
    if gpu_report.len() != gpu_chain.len() {
        return Err(AttestError::GpuPairs);
    }
    let mut extra = Vec::with_capacity(gpu_report.len());
    for (report, chain) in gpu_report.iter().zip(gpu_chain) {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|error| AttestError::Read {
                path: path.display().to_string(),
                error,
            })
        };
        let raw = read(report)?;
        let text: String = String::from_utf8_lossy(&raw)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let report_bytes = match hex::decode(&text) {
            Ok(decoded) if !text.is_empty() => decoded,
            _ => raw,
        };
        let evidence = guest_driver::evidence::gpu_evidence(&report_bytes, &read(chain)?, &nonce)?;
        extra.push((svsm_abi::gpu::EXTRA_KIND_GPU, evidence));
    }
    let mut tpm = open_tpm(tpm)?;
    let mut vault = VaultClient::probe(cli.channel.open()?)?;
    let bundle = collect(&mut vault, &mut tpm, &nonce, &extra, || {
        Ok(GuestLogs {
            firmware: if *no_firmware_log {
                None
            } else {
                read_optional_log("firmware log", firmware_log)?
            },
            ima: if *no_ima_log {
                None
            } else {
                read_optional_log("IMA log", ima_log)?
            },
        })
    })?;
    let json = bundle.to_json()?;
    match out {
        Some(path) => std::fs::write(path, json + "\n").map_err(|error| AttestError::Write {
            path: path.display().to_string(),
            error,
        }),
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

fn create_primary(
    tpm: &mut dyn TpmDevice,
    hierarchy: u32,
    template: &[u8],
) -> Result<u32, AttestError> {
    let mut rsp = vec![0u8; TPM_RESPONSE_MAX];
    let command = cmd::create_primary(hierarchy, template)
        .map_err(|_| EvidenceError::Marshal("CreatePrimary"))?;
    let rsp = run_tpm(tpm, "CreatePrimary", &command, &mut rsp)?;
    Ok(
        cmd::parse_create_primary(rsp).map_err(|error| EvidenceError::TpmMalformed {
            command: "CreatePrimary",
            error,
        })?,
    )
}

struct Timing {
    command: &'static str,
    median_us: f64,
    mean_us: f64,
}

fn tpm_bench(tpm_path: &PathBuf, iterations: u32, json: bool) -> Result<(), AttestError> {
    let mut dev = open_tpm(tpm_path)?;
    let tpm: &mut dyn TpmDevice = &mut dev;
    let signer = create_primary(tpm, cmd::TPM_RH_OWNER, &ecc_p256_signing_template())?;
    let ak = create_primary(
        tpm,
        cmd::TPM_RH_ENDORSEMENT,
        &KeyTemplate::ak(AkCurve::P256).template(),
    )?;
    let marshal = |name| EvidenceError::Marshal(name);
    let commands: [(&'static str, Vec<u8>); 4] = [
        (
            "GetRandom(32)",
            cmd::get_random(32).map_err(|_| marshal("GetRandom"))?,
        ),
        (
            "PCR_Extend",
            cmd::pcr_extend_sha256(16, &[0xAB; 32]).map_err(|_| marshal("PCR_Extend"))?,
        ),
        (
            "Sign ECC P-256",
            cmd::sign_sha256(signer, &[0x5A; 32]).map_err(|_| marshal("Sign"))?,
        ),
        (
            "Quote ECC P-256",
            cmd::quote_sha256(ak, &[0x11; 32], 0x0000_07FF).map_err(|_| marshal("Quote"))?,
        ),
    ];
    let mut rsp = vec![0u8; TPM_RESPONSE_MAX];
    let mut timings = Vec::new();
    for (name, command) in &commands {
        for _ in 0..5 {
            run_tpm(tpm, name, command, &mut rsp)?;
        }
        let mut samples = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let t = Instant::now();
            run_tpm(tpm, name, command, &mut rsp)?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        timings.push(Timing {
            command: name,
            median_us: samples.get(samples.len() / 2).copied().unwrap_or(0.0),
            mean_us: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        });
    }
    for handle in [signer, ak] {
        let flush = cmd::flush_context(handle).map_err(|_| marshal("FlushContext"))?;
        run_tpm(tpm, "FlushContext", &flush, &mut rsp)?;
    }
    if json {
        let list: Vec<serde_json::Value> = timings
            .iter()
            .map(|t| {
                serde_json::json!({
                    "command": t.command,
                    "iterations": iterations,
                    "median_us": t.median_us,
                    "mean_us": t.mean_us,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for t in &timings {
            println!(
                "{:<18} median {:>10.1} us  mean {:>10.1} us  ({iterations} runs)",
                t.command, t.median_us, t.mean_us
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bundle { .. } => bundle(&cli),
        Command::TpmBench {
            tpm,
            iterations,
            json,
        } => tpm_bench(tpm, *iterations, *json),
        Command::GpuNonce { nonce } => parse_nonce(nonce).map(|n| {
            println!("{}", hex::encode(svsm_abi::gpu::gpu_nonce(&n)));
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svsm-attest: {e}");
            ExitCode::FAILURE
        }
    }
}
