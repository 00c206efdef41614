#!/usr/bin/env bash
# Before/after for one change: two or more Switchyard binaries under the same closed-loop wrk load, interleaved in
# one run (bench/ab.py). Build each binary first, e.g. from two worktrees, and name them:
#   bench/ab.sh before=/tmp/switchyard-before after=target/release/switchyard [--rounds 3 --duration 8]
#   bench/ab.sh ... --history-kb 15              # a 21-turn, 15 KB conversation; --body FILE any body;
#                                                # --stream the default body streamed
# Needs wrk (apt-get install wrk) and the shared harness (../shared/bench, copied to a temporary folder).
set -euo pipefail
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
. "$(dirname "$0")/common.sh"
trap 'kill "${mock:-}" 2>/dev/null || true' EXIT

start_mock

python3 "$root/bench/ab.py" --work "$work" --lua "$work/bench/bench/post.lua" "$@"
echo "results and logs in $work"
