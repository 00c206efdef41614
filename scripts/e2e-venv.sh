#!/usr/bin/env bash
# Creates (or reuses) the Python venv the end-to-end SDK tests run in: .venv-e2e at the repo root, with the pinned
# versions from tests/e2e/requirements.txt. Idempotent: when the venv already holds exactly these requirements it
# returns at once without touching the network. Prints the venv's python path on stdout (and nothing else).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SWITCHYARD_E2E_VENV:-$root/.venv-e2e}"
req="$root/tests/e2e/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

{
    if [[ ! -x "$venv/bin/python" ]]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
} >&2
echo "$want" >"$stamp"
echo "$venv/bin/python"
