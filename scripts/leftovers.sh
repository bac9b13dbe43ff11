#!/usr/bin/env bash
# Lists the processes that still carry the run marker in their environment and fails if there
# are any: everything `make test` starts inherits SVSM_RUN_MARKER, so whatever still has it after
# `make test` returned outlived its parent.
#   scripts/leftovers.sh MARKER [PID-TO-IGNORE...]
# Run it without the marker in its own environment (env -u SVSM_RUN_MARKER ...).
set -u
marker=${1:?usage: leftovers.sh MARKER [PID...]}
shift
ignore=" $* "
found=0
for env in /proc/[0-9]*/environ; do
  pid=${env#/proc/}
  pid=${pid%/environ}
  case "$ignore" in *" $pid "*) continue ;; esac
  if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qx "SVSM_RUN_MARKER=$marker"; then
    echo "leftover process $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)" >&2
    found=1
  fi
done
if [ "$found" -ne 0 ]; then
  echo "leftovers: processes started by this run are still running" >&2
  exit 1
fi
echo "leftovers: none"
