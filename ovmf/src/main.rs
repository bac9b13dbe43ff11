//! `snp-measure`: the expected SEV-SNP launch measurement of an OVMF (`-bios`) or IGVM launch,
//! with the command line of `sev-snp-measure` for the common case; and, as the `guest-pcrs`
//! subcommand, the PCR values of a non-SEV QEMU + OVMF direct boot. See docs/snp-measure.md.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use ovmf::direct_boot::{DirectBoot, DirectBootError, MODEL, NOT_COMPUTED};
use ovmf::hashes::sha256;
use ovmf::policy::measurement_section;
use ovmf::{
    igvm_launch_digest, ovmf_hash, snp_launch_digest, Firmware, FirmwareError, IgvmError,
    IgvmFlavor, LaunchParams, MeasureError, Measurement, SevHashes, VcpuType, VmmType,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Examples:
  snp-measure --ovmf /usr/share/ovmf/OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan --guest-features 0x1
  snp-measure --ovmf OVMF.amdsev.fd --vcpus 2 --vcpu-type EPYC-Genoa --guest-features 0x21 \\
              --kernel vmlinuz --initrd initrd.img --append 'console=ttyS0' --json
  snp-measure --mode snp:ovmf-hash --ovmf OVMF.fd          # firmware-only chain state
  snp-measure --ovmf OVMF.fd --snp-ovmf-hash <HEX> --vcpus 4 --vcpu-type EPYC-v4
  snp-measure --igvm coconut-qemu.igvm --igvm-flavor qemu --policy-out measurement.toml
  snp-measure guest-pcrs --kernel vmlinuz --initrd initrd.img --cmdline 'console=ttyS0' --memory 512M

--guest-features must equal the SEV_FEATURES the host writes (KVM debug_swap, QEMU
properties): 0x1 is SNP only, 0x21 adds DebugSwap (recent KVM's default). A mismatch is the
classic cause of a 'bad measurement'; pass it explicitly.

Exit status: 0 on success, 1 when an input is refused (the message names the field), 2 on
usage errors.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Full SNP launch digest (firmware, metadata sections, VMSAs).
    #[value(name = "snp")]
    Snp,
    /// Only the firmware pages: a chain state for --snp-ovmf-hash.
    #[value(name = "snp:ovmf-hash")]
    SnpOvmfHash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum VmmArg {
    /// QEMU/KVM.
    #[value(name = "QEMU", alias = "qemu")]
    Qemu,
    /// AWS EC2.
    #[value(name = "ec2", alias = "EC2")]
    Ec2,
    /// Google GCE.
    #[value(name = "gce", alias = "GCE")]
    Gce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FlavorArg {
    /// QEMU's IGVM loader + KVM: what the PSP measures on a QEMU host.
    #[value(name = "qemu")]
    Qemu,
    /// COCONUT-SVSM igvmmeasure (default options).
    #[value(name = "igvmmeasure")]
    Igvmmeasure,
    /// igvmmeasure --native-zero (data-less pages as ZERO pages).
    #[value(name = "igvmmeasure-native-zero")]
    IgvmmeasureNativeZero,
    /// The igvm 0.5 crate's measurement module.
    #[value(name = "igvm-crate")]
    IgvmCrate,
}

fn parse_u64(s: &str) -> Result<u64, std::num::ParseIntError> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_u64(s).map_err(|e| e.to_string())?;
    u32::try_from(v).map_err(|_| format!("{s} does not fit in 32 bits"))
}

fn parse_vcpus(s: &str) -> Result<u32, String> {
    match parse_u32(s)? {
        0 => Err("at least one vCPU is required".into()),
        n => Ok(n),
    }
}

/// Expected AMD SEV-SNP launch measurement (the report's MEASUREMENT) for an OVMF firmware
/// launch (QEMU `-bios`, optional measured direct boot) or an IGVM image (COCONUT-SVSM + OVMF).
/// Prints 96 hex digits; --json prints the digest with its inputs.
#[derive(Debug, Parser)]
#[command(name = "snp-measure", version, about, after_help = AFTER_HELP)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(group(ArgGroup::new("input").required(true).args(["ovmf", "igvm"])))]
#[command(group(ArgGroup::new("cpu").args(["vcpu_type", "vcpu_sig", "vcpu_family"])))]
struct Cli {
    /// Another computation than the launch digest.
    #[command(subcommand)]
    command: Option<Command>,

    /// OVMF firmware image loaded with -bios (e.g. /usr/share/ovmf/OVMF.fd).
    #[arg(long, value_name = "PATH", help_heading = "Firmware launch")]
    ovmf: Option<PathBuf>,

    /// What to compute for --ovmf.
    #[arg(
        long,
        value_enum,
        default_value = "snp",
        help_heading = "Firmware launch"
    )]
    mode: Mode,

    /// Number of vCPUs (one VMSA each; vCPU 0 is the BSP).
    #[arg(long, value_name = "N", value_parser = parse_vcpus, help_heading = "Firmware launch")]
    vcpus: Option<u32>,

    /// QEMU vCPU model: EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3], EPYC-Milan[-v1,-v2],
    /// EPYC-Genoa[-v1], EPYC-Turin[-v1,-v2].
    #[arg(long, value_name = "CPUTYPE", help_heading = "Firmware launch")]
    vcpu_type: Option<VcpuType>,

    /// Raw CPUID(1).EAX signature instead of a model (e.g. 0xA00F11).
    #[arg(long, value_name = "VALUE", value_parser = parse_u32, help_heading = "Firmware launch")]
    vcpu_sig: Option<u32>,

    /// vCPU family (with --vcpu-model and --vcpu-stepping) instead of a model.
    #[arg(long, value_name = "FAMILY", value_parser = parse_u32, requires_all = ["vcpu_model", "vcpu_stepping"], help_heading = "Firmware launch")]
    vcpu_family: Option<u32>,

    /// vCPU model number (with --vcpu-family).
    #[arg(long, value_name = "MODEL", value_parser = parse_u32, requires = "vcpu_family", help_heading = "Firmware launch")]
    vcpu_model: Option<u32>,

    /// vCPU stepping (with --vcpu-family).
    #[arg(long, value_name = "STEPPING", value_parser = parse_u32, requires = "vcpu_family", help_heading = "Firmware launch")]
    vcpu_stepping: Option<u32>,

    /// SEV_FEATURES of every VMSA, as the host sets it (0x1 SNP only; 0x21 adds DebugSwap).
    #[arg(long, value_name = "VALUE", value_parser = parse_u64, default_value = "0x1", help_heading = "Firmware launch")]
    guest_features: u64,

    /// Hypervisor whose reset state to model.
    #[arg(
        long,
        value_enum,
        default_value = "QEMU",
        help_heading = "Firmware launch"
    )]
    vmm_type: VmmArg,

    /// Kernel for a measured direct boot (-kernel with kernel-hashes=on); needs an image with
    /// an SNP_KERNEL_HASHES section.
    #[arg(long, value_name = "PATH", help_heading = "Firmware launch")]
    kernel: Option<PathBuf>,

    /// Initrd of the direct boot (with --kernel).
    #[arg(
        long,
        value_name = "PATH",
        requires = "kernel",
        help_heading = "Firmware launch"
    )]
    initrd: Option<PathBuf>,

    /// Kernel command line of the direct boot (with --kernel).
    #[arg(
        long,
        value_name = "CMDLINE",
        requires = "kernel",
        help_heading = "Firmware launch"
    )]
    append: Option<String>,

    /// Resume from a firmware-only digest (from --mode snp:ovmf-hash) instead of hashing the
    /// firmware pages; --ovmf is still read for its metadata.
    #[arg(long, value_name = "HEX", help_heading = "Firmware launch")]
    snp_ovmf_hash: Option<Measurement>,

    /// IGVM image (e.g. a COCONUT-SVSM build with OVMF); needs --igvm-flavor.
    #[arg(long, value_name = "PATH", requires = "igvm_flavor", conflicts_with_all = ["vcpus", "cpu", "vcpu_model", "vcpu_stepping", "guest_features", "vmm_type", "kernel", "snp_ovmf_hash"], help_heading = "IGVM launch")]
    igvm: Option<PathBuf>,

    /// Which consumer to reproduce where IGVM consumers differ: qemu (what a QEMU/KVM host
    /// measures), igvmmeasure, igvmmeasure-native-zero, igvm-crate. See docs/snp-measure.md.
    #[arg(
        long,
        value_enum,
        value_name = "FLAVOR",
        requires = "igvm",
        help_heading = "IGVM launch"
    )]
    igvm_flavor: Option<FlavorArg>,

    /// Print JSON (digest and inputs) instead of the bare hex digest.
    #[arg(long, help_heading = "Output")]
    json: bool,

    /// Also write the host-verifier policy line `measurements = ["<hex>"]` to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    policy_out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SHA-256 PCR values (2, 3, 4, 5, 6, 7, 9) of a non-SEV direct boot: QEMU 7.2 -machine q35
    /// -kernel/-initrd/-append with Debian bookworm's OVMF.fd (Secure Boot off) and a Linux 6.1
    /// EFI-stub kernel. Prints `--pcr INDEX=HEX` lines for `host-verifier bundle verify`.
    #[command(after_help = GUEST_PCRS_HELP)]
    GuestPcrs(GuestPcrsArgs),
    /// Build the IGVM file an SEV-SNP host launches: the SVSM image at VMPL0 (its boot VMSA,
    /// a boot parameter page with the memory map and vCPU count, the secrets and CPUID pages)
    /// and the guest firmware below 4 GiB. Prints the launch digest the host's PSP will report
    /// (`--igvm-flavor qemu`); --policy-out writes the verifier's line. docs/launch.md.
    #[command(after_help = BUILD_IGVM_HELP)]
    BuildIgvm(BuildIgvmArgs),
}

const BUILD_IGVM_HELP: &str = "\
Examples:
  # the SNP build of the image (`make image-snp`): base and entry come from the ELF file
  snp-measure build-igvm --svsm target/image/x86_64-unknown-none/release-snp/svsm-image \\
      --svsm-size 128M --firmware OVMF.fd --out svsm.igvm --policy-out measurement.toml
  # any flat binary
  snp-measure build-igvm --svsm svsm.bin --svsm-base 0x4000000 --svsm-size 128M \\
      --svsm-entry 0x4000000 --firmware OVMF.fd --out svsm.igvm

The SVSM starts in 32-bit protected mode (flat segments, paging off) at its entry with RBX =
the boot parameter page; the measured boot information page before it says where the firmware
wants its secrets page, CPUID page, calling area and pre-validated memory (read from OVMF's SEV
metadata: the firmware must have SNP_SECRETS, CPUID and SVSM_CAA sections). docs/launch.md.
Exit status: 0 written, 1 an input refused (the message names it), 2 usage errors.";

#[derive(Debug, clap::Args)]
struct BuildIgvmArgs {
    /// The SVSM: an x86-64 ELF executable linked at its physical address (its PT_LOAD
    /// segments, .bss included, are loaded; base and entry come from the file), or a flat
    /// binary loaded byte for byte at --svsm-base.
    #[arg(long, value_name = "PATH")]
    svsm: PathBuf,
    /// First GPA of the SVSM's memory (4 KiB aligned); for an ELF file, its lowest segment
    /// (given anyway, it must match).
    #[arg(long, value_name = "GPA", value_parser = parse_u64)]
    svsm_base: Option<u64>,
    /// Bytes of the SVSM's memory (image, its boot pages and heap), e.g. 64M.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_bytes)]
    svsm_size: u64,
    /// The SVSM's entry point (a GPA inside the image); for an ELF file, its entry point
    /// (given anyway, it must match).
    #[arg(long, value_name = "GPA", value_parser = parse_u64)]
    svsm_entry: Option<u64>,
    /// The guest firmware (OVMF.fd), placed to end at 4 GiB.
    #[arg(long, value_name = "PATH")]
    firmware: PathBuf,
    /// The SNP guest policy (default 0x30000: SMT allowed, reserved bit 17).
    #[arg(long, value_name = "VALUE", value_parser = parse_u64, default_value = "0x30000")]
    policy: u64,
    /// SEV_FEATURES of the VMSAs (bit 0, SNP, required).
    #[arg(long, value_name = "VALUE", value_parser = parse_u64, default_value = "0x1")]
    sev_features: u64,
    /// Where to write the IGVM file.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Also write the host-verifier policy line `measurements = ["<hex>"]` to FILE.
    #[arg(long, value_name = "FILE")]
    policy_out: Option<PathBuf>,
    /// Print JSON (the digest, the layout's GPAs and the file's size).
    #[arg(long)]
    json: bool,
}

/// --svsm-size: like -m, but a bare number is bytes.
fn parse_memory_bytes(s: &str) -> Result<u64, String> {
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is too large"));
    }
    parse_memory(s)
}

fn build_igvm(args: &BuildIgvmArgs) -> Result<(), CliError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })
    };
    let (svsm, firmware) = (read(&args.svsm)?, read(&args.firmware)?);
    let (image, base, entry) = if svsm.starts_with(b"\x7fELF") {
        let elf = ovmf::igvm_build::svsm_elf(&svsm)?;
        for (name, given, from_file) in [
            ("--svsm-base", args.svsm_base, elf.base),
            ("--svsm-entry", args.svsm_entry, elf.entry),
        ] {
            if given.is_some_and(|g| g != from_file) {
                return Err(CliError::Usage(format!(
                    "{name} {:#x} does not match the ELF file's {from_file:#x}",
                    given.unwrap_or_default()
                )));
            }
        }
        (elf.image, elf.base, elf.entry)
    } else {
        match (args.svsm_base, args.svsm_entry) {
            (Some(base), Some(entry)) => (svsm, base, entry),
            _ => {
                return Err(CliError::Usage(
                    "a flat SVSM binary needs --svsm-base and --svsm-entry".into(),
                ))
            }
        }
    };
    let input = ovmf::igvm_build::SvsmIgvm {
        svsm_image: &image,
        svsm_base: base,
        svsm_size: args.svsm_size,
        svsm_entry: entry,
        firmware: &firmware,
        policy: args.policy,
        sev_features: args.sev_features,
        guest: ovmf::igvm_build::guest_firmware(&firmware)?,
    };
    let (bytes, layout) = ovmf::igvm_build::build(&input)?;
    let digest = ovmf::igvm_launch_digest(&bytes, ovmf::IgvmFlavor::Qemu).map_err(|source| {
        CliError::Igvm {
            path: args.out.clone(),
            source,
        }
    })?;
    std::fs::write(&args.out, &bytes).map_err(|source| CliError::Write {
        path: args.out.clone(),
        source,
    })?;
    if let Some(out) = &args.policy_out {
        let line = format!(
            "generated by snp-measure {} build-igvm (flavour qemu)",
            env!("CARGO_PKG_VERSION")
        );
        std::fs::write(out, measurement_section(&[digest], &[line.as_str()])).map_err(
            |source| CliError::Write {
                path: out.clone(),
                source,
            },
        )?;
    }
    if args.json {
        let doc = serde_json::json!({
            "measurement": digest.to_string(),
            "flavor": "qemu",
            "bytes": bytes.len(),
            "layout": {
                "svsm_base": format!("{base:#x}"),
                "svsm_entry": format!("{entry:#x}"),
                "svsm_image_bytes": image.len(),
                "boot_info": format!("{:#x}", layout.boot_info),
                "parameters": format!("{:#x}", layout.parameters),
                "secrets": format!("{:#x}", layout.secrets),
                "cpuid": format!("{:#x}", layout.cpuid),
                "firmware": format!("{:#x}", layout.firmware),
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{digest}");
    }
    Ok(())
}

const GUEST_PCRS_HELP: &str = "\
Example:
  snp-measure guest-pcrs --kernel vmlinuz --initrd initrd.img --memory 512M \\
      --cmdline 'console=ttyS0 rootfstype=ramfs panic=-1'

Not computed: PCR 0 (firmware volumes) and PCR 1 (boot variables); a note saying so goes to
stderr, so stdout can be passed to host-verifier as it is. Not modelled (refused): vga= on the
command line, Secure Boot on, an empty initrd, memory that is not a whole number of MiB.

Exit status: 0 on success, 1 when an input is refused (the message names the field), 2 on
usage errors.";

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("cmdline_source").required(true).args(["cmdline", "cmdline_file"])))]
struct GuestPcrsArgs {
    /// The kernel given to QEMU's -kernel (an EFI-stub bzImage).
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,

    /// The initrd given to -initrd.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,

    /// The command line exactly as given to -append (may be empty).
    #[arg(long, value_name = "STRING", allow_hyphen_values = true)]
    cmdline: Option<String>,

    /// A file holding the -append string byte for byte (a trailing newline is part of it).
    #[arg(long, value_name = "FILE")]
    cmdline_file: Option<PathBuf>,

    /// The guest memory, as -m: a number of MiB, or with a K, M, G or T suffix (e.g. 512M).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: u64,

    /// Print JSON (`{"pcrs": {"4": "hex", ...}, "not_computed": [0, 1], "model": ...}`).
    #[arg(long)]
    json: bool,
}

/// QEMU's -m syntax: a number with an optional B, K, M, G or T suffix; a bare number is MiB.
fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512M"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KIB" => 10,
        "" | "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown size suffix {suffix:?}")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Firmware {
        path: PathBuf,
        source: FirmwareError,
    },
    #[error("{}: {source}", path.display())]
    Measure { path: PathBuf, source: MeasureError },
    #[error("{}: {source}", path.display())]
    Igvm { path: PathBuf, source: IgvmError },
    #[error("{0} is required for --mode snp (one of --vcpu-type, --vcpu-sig, --vcpu-family)")]
    Missing(&'static str),
    #[error("{0} has no effect with --mode snp:ovmf-hash")]
    Unused(&'static str),
    #[error("--mode applies to --ovmf only")]
    ModeWithIgvm,
    #[error("{} is not UTF-8 text (the command line must be printable ASCII)", path.display())]
    CmdlineText { path: PathBuf },
    #[error("{0}")]
    DirectBoot(#[from] DirectBootError),
    #[error("building the IGVM file: {0}")]
    IgvmBuild(#[from] ovmf::IgvmBuildError),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Usage(String),
}

#[derive(Serialize)]
struct FileInfo {
    path: String,
    size: usize,
    /// Only computed for --json and --policy-out (it costs a pass over the file).
    #[serde(skip_serializing_if = "String::is_empty")]
    sha256: String,
}

impl FileInfo {
    fn new(path: &Path, bytes: &[u8], with_hash: bool) -> Self {
        FileInfo {
            path: path.display().to_string(),
            size: bytes.len(),
            sha256: if with_hash {
                hex::encode(sha256(bytes))
            } else {
                String::new()
            },
        }
    }
}

#[derive(Serialize, Default)]
struct Report {
    measurement: String,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ovmf: Option<FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    igvm: Option<FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    igvm_flavor: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vcpu_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vcpu_sig: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_features: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vmm_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    initrd: Option<FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    append: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snp_ovmf_hash: Option<String>,
    tool: String,
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

fn run(cli: &Cli) -> Result<(Measurement, Report, Vec<String>), CliError> {
    let tool = format!("snp-measure {}", env!("CARGO_PKG_VERSION"));
    let h = cli.json || cli.policy_out.is_some();
    if let (Some(path), Some(flavor)) = (&cli.igvm, cli.igvm_flavor) {
        if cli.mode != Mode::Snp {
            return Err(CliError::ModeWithIgvm);
        }
        let flavor = match flavor {
            FlavorArg::Qemu => IgvmFlavor::Qemu,
            FlavorArg::Igvmmeasure => IgvmFlavor::Igvmmeasure,
            FlavorArg::IgvmmeasureNativeZero => IgvmFlavor::IgvmmeasureNativeZero,
            FlavorArg::IgvmCrate => IgvmFlavor::IgvmCrate,
        };
        let bytes = read(path)?;
        let m = igvm_launch_digest(&bytes, flavor).map_err(|source| CliError::Igvm {
            path: path.clone(),
            source,
        })?;
        let info = FileInfo::new(path, &bytes, h);
        let comment = vec![format!(
            "igvm={} sha256={} flavor={}",
            info.path,
            info.sha256,
            flavor.name()
        )];
        return Ok((
            m,
            Report {
                measurement: m.to_string(),
                mode: "igvm",
                igvm: Some(info),
                igvm_flavor: Some(flavor.name()),
                tool,
                ..Report::default()
            },
            comment,
        ));
    }
    let Some(path) = &cli.ovmf else {
        return Err(CliError::Missing("--ovmf or --igvm"));
    };
    let image = read(path)?;
    let ovmf_info = FileInfo::new(path, &image, h);
    if cli.mode == Mode::SnpOvmfHash {
        let unused = [
            ("--vcpus", cli.vcpus.is_some()),
            ("--vcpu-type", cli.vcpu_type.is_some()),
            ("--vcpu-sig", cli.vcpu_sig.is_some()),
            ("--vcpu-family", cli.vcpu_family.is_some()),
            ("--kernel", cli.kernel.is_some()),
            ("--snp-ovmf-hash", cli.snp_ovmf_hash.is_some()),
        ];
        if let Some((name, _)) = unused.iter().find(|(_, given)| *given) {
            return Err(CliError::Unused(name));
        }
        let m = ovmf_hash(&image).map_err(|source| CliError::Firmware {
            path: path.clone(),
            source,
        })?;
        let comment = vec![format!(
            "firmware-only chain state (snp:ovmf-hash) of ovmf={} sha256={}",
            ovmf_info.path, ovmf_info.sha256
        )];
        return Ok((
            m,
            Report {
                measurement: m.to_string(),
                mode: "snp:ovmf-hash",
                ovmf: Some(ovmf_info),
                tool,
                ..Report::default()
            },
            comment,
        ));
    }
    let vcpus = cli.vcpus.ok_or(CliError::Missing("--vcpus"))?;
    let vcpu_sig = match (cli.vcpu_type, cli.vcpu_sig, cli.vcpu_family) {
        (Some(t), _, _) => t.signature(),
        (_, Some(s), _) => s,
        (_, _, Some(f)) => ovmf::cpu::cpu_sig(
            f,
            cli.vcpu_model.unwrap_or(0),
            cli.vcpu_stepping.unwrap_or(0),
        ),
        _ => return Err(CliError::Missing("a vCPU model")),
    };
    let vmm = match cli.vmm_type {
        VmmArg::Qemu => VmmType::Qemu,
        VmmArg::Ec2 => VmmType::Ec2,
        VmmArg::Gce => VmmType::Gce,
    };
    let fw = Firmware::parse(&image).map_err(|source| CliError::Firmware {
        path: path.clone(),
        source,
    })?;
    let (mut kernel_info, mut initrd_info) = (None, None);
    let hashes = match &cli.kernel {
        None => None,
        Some(k) => {
            let kernel = read(k)?;
            let initrd = cli.initrd.as_deref().map(read).transpose()?;
            kernel_info = Some(FileInfo::new(k, &kernel, h));
            initrd_info = cli
                .initrd
                .as_deref()
                .zip(initrd.as_deref())
                .map(|(p, b)| FileInfo::new(p, b, h));
            Some(SevHashes::new(
                &kernel,
                initrd.as_deref(),
                cli.append.as_deref(),
            ))
        }
    };
    let params = LaunchParams {
        vcpus,
        vcpu_sig,
        guest_features: cli.guest_features,
        vmm,
        hashes,
        ovmf_hash: cli.snp_ovmf_hash,
    };
    let m = snp_launch_digest(&fw, &params).map_err(|source| CliError::Measure {
        path: path.clone(),
        source,
    })?;
    let cpu = match cli.vcpu_type {
        Some(t) => t.name().to_owned(),
        None => format!("sig {vcpu_sig:#x}"),
    };
    let mut comment = vec![format!(
        "ovmf={} sha256={} vcpus={vcpus} vcpu={cpu} guest-features={:#x} vmm={}",
        ovmf_info.path,
        ovmf_info.sha256,
        cli.guest_features,
        vmm.name()
    )];
    if let Some(k) = &kernel_info {
        comment.push(format!(
            "kernel sha256={} initrd sha256={} append={:?}",
            k.sha256,
            initrd_info.as_ref().map_or("(none)", |i| i.sha256.as_str()),
            cli.append.as_deref().unwrap_or("")
        ));
    }
    Ok((
        m,
        Report {
            measurement: m.to_string(),
            mode: "snp",
            ovmf: Some(ovmf_info),
            vcpus: Some(vcpus),
            vcpu_type: cli.vcpu_type.map(VcpuType::name),
            vcpu_sig: Some(format!("{vcpu_sig:#x}")),
            guest_features: Some(format!("{:#x}", cli.guest_features)),
            vmm_type: Some(vmm.name()),
            kernel: kernel_info,
            initrd: initrd_info,
            append: cli.kernel.as_ref().and(cli.append.clone()),
            snp_ovmf_hash: cli.snp_ovmf_hash.map(|m| m.to_string()),
            tool,
            ..Report::default()
        },
        comment,
    ))
}

#[derive(Serialize)]
struct PcrReport {
    pcrs: std::collections::BTreeMap<String, String>,
    not_computed: [usize; 2],
    model: &'static str,
    /// Every extend, per PCR in order (compare with `tpm2_eventlog`).
    events: Vec<EventReport>,
    kernel: FileInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    initrd: Option<FileInfo>,
    cmdline: String,
    memory_bytes: u64,
    tool: String,
}

#[derive(Serialize)]
struct EventReport {
    pcr: usize,
    event: String,
    digest: String,
}

fn guest_pcrs(args: &GuestPcrsArgs) -> Result<(), CliError> {
    let kernel = read(&args.kernel)?;
    let initrd = args.initrd.as_deref().map(read).transpose()?;
    let cmdline = match (&args.cmdline, &args.cmdline_file) {
        (Some(c), _) => c.clone(),
        (None, Some(path)) => String::from_utf8(read(path)?)
            .map_err(|_| CliError::CmdlineText { path: path.clone() })?,
        (None, None) => String::new(),
    };
    let boot = DirectBoot {
        kernel: &kernel,
        initrd: initrd.as_deref(),
        cmdline: &cmdline,
        memory_bytes: args.memory,
    };
    let events = ovmf::direct_boot::direct_boot_events(&boot)?;
    let pcrs = ovmf::direct_boot::replay(&events);
    if args.json {
        let report = PcrReport {
            pcrs: pcrs
                .iter()
                .map(|(i, v)| (i.to_string(), hex::encode(v)))
                .collect(),
            not_computed: NOT_COMPUTED,
            model: MODEL,
            events: events
                .iter()
                .map(|e| EventReport {
                    pcr: e.pcr,
                    event: e.event.label(),
                    digest: hex::encode(e.digest),
                })
                .collect(),
            kernel: FileInfo::new(&args.kernel, &kernel, true),
            initrd: args
                .initrd
                .as_deref()
                .zip(initrd.as_deref())
                .map(|(p, b)| FileInfo::new(p, b, true)),
            cmdline,
            memory_bytes: args.memory,
            tool: format!("snp-measure {}", env!("CARGO_PKG_VERSION")),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (i, v) in &pcrs {
            println!("--pcr {i}={}", hex::encode(v));
        }
        eprintln!(
            "# PCR 0 (firmware volumes) and PCR 1 (boot variables) are not computed; model: {MODEL}"
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::BuildIgvm(args)) = &cli.command {
        return match build_igvm(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ CliError::Usage(_)) => {
                eprintln!("snp-measure: error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("snp-measure: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::GuestPcrs(args)) = &cli.command {
        return match guest_pcrs(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("snp-measure: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = run(&cli).and_then(|(m, report, comment)| {
        if let Some(out) = &cli.policy_out {
            let mut lines = vec![format!("generated by {}", report.tool)];
            lines.extend(comment);
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            std::fs::write(out, measurement_section(&[m], &refs)).map_err(|source| {
                CliError::Write {
                    path: out.clone(),
                    source,
                }
            })?;
        }
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{}", report.measurement);
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snp-measure: error: {e}");
            ExitCode::FAILURE
        }
    }
}
