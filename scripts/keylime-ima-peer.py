#!/usr/bin/env python3
"""The peer of `cargo bench -p host-verifier --bench ima`: Keylime's own IMA appraisal
(keylime.ima.ima.process_measurement_list, the call its verifier makes) on the bench's text
list and runtime policy, timed in this process. Prints one JSON object.

Run by the bench with the interpreter of the venv scripts/keylime-venv.sh makes; not part of
the product. The policy is loaded and its keyring built before timing, as Keylime's verifier
does once per agent; each timed call is one first pass or one incremental round.
"""
import argparse
import json
import logging
import statistics
import sys
import time
import types

# keylime.signing imports the GPGME binding at load time; the IMA path never uses it.
sys.modules.setdefault("gpg", types.ModuleType("gpg"))

from importlib.metadata import version  # noqa: E402

from keylime.agentstates import AgentAttestState  # noqa: E402
from keylime.common.algorithms import Hash  # noqa: E402
from keylime.ima import file_signatures, ima  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--policy", required=True)
    p.add_argument("--first", required=True, help="text list of the first pass")
    p.add_argument("--more", required=True, help="text list of the incremental round")
    p.add_argument("--pcr-first", required=True, help="SHA-256 PCR 10 after the first pass")
    p.add_argument("--pcr-more", required=True, help="SHA-256 PCR 10 after the round")
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    logging.getLogger("keylime").setLevel(logging.CRITICAL)
    with open(a.policy) as f:
        policy = json.load(f)
    keyrings = file_signatures.ImaKeyrings()
    keyrings.set_tenant_keyring(file_signatures.ImaKeyring.from_string(policy["verification-keys"]))
    with open(a.first) as f:
        first = f.read().split("\n")
    with open(a.more) as f:
        more = f.read().split("\n")
    first_s, more_s = [], []
    for _ in range(a.runs):
        state = AgentAttestState("bench")
        t0 = time.perf_counter()
        _, failure = ima.process_measurement_list(
            state, first, policy, pcrval=a.pcr_first, ima_keyrings=keyrings, hash_alg=Hash.SHA256)
        t1 = time.perf_counter()
        if failure:
            sys.exit(f"keylime refused the first pass: {failure.get_event_ids()}")
        _, failure = ima.process_measurement_list(
            state, more, policy, pcrval=a.pcr_more, ima_keyrings=keyrings, hash_alg=Hash.SHA256)
        t2 = time.perf_counter()
        if failure:
            sys.exit(f"keylime refused the round: {failure.get_event_ids()}")
        first_s.append(t1 - t0)
        more_s.append(t2 - t1)
    print(json.dumps({
        "keylime": version("keylime"),
        "python": sys.version.split()[0],
        "first_pass_s": statistics.median(first_s),
        "round_s": statistics.median(more_s),
    }))


if __name__ == "__main__":
    main()
