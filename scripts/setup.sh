#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements (and their pinned dependencies); quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # requirements.txt names what MinhOS uses; constraints.txt pins everything they pull in, for repeatable installs.
  .venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
  echo "$want" > "$stamp"
fi
