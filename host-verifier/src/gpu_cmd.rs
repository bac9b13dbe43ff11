//! `host-verifier gpu verify`: appraise an NVIDIA Hopper attestation report (SPDM 1.1
//! GET_MEASUREMENTS request ‖ MEASUREMENTS response, as NVIDIA's tools write it: hex text or
//! raw bytes) with the GPU's certificate chain (PEM, leaf first), every check by name
//! (docs/gpu.md).

use anyhow::{Context, Result};
use clap::Subcommand;
use host_verifier::combined::combined_digest;
use host_verifier::gpu::{GpuExpectations, GpuReferenceValues, GpuVerifier};
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
    /// Print the 32-byte SPDM nonce a GPU report must carry to belong to the attestation whose
    /// relying party issued this nonce: SHA-256("svsm-vhsm gpu-nonce v1" ‖ nonce). Give it to
    /// NVIDIA's attestation tool on the guest (docs/gpu.md).
    Nonce {
        /// The relying party's nonce, hex (the one the evidence bundle answers).
        #[arg(long)]
        rp_nonce: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct GpuVerifyArgs {
    /// The report: request ‖ response, hex text or raw bytes.
    #[arg(long, required_unless_present = "evidence", requires = "chain")]
    report: Option<PathBuf>,
    /// The GPU's certificate chain, PEM, leaf first.
    #[arg(long, requires = "report")]
    chain: Option<PathBuf>,
    /// Report and chain in one GPU evidence container (extra evidence of kind 1, as
    /// `svsm-attest bundle --gpu-report` packs it) instead of --report/--chain.
    #[arg(long, conflicts_with_all = ["report", "chain"])]
    evidence: Option<PathBuf>,
    /// The 32-byte nonce the report must carry, hex (without it or --rp-nonce the nonce is
    /// reported, not checked).
    #[arg(long, conflicts_with = "rp_nonce")]
    nonce: Option<String>,
    /// The relying party's nonce, hex: the report must carry the nonce derived from it
    /// (`host-verifier gpu nonce`).
    #[arg(long)]
    rp_nonce: Option<String>,
    /// Roots the chain must end in (PEM) instead of the pinned NVIDIA Device Identity CA, e.g.
    /// the simulated GPU's TEST root; the result then says nothing about genuine NVIDIA hardware.
    #[arg(long)]
    gpu_root: Option<PathBuf>,
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
    let args = match cmd {
        GpuCmd::Verify(args) => args,
        GpuCmd::Nonce { rp_nonce, json } => {
            let rp = rp_nonce_bytes(&rp_nonce)?;
            let n = hex::encode(svsm_abi::gpu::gpu_nonce(&rp));
            if json {
                println!(
                    "{}",
                    serde_json::json!({"rp_nonce": hex::encode(&rp), "gpu_nonce": n})
                );
            } else {
                println!("{n}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let (report, chain) = match (&args.evidence, &args.report, &args.chain) {
        (Some(path), _, _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let e = svsm_abi::gpu::GpuEvidence::parse(&bytes)
                .with_context(|| format!("GPU evidence {}", path.display()))?;
            (e.report.to_vec(), e.chain_pem.to_vec())
        }
        (None, Some(report), Some(chain)) => (
            report_bytes(report)?,
            std::fs::read(chain).with_context(|| format!("reading {}", chain.display()))?,
        ),
        _ => anyhow::bail!("give --evidence, or --report with --chain"),
    };
    let nonce = match (&args.nonce, &args.rp_nonce) {
        (Some(n), _) => Some(parse_hex::<32>("--nonce", n)?),
        (None, Some(rp)) => Some(svsm_abi::gpu::gpu_nonce(&rp_nonce_bytes(rp)?)),
        (None, None) => None,
    };
    let reference = args.reference.as_deref().map(read_reference).transpose()?;
    let verifier = match &args.gpu_root {
        Some(path) => {
            eprintln!(
                "host-verifier: WARNING: --gpu-root replaces the pinned NVIDIA Device Identity \
                 CA; the result says nothing about genuine NVIDIA hardware."
            );
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            GpuVerifier::with_roots_pem(&pem)
                .with_context(|| format!("GPU roots {}", path.display()))?
        }
        None => GpuVerifier::nvidia(),
    };
    let appraisal = verifier.appraise(
        &report,
        &chain,
        &GpuExpectations { nonce, reference },
        at(args.at.as_deref())?,
    );
    let digest = combined_digest(None, &[&report]);
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
            "combined_digest": digest,
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
            "combined digest (GPU only, seed 004; docs/gpu.md): {}{}",
            digest.combined,
            if ok {
                ""
            } else {
                " (names this evidence; the verdict is contraindicated)"
            }
        );
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

/// A relying party's nonce: hex, 1..=64 bytes (what a bundle's nonce may be).
fn rp_nonce_bytes(hex_text: &str) -> Result<Vec<u8>> {
    let n = hex::decode(hex_text.trim()).context("--rp-nonce is not hex")?;
    if n.is_empty() || n.len() > 64 {
        anyhow::bail!(
            "--rp-nonce is {} bytes; a bundle's nonce is 1 to 64",
            n.len()
        );
    }
    Ok(n)
}

/// GPU reference values from a JSON file.
pub fn read_reference(path: &std::path::Path) -> Result<GpuReferenceValues> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reference values {}", path.display()))
}
