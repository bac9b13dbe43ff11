#!/usr/bin/env bash
# Makes (once) a Python venv with Keylime 7.14.3 from PyPI for the IMA benchmark's peer, and
# prints its interpreter. Bench only: nothing in the product or the tests imports Keylime.
# The wheel declares no dependencies, so the ones its IMA path imports are listed here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CARGO_TARGET_DIR:-$root/target}/keylime-venv
py=$venv/bin/python
if [ -x "$py" ] && "$py" -c 'from importlib.metadata import version; assert version("keylime") == "7.14.3"' 2>/dev/null; then
  echo "$py"; exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "keylime-venv: installing python3-venv" >&2
  sudo_cmd=; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get install -y -qq python3-venv >&2
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$py" -m pip install -q --disable-pip-version-check \
  keylime==7.14.3 jsonschema cryptography pyyaml lark packaging >&2
echo "$py"
