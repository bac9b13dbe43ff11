//! `host-verifier gpu verify`: appraise an NVIDIA Hopper attestation report (SPDM 1.1
//! GET_MEASUREMENTS request ‖ MEASUREMENTS response, as NVIDIA's tools write it: hex text or
//! raw bytes) with the GPU's certificate chain (PEM, leaf first), every check by name
//! (docs/gpu.md).

use anyhow::{Context, Result};
use clap::Subcommand;
use host_verifier::gpu::{appraise, GpuExpectations, GpuReferenceValues};
use host_verifier::policy::parse_hex;
use std::path::PathBuf;
use std::process::ExitCode;

const GPU_EXIT_HELP: &str = "Exit codes: 0 every check passed, 2 at least one failed (each is \
named), 1 error (unreadable file, malformed reference values).";

#[derive(Subcommand)]
pub enum GpuCmd {
    /// Verify a GPU report against its chain (pinned NVIDIA Device Identity CA), the nonce and
    /// reference values; print the checks and the decoded claims.
    #[command(after_help = GPU_EXIT_HELP)]
    Verify(GpuVerifyArgs),
}

#[derive(clap::Args)]
pub struct GpuVerifyArgs {
    /// The report: request ‖ response, hex text or raw bytes.
    #[arg(long)]
    report: PathBuf,
    /// The GPU's certificate chain, PEM, leaf first.
    #[arg(long)]
    chain: PathBuf,
    /// The 32-byte nonce the relying party expects, hex (without it the nonce is reported,
    /// not checked).
    #[arg(long)]
    nonce: Option<String>,
    /// Reference values, JSON `{"measurements": {"INDEX": ["hex", ...], ...}}` (without them
    /// the measurements are reported, not checked).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Appraisal time, RFC 3339. Default: now.
    #[arg(long)]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A report file: hex text (whitespace ignored) or raw bytes.
fn report_bytes(path: &PathBuf) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Ok(match hex::decode(&text) {
        Ok(decoded) if !text.is_empty() => decoded,
        _ => bytes,
    })
}

pub fn run(
    cmd: GpuCmd,
    at: impl Fn(Option<&str>) -> Result<std::time::SystemTime>,
) -> Result<ExitCode> {
    let GpuCmd::Verify(args) = cmd;
    let report = report_bytes(&args.report)?;
    let chain =
        std::fs::read(&args.chain).with_context(|| format!("reading {}", args.chain.display()))?;
    let nonce = args
        .nonce
        .as_deref()
        .map(|n| parse_hex::<32>("--nonce", n))
        .transpose()?;
    let reference = args
        .reference
        .as_ref()
        .map(|p| -> Result<GpuReferenceValues> {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("reference values {}", p.display()))
        })
        .transpose()?;
    let appraisal = appraise(
        &report,
        &chain,
        &GpuExpectations { nonce, reference },
        at(args.at.as_deref())?,
    );
    let ok = appraisal.affirming();
    if args.json {
        let checks: Vec<_> = appraisal
            .checks
            .iter()
            .map(|c| match &c.result {
                Ok(Some(detail)) => serde_json::json!({"check": c.id.name(), "outcome": "pass", "detail": detail}),
                Ok(None) => serde_json::json!({"check": c.id.name(), "outcome": "not-applicable"}),
                Err(e) => serde_json::json!({"check": c.id.name(), "outcome": "fail", "reason": e.to_string()}),
            })
            .collect();
        let doc = serde_json::json!({
            "verdict": if ok { "affirming" } else { "contraindicated" },
            "checks": checks,
            "claims": appraisal.claims,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for c in &appraisal.checks {
            match &c.result {
                Ok(Some(detail)) => println!("  PASS  {:<18} {detail}", c.id.name()),
                Ok(None) => println!("  n/a   {:<18} not asked for", c.id.name()),
                Err(e) => println!("  FAIL  {:<18} {e}", c.id.name()),
            }
        }
        if let Some(claims) = &appraisal.claims {
            for (k, v) in &claims.config {
                println!("claim  {k} = {v}");
            }
        }
        println!(
            "verdict: {}",
            if ok { "affirming" } else { "contraindicated" }
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
