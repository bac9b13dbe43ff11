#!/usr/bin/env bash
# Builds fuzz/corpus/<target>/ from the committed synthetic seeds (fuzz/seeds/) and the real
# hardware evidence in the repository's vectors/snp (reports, HCL blobs, certificates), and the
# real IMA list in svsm-abi's test data.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vectors=${SVSM_VECTORS:-$here/../vectors}/snp
[ -d "$vectors" ] || { echo "seed-corpus: vectors not found at $vectors (set SVSM_VECTORS)" >&2; exit 1; }
targets=(snp_report cert_table services_manifest attest_request vtpm_buffer guest_message page_info tpm_command dispatcher host_verify vek_extensions vault_request snp_guest_response ovmf_firmware igvm_measure azure_hcl bundle_json image_frame swtpm_ctrl ima_log ima_rounds ima_runtime_policy agent_socket direct_boot broker_request tpm_vendor ek_certificates gpu_report gpu_evidence core_protocol igvm_boot)
for t in "${targets[@]}"; do
  mkdir -p "$here/corpus/$t"
  if [ -d "$here/seeds/$t" ]; then cp "$here/seeds/$t"/* "$here/corpus/$t/"; fi
done
for r in "$vectors"/*/report.bin; do
  cp "$r" "$here/corpus/snp_report/$(basename "$(dirname "$r")")-report.bin"
done
for h in "$vectors"/azure-*/hcl-report.bin; do
  case=$(basename "$(dirname "$h")")
  # The SNP report sits at 0x20..0x4C0 of the HCL blob.
  dd if="$h" of="$here/corpus/snp_report/$case-report.bin" bs=1 skip=32 count=1184 status=none
  # A MSG_REPORT_RSP built around the real report: status 0, size 0x4A0, 24 reserved bytes.
  { printf '\x00\x00\x00\x00\xa0\x04\x00\x00'; head -c 24 /dev/zero; cat "$here/corpus/snp_report/$case-report.bin"; } \
    > "$here/corpus/guest_message/$case-report-rsp.bin"
done
for c in "$vectors"/*/*.der; do
  cp "$c" "$here/corpus/cert_table/$(basename "$(dirname "$c")")-$(basename "$c")"
done
# host_verify: each real report followed by the VEK that signed it (PEM or DER, as shipped).
for d in "$vectors"/*/; do
  case=$(basename "$d")
  vek=$(ls "$d"vcek.pem "$d"vcek.der "$d"vlek.der "$d"vcek-ask-ark.pem 2>/dev/null | head -n1 || true)
  [ -n "$vek" ] || continue
  if [ -f "$d/report.bin" ]; then
    cat "$d/report.bin" "$vek" > "$here/corpus/host_verify/$case-report-vek.bin"
  elif [ -f "$d/hcl-report.bin" ]; then
    { dd if="$d/hcl-report.bin" bs=1 skip=32 count=1184 status=none; cat "$vek"; } \
      > "$here/corpus/host_verify/$case-report-vek.bin"
  fi
done
# vek_extensions: every VEK and the AMD CA certificates.
for c in "$vectors"/*/*.der "$vectors"/*/*.pem "$vectors"/amd/*.pem; do
  cp "$c" "$here/corpus/vek_extensions/$(basename "$(dirname "$c")")-$(basename "$c")"
done
# ovmf_firmware: the footer table and SEV metadata of Debian's real images, when installed
# (the last 16 KiB holds both), behind the target's two knob bytes.
for fd in /usr/share/ovmf/OVMF.fd /usr/share/OVMF/OVMF_CODE.fd; do
  [ -f "$fd" ] || continue
  { printf '\x13\x01'; tail -c 16384 "$fd"; } > "$here/corpus/ovmf_firmware/debian-$(basename "$fd")-tail.bin"
done
# ima_log: the real IMA list of Debian's 6.1 kernel on the vTPM, whole and as its first entry
# alone (the boot_aggregate, 106 bytes).
ima=$here/../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/ima-binary_runtime_measurements.bin
cp "$ima" "$here/corpus/ima_log/debian-6.1-ima.bin"
head -c 106 "$ima" > "$here/corpus/ima_log/debian-6.1-ima-boot-aggregate.bin"
# ima_rounds: the same list behind the target's 9 knob bytes (nothing kept, offset 0).
{ printf '\x00\x00\x00\x00\x00\x00\x00\x00\x00'; cat "$ima"; } > "$here/corpus/ima_rounds/debian-6.1-ima.bin"
# direct_boot: the head of Debian's cloud kernel (setup header and PE headers) when `make guest`
# or the real-guest tests have downloaded it, behind the target's two knob bytes.
for k in "$here"/../target/guest/vmlinuz; do
  [ -f "$k" ] || continue
  { printf '\x40\x0f'; head -c 65536 "$k"; } > "$here/corpus/direct_boot/debian-vmlinuz-head.bin"
done
# broker_request: release and attest requests around the real guest's evidence bundle and the
# simulator's (policy and resource documents are committed seeds).
for b in "$here"/../host-verifier/tests/data/bundle-real-guest/bundle.json "$here"/../host-verifier/tests/data/bundle-sim/bundle.json; do
  name=$(basename "$(dirname "$b")")
  { printf '{"resource": "payments", "bundle": '; cat "$b"; printf '}'; } > "$here/corpus/broker_request/$name-release.json"
  { printf '{"policy": "default", "bundle": '; cat "$b"; printf '}'; } > "$here/corpus/broker_request/$name-attest.json"
done
