//! `host-verifier`: appraise SEV-SNP evidence offline. See `docs/host-verifier.md`.

mod ek_cmd;
mod gpu_cmd;
mod ima_cmd;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use host_verifier::azure::{parse_pcr_values, AzureEvidence};
use host_verifier::{policy::parse_hex, unwrap_hcl_report, Evidence, Policy, Verdict, Verifier};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const EXIT_HELP: &str = "Exit codes: 0 affirming (every check passed or does not apply), \
2 contraindicated (at least one check failed), 1 error (the evidence or the options could not \
be appraised at all: unreadable file, not a report, no VEK, bad policy).";

#[derive(Parser)]
#[command(name = "host-verifier", version, about = "Appraise svsm-vhsm evidence offline", after_help = EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Subcommand)]
enum Top {
    /// AMD SEV-SNP attestation reports.
    #[command(subcommand)]
    Snp(SnpCmd),
    /// Azure confidential VMs: the SNP report inside the vTPM's HCL report and a TPM2 quote.
    #[command(subcommand)]
    Azure(AzureCmd),
    /// svsm-vhsm evidence bundles: SNP report, vTPM manifest, quote, PCRs and event log.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// NVIDIA Hopper GPU evidence: SPDM measurements, the device chain to NVIDIA's pinned
    /// root, nonce and reference values (docs/gpu.md).
    #[command(subcommand)]
    Gpu(gpu_cmd::GpuCmd),
    /// vTPM EK certificates: the chain to the EK CA and the SNP report that binds it, for a
    /// verifier holding only certificates (docs/identity.md).
    #[command(subcommand)]
    Ek(ek_cmd::EkCmd),
    /// IMA runtime policies (Keylime's format): make one from a directory tree, appraise a
    /// captured list against one.
    #[command(subcommand)]
    Ima(ima_cmd::ImaCmd),
    /// The key broker's data directory (keys, certificate, admin token): see docs/broker.md.
    #[command(subcommand)]
    Broker(BrokerCmd),
    /// Run the key broker: an HTTPS service that challenges nodes, appraises their evidence
    /// bundles and releases keys wrapped for the appraised instance (docs/broker.md).
    Serve(Box<ServeArgs>),
}

#[derive(Subcommand)]
enum BrokerCmd {
    /// Create a data directory for a first run: a TLS key and self-signed certificate, the EAR
    /// signing key, the master key for secrets at rest, and an admin token (printed once; only
    /// its SHA-256 is kept). Refuses to overwrite an existing one.
    Init {
        /// The data directory (created mode 0700).
        #[arg(long)]
        data_dir: PathBuf,
        /// Another DNS name or IP address for the certificate (repeatable); localhost,
        /// 127.0.0.1 and ::1 are always included.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
#[command(
    after_help = "Stop it with SIGTERM or SIGINT: it stops accepting and lets requests in \
flight finish. Logs go to stderr (RUST_LOG=debug for more); no secret is ever logged."
)]
struct ServeArgs {
    /// The data directory made by `host-verifier broker init`.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address and port to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: std::net::SocketAddr,
    /// Database URL: postgres://USER@HOST/DB (several replicas share one) or sqlite:PATH.
    /// Default: SQLite broker.db in the data directory, created and migrated on first start.
    #[arg(long)]
    database: Option<String>,
    /// Database connections per replica (PostgreSQL).
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
    /// TLS certificate chain, PEM (default: tls-cert.pem in the data directory).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (default: tls-key.pem in the data directory).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Replace AMD's pinned ARK with this one (PEM or DER), e.g. the simulator's TEST chain.
    #[arg(long, requires = "trust_ask")]
    trust_ark: Option<PathBuf>,
    /// The ASK under --trust-ark.
    #[arg(long, requires = "trust_ark")]
    trust_ask: Option<PathBuf>,
    /// The ASVK under --trust-ark (without it VLEK-signed reports are refused).
    #[arg(long, requires = "trust_ark")]
    trust_asvk: Option<PathBuf>,
    /// Seconds a challenge nonce stays valid.
    #[arg(long, default_value_t = 300)]
    nonce_ttl: u64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 12 * 1024 * 1024)]
    max_body: usize,
    /// Seconds a request may take, body included (slow clients get 408).
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Seconds a client has for its TLS handshake and for each request head (then it is
    /// disconnected).
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// A DER CRL from AMD KDS (/vcek/v1/<Product>/crl), checked against the ARK: revoked ASKs
    /// and VCEKs are refused. Read at start; restart to load a newer one.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Seconds between looks for nodes whose round of continuous attestation is overdue
    /// (each is marked untrusted, loses reputation and is audited as "missed").
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    round_sweep: u64,
}

#[derive(Subcommand)]
enum BundleCmd {
    /// Verify an evidence bundle: the SNP report (VEK from the bundle's certificate table), the
    /// REPORT_DATA binding of nonce and manifest, the quote by the manifest's AK, the PCR digest,
    /// the event log replayed to the PCRs, reference values, epoch and extra evidence.
    #[command(after_help = EXIT_HELP)]
    Verify(Box<BundleVerifyArgs>),
    /// Compute the SHA-256 PCR values a launch of the given files produces (firmware -> 0,
    /// kernel -> 4, command line -> 8, initrd -> 9), as `--pcr INDEX=HEX` lines for `bundle
    /// verify` or as JSON. Computed from the files, never read back from a TPM.
    ReferencePcrs(ReferencePcrsArgs),
}

#[derive(clap::Args)]
struct BundleVerifyArgs {
    /// The bundle (JSON, format "svsm-vhsm-evidence-bundle" version 2; version 1 is read too): `svsm-attest bundle` writes it in a guest.
    #[arg(long)]
    bundle: PathBuf,
    /// The nonce this relying party issued for the bundle, hex (at most 64 bytes).
    #[arg(long)]
    nonce: String,
    /// Policy for the SNP report (TOML; see host-verifier/examples/policy.toml); its
    /// `measurements` are the allowed launch digests.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Custom root instead of AMD's pinned ARKs (PEM or DER), e.g. the simulator's TEST chain.
    /// The result then says nothing about genuine AMD hardware.
    #[arg(long, requires = "trust_ask")]
    trust_ark: Option<PathBuf>,
    /// The ASK under --trust-ark (PEM or DER).
    #[arg(long, requires = "trust_ark")]
    trust_ask: Option<PathBuf>,
    /// The ASVK under --trust-ark (PEM or DER). Without it VLEK-signed reports are refused.
    #[arg(long, requires = "trust_ark")]
    trust_asvk: Option<PathBuf>,
    /// The last sealed-state epoch this relying party saw for the instance: a state that went
    /// back, and a fresh or ephemeral state (the one it saw was lost, deleted or refused), are
    /// contraindicated.
    #[arg(long)]
    min_epoch: Option<u64>,
    /// Accept a module running on ephemeral (unsealed) state or whose newest state is not
    /// stored.
    #[arg(long)]
    allow_ephemeral: bool,
    /// The VMPL that must have asked for the attestation (a broker: the VMPL it will release a
    /// key to). Without it the requester is reported, not checked.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    requester_vmpl: Option<u8>,
    /// An expected SHA-256 PCR value, `INDEX=HEX` (repeatable).
    #[arg(long = "pcr", value_name = "INDEX=HEX")]
    pcrs: Vec<String>,
    #[command(flatten)]
    launch: LaunchFiles,
    /// Require extra evidence (e.g. a GPU report) listed in the manifest.
    #[arg(long)]
    require_extra_evidence: bool,
    /// Roots GPU device chains must end in (PEM, one or more certificates) instead of the
    /// pinned NVIDIA Device Identity CA, e.g. the simulated GPU's TEST root. The GPU part of
    /// the result then says nothing about genuine NVIDIA hardware.
    #[arg(long)]
    gpu_root: Option<PathBuf>,
    /// GPU reference values, JSON `{"measurements": {"INDEX": ["hex", ...]}}`, applied to
    /// every GPU of the bundle (`gpu.measurements`; without them the claims are reported).
    #[arg(long)]
    gpu_reference: Option<PathBuf>,
    /// A runtime policy (Keylime's JSON; `host-verifier ima policy create`) every IMA entry
    /// the quote covers must satisfy (`vtpm.ima_policy`; docs/agent.md).
    #[arg(long)]
    ima_policy: Option<PathBuf>,
    /// A DER CRL from AMD KDS (/vcek/v1/<Product>/crl), checked against the ARK.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Appraisal time, RFC 3339 (e.g. 2026-06-01T00:00:00Z). Default: now.
    #[arg(long)]
    at: Option<String>,
    /// Print the EAR (JSON, submodules cpu, vtpm, svsm and gpu) instead of the human summary.
    #[arg(long)]
    json: bool,
}

/// The files of the expected launch; the reference PCRs are computed from them.
#[derive(clap::Args, Default)]
struct LaunchFiles {
    /// The expected guest firmware image (reference PCR 0 is computed from it).
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// The expected kernel (reference PCR 4).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// The expected initrd (reference PCR 9).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// A file holding the expected kernel command line, byte for byte as the launcher gives it
    /// to the SVSM (reference PCR 8).
    #[arg(long)]
    cmdline: Option<PathBuf>,
}

impl LaunchFiles {
    /// Reference PCRs of the files given (measuring order: firmware, kernel, initrd, cmdline).
    fn reference_pcrs(&self) -> Result<std::collections::BTreeMap<usize, [u8; 32]>> {
        use svsm_abi::eventlog::LaunchComponent as C;
        let mut files = Vec::new();
        for (kind, path, what) in [
            (C::Firmware, &self.firmware, "firmware"),
            (C::Kernel, &self.kernel, "kernel"),
            (C::Initrd, &self.initrd, "initrd"),
            (C::CommandLine, &self.cmdline, "command line"),
        ] {
            if let Some(path) = path {
                files.push((kind, read(path, what)?));
            }
        }
        let refs: Vec<_> = files.iter().map(|(k, b)| (*k, b.as_slice())).collect();
        Ok(host_verifier::reference::launch_pcrs(&refs))
    }
}

#[derive(clap::Args)]
struct ReferencePcrsArgs {
    #[command(flatten)]
    launch: LaunchFiles,
    /// Print JSON (`{"pcrs": {"0": "hex", ...}}`) instead of `--pcr INDEX=HEX` lines.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AzureCmd {
    /// Verify an HCL report (its SNP report, VCEK and the pinned AMD chain, and the runtime
    /// claims REPORT_DATA binds) and a TPM2 quote by the attestation key those claims carry.
    #[command(after_help = EXIT_HELP)]
    Verify(AzureVerifyArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("nonce_source").required(true).args(["nonce", "nonce_text"])))]
struct AzureVerifyArgs {
    /// The HCL report: vTPM NV index 0x01400001 ("HCLA" header, SNP report, runtime claims).
    #[arg(long)]
    hcl_report: PathBuf,
    /// The VCEK that signed the SNP report, PEM or DER, or Azure's VCEK+ASK+ARK PEM bundle
    /// (extra certificates must be the pinned AMD ones). Without it the command fails and
    /// prints the AMD KDS URL of the VCEK.
    #[arg(long)]
    vek: Option<PathBuf>,
    /// The quote: TPMS_ATTEST bytes (e.g. `tpm2_quote --message`).
    #[arg(long)]
    quote: PathBuf,
    /// The quote's signature by the AK (HCLAkPub): the raw RSASSA block, or a TPMT_SIGNATURE.
    #[arg(long)]
    signature: PathBuf,
    /// SHA-256 PCR values: one hex value per line, PCR0 first.
    #[arg(long)]
    pcrs: PathBuf,
    /// The nonce the quote must carry as extraData, hex.
    #[arg(long)]
    nonce: Option<String>,
    /// The nonce as text (its UTF-8 bytes), e.g. `challenge`.
    #[arg(long)]
    nonce_text: Option<String>,
    /// Expected prefix of the runtime claims' user-data (what the guest wrote to NV
    /// 0x01400002), hex, at most 64 bytes. Without it the check is not applicable.
    #[arg(long)]
    user_data: Option<String>,
    /// Policy for the SNP report (TOML; see host-verifier/examples/policy.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A DER CRL from AMD KDS (/vcek/v1/<Product>/crl), checked against the pinned ARK.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Appraisal time, RFC 3339 (e.g. 2026-06-01T00:00:00Z). Default: now.
    #[arg(long)]
    at: Option<String>,
    /// Print the EAR (JSON, submodules `cpu` and `vtpm`) instead of the human summary.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SnpCmd {
    /// Verify a report against its VCEK/VLEK, the pinned AMD chain and a policy.
    #[command(after_help = EXIT_HELP)]
    Verify(VerifyArgs),
    /// Print the AMD KDS URLs for a report's VCEK, cert chain and CRL (no network).
    KdsUrl {
        /// ATTESTATION_REPORT (1184 bytes) or an Azure HCL report blob.
        #[arg(long)]
        report: PathBuf,
    },
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// ATTESTATION_REPORT (1184 bytes) or an Azure vTPM HCL report blob ("HCLA").
    #[arg(long)]
    report: PathBuf,
    /// The VCEK or VLEK that signed the report, PEM or DER. Without it the command fails and
    /// prints the AMD KDS URL of the VCEK.
    #[arg(long)]
    vek: Option<PathBuf>,
    /// Policy (TOML; see host-verifier/examples/policy.toml). Default: no debug, no migration
    /// agent, SMT allowed, every other policy check not applicable.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A DER CRL from AMD KDS (/vcek/v1/<Product>/crl), checked against the pinned ARK.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Appraisal time, RFC 3339 (e.g. 2026-01-01T00:00:00Z). Default: now.
    #[arg(long)]
    at: Option<String>,
    /// Expected REPORT_DATA (128 hex characters); overrides the policy's `report_data`.
    #[arg(long)]
    report_data: Option<String>,
    /// Print the EAR (JSON) instead of the human summary.
    #[arg(long)]
    json: bool,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn parse_at(s: &str) -> Result<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at {s:?} is not RFC 3339 (e.g. 2026-01-01T00:00:00Z)"))?;
    let secs = u64::try_from(t.unix_timestamp()).context("--at is before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Reads `--vek`. A bundle (VCEK, ASK, ARK as Azure THIM serves it) is accepted only when every
/// extra certificate is a pinned one: the chain always comes from the pinned anchors.
fn read_vek(path: Option<&PathBuf>) -> Result<Option<Vec<u8>>> {
    let vek = path.map(|p| read(p, "VEK")).transpose()?;
    if let Some(bytes) = &vek {
        if let Ok(certs) = host_verifier::vek::pem_certs(bytes) {
            let trust = host_verifier::TrustStore::pinned()?;
            for (i, der) in certs.iter().enumerate().skip(1) {
                if !trust.contains_der(der) {
                    bail!("--vek: certificate {} of the bundle is not a pinned AMD ARK/ASK/ASVK; pass the VEK alone", i + 1);
                }
            }
        }
    }
    Ok(vek)
}

fn read_policy(path: Option<&PathBuf>) -> Result<Policy> {
    Ok(match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading policy {}", p.display()))?;
            Policy::from_toml(&text).with_context(|| format!("policy {}", p.display()))?
        }
        None => Policy::default(),
    })
}

fn at_or_now(at: Option<&str>) -> Result<SystemTime> {
    Ok(at
        .map(parse_at)
        .transpose()?
        .unwrap_or_else(SystemTime::now))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1)
}

fn exit_code(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Affirming => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let report_file = read(&args.report, "report")?;
    let report = unwrap_hcl_report(&report_file);
    let vek = read_vek(args.vek.as_ref())?;
    let crl = args.crl.as_ref().map(|p| read(p, "CRL")).transpose()?;
    let mut policy = read_policy(args.policy.as_ref())?;
    if let Some(hex) = &args.report_data {
        policy.report_data = Some(parse_hex("--report-data", hex)?);
    }
    let at = at_or_now(args.at.as_deref())?;
    let verifier = Verifier::new(policy)?;
    let appraisal = verifier.verify(&Evidence {
        report,
        vek: vek.as_deref(),
        crl: crl.as_deref(),
        at,
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&appraisal.to_ear_json(now_secs())?)?
        );
    } else {
        print!("{}", appraisal.render_text());
    }
    Ok(exit_code(appraisal.verdict()))
}

fn azure_verify(args: AzureVerifyArgs) -> Result<ExitCode> {
    let hcl = read(&args.hcl_report, "HCL report")?;
    let vek = read_vek(args.vek.as_ref())?;
    let quote = read(&args.quote, "quote")?;
    let signature = read(&args.signature, "signature")?;
    let pcr_text = std::fs::read_to_string(&args.pcrs)
        .with_context(|| format!("--pcrs: reading PCR values {}", args.pcrs.display()))?;
    let pcrs =
        parse_pcr_values(&pcr_text).with_context(|| format!("--pcrs {}", args.pcrs.display()))?;
    let nonce = match (&args.nonce, &args.nonce_text) {
        (Some(h), None) => hex::decode(h.trim()).context("--nonce is not hex")?,
        (None, Some(t)) => t.as_bytes().to_vec(),
        _ => bail!("give exactly one of --nonce and --nonce-text"),
    };
    if nonce.is_empty() {
        bail!("the nonce is empty: a quote cannot be shown fresh without one");
    }
    let user_data = args
        .user_data
        .as_deref()
        .map(|h| hex::decode(h.trim()).context("--user-data is not hex"))
        .transpose()?;
    if user_data.as_ref().is_some_and(|u| u.len() > 64) {
        bail!("--user-data is longer than the 64 bytes of NV index 0x01400002");
    }
    let crl = args.crl.as_ref().map(|p| read(p, "CRL")).transpose()?;
    let policy = read_policy(args.policy.as_ref())?;
    let at = at_or_now(args.at.as_deref())?;
    let appraisal = Verifier::new(policy)?.verify_azure(&AzureEvidence {
        hcl_report: &hcl,
        vek: vek.as_deref(),
        crl: crl.as_deref(),
        quote: &quote,
        signature: &signature,
        pcrs: &pcrs,
        nonce: &nonce,
        user_data: user_data.as_deref(),
        at,
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&appraisal.to_ear_json(now_secs())?)?
        );
    } else {
        print!("{}", appraisal.render_text());
    }
    Ok(exit_code(appraisal.verdict()))
}

const CUSTOM_GPU_ROOTS_WARNING: &str = "WARNING: custom GPU roots (--gpu-root) replace the \
pinned NVIDIA Device Identity CA. The GPU checks only say the evidence chains to THESE roots \
(for example the simulated GPU's TEST root); they say nothing about genuine NVIDIA hardware.";
const CUSTOM_ROOTS_WARNING: &str = "WARNING: custom trust roots (--trust-ark/--trust-ask) \
replace AMD's pinned ARK/ASK/ASVK. The verdict only says the evidence chains to THESE roots (for \
example the simulator's TEST chain); it says nothing about genuine AMD hardware.";

/// A trust store of the given roots for every product (the report's CPUID picks the product).
fn custom_trust(
    ark: &PathBuf,
    ask: &PathBuf,
    asvk: Option<&PathBuf>,
) -> Result<std::sync::Arc<host_verifier::TrustStore>> {
    let ark = read(ark, "--trust-ark")?;
    let ask = read(ask, "--trust-ask")?;
    let asvk = asvk.map(|p| read(p, "--trust-asvk")).transpose()?;
    let store = host_verifier::TrustStore::custom(&ark, &ask, asvk.as_deref())
        .context("custom trust roots")?;
    Ok(std::sync::Arc::new(store))
}

fn parse_expected_pcr(s: &str) -> Result<(usize, [u8; 32])> {
    let (index, value) = s
        .split_once('=')
        .with_context(|| format!("--pcr {s:?} is not INDEX=HEX"))?;
    let index: usize = index
        .trim()
        .parse()
        .with_context(|| format!("--pcr {s:?}: the index is not a number"))?;
    if index >= host_verifier::bundle_verify::PCR_COUNT {
        bail!("--pcr {s:?}: PCR {index} does not exist (0..23)");
    }
    let value = hex::decode(value.trim()).with_context(|| format!("--pcr {s:?}: not hex"))?;
    let value = <[u8; 32]>::try_from(value.as_slice())
        .map_err(|_| anyhow::anyhow!("--pcr {s:?}: a SHA-256 value is 32 bytes"))?;
    Ok((index, value))
}

fn reference_pcrs(args: ReferencePcrsArgs) -> Result<ExitCode> {
    let pcrs = args.launch.reference_pcrs()?;
    if pcrs.is_empty() {
        bail!("give at least one of --firmware, --kernel, --initrd, --cmdline");
    }
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = pcrs
            .iter()
            .map(|(i, v)| (i.to_string(), hex::encode(v).into()))
            .collect();
        println!("{}", serde_json::json!({ "pcrs": map }));
    } else {
        for (i, v) in &pcrs {
            println!("--pcr {i}={}", hex::encode(v));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bundle_verify(args: BundleVerifyArgs) -> Result<ExitCode> {
    use host_verifier::bundle::{Bundle, MAX_BUNDLE};
    use host_verifier::bundle_verify::{verify_bundle, BundleContext, MAX_NONCE};
    let size = std::fs::metadata(&args.bundle)
        .with_context(|| format!("reading bundle {}", args.bundle.display()))?
        .len();
    if size > MAX_BUNDLE as u64 {
        bail!(
            "bundle {} is {size} bytes, more than the {MAX_BUNDLE}-byte limit",
            args.bundle.display()
        );
    }
    let bundle = Bundle::from_json(&read(&args.bundle, "bundle")?)
        .with_context(|| format!("bundle {}", args.bundle.display()))?;
    let nonce = hex::decode(args.nonce.trim()).context("--nonce is not hex")?;
    if nonce.is_empty() {
        bail!("the nonce is empty: a bundle cannot be shown fresh without one");
    }
    if nonce.len() > MAX_NONCE {
        bail!(
            "--nonce is {} bytes; a quote's qualifying data holds at most {MAX_NONCE}",
            nonce.len()
        );
    }
    let mut expected_pcrs: std::collections::BTreeMap<usize, [u8; 32]> = args
        .pcrs
        .iter()
        .map(|s| parse_expected_pcr(s))
        .collect::<Result<_>>()?;
    for (pcr, value) in args.launch.reference_pcrs()? {
        if expected_pcrs.get(&pcr).is_some_and(|v| *v != value) {
            bail!("--pcr {pcr}=... contradicts the value computed from the launch files");
        }
        expected_pcrs.insert(pcr, value);
    }
    let crl = args.crl.as_ref().map(|p| read(p, "CRL")).transpose()?;
    let mut policy = read_policy(args.policy.as_ref())?;
    let at = at_or_now(args.at.as_deref())?;
    let custom = match (&args.trust_ark, &args.trust_ask) {
        (Some(ark), Some(ask)) => {
            eprintln!("host-verifier: {CUSTOM_ROOTS_WARNING}");
            if args.trust_asvk.is_none() {
                policy
                    .signing_keys
                    .retain(|k| *k == svsm_abi::snp::SigningKey::Vcek);
            }
            Some(custom_trust(ark, ask, args.trust_asvk.as_ref())?)
        }
        _ => None,
    };
    let verifier = match custom.clone() {
        Some(trust) => Verifier::with_trust_store(trust, policy),
        None => Verifier::new(policy)?,
    };
    let mut ctx = BundleContext::new(&verifier, &nonce, at);
    ctx.min_epoch = args.min_epoch;
    ctx.allow_ephemeral = args.allow_ephemeral;
    ctx.requester_vmpl = args.requester_vmpl;
    ctx.expected_pcrs = expected_pcrs;
    ctx.require_extra_evidence = args.require_extra_evidence;
    ctx.crl = crl.as_deref();
    let ima_policy = args
        .ima_policy
        .as_ref()
        .map(|p| {
            host_verifier::measured::runtime_policy::RuntimePolicy::from_json(&read(
                p,
                "runtime policy",
            )?)
            .with_context(|| format!("runtime policy {}", p.display()))
        })
        .transpose()?;
    ctx.ima_policy = ima_policy.as_ref();
    let gpu_verifier = match &args.gpu_root {
        Some(path) => {
            eprintln!("host-verifier: {CUSTOM_GPU_ROOTS_WARNING}");
            Some(
                host_verifier::gpu::GpuVerifier::with_roots_pem(&read(path, "GPU roots")?)
                    .with_context(|| format!("GPU roots {}", path.display()))?,
            )
        }
        None => None,
    };
    if let Some(v) = &gpu_verifier {
        ctx.gpu_verifier = v;
    }
    let gpu_reference = args
        .gpu_reference
        .as_deref()
        .map(gpu_cmd::read_reference)
        .transpose()?;
    ctx.gpu_reference = gpu_reference.as_ref();
    let appraisal = verify_bundle(&bundle, &ctx)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&appraisal.to_ear_json(now_secs())?)?
        );
    } else {
        if custom.is_some() {
            println!("{CUSTOM_ROOTS_WARNING}\n");
        }
        if gpu_verifier.is_some() {
            println!("{CUSTOM_GPU_ROOTS_WARNING}\n");
        }
        print!("{}", appraisal.render_text());
    }
    Ok(exit_code(appraisal.verdict()))
}

fn kds_url(report: PathBuf) -> Result<ExitCode> {
    let bytes = read(&report, "report")?;
    let r = svsm_abi::snp::AttestationReport::parse(unwrap_hcl_report(&bytes))?;
    let raw = r.raw();
    let products = match r.product() {
        Some(p) => vec![p],
        None if r.cpuid().is_none() => {
            println!("# version 2 report: no CPUID, so one URL per possible product");
            vec![svsm_abi::snp::Product::Milan, svsm_abi::snp::Product::Genoa]
        }
        None => bail!("CPUID {:?} names no known product", r.cpuid()),
    };
    let vlek = r.key_info().signing_key() == svsm_abi::snp::SigningKey::Vlek;
    for p in products {
        if vlek {
            println!("# VLEK-signed: the cloud provider supplies the VLEK");
        } else if raw.chip_id.iter().all(|&b| b == 0) {
            println!("# CHIP_ID is masked: no VCEK URL");
        } else {
            println!(
                "vcek        {}",
                host_verifier::kds::vcek_url(p, &raw.chip_id, raw.reported_tcb)
            );
        }
        println!(
            "cert_chain  {}",
            host_verifier::kds::cert_chain_url(p, vlek)
        );
        println!("crl         {}", host_verifier::kds::crl_url(p, vlek));
    }
    Ok(ExitCode::SUCCESS)
}

fn broker_init(data_dir: &std::path::Path, names: &[String], json: bool) -> Result<ExitCode> {
    let report = host_verifier::broker::config::init(data_dir, names)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("initialised {}", report.data_dir.display());
        println!(
            "TLS certificate (give it to clients): {}",
            report.tls_cert.display()
        );
        println!("  valid for: {}", report.tls_names.join(", "));
        println!(
            "admin token (shown once; only its SHA-256 is kept): {}",
            report.admin_token
        );
        println!(
            "next: host-verifier serve --data-dir {}",
            report.data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    use host_verifier::broker::{start, ServeOptions};
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let trust = match (&args.trust_ark, &args.trust_ask) {
        (Some(ark), Some(ask)) => {
            eprintln!("{CUSTOM_ROOTS_WARNING}");
            custom_trust(ark, ask, args.trust_asvk.as_ref())?
        }
        _ => host_verifier::TrustStore::pinned().context("AMD's pinned roots")?,
    };
    let mut options = ServeOptions::new(args.data_dir, trust);
    options.listen = args.listen;
    options.database = args.database;
    options.max_connections = args.max_connections;
    options.tls_cert = args.tls_cert;
    options.tls_key = args.tls_key;
    options.nonce_ttl = Duration::from_secs(args.nonce_ttl);
    options.max_body = args.max_body;
    options.request_timeout = Duration::from_secs(args.request_timeout);
    options.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    options.crl = args.crl;
    options.round_sweep = Duration::from_secs(args.round_sweep);
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    runtime.block_on(async {
        let broker = start(&options).await?;
        println!("host-verifier broker listening on https://{}", broker.addr);
        tracing::info!(addr = %broker.addr, database = %host_verifier::broker::config::redact_url(&options.database_url()), "serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("stopping");
        broker.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn main() -> ExitCode {
    // Usage errors are errors (exit 1), never "contraindicated" (2); --help and --version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.cmd {
        Top::Snp(SnpCmd::Verify(args)) => verify(args),
        Top::Snp(SnpCmd::KdsUrl { report }) => kds_url(report),
        Top::Azure(AzureCmd::Verify(args)) => azure_verify(args),
        Top::Bundle(BundleCmd::Verify(args)) => bundle_verify(*args),
        Top::Bundle(BundleCmd::ReferencePcrs(args)) => reference_pcrs(args),
        Top::Broker(BrokerCmd::Init {
            data_dir,
            names,
            json,
        }) => broker_init(&data_dir, &names, json),
        Top::Serve(args) => serve(*args),
        Top::Ima(cmd) => ima_cmd::run(cmd),
        Top::Ek(cmd) => ek_cmd::run(cmd, at_or_now),
        Top::Gpu(cmd) => gpu_cmd::run(cmd, at_or_now),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("host-verifier: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
