//! `svsm-agent`: continuous attestation and keys on demand, inside an svsm-vhsm guest
//! (docs/agent.md).

use clap::{Parser, Subcommand};
use guest_agent::{next_round, Agent, AgentConfig, AgentError, TpmPath, FIRMWARE_LOG, IMA_LOG};
use guest_driver::channel::ChannelArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The guest's agent: attests the node to the key broker round after round (quote, SNP report,
/// the IMA entries since the last round), and provisions keys the apps of this guest ask for.
#[derive(Parser, Debug)]
#[command(name = "svsm-agent", version, about, long_about = None)]
struct Cli {
    /// The SVSM call channel.
    #[command(flatten)]
    channel: ChannelArgs,
    /// The broker's base URL.
    #[arg(long, global = true, default_value = "https://10.0.2.2:8443")]
    broker: String,
    /// The broker's certificate (PEM), the only one trusted: `tls-cert.pem` of its data
    /// directory on a first run.
    #[arg(long, global = true, default_value = "/etc/svsm-agent/broker.pem")]
    ca: PathBuf,
    /// The TPM: a device (`/dev/tpmrm0`), or `svsm` for the SVSM vTPM protocol over the call
    /// channel.
    #[arg(long, global = true, default_value = "/dev/tpmrm0")]
    tpm: String,
    /// IMA's binary measurement list (left out of bundles when missing).
    #[arg(long, global = true, default_value = IMA_LOG)]
    ima_log: PathBuf,
    /// The firmware's TCG log (`none`: never sent).
    #[arg(long, global = true, default_value = FIRMWARE_LOG)]
    firmware_log: String,
    /// The broker policy rounds are attested under (it names the runtime policy).
    #[arg(long, global = true)]
    policy: Option<String>,
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One round of continuous attestation; exit 0 affirming, 2 contraindicated.
    Round {
        /// Send IMA's list from this entry (default 0: the whole list).
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Rounds at the interval the broker sets, and (with --socket) keys on demand for the
    /// apps of this guest.
    Run {
        /// Stop after this many rounds (default: run until killed).
        #[arg(long)]
        rounds: Option<u64>,
        /// Never wait longer than this many seconds between rounds.
        #[arg(long)]
        max_interval: Option<u64>,
        /// Serve provisioning requests here (`svsm-vault --key name:NAME` asks).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Serve keys on demand on SOCKET only (no rounds), until killed.
    Serve {
        /// The socket (`svsm-vault --agent`).
        #[arg(long, default_value = guest_driver::agent_socket::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Provision the broker's resource NAME into the vault now: attest, release, import.
    Provision {
        /// The resource (also the key's name in the vault).
        #[arg(long)]
        resource: String,
    },
}

fn agent(cli: &Cli) -> Result<Agent, String> {
    let ca_pem = std::fs::read(&cli.ca).map_err(|e| format!("{}: {e}", cli.ca.display()))?;
    Agent::new(AgentConfig {
        channel: cli.channel.clone(),
        tpm: if cli.tpm == "svsm" {
            TpmPath::Svsm
        } else {
            TpmPath::Device(PathBuf::from(&cli.tpm))
        },
        ima_log: cli.ima_log.clone(),
        firmware_log: (cli.firmware_log != "none").then(|| PathBuf::from(&cli.firmware_log)),
        broker: cli.broker.clone(),
        ca_pem,
        policy: cli.policy.clone(),
    })
    .map_err(|e| e.to_string())
}

/// One line about a round.
fn report(
    json: bool,
    n: u64,
    answer: &Result<host_verifier::broker::api::AttestResponse, AgentError>,
) {
    match (answer, json) {
        (Ok(a), true) => println!(
            "{}",
            serde_json::json!({
                "round": n, "verdict": a.verdict, "failed_checks": a.failed_checks,
                "state": a.round,
            })
        ),
        (Ok(a), false) => {
            let state = a.round.as_ref().map_or(String::new(), |r| {
                format!(
                    " | reputation {} {} | next round in {} s from IMA entry {}",
                    r.reputation,
                    if r.trusted { "trusted" } else { "untrusted" },
                    r.next_round_in_s,
                    r.ima_offset
                )
            });
            println!("round {n}: {}{state}", a.verdict);
            for f in &a.failed_checks {
                println!("  {}: {}", f.check, f.reason);
            }
        }
        (Err(e), true) => println!(
            "{}",
            serde_json::json!({"round": n, "error": e.to_string()})
        ),
        (Err(e), false) => println!("round {n}: error: {e}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let agent = match agent(&cli) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("svsm-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &cli.command {
        Command::Round { from } => {
            agent.set_ima_offset(*from);
            let answer = agent.round();
            report(cli.json, 1, &answer);
            match answer {
                Ok(a) if a.verdict == "affirming" => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(2),
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Provision { resource } => match agent.provision(resource) {
            Ok(p) => {
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({"key": p.key, "resource": p.released.resource,
                            "kind": p.released.kind, "owner_vmpl": p.released.owner_vmpl,
                            "instance_id": p.released.instance_id})
                    );
                } else {
                    println!(
                        "provisioned {} ({}) as key {} of VMPL {}",
                        p.released.resource, p.released.kind, p.key, p.released.owner_vmpl
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("svsm-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { socket } => match agent.serve(socket) {
            Ok(thread) => {
                let _ = thread.join();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("svsm-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            rounds,
            max_interval,
            socket,
        } => {
            if let Some(path) = socket {
                if let Err(e) = agent.serve(path) {
                    eprintln!("svsm-agent: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let cap = max_interval.map(Duration::from_secs);
            let mut n = 0;
            loop {
                n += 1;
                let answer = agent.round();
                report(cli.json, n, &answer);
                if rounds.is_some_and(|r| n >= r) {
                    return ExitCode::SUCCESS;
                }
                std::thread::sleep(next_round(&answer, cap));
            }
        }
    }
}
