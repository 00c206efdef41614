#!/usr/bin/env bash
# Added latency at fixed request rates (open loop, 16 connections): the mock directly, through Switchyard, and
# through nginx (when installed) as a do-nothing proxy, interleaved in one run.
#   bench/latency.sh [bench/latency.py options, e.g. --rates 1000,5000,10000 --duration 10 --repeats 3;
#                    rate 0 is the closed loop, e.g. --rates 0,1000]
# Needs: the shared harness's mock (../shared/bench, copied to a temporary folder), oha (cargo install oha
# --locked) and optionally nginx (apt-get install nginx-light). Proxies on CPU 1, oha and the mock on CPU 0.
set -euo pipefail
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked"; exit 1; }
. "$(dirname "$0")/common.sh"
build_switchyard
trap 'kill "${mock:-}" 2>/dev/null || true' EXIT

start_mock

python3 "$root/bench/latency.py" --bin "$bin" --work "$work" "$@"
echo "results and logs in $work"
