#!/usr/bin/env bash
# Runs every cargo-fuzz target over its seed corpus for a few seconds each (CI smoke run).
#   FUZZ_SECONDS=N   seconds per target (default 5)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-5}
./seed-corpus.sh
build_log=$(mktemp)
if ! cargo +nightly fuzz build >"$build_log" 2>&1; then
  # CI shows only the end of the output: put the compiler's own words and the disk there.
  echo "fuzz build FAILED; the compiler said:"
  grep -E '^(error|warning: unused)|panicked|No space|memory allocation|SIGKILL|signal:' "$build_log" | head -40
  tail -20 "$build_log"
  df -h . /tmp
  rm -f "$build_log"; exit 1
fi
rm -f "$build_log"
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
