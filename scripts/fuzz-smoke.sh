#!/usr/bin/env bash
# Runs every cargo-fuzz target over its seed corpus for a few seconds each (CI smoke run).
#   FUZZ_SECONDS=N   seconds per target (default 5)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-5}
./seed-corpus.sh
cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
  printf 'fuzz %-20s ' "$target"
  log=$(mktemp)
  if cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    grep -E '^Done' "$log" || echo "done"
  else
    echo "FAILED"; tail -40 "$log"; rm -f "$log"; exit 1
  fi
  rm -f "$log"
done
