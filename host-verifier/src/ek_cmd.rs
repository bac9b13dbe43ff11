//! `host-verifier ek verify`: appraise a vTPM's EK certificates when all a verifier holds is
//! certificates (from `tpm2_getekcertificate`, `tpm2_nvread`, a registrar): the chain to the
//! EK CA, and the SNP report the CA certificate carries, whose REPORT_DATA must bind the CA
//! key and which is appraised like any SNP report (VEK chain to AMD or to --trust-ark,
//! policy). docs/identity.md has the profile.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use host_verifier::ek_certs;
use host_verifier::{Evidence, Policy, Verdict, Verifier};
use std::path::PathBuf;
use std::process::ExitCode;

const EK_EXIT_HELP: &str = "Exit codes: 0 the certificates chain to the EK CA and the SNP \
report in the CA certificate binds its key and is affirmed, 2 something does not check out \
(each failure is named), 1 error (unreadable file, not a certificate).";

#[derive(Subcommand)]
pub enum EkCmd {
    /// Verify EK certificates and their CA's certificate (DER or PEM files).
    #[command(after_help = EK_EXIT_HELP)]
    Verify(EkVerifyArgs),
    /// Verify an AK certificate the key broker issued (`POST /v1/ak/certificate`) against the
    /// broker's AK CA certificate (`GET /v1/ak-ca`).
    #[command(
        after_help = "Exit codes: 0 the AK certificate chains to the AK CA (and holds \
    --ak-public), 2 it does not (the reason is named), 1 error (unreadable file)."
    )]
    VerifyAk {
        /// The AK certificate (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// The broker's AK CA certificate (PEM or DER).
        #[arg(long)]
        ca: PathBuf,
        /// The AK's public area (TPM2B_PUBLIC or TPMT_PUBLIC, `tpm2_readpublic -o`): the
        /// certificate must hold this key.
        #[arg(long)]
        ak_public: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct EkVerifyArgs {
    /// The EK CA's certificate (NV index 0x01C00100: `tpm2_nvread 0x01c00100 -C 0x01c00100`).
    #[arg(long)]
    ca: PathBuf,
    /// An EK certificate (repeatable): `tpm2_getekcertificate -o rsa.der -o ecc.der`, or NV
    /// index 0x01C00016 for the P-384 EK. Its index is taken from its key type.
    #[arg(long = "ek", required = true)]
    eks: Vec<PathBuf>,
    /// The RSA EK's public area (TPM2B_PUBLIC or TPMT_PUBLIC, `tpm2_readpublic -c 0x81010001
    /// -o ek.pub`): the RSA EK certificate must hold this key.
    #[arg(long)]
    ek_public: Option<PathBuf>,
    /// The VCEK (or VLEK) that signed the CA certificate's SNP report, PEM or DER.
    #[arg(long)]
    vek: Option<PathBuf>,
    /// Policy for the SNP report (TOML; host-verifier/examples/policy.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Custom root instead of AMD's pinned ARKs (e.g. the simulator's TEST chain).
    #[arg(long, requires = "trust_ask")]
    trust_ark: Option<PathBuf>,
    /// The ASK under --trust-ark.
    #[arg(long, requires = "trust_ark")]
    trust_ask: Option<PathBuf>,
    /// Appraisal time, RFC 3339. Default: now.
    #[arg(long)]
    at: Option<String>,
    /// Write the SNP report found in the CA certificate to this file.
    #[arg(long)]
    report_out: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Reads a certificate file: DER, or the first PEM certificate in it.
fn cert_file(path: &PathBuf) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let certs = host_verifier::vek::pem_certs(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return certs
            .into_iter()
            .next()
            .with_context(|| format!("{}: no certificate in the PEM file", path.display()));
    }
    Ok(bytes)
}

/// A TPMT_PUBLIC from a file holding it bare or as TPM2B_PUBLIC (u16 size first).
fn public_area(path: &PathBuf) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let sized = bytes
        .get(..2)
        .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])));
    Ok(match sized {
        Some(n) if n + 2 == bytes.len() => bytes[2..].to_vec(),
        _ => bytes,
    })
}

pub fn run(
    cmd: EkCmd,
    at: impl Fn(Option<&str>) -> Result<std::time::SystemTime>,
) -> Result<ExitCode> {
    let args = match cmd {
        EkCmd::Verify(args) => args,
        EkCmd::VerifyAk {
            cert,
            ca,
            ak_public,
            json,
        } => {
            let ak = ak_public.as_ref().map(public_area).transpose()?;
            let result = ek_certs::verify_ak_certificate(
                &cert_file(&cert)?,
                &cert_file(&ca)?,
                ak.as_deref(),
            );
            let ok = result.is_ok();
            if json {
                let doc = match &result {
                    Ok(serial) => serde_json::json!({"verdict": "affirming", "serial": serial}),
                    Err(e) => {
                        serde_json::json!({"verdict": "contraindicated", "failed": e.to_string()})
                    }
                };
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                match &result {
                    Ok(serial) => println!(
                        "ak.chain: pass: AK certificate {serial} issued by the AK CA{}\nverdict: affirming",
                        if ak.is_some() { ", holding --ak-public" } else { "" }
                    ),
                    Err(e) => println!("FAIL ak.chain: {e}\nverdict: contraindicated"),
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
    };
    let ca = cert_file(&args.ca)?;
    let mut certs = vec![(svsm_abi::identity::EK_CA_CERT_INDEX, ca.clone())];
    for path in &args.eks {
        let der = cert_file(path)?;
        let index = ek_certs::index_for(&der)
            .with_context(|| format!("{}: not an EK certificate", path.display()))?;
        if certs.iter().any(|(i, _)| *i == index) {
            bail!(
                "{}: a second certificate for NV index {index:#010x}",
                path.display()
            );
        }
        certs.push((index, der));
    }
    let ek_public = args.ek_public.as_ref().map(public_area).transpose()?;

    let mut failures: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    // The report first: it names the CA key the chain is then checked against.
    let (report, ca_public) = match ek_certs::ca_report(&ca) {
        Ok(found) => (Some(found.0), Some(found.1)),
        Err(e) => {
            failures.push(format!("ek.ca_report: {e}"));
            (None, None)
        }
    };
    if let Some(ca_public) = &ca_public {
        lines.push(format!(
            "ek.ca_report: pass: the CA certificate carries an SNP report whose REPORT_DATA binds \
             the CA key {}…",
            hex::encode(&ca_public[..8])
        ));
        match ek_certs::verify(&certs, Some(ca_public), ek_public.as_deref()) {
            Ok(checked) => lines.push(format!(
                "ek.chain: pass: {} EK certificate(s) issued by the EK CA{}",
                checked.certificates.len(),
                if ek_public.is_some() {
                    "; the RSA EK certificate holds --ek-public"
                } else {
                    ""
                }
            )),
            Err(e) => failures.push(format!("ek.chain: {e}")),
        }
    }
    let mut snp_verdict = None;
    if let (Some(report), Some(ca_public)) = (&report, &ca_public) {
        if let Some(out) = &args.report_out {
            std::fs::write(out, report).with_context(|| format!("writing {}", out.display()))?;
        }
        let mut policy = match &args.policy {
            Some(p) => Policy::from_toml(&std::fs::read_to_string(p)?)
                .with_context(|| format!("policy {}", p.display()))?,
            None => Policy::default(),
        };
        policy.report_data = Some(ek_certs::ca_report_data(ca_public));
        let verifier = match (&args.trust_ark, &args.trust_ask) {
            (Some(ark), Some(ask)) => {
                let store = host_verifier::TrustStore::custom(
                    &std::fs::read(ark)?,
                    &std::fs::read(ask)?,
                    None,
                )
                .context("custom trust roots")?;
                policy
                    .signing_keys
                    .retain(|k| *k == svsm_abi::snp::SigningKey::Vcek);
                Verifier::with_trust_store(std::sync::Arc::new(store), policy)
            }
            _ => Verifier::new(policy)?,
        };
        let vek = args
            .vek
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        let appraisal = verifier.verify(&Evidence {
            report: report.as_slice(),
            vek: vek.as_deref(),
            crl: None,
            at: at(args.at.as_deref())?,
        })?;
        let verdict = appraisal.verdict();
        if verdict == Verdict::Affirming {
            lines.push("ek.snp_report: pass: the embedded SNP report is affirmed".to_owned());
        } else {
            failures.push(format!(
                "ek.snp_report: the embedded SNP report is not affirmed ({verdict:?}):\n{}",
                appraisal.render_text()
            ));
        }
        snp_verdict = Some(verdict);
    }
    let ok = failures.is_empty() && snp_verdict == Some(Verdict::Affirming);
    if args.json {
        let doc = serde_json::json!({
            "verdict": if ok { "affirming" } else { "contraindicated" },
            "ca_public": ca_public.map(hex::encode),
            "passed": lines,
            "failed": failures,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for l in &lines {
            println!("{l}");
        }
        for f in &failures {
            println!("FAIL {f}");
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
