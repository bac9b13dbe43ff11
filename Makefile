# svsm-vhsm: the two commands a user needs are `make demo` and `make test`.
# Both first run scripts/bootstrap.sh, which installs only what is missing.

CARGO ?= cargo
NOSTD_CRATES := -p svsm-abi -p svsm-tpm2 -p svsm-core -p guest-driver -p svsm-platform-snp

.PHONY: all bootstrap bootstrap-fuzz test fmt-check clippy unit nostd fuzz-smoke demo bench

all: test

bootstrap:
	@scripts/bootstrap.sh

bootstrap-fuzz:
	@scripts/bootstrap.sh --fuzz

## test: everything CI runs: format, lints, tests, the no_std proof, and a fuzz smoke run.
test: bootstrap-fuzz fmt-check clippy image-check image image-snp unit nostd fuzz-smoke

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) build --workspace --bins
	$(CARGO) build -p guest-driver --features std --bins
	$(CARGO) build -p svsm-vault-pkcs11
	$(CARGO) test --workspace

nostd:
	$(CARGO) build --target x86_64-unknown-none $(NOSTD_CRATES)

fuzz-smoke:
	scripts/fuzz-smoke.sh

## demo: the flow end to end on the simulated SNP machine, then in the real guest (Debian kernel under
## QEMU + OVMF) against the broker on SQLite: keys on demand, continuous attestation with IMA,
## a LUKS2 disk opened with a released key, a tampered binary and a changed kernel refused.
demo: bootstrap
	$(CARGO) build --quiet --release -p guest-driver --features std -p guest-agent --bins
	$(CARGO) build --quiet --release -p svsm-vault-pkcs11
	$(CARGO) run --quiet --release -p svsm-sim --bin svsm-sim -- demo

## guest: the real Linux guest (Debian cloud kernel + initramfs) under target/guest; `svsm-sim
## guest run` boots it with QEMU + OVMF on the vTPM (docs/real-guest.md).
.PHONY: guest
guest: bootstrap
	$(CARGO) build --quiet --release -p guest-driver --features std -p guest-agent --bins
	$(CARGO) build --quiet --release -p svsm-vault-pkcs11
	$(CARGO) run --quiet --release -p svsm-sim --bin svsm-sim -- guest build

## bench: performance side by side with the peers named in the issues, one run, as ratios.
## PKCS#11 against SoftHSM2 and tpm2-pkcs11 (Debian packages, bootstrap installs them).
## The verifier comparison needs snpguest 0.11 (installed on first use: several minutes); the IMA
## one installs Keylime 7.14.3 from PyPI into target/keylime-venv on first use.
bench: bootstrap
	$(CARGO) bench -p test-harness --bench tpm
	$(CARGO) bench -p test-harness --bench vault
	$(CARGO) bench -p test-harness --bench bundle
	$(CARGO) build --release -p host-verifier --bins
	$(CARGO) bench -p test-harness --bench broker
	$(CARGO) bench -p test-harness --bench rounds
	$(CARGO) build --release -p guest-driver --features std -p guest-agent --bins
	$(CARGO) build --release -p svsm-vault-pkcs11
	$(CARGO) bench -p svsm-sim --bench guest_tpm
	$(CARGO) bench -p svsm-sim --bench pkcs11
	$(CARGO) bench -p ovmf --bench measure
	$(CARGO) bench -p host-verifier --bench azure
	$(CARGO) bench -p host-verifier --bench ima
	scripts/bench-verifier.sh
	$(MAKE) bench-image

## image: the freestanding SVSM image (svsm-core + libtpms vTPM + vault over an EMULATED platform),
## x86_64-unknown-none, booted by `qemu-system-x86_64 -kernel`. Its own manifest, rustflags and
## target dir (svsm-module/image/.cargo/config.toml); output:
## target/image/x86_64-unknown-none/release/svsm-image. The end-to-end tests boot it
## (test-harness/svsm-sim/tests/image.rs, part of `make unit`).
IMAGE_DIR := svsm-module/image
.PHONY: image image-snp image-check bench-image
image:
	cd $(IMAGE_DIR) && $(CARGO) build --release

## image-snp: the same image for SEV-SNP (feature `snp`): entered from an IGVM file at VMPL0 on
## svsm-platform-snp, it starts the guest firmware at VMPL1. Linked at $$SVSM_BASE (default
## 0x4000000). Output: target/image/x86_64-unknown-none/release-snp/svsm-image, an ELF file that
## `snp-measure build-igvm --svsm` takes as it is (ovmf/tests/igvm_build.rs builds its IGVM file
## and checks the launch digest). docs/launch.md.
image-snp:
	cd $(IMAGE_DIR) && $(CARGO) build --features snp --profile release-snp

## image-check: format and lints of the image crate (outside the workspace, so not in fmt-check/clippy).
image-check:
	cd $(IMAGE_DIR) && $(CARGO) fmt --check && $(CARGO) clippy --release -- -D warnings \
		&& $(CARGO) clippy --features snp --profile release-snp -- -D warnings

## bench-image: per-command latency through the image vs the hosted simulator, image size,
## heap and stack high-water marks.
bench-image: bootstrap image
	$(CARGO) test --release -p svsm-sim --test image -- --nocapture --test-threads=1 image_vs_hosted_latency
