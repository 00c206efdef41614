#!/usr/bin/env bash
# Where the slow requests of a saturated closed loop fall in time: one Switchyard process, oha keeping 16 requests
# in flight (JSON, no upstream delay) and recording every request, then bench/timeline.py's strip chart of 1 ms
# bins and the spacing of the stretches in which requests took longer than a threshold. A tail that comes in
# stretches at a fixed spacing points at periodic work on the proxy's core (the kernel's tick, a flush interval).
#   bench/timeline.sh [--duration 5] [--warmup 3] [--slow-ms 1] [--ledger on|off]
# Needs oha (cargo install oha --locked) and the shared harness (../shared/bench, copied to a temporary folder). The
# proxy is pinned to CPU 1, oha and the mock to CPU 0, as in bench/run.sh.
set -euo pipefail
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked"; exit 1; }
duration=5
warmup=3
slow_ms=1
ledger=on
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --slow-ms) slow_ms="$2"; shift 2 ;;
    --ledger) ledger="$2"; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
case "$ledger" in on | off) ;; *) echo "--ledger takes on or off, not $ledger"; exit 2 ;; esac
. "$(dirname "$0")/common.sh"
prepare_single_proxy

if [ "$ledger" = off ]; then
  # The benchmark config with the ledger turned off, to tell its share of the tail.
  cp "$root/bench/switchyard-bench.yaml" "$work/switchyard-bench.yaml"
  cp -r "$root/bench/policies" "$work/"
  printf 'ledger: { enabled: false }\n' >>"$work/switchyard-bench.yaml"
  SWITCHYARD_BENCH_CONFIG="$work/switchyard-bench.yaml"
fi
start_switchyard timeline

load() {
  taskset -c 0 oha --no-tui -z "$1" -c 16 --worker-threads 1 -m POST -H "Authorization: Bearer $key" \
    -H 'content-type: application/json' -d '{"model":"mock-d0","messages":[{"role":"user","content":"hi"}]}' \
    --output-format "$2" -o "$3" http://127.0.0.1:18181/v1/chat/completions
}
load "${warmup}s" quiet /dev/null
load "${duration}s" csv "$work/requests.csv"
python3 "$root/bench/timeline.py" --slow-ms "$slow_ms" "$work/requests.csv"
echo "requests in $work/requests.csv"
