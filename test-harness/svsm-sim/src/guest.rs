//! A real Linux guest for the vTPM: Debian's cloud kernel and a small initramfs (busybox,
//! tpm2-tools over `/dev/tpmrm0`, the project's guest binaries, task scripts), booted by Debian's
//! OVMF under QEMU with a `tpm-crb` (or `tpm-tis`) device backed by our vTPM through
//! [`crate::qemu_tpm`].
//!
//! Sources: the kernel and busybox-static come from Debian packages fetched with
//! `apt-get download` into a cache (a cached package is reused, so a rebuild gives the same
//! bytes); tpm2-tools, its libraries and the dynamic loader are taken from the host's Debian
//! installation (`scripts/bootstrap.sh` installs them), found with `ldd`. The initramfs is a
//! newc cpio written in path order with every timestamp, owner and inode fixed, gzip-compressed
//! with a zero mtime: the same inputs give the same bytes, and the builder prints its SHA-256 so
//! reference values can be computed from it.
//!
//! The guest's `/init` mounts proc, sysfs, devtmpfs and securityfs, runs the task named by
//! `svsm.task=` on the kernel command line with its output on the second serial port, prints
//! `SVSM-GUEST-RESULT: <exit status>` there and powers off. Tasks may emit files as
//! `FILE <name> <hex>` lines, which [`GuestRun::file`] decodes.

use crate::qemu_tpm::QemuTpmServer;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_harness::mssim::TpmBackend;
use test_harness::sim::SimMachine;

/// Debian's OVMF (`-bios`).
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// The line `/init` prints last on the result port.
pub const RESULT_MARKER: &str = "SVSM-GUEST-RESULT: ";

/// Why the guest could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// A tool or package is missing; the message says how to get it.
    #[error("{0}")]
    Missing(String),
    /// A command failed.
    #[error("{command}: {detail}")]
    Command {
        /// The command.
        command: String,
        /// Its stderr or status.
        detail: String,
    },
    /// Local I/O.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// Starting or stopping QEMU.
    #[error("{0}")]
    Process(#[from] svsm_process::ProcessError),
    /// The guest did not finish or did not report.
    #[error("guest: {0}")]
    Guest(String),
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, GuestError> {
    let name = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            GuestError::Missing(format!("{name}: not installed (run scripts/bootstrap.sh)"))
        } else {
            GuestError::Io(e)
        }
    })?;
    if !out.status.success() {
        return Err(GuestError::Command {
            command: name,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// The versioned kernel package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> Result<String, GuestError> {
    let out = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| p.starts_with("linux-image-"))
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            GuestError::Missing(
                "apt-cache knows no linux-image-cloud-amd64 (run apt-get update)".into(),
            )
        })
}

/// The cached `.deb` of `package`, downloaded with `apt-get download` when absent.
fn fetch(cache: &Path, package_prefix: &str, package: Option<&str>) -> Result<PathBuf, GuestError> {
    let cached = |cache: &Path| -> io::Result<Option<PathBuf>> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(cache)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(package_prefix) && n.ends_with(".deb"))
            })
            .collect();
        found.sort();
        Ok(found.pop())
    };
    std::fs::create_dir_all(cache)?;
    if let Some(deb) = cached(cache)? {
        return Ok(deb);
    }
    let package = match package {
        Some(p) => p.to_owned(),
        None => kernel_package()?,
    };
    let download = || {
        run(Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(cache))
    };
    if download().is_err() {
        // Stale or missing package lists on a fresh machine.
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        download()?;
    }
    cached(cache)?.ok_or_else(|| GuestError::Missing(format!("apt-get download {package}")))
}

/// Extracts a `.deb` once into `dir`.
fn extract(deb: &Path, dir: &Path) -> Result<(), GuestError> {
    if dir.join(".extracted").exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir))?;
    std::fs::write(dir.join(".extracted"), b"")?;
    Ok(())
}

/// One initramfs entry.
#[derive(Clone, Debug)]
enum Entry {
    Dir,
    File { mode: u32, data: Vec<u8> },
    Symlink(String),
}

/// What the initramfs holds, by path (no leading slash), in archive order.
#[derive(Default)]
struct Tree(BTreeMap<String, Entry>);

impl Tree {
    fn dirs_of(&mut self, path: &str) {
        let mut at = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.0.entry(at.clone()).or_insert(Entry::Dir);
        }
    }
    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.dirs_of(path);
        self.0.insert(path.to_owned(), Entry::File { mode, data });
    }
    fn symlink(&mut self, path: &str, target: &str) {
        self.dirs_of(path);
        self.0
            .insert(path.to_owned(), Entry::Symlink(target.to_owned()));
    }
    fn dir(&mut self, path: &str) {
        self.dirs_of(path);
        self.0.entry(path.to_owned()).or_insert(Entry::Dir);
    }
    /// A host file (symlinks followed) at the same path.
    fn host_file(&mut self, host: &Path) -> Result<(), GuestError> {
        let data = std::fs::read(host)?;
        let path = host.to_string_lossy().trim_start_matches('/').to_owned();
        self.file(&path, 0o755, data);
        Ok(())
    }

    /// The tree as files under `root` (replaced): what `host-verifier ima policy create
    /// --root` makes the guest's runtime policy from.
    fn write_dir(&self, root: &Path) -> Result<(), GuestError> {
        if root.exists() {
            std::fs::remove_dir_all(root)?;
        }
        std::fs::create_dir_all(root)?;
        for (path, entry) in &self.0 {
            let at = root.join(path);
            match entry {
                Entry::Dir => std::fs::create_dir_all(&at)?,
                Entry::File { mode, data } => {
                    std::fs::write(&at, data)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(*mode))?;
                }
                Entry::Symlink(target) => std::os::unix::fs::symlink(target, &at)?,
            }
        }
        Ok(())
    }

    /// newc cpio, then gzip with a zero mtime.
    fn write(&self) -> Result<Vec<u8>, GuestError> {
        let mut cpio = Vec::new();
        for (ino, (path, entry)) in (1u32..).zip(&self.0) {
            let builder = cpio::newc::Builder::new(path)
                .ino(ino)
                .uid(0)
                .gid(0)
                .mtime(0)
                .nlink(1);
            match entry {
                Entry::Dir => {
                    let w = builder.mode(0o040_755).write(&mut cpio, 0);
                    w.finish()?;
                }
                Entry::File { mode, data } => {
                    let len = u32::try_from(data.len())
                        .map_err(|_| GuestError::Guest(format!("{path} is over 4 GiB")))?;
                    let mut w = builder.mode(0o100_000 | mode).write(&mut cpio, len);
                    w.write_all(data)?;
                    w.finish()?;
                }
                Entry::Symlink(target) => {
                    let len = u32::try_from(target.len())
                        .map_err(|_| GuestError::Guest(format!("{path}: long link")))?;
                    let mut w = builder.mode(0o120_777).write(&mut cpio, len);
                    w.write_all(target.as_bytes())?;
                    w.finish()?;
                }
            }
        }
        cpio::newc::trailer(&mut cpio)?;
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&cpio)?;
        Ok(gz.finish()?)
    }
}

/// `binary` without symbols and debug information (`strip -s` on a copy): a debug build of
/// the agent is over 150 MB, more than the guest's memory holds unpacked.
fn stripped(binary: &Path, scratch: &Path) -> Result<Vec<u8>, GuestError> {
    std::fs::create_dir_all(scratch)?;
    let copy = scratch.join("strip.tmp");
    std::fs::copy(binary, &copy)?;
    run(Command::new("strip").arg("-s").arg(&copy))?;
    let data = std::fs::read(&copy)?;
    std::fs::remove_file(&copy)?;
    Ok(data)
}

/// The libraries `ldd` says `binary` needs (resolved paths), and the dynamic loader.
fn ldd(binary: &Path) -> Result<Vec<PathBuf>, GuestError> {
    let out = run(Command::new("ldd").arg(binary))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once(" => ") {
                Some((_, rest)) => rest.split_whitespace().next().map(PathBuf::from),
                None => l
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                    .map(PathBuf::from),
            }
        })
        .collect())
}

const INIT: &str = r#"#!/bin/sh
# svsm-vhsm test guest: mount, run the task the command line names, report, power off.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t securityfs securityfs /sys/kernel/security
tasks=$(sed -n 's/.*svsm\.task=\([A-Za-z0-9_,-]*\).*/\1/p' /proc/cmdline)
out=/dev/ttyS1
rc=0
for task in $(echo "$tasks" | tr ',' ' '); do
  if [ -x "/etc/svsm/$task" ]; then
    "/etc/svsm/$task" >"$out" 2>&1 || { rc=$?; echo "task $task failed: $rc" >"$out"; break; }
  else
    echo "no task '$task'" >"$out"
    rc=2
    break
  fi
done
echo "SVSM-GUEST-RESULT: $rc" >"$out"
sync
poweroff -f
"#;

/// `tpm`: the standard driver is bound, and tpm2-tools work over the kernel's resource manager.
const TASK_TPM: &str = r#"#!/bin/sh
set -e
export TPM2TOOLS_TCTI=device:/dev/tpmrm0
emit() { echo "FILE $1 $(od -An -v -tx1 "$2" | tr -d ' \n')"; }
echo "driver $(basename "$(readlink /sys/class/tpm/tpm0/device/driver)")"
echo "tpm2 version $(cat /sys/class/tpm/tpm0/tpm_version_major)"
tpm2 getrandom --hex 16; echo
tpm2 pcrread sha256:0,1,2,3,4,5,6,7,8,9,10
tpm2 createek -c /tmp/ek.ctx -G ecc -u /tmp/ek.pub
tpm2 createak -C /tmp/ek.ctx -c /tmp/ak.ctx -G ecc -g sha256 -s ecdsa -u /tmp/ak.pub -n /tmp/ak.name
nonce=$(sed -n 's/.*svsm\.nonce=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
tpm2 quote -c /tmp/ak.ctx -l sha256:0,1,2,3,4,5,6,7,8,9,10 -q "$nonce" -g sha256 \
  -m /tmp/quote.msg -s /tmp/quote.sig -o /tmp/quote.pcrs
emit ak.pub /tmp/ak.pub
emit quote.msg /tmp/quote.msg
emit quote.sig /tmp/quote.sig
emit quote.pcrs /tmp/quote.pcrs
emit eventlog /sys/kernel/security/tpm0/binary_bios_measurements
ima=/sys/kernel/security/ima/binary_runtime_measurements
if [ -r "$ima" ]; then cat "$ima" > /tmp/ima.log; emit imalog /tmp/ima.log; fi
"#;

/// `attest`: `svsm-attest` makes an evidence bundle (quote through `/dev/tpmrm0`, OVMF's and
/// IMA's logs, the SVSM's log and the SNP report over the call channel on the third serial
/// port) bound to `svsm.nonce=`, and emits it.
const TASK_ATTEST: &str = r#"#!/bin/sh
set -e
emit() { echo "FILE $1 $(od -An -v -tx1 "$2" | tr -d ' \n')"; }
stty -F /dev/ttyS2 raw -echo
nonce=$(sed -n 's/.*svsm\.nonce=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
svsm-attest --device /dev/ttyS2 --buffer-pages 4 bundle --nonce "$nonce" --out /tmp/bundle.json
emit bundle.json /tmp/bundle.json
echo "bundle made"
"#;

/// `first-quote`: the first quote a fresh guest can make with tpm2-tools (ECC EK, ECC AK, quote
/// of PCRs 0-7), then the kernel's uptime at that moment.
const TASK_FIRST_QUOTE: &str = r#"#!/bin/sh
set -e
export TPM2TOOLS_TCTI=device:/dev/tpmrm0
tpm2 createek -c /tmp/fq-ek.ctx -G ecc -u /tmp/fq-ek.pub >/dev/null
tpm2 createak -C /tmp/fq-ek.ctx -c /tmp/fq-ak.ctx -G ecc -g sha256 -s ecdsa -u /tmp/fq-ak.pub >/dev/null
tpm2 quote -c /tmp/fq-ak.ctx -l sha256:0,1,2,3,4,5,6,7 -q 00112233 -g sha256 -m /tmp/fq.msg -s /tmp/fq.sig >/dev/null
echo "first-quote-uptime $(cut -d' ' -f1 /proc/uptime)"
"#;

/// `tpm-bench`: `svsm-attest tpm-bench` through `/dev/tpmrm0` (no call channel needed).
const TASK_TPM_BENCH: &str = r#"#!/bin/sh
set -e
iterations=$(sed -n 's/.*svsm\.iterations=\([0-9]*\).*/\1/p' /proc/cmdline)
svsm-attest tpm-bench --iterations "${iterations:-50}" --json
"#;

/// `vault`: svsm-vault inside the guest, over the call channel on the third serial port.
const TASK_VAULT: &str = r#"#!/bin/sh
set -e
stty -F /dev/ttyS2 raw -echo
v() { svsm-vault --device /dev/ttyS2 --buffer-pages 4 "$@"; }
echo "a message signed inside VMPL0" > /tmp/msg
v create --kind p384
v sign --key 1 --in /tmp/msg --out /tmp/sig
v verify --key 1 --in /tmp/msg --sig /tmp/sig
echo "wrong" > /tmp/other
if v verify --key 1 --in /tmp/other --sig /tmp/sig; then echo "BAD: a wrong message verified"; exit 1; fi
v create --kind aes
v encrypt --key 2 --in /tmp/msg --out /tmp/enc --aad guest
v decrypt --key 2 --in /tmp/enc --out /tmp/dec --aad guest
cmp /tmp/msg /tmp/dec
echo "vault round trips ok"
v list
# The same vault through the stock TPM driver: the vTPM's vendor command via /dev/tpm0 (this
# 6.1 kernel's resource manager, /dev/tpmrm0, matches command codes on their low 16 bits only
# and so refuses every vendor command with 0xB0143; later kernels also match the V bit).
t() { svsm-vault --tpm /dev/tpm0 "$@"; }
if svsm-vault --tpm /dev/tpmrm0 list >/dev/null 2>/tmp/rm.err; then
  echo "tpmrm0 passes the vendor command"
else
  echo "tpmrm0 refuses the vendor command: $(cat /tmp/rm.err)"
fi
t --json create --kind p256 > /tmp/tpm-key
id=$(sed -n 's/.*"key":\([0-9]*\).*/\1/p' /tmp/tpm-key)
t sign --key "$id" --in /tmp/msg --out /tmp/tpm-sig
echo "FILE tpm-vault.public $(sed -n 's/.*"public":"\([0-9a-f]*\)".*/\1/p' /tmp/tpm-key)"
echo "FILE tpm-vault.sig $(od -An -v -tx1 /tmp/tpm-sig | tr -d ' \n')"
echo "vault over /dev/tpm0 ok"
# An unmodified PKCS#11 client: OpenSC's pkcs11-tool with the module, which finds the vault by
# itself (/dev/tpmrm0, and /dev/tpm0 when the resource manager refuses the vendor command).
p() { pkcs11-tool --module /usr/lib/libsvsm_vault_pkcs11.so "$@"; }
p --list-slots
p --keypairgen --key-type EC:prime256v1 --label guest-p11 --usage-sign > /tmp/p11-key
id=$(sed -n 's/^ *ID: *\([0-9a-f]*\)$/\1/p' /tmp/p11-key | head -n 1)
point=$(sed -n 's/^ *EC_POINT: *\([0-9a-f]*\)$/\1/p' /tmp/p11-key | head -n 1)
p --sign -m ECDSA-SHA256 --id "$id" -i /tmp/msg -o /tmp/p11-sig
echo "FILE p11.point $point"
echo "FILE p11.sig $(od -An -v -tx1 /tmp/p11-sig | tr -d ' \n')"
echo "pkcs11-tool signed in the guest"
"#;

/// `agent`: the guest agent against the broker at `svsm.broker=10.0.2.2:PORT` (the host's
/// loopback on QEMU's user network, `RunOptions::broker_port`): the network and disk drivers
/// (loaded from the kernel package), the broker's certificate (`svsm.broker_pem=`, base64 DER)
/// in a tmpfs (IMA does not measure tmpfs; everything on the ramfs root it reads or runs, it
/// does). With `svsm.disk=NAME` (and `RunOptions::disk`), the disk key NAME is asked for before
/// any round (refused: the node has not attested) and after the first; the LUKS2 volume on
/// `/dev/vda` is opened with it (`svsm-vault reveal` into `cryptsetup open`) and its
/// `hello.txt` emitted as `FILE disk-hello`. A key is provisioned and used by name; with
/// `svsm.tamper=1` a program that is not in the image runs, then another round and another
/// key. Every outcome prints a `STEP` line (what `make demo` shows); a refusal is an outcome,
/// so only a broken setup fails the task.
const TASK_AGENT: &str = r#"#!/bin/sh
set -e
set -o pipefail
for m in $(cat /etc/svsm/modules); do insmod "/lib/modules/$m"; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mount -t tmpfs tmpfs /tmp
stty -F /dev/ttyS2 raw -echo
arg() { sed -n "s/.*svsm\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
emit() { echo "FILE $1 $(od -An -v -tx1 "$2" | tr -d ' \n')"; }
verdict() { sed -n 's/.*"verdict":"\([a-z]*\)".*/\1/p' "$1"; }
checks() { grep -o '"check":"[^"]*"' "$1" | cut -d'"' -f4 | tr '\n' ' '; }
{ echo "-----BEGIN CERTIFICATE-----"; arg broker_pem | fold -w 64; echo "-----END CERTIFICATE-----"; } > /tmp/broker.pem
A="svsm-agent --device /dev/ttyS2 --buffer-pages 4 --broker https://$(arg broker) --ca /tmp/broker.pem --policy $(arg policy) --json"
V="svsm-vault --device /dev/ttyS2 --buffer-pages 4 --agent /tmp/agent.sock"
disk=$(arg disk)
$A serve --socket /tmp/agent.sock &
agent=$!
n=0
while [ ! -S /tmp/agent.sock ]; do
  n=$((n + 1))
  if [ "$n" -gt 300 ]; then echo "the agent's socket did not appear"; exit 1; fi
  sleep 0.1
done
if [ -n "$disk" ]; then
  if $V reveal --key "name:$disk" --out - >/dev/null 2>/tmp/err; then
    echo "STEP disk key before attestation: RELEASED"
  else
    echo "STEP disk key before attestation: refused: $(cat /tmp/err)"
  fi
fi
$A round > /tmp/round1 || true
cat /tmp/round1
offset=$(sed -n 's/.*"ima_offset":\([0-9]*\).*/\1/p' /tmp/round1)
echo "STEP round 1: $(verdict /tmp/round1) over ${offset:-no} IMA entries $(checks /tmp/round1)"
echo "a payment signed inside VMPL0" > /tmp/msg
if $V sign --key name:payments --in /tmp/msg --out /tmp/sig 2>/tmp/err; then
  emit payments.sig /tmp/sig
  echo "STEP app key payments: provisioned on demand, signed inside VMPL0"
else
  echo "STEP app key payments: refused: $(cat /tmp/err)"
fi
if [ -n "$disk" ]; then
  # The key goes from the vault straight into cryptsetup, never into a file.
  if $V reveal --key "name:$disk" --out - 2>/tmp/err \
    | DM_DISABLE_UDEV=1 cryptsetup open --type luks2 --disable-locks --disable-keyring \
      --key-file - /dev/vda data 2>>/tmp/err; then
    mkdir -p /mnt/data
    # Data only: nothing on it may run (the runtime policy excludes its paths from appraisal).
    mount -o ro,noexec,nosuid,nodev /dev/mapper/data /mnt/data
    emit disk-hello /mnt/data/hello.txt
    echo "STEP disk: opened with the released key; hello.txt reads: $(cat /mnt/data/hello.txt)"
    umount /mnt/data
    DM_DISABLE_UDEV=1 cryptsetup close --disable-locks data
  else
    echo "STEP disk: not opened: $(cat /tmp/err)"
  fi
fi
if [ "$(arg tamper)" = 1 ] && [ -n "$offset" ]; then
  printf '#!/bin/sh\necho a program that is not in the image ran\n' > /usr/bin/not-in-the-image
  chmod +x /usr/bin/not-in-the-image
  /usr/bin/not-in-the-image
  echo "STEP tamper: a program that is not in the image ran"
  $A round --from "$offset" > /tmp/round2 || true
  cat /tmp/round2
  echo "STEP round 2: $(verdict /tmp/round2): $(grep -o 'IMA entry [0-9]* [^:]*' /tmp/round2 | head -1)"
  if $V sign --key name:payments-2 --in /tmp/msg --out /tmp/sig2 2>/tmp/err; then
    echo "STEP app key payments-2: provisioned on demand"
  else
    echo "payments-2 refused"
    echo "STEP app key payments-2: refused: $(cat /tmp/err)"
  fi
  if [ -n "$disk" ]; then
    # The disk key left the vault when it was revealed: asking again needs a new release.
    if $V reveal --key "name:$disk" --out - >/dev/null 2>/tmp/err; then
      echo "STEP disk key after the tamper: RELEASED"
    else
      echo "STEP disk key after the tamper: refused: $(cat /tmp/err)"
    fi
  fi
fi
kill $agent
"#;

/// Kernel modules the `agent` task loads, in dependency order (paths under
/// `lib/modules/VERSION/` of the kernel package): virtio-net for the broker's forwarded port,
/// virtio-blk, device-mapper and dm-crypt with the ciphers LUKS2 uses (aes-xts; AES itself is
/// built in) and the kernel crypto API cryptsetup opens keyslots with.
const GUEST_MODULES: [&str; 15] = [
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/md/dm-mod.ko",
    "kernel/drivers/md/dm-crypt.ko",
    "kernel/crypto/ecb.ko",
    "kernel/crypto/xts.ko",
    "kernel/crypto/af_alg.ko",
    "kernel/crypto/algif_skcipher.ko",
];

/// A built guest.
#[derive(Clone, Debug)]
pub struct GuestImage {
    /// The kernel (EFI stub bzImage).
    pub kernel: PathBuf,
    /// The initramfs (gzip'd newc cpio).
    pub initrd: PathBuf,
    /// The kernel package it came from.
    pub kernel_package: String,
    /// SHA-256 of the initramfs, hex.
    pub initrd_sha256: String,
    /// The initramfs unpacked (`ima policy create --root` makes its runtime policy).
    pub rootfs: PathBuf,
}

/// Where `make guest` puts its output and its package cache.
pub fn default_guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest")
}

/// Builds (or reuses) the guest under `dir`; `extra` are host binaries to put in `/usr/bin`.
/// The project's guest binaries every guest gets (guest-driver with feature `std`, the agent,
/// and the PKCS#11 module, which goes to `/usr/lib`).
pub const GUEST_BINARIES: [&str; 4] = [
    "svsm-vault",
    "svsm-attest",
    "svsm-agent",
    "libsvsm_vault_pkcs11.so",
];

/// The project's guest binaries in `bin_dir` (a cargo target profile directory), or an error
/// saying how to build them.
pub fn guest_binaries(bin_dir: &Path) -> Result<Vec<PathBuf>, GuestError> {
    GUEST_BINARIES
        .iter()
        .map(|name| {
            let path = bin_dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(GuestError::Missing(format!(
                    "{} is missing: build the guest binaries first (cargo build {release}-p \
                     guest-driver --features std -p guest-agent --bins; cargo build {release}-p \
                     svsm-vault-pkcs11; make guest does)",
                    path.display(),
                    release = if bin_dir.ends_with("release") {
                        "--release "
                    } else {
                        ""
                    }
                )))
            }
        })
        .collect()
}

/// Builds the guest image in `dir` with the host binaries `extra` in its `/usr/bin`.
pub fn build(dir: &Path, extra: &[PathBuf]) -> Result<GuestImage, GuestError> {
    let cache = dir.join("debs");
    let kernel_deb = fetch(&cache, "linux-image-6.", None)?;
    let busybox_deb = fetch(&cache, "busybox-static_", Some("busybox-static"))?;
    let kx = dir.join("extract/kernel");
    let bx = dir.join("extract/busybox");
    extract(&kernel_deb, &kx)?;
    extract(&busybox_deb, &bx)?;
    let vmlinuz = std::fs::read_dir(kx.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| GuestError::Guest(format!("no vmlinuz in {}", kernel_deb.display())))?;

    let mut tree = Tree::default();
    for d in [
        "dev", "proc", "sys", "tmp", "run", "root", "etc/svsm", "usr/bin",
    ] {
        tree.dir(d);
    }
    let busybox = bx.join("bin/busybox");
    tree.file("bin/busybox", 0o755, std::fs::read(&busybox)?);
    let applets = run(Command::new(&busybox).arg("--list-full"))?;
    for applet in String::from_utf8_lossy(&applets).lines() {
        let applet = applet.trim();
        // Every applet but busybox itself (that link would loop).
        if applet.is_empty() || applet.ends_with("/busybox") {
            continue;
        }
        let depth = applet.matches('/').count();
        tree.symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)));
    }
    let tpm2 = Path::new("/usr/bin/tpm2");
    if !tpm2.exists() {
        return Err(GuestError::Missing(
            "/usr/bin/tpm2 (apt-get install tpm2-tools; scripts/bootstrap.sh does)".into(),
        ));
    }
    let cryptsetup = Path::new("/usr/sbin/cryptsetup");
    if !cryptsetup.exists() {
        return Err(GuestError::Missing(
            "/usr/sbin/cryptsetup (apt-get install cryptsetup-bin; scripts/bootstrap.sh does)"
                .into(),
        ));
    }
    // OpenSC's pkcs11-tool: an unmodified PKCS#11 client for the module, in the guest.
    let pkcs11_tool = Path::new("/usr/bin/pkcs11-tool");
    if !pkcs11_tool.exists() {
        return Err(GuestError::Missing(
            "/usr/bin/pkcs11-tool (apt-get install opensc; scripts/bootstrap.sh does)".into(),
        ));
    }
    let tcti = Path::new("/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0");
    let mut host = vec![
        tpm2.to_owned(),
        tcti.to_owned(),
        cryptsetup.to_owned(),
        pkcs11_tool.to_owned(),
    ];
    host.extend(extra.iter().cloned());
    let mut libs = Vec::new();
    for h in &host {
        libs.extend(ldd(h)?);
    }
    host.extend(libs);
    host.sort();
    host.dedup();
    for h in &host {
        tree.host_file(h)?;
    }
    for e in extra {
        if let Some(name) = e.file_name().and_then(|n| n.to_str()) {
            let at = if name.ends_with(".so") {
                format!("usr/lib/{name}")
            } else {
                format!("usr/bin/{name}")
            };
            tree.file(&at, 0o755, stripped(e, dir)?);
        }
    }
    let modules_root = std::fs::read_dir(kx.join("lib/modules"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .ok_or_else(|| GuestError::Guest(format!("no lib/modules in {}", kernel_deb.display())))?;
    let mut order = String::new();
    for module in GUEST_MODULES {
        let name = Path::new(module)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(module);
        tree.file(
            &format!("lib/modules/{name}"),
            0o644,
            std::fs::read(modules_root.join(module))?,
        );
        order.push_str(name);
        order.push('\n');
    }
    tree.file("etc/svsm/modules", 0o644, order.into_bytes());
    tree.file("etc/svsm/agent", 0o755, TASK_AGENT.as_bytes().to_vec());
    tree.file("init", 0o755, INIT.as_bytes().to_vec());
    tree.file("etc/svsm/tpm", 0o755, TASK_TPM.as_bytes().to_vec());
    tree.file("etc/svsm/vault", 0o755, TASK_VAULT.as_bytes().to_vec());
    tree.file("etc/svsm/attest", 0o755, TASK_ATTEST.as_bytes().to_vec());
    tree.file(
        "etc/svsm/tpm-bench",
        0o755,
        TASK_TPM_BENCH.as_bytes().to_vec(),
    );
    tree.file(
        "etc/svsm/first-quote",
        0o755,
        TASK_FIRST_QUOTE.as_bytes().to_vec(),
    );
    let initrd = tree.write()?;
    let initrd_sha256 = hex::encode(Sha256::digest(&initrd));
    std::fs::create_dir_all(dir)?;
    let kernel = dir.join("vmlinuz");
    std::fs::copy(&vmlinuz, &kernel)?;
    let initrd_path = dir.join("initrd.img");
    std::fs::write(&initrd_path, &initrd)?;
    let rootfs = dir.join("rootfs");
    tree.write_dir(&rootfs)?;
    Ok(GuestImage {
        kernel,
        initrd: initrd_path,
        kernel_package: kernel_deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        initrd_sha256,
        rootfs,
    })
}

/// The TPM device QEMU gives the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TpmDevice {
    /// `tpm-crb` (Linux `tpm_crb`).
    Crb,
    /// `tpm-tis` (Linux `tpm_tis`).
    Tis,
}

/// How to boot the guest.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The task (`svsm.task=`).
    pub task: String,
    /// More kernel command line (e.g. `svsm.nonce=HEX`).
    pub append: String,
    /// CRB or TIS.
    pub device: TpmDevice,
    /// Give up after this long.
    pub timeout: Duration,
    /// A broker on the host's 127.0.0.1 at this port: the guest gets a virtio-net NIC on QEMU's
    /// user network, where 10.0.2.2 is the host's loopback, and reaches the broker at
    /// `https://10.0.2.2:PORT` (`svsm.broker=` on the command line).
    pub broker_port: Option<u16>,
    /// A raw disk image attached as the guest's `/dev/vda` (virtio-blk; writes go to the file).
    pub disk: Option<PathBuf>,
}

/// What a guest run left behind.
#[derive(Debug)]
pub struct GuestRun {
    /// The task's exit status as the guest reported it (`None`: no report).
    pub status: Option<i32>,
    /// The task's output (second serial port).
    pub output: String,
    /// The kernel console (first serial port).
    pub console: String,
    /// Boot to power-off.
    pub elapsed: Duration,
}

impl GuestRun {
    /// A file the task emitted as `FILE name hex`.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.output.lines().find_map(|l| {
            let rest = l
                .strip_prefix("FILE ")?
                .strip_prefix(name)?
                .strip_prefix(' ')?;
            hex::decode(rest.trim()).ok()
        })
    }
}

/// The guest's memory (`-m`): the kernel's measured setup header depends on it (QEMU places
/// the initrd below the top of low memory and writes that address into the header).
pub const GUEST_MEMORY_MIB: u64 = 512;

/// The kernel command line a run gives the guest (`-append`), byte for byte: the EFI stub
/// measures it (with OVMF's " initrd=initrd" suffix) into PCR 9.
pub fn kernel_cmdline(options: &RunOptions) -> String {
    format!(
        "console=ttyS0 rootfstype=ramfs panic=-1 svsm.task={} {}",
        options.task, options.append
    )
}

/// What answers the guest's TPM device.
pub enum GuestTpm {
    /// A vTPM served here as QEMU's TPM emulator backend ([`QemuTpmServer`]).
    Backend(Box<dyn TpmBackend>),
    /// Another TPM emulator already listening on this control socket (swtpm, for comparisons).
    External(PathBuf),
}

/// Where the guest's SVSM calls (third serial port) go.
#[derive(Clone, Copy)]
pub enum CallTarget<'a> {
    /// The simulated machine's module.
    Sim(&'a SimMachine),
    /// The freestanding image's module (relayed to its call line).
    Image(&'a std::sync::Arc<test_harness::image::ImageMachine>),
}

enum OwnedTarget {
    Sim(SimMachine),
    Image(std::sync::Arc<test_harness::image::ImageMachine>),
}

/// Boots `image` with QEMU + OVMF, the TPM device backed by `backend`, and waits for the task.
/// With `calls`, the guest's third serial port (`/dev/ttyS2`) carries framed SVSM calls into
/// that machine (a stand-in for VMGEXIT: QEMU here has no SEV-SNP), so `svsm-vault --device
/// /dev/ttyS2` reaches its vault.
pub fn run_guest(
    image: &GuestImage,
    tpm: GuestTpm,
    calls: Option<CallTarget<'_>>,
    options: &RunOptions,
) -> Result<GuestRun, GuestError> {
    let dir = std::env::temp_dir().join(format!(
        "svsm-guest-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir, image, tpm, calls, options);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    dir: &Path,
    image: &GuestImage,
    tpm: GuestTpm,
    calls: Option<CallTarget<'_>>,
    options: &RunOptions,
) -> Result<GuestRun, GuestError> {
    let (ctrl, server) = match tpm {
        GuestTpm::Backend(backend) => {
            let ctrl = dir.join("tpm-ctrl.sock");
            let server = QemuTpmServer::start(&ctrl, backend)?;
            (ctrl, Some(server))
        }
        GuestTpm::External(ctrl) => (ctrl, None),
    };
    let calls_path = dir.join("calls.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let has_calls = calls.is_some();
    let channel = match calls {
        Some(target) => {
            let listener = UnixListener::bind(&calls_path)?;
            listener.set_nonblocking(true)?;
            let stop = stop.clone();
            let target = match target {
                CallTarget::Sim(m) => OwnedTarget::Sim(m.clone()),
                CallTarget::Image(m) => OwnedTarget::Image(m.clone()),
            };
            Some(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = match &target {
                                OwnedTarget::Sim(m) => {
                                    test_harness::guest_channel::serve(stream, m)
                                }
                                OwnedTarget::Image(m) => test_harness::image::relay(stream, m),
                            };
                            return;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }))
        }
        None => None,
    };
    let console = dir.join("console.txt");
    let output = dir.join("output.txt");
    let device = match options.device {
        TpmDevice::Crb => "tpm-crb,tpmdev=tpm0",
        TpmDevice::Tis => "tpm-tis,tpmdev=tpm0",
    };
    let append = kernel_cmdline(options);
    let start = Instant::now();
    let mut qemu = svsm_process::spawn(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-m"])
            .arg(format!("{GUEST_MEMORY_MIB}M"))
            .args(["-display", "none", "-nodefaults", "-no-reboot"])
            .args(["-bios", OVMF])
            .arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", ctrl.display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args(["-device", device])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(&append)
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", output.display()))
            .args(match options.broker_port {
                // No option ROM: OVMF would measure it into PCR 2.
                Some(_) => vec![
                    "-netdev".to_owned(),
                    "user,id=net0".to_owned(),
                    "-device".to_owned(),
                    "virtio-net-pci,netdev=net0,romfile=".to_owned(),
                ],
                None => vec![],
            })
            .args(match &options.disk {
                Some(disk) => vec![
                    "-drive".to_owned(),
                    format!("file={},if=none,id=disk0,format=raw", disk.display()),
                    "-device".to_owned(),
                    "virtio-blk-pci,drive=disk0,romfile=".to_owned(),
                ],
                None => vec![],
            })
            .args(if has_calls {
                vec![
                    "-chardev".to_owned(),
                    format!("socket,id=calls,path={}", calls_path.display()),
                    "-serial".to_owned(),
                    "chardev:calls".to_owned(),
                ]
            } else {
                vec![]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let exited = qemu.wait_timeout(options.timeout)?;
    // QEMU start to power-off: stopping our own servers afterwards is not the guest's time.
    let elapsed = start.elapsed();
    if exited.is_none() {
        qemu.kill()?;
    }
    drop(server);
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = channel {
        let _ = t.join();
    }
    let console = std::fs::read_to_string(&console).unwrap_or_default();
    let output = std::fs::read_to_string(&output).unwrap_or_default();
    let status = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(RESULT_MARKER)?.parse().ok());
    if exited.is_none() && status.is_none() {
        return Err(GuestError::Guest(format!(
            "no result after {:?}; console:\n{console}",
            options.timeout
        )));
    }
    Ok(GuestRun {
        status,
        output,
        console,
        elapsed,
    })
}
