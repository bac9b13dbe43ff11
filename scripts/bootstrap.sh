#!/usr/bin/env bash
# Installs what `make test` / `make demo` need on a Debian bookworm machine that has only Rust,
# gcc and Python, and nothing that is already there. Idempotent; a few seconds when complete.
#
#   scripts/bootstrap.sh            build + test dependencies
#   scripts/bootstrap.sh --fuzz     also the fuzzing toolchain (nightly + cargo-fuzz)
set -euo pipefail

want_fuzz=0
for arg in "$@"; do
  case "$arg" in
    --fuzz) want_fuzz=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'bootstrap: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the TPM engine (libtpms) and OpenSSL to link it, pkg-config to find them,
# tpm2-tss + tpm2-tools as real TPM clients, swtpm as the benchmark peer, Debian's OVMF images
# for the launch-measurement reference digests, PostgreSQL for the tests' throwaway clusters.
# The PKCS#11 clients the module is tested with (OpenSC, the OpenSSL engine, GnuTLS, OpenSSH) and
# its benchmark peers (SoftHSM2, tpm2-pkcs11 over the mssim TCTI).
apt_packages=(pkg-config libssl-dev libtpms-dev libtss2-dev tpm2-tools swtpm ovmf qemu-system-x86 postgresql cryptsetup-bin e2fsprogs opensc libengine-pkcs11-openssl gnutls-bin openssh-client softhsm2 libtpm2-pkcs11-1 libtss2-tcti-mssim0)
missing=()
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${apt_packages[@]}" 2>/dev/null || true)
for p in "${apt_packages[@]}"; do
  grep -q "^$p ii" <<<"$installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # Packages must not start services (PostgreSQL's cluster): the tests start their own and
  # nothing may outlive a run. policy-rc.d answering 101 tells invoke-rc.d "not allowed".
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    made_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
fi

# The launch-measurement peer (ovmf differential test, make bench), pinned to the version the
# reference digests were made with.
if [ "$(sev-snp-measure --version 2>/dev/null)" != "sev-snp-measure 0.0.13" ]; then
  say "installing sev-snp-measure 0.0.13 (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'sev-snp-measure==0.0.13'
fi

# The emulated SEV-SNP machine the SNP image runs on in the tests (test-harness/snp-emu): a CPU
# emulator and AES-GCM for the PSP's guest messages.
if ! python3 -c 'import unicorn, sys; sys.exit(unicorn.__version__ != "2.1.4")' 2>/dev/null \
   || ! python3 -c 'from cryptography.hazmat.primitives.ciphers.aead import AESGCM' 2>/dev/null; then
  say "installing unicorn 2.1.4 and cryptography (pip) for the emulated SNP machine"
  python3 -m pip install --quiet --disable-pip-version-check 'unicorn==2.1.4' 'cryptography>=41'
fi

# The no_std proof builds for the bare-metal target the SVSM image uses.
if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
  say "adding rust target x86_64-unknown-none"
  rustup target add x86_64-unknown-none
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding rust component $component"
    rustup component add "$component"
  fi
done

if [ "$want_fuzz" -eq 1 ]; then
  # libFuzzer's sanitizer flags need nightly.
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    say "installing the nightly toolchain (minimal profile) for cargo-fuzz"
    rustup toolchain install nightly --profile minimal
  fi
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  fi
fi
