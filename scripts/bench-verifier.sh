#!/usr/bin/env bash
# Benchmarks the host verifier on the real SNP vectors, in one run:
#  1. in-process reports/s, chain cached and cold, against the `sev` crate (cargo bench);
#  2. per-process CLI time of `host-verifier snp verify` against `snpguest` 0.11
#     (`verify certs` + `verify attestation`, the two commands that cover the same checks).
# No network except installing snpguest once if it is missing (crates.io).
#   BENCH_RUNS=N   CLI runs per case and tool (default 30)
#   SNPGUEST=path  use this snpguest binary
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vectors=${SVSM_VECTORS:-$root/vectors}/snp
[ -d "$vectors" ] || { echo "bench: vectors not found at $vectors (set SVSM_VECTORS)" >&2; exit 1; }
export SVSM_VECTORS=${SVSM_VECTORS:-$root/vectors}
runs=${BENCH_RUNS:-30}
target=${CARGO_TARGET_DIR:-$root/target}

echo "== 1. in-process (cargo bench -p host-verifier --bench verify)"
cargo bench --quiet -p host-verifier --bench verify 2>/dev/null | grep -v '^$' || cargo bench -p host-verifier --bench verify

echo
echo "== 2. per-process CLI ($runs runs per case)"
cargo build --quiet --release -p host-verifier --bin host-verifier
hv=$target/release/host-verifier

snpguest=${SNPGUEST:-}
if [ -z "$snpguest" ]; then
  if command -v snpguest >/dev/null && snpguest --version 2>/dev/null | grep -q ' 0\.11'; then
    snpguest=$(command -v snpguest)
  elif [ -x "$target/bench-tools/bin/snpguest" ]; then
    snpguest=$target/bench-tools/bin/snpguest
  else
    echo "installing snpguest 0.11 into $target/bench-tools (once; takes minutes: it builds OpenSSL)"
    if ! cargo install --quiet snpguest --version '~0.11' --locked --root "$target/bench-tools" >"$target/snpguest-install.log" 2>&1; then
      echo "snpguest 0.11 did not build; the CLI comparison is skipped. Last lines of the log:"
      tail -20 "$target/snpguest-install.log"
      snpguest=
    else
      snpguest=$target/bench-tools/bin/snpguest
    fi
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Milliseconds per run of "$@" (hyperfine when present, else a plain loop). `both ...` (below)
# is timed as the two snpguest commands it runs.
time_ms() {
  if command -v hyperfine >/dev/null; then
    local cmd q
    if [ "$1" = both ]; then
      q=$(printf '%q ' "${@:5}")
      cmd="$2 verify certs $3 && $2 verify attestation $3 $4 $q"
      hyperfine --style none --runs "$runs" --warmup 3 --export-json "$work/h.json" "$cmd" >/dev/null 2>&1
    else
      cmd=$(printf '%q ' "$@")
      hyperfine --style none --runs "$runs" --warmup 3 -N --export-json "$work/h.json" "$cmd" >/dev/null 2>&1
    fi
    python3 -c 'import json,sys;print("%.2f"%(json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$work/h.json"
  else
    for _ in 1 2 3; do "$@" >/dev/null 2>&1 || true; done
    local start end
    start=$(date +%s%N)
    for ((i = 0; i < runs; i++)); do "$@" >/dev/null 2>&1 || true; done
    end=$(date +%s%N)
    awk -v s="$start" -v e="$end" -v n="$runs" 'BEGIN { printf "%.2f", (e - s) / n / 1e6 }'
  fi
}

# Two commands as one timed unit.
both() { "$1" verify certs "$2" && "$1" verify attestation "$2" "$3" "${@:4}"; }

printf '%-15s %14s %20s %16s %9s\n' case "host-verifier" "snpguest certs+att" "snpguest att" ratio
total_hv=0; total_sg=0
for spec in milan-v2:milan:vcek.der:ask:2026 milan-v3:milan:vcek.pem:ask:2026 \
            milan-v3-vlek:milan:vlek.der:asvk:2025 genoa-v3:genoa:vcek.pem:ask:2026 \
            turin-v5:turin:vcek.pem:ask:2026; do
  IFS=: read -r case product vek signer year <<<"$spec"
  report=$vectors/$case/report.bin
  at="$year-06-01T00:00:00Z"
  "$hv" snp verify --report "$report" --vek "$vectors/$case/$vek" --at "$at" >/dev/null \
    || { echo "host-verifier rejected $case" >&2; exit 1; }
  t_hv=$(time_ms "$hv" snp verify --report "$report" --vek "$vectors/$case/$vek" --at "$at")
  t_sg=-; t_sga=-; ratio=-
  if [ -n "$snpguest" ]; then
    dir=$work/$case; mkdir -p "$dir"
    cp "$vectors/amd/ark-$product.pem" "$dir/ark.pem"
    cp "$vectors/amd/$signer-$product.pem" "$dir/$signer.pem"
    kind=${vek%%.*}
    cp "$vectors/$case/$vek" "$dir/$vek"
    extra=()
    [ "$case" = milan-v2 ] && extra=(-p milan) # v2 reports do not name their product
    if both "$snpguest" "$dir" "$report" "${extra[@]}" >/dev/null 2>&1; then
      t_sg=$(time_ms both "$snpguest" "$dir" "$report" "${extra[@]}")
      t_sga=$(time_ms "$snpguest" verify attestation "$dir" "$report" "${extra[@]}")
      ratio=$(awk -v a="$t_sg" -v b="$t_hv" 'BEGIN { printf "%.2fx", a / b }')
      total_hv=$(awk -v a="$total_hv" -v b="$t_hv" 'BEGIN { print a + b }')
      total_sg=$(awk -v a="$total_sg" -v b="$t_sg" 'BEGIN { print a + b }')
    else
      t_sg="fails($kind)"
    fi
  fi
  printf '%-15s %12s ms %17s ms %13s ms %9s\n' "$case" "$t_hv" "$t_sg" "$t_sga" "$ratio"
done
if [ -n "$snpguest" ] && [ "$total_sg" != 0 ]; then
  awk -v a="$total_sg" -v b="$total_hv" 'BEGIN { printf "total: snpguest (certs+attestation) / host-verifier = %.2fx (higher is better for host-verifier)\n", a / b }'
fi
echo "host-verifier runs every check in one process; snpguest needs 'verify certs' and 'verify attestation'."
