#!/usr/bin/env bash
# Pass-through overhead of Switchyard against the same mock called directly, in one run.
#   bench/run.sh [bench.py options, e.g. --modes json --conc 16 --repeats 3]
# Uses the shared side-by-side harness (../shared/bench: a Rust mock upstream + wrk), copied to a temporary folder
# as its README asks. The proxy is pinned to CPU 1; wrk and the mock to CPU 0. Needs wrk (apt-get install wrk).
# Set PEERS=litellm,portkey to measure peer gateways in the same run (see the harness README).
set -euo pipefail
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
. "$(dirname "$0")/common.sh"
build_switchyard
trap 'kill "${pid:-}" 2>/dev/null || true' EXIT
start_switchyard bench

cd "$work/bench"
if [ -n "${PEERS:-}" ]; then
  PEERS="$PEERS" ./run_peers.sh --target "switchyard=http://127.0.0.1:18181/v1/chat/completions" \
    --header "switchyard=Authorization: Bearer $key" --pid "switchyard=$pid" "$@"
else
  ./bench.sh --target "switchyard=http://127.0.0.1:18181/v1/chat/completions" \
    --header "switchyard=Authorization: Bearer $key" --pid "switchyard=$pid" "$@"
fi
echo "results and logs in $work"
