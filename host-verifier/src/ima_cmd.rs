//! `host-verifier ima`: make a runtime policy from a directory tree, and appraise a captured IMA
//! list against one (docs/host-verifier.md, "IMA runtime policies").

use anyhow::{Context, Result};
use clap::Subcommand;
use host_verifier::bundle_verify::ima::{entry_digest, extend};
use host_verifier::measured::ima_rounds::{appraise_round, ImaPosition, Round, RoundFailure};
use host_verifier::measured::runtime_policy::{RuntimePolicy, RuntimePolicyDocument, TreeOptions};
use host_verifier::policy::parse_hex;
use std::path::PathBuf;
use std::process::ExitCode;
use svsm_abi::ima::ImaLog;

const IMA_EXIT_HELP: &str = "Exit codes: 0 every covered entry is allowed, 2 at least one is \
not (or the list does not replay to --pcr10), 1 error (unreadable file, malformed policy or \
list).";

#[derive(Subcommand)]
pub enum ImaCmd {
    /// Runtime policies in Keylime's format (what `keylime-policy create runtime` writes).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Appraise an IMA list (binary_runtime_measurements) against a runtime policy, from its
    /// first entry: the replay to PCR 10, the boot_aggregate when --pcrs are given, and every
    /// covered entry against the policy. Failures are named by entry index and path.
    #[command(after_help = IMA_EXIT_HELP)]
    Appraise {
        /// The runtime policy (JSON).
        #[arg(long)]
        policy: PathBuf,
        /// The list, as the kernel prints /sys/kernel/security/ima/binary_runtime_measurements.
        #[arg(long)]
        log: PathBuf,
        /// The quoted SHA-256 PCR 10 (64 hex characters). Without it the whole list is taken
        /// as it is: nothing binds it to a TPM, so use this only to try a policy.
        #[arg(long)]
        pcr10: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Make a policy that allows every regular file under a directory (for example the guest's
    /// unpacked initramfs) with its SHA-256 digest, at the path it has in the guest. Symbolic
    /// links are skipped: IMA measures the file they resolve to, under that file's path.
    Create {
        /// The tree to hash.
        #[arg(long)]
        root: PathBuf,
        /// Where the tree is mounted in the guest.
        #[arg(long, default_value = "/")]
        mount_point: String,
        /// A regular expression of guest paths not to appraise (repeatable); matched at the
        /// start of the path, as Keylime does. Matching files are not hashed.
        #[arg(long = "exclude")]
        excludes: Vec<String>,
        /// Free text for meta.timestamp (left out by default, so the same tree gives the same
        /// bytes).
        #[arg(long)]
        timestamp: Option<String>,
        /// Write the policy here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check that a policy parses and compiles; print its size.
    Check {
        /// The runtime policy (JSON).
        #[arg(long)]
        policy: PathBuf,
    },
}

pub fn run(cmd: ImaCmd) -> Result<ExitCode> {
    match cmd {
        ImaCmd::Policy(PolicyCmd::Create {
            root,
            mount_point,
            excludes,
            timestamp,
            output,
        }) => {
            let doc = RuntimePolicyDocument::from_tree(
                &root,
                &TreeOptions {
                    mount_point,
                    excludes,
                    timestamp,
                },
            )?;
            let mut json = serde_json::to_vec_pretty(&doc)?;
            json.push(b'\n');
            match output {
                Some(path) => std::fs::write(&path, &json)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &json)?,
            }
            eprintln!("{} files", doc.digests.len());
            Ok(ExitCode::SUCCESS)
        }
        ImaCmd::Policy(PolicyCmd::Check { policy }) => {
            let compiled = load_policy(&policy)?;
            println!(
                "{}: {} paths, release {}",
                policy.display(),
                compiled.len(),
                compiled.release()
            );
            Ok(ExitCode::SUCCESS)
        }
        ImaCmd::Appraise {
            policy,
            log,
            pcr10,
            json,
        } => appraise(&policy, &log, pcr10.as_deref(), json),
    }
}

fn load_policy(path: &PathBuf) -> Result<RuntimePolicy> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the policy {}", path.display()))?;
    RuntimePolicy::from_json(&bytes).with_context(|| format!("policy {}", path.display()))
}

fn appraise(policy: &PathBuf, log: &PathBuf, pcr10: Option<&str>, json: bool) -> Result<ExitCode> {
    let policy = load_policy(policy)?;
    let bytes =
        std::fs::read(log).with_context(|| format!("reading the IMA list {}", log.display()))?;
    let list = ImaLog::parse(&bytes).with_context(|| format!("IMA list {}", log.display()))?;
    let quoted: [u8; 32] = match pcr10 {
        Some(hex) => parse_hex::<32>("--pcr10", hex)?,
        None => list
            .entries()
            .fold([0; 32], |pcr, e| extend(&pcr, &entry_digest(&e))),
    };
    let round = Round {
        offset: 0,
        log: &list,
        quoted_pcr10: quoted,
        pcrs_0_to_9: None,
    };
    let result = appraise_round(&policy, &ImaPosition::START, &round);
    let bound = pcr10.is_some();
    if json {
        let value = match &result {
            Ok(outcome) => serde_json::json!({
                "allowed": true, "bound_to_quote": bound, "outcome": outcome,
            }),
            Err(failure) => serde_json::json!({
                "allowed": false, "bound_to_quote": bound,
                "failure": failure.to_string(), "entries": failed_entries(failure),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &result {
            Ok(o) => {
                println!(
                "allowed: {} entries appraised ({} excluded, {} admitted by signature), {} not \
                 covered by PCR 10{}",
                o.appraised,
                o.excluded,
                o.signed,
                o.pending,
                if bound { "" } else { " (no --pcr10: the list was taken as it is)" }
            )
            }
            Err(RoundFailure::Policy(f)) => {
                println!("refused: {} entries not allowed", f.total);
                for e in &f.listed {
                    println!("  {e}");
                }
                if f.total > f.listed.len() {
                    println!("  and {} more", f.total - f.listed.len());
                }
            }
            Err(other) => println!("refused: {other}"),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn failed_entries(failure: &RoundFailure) -> serde_json::Value {
    match failure {
        RoundFailure::Policy(f) => f
            .listed
            .iter()
            .map(|e| {
                serde_json::json!({"index": e.index, "path": e.path, "reason": e.problem.to_string()})
            })
            .collect(),
        _ => serde_json::Value::Array(Vec::new()),
    }
}
