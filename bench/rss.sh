#!/usr/bin/env bash
# Switchyard's resident memory under streamed load, including the token vocabulary that local counts load: oha cuts
# the streams in flight off when each run ends, before their usage chunk, so those rows are counted locally.
#   bench/rss.sh [--conc 16,64,16] [--duration 4]
# Prints VmRSS and VmHWM (the peak so far) idle and after each run. Needs oha (cargo install oha --locked) and the
# shared harness's mock (../shared/bench, copied to a temporary folder). Proxy on CPU 1, oha and the mock on CPU 0.
set -euo pipefail
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked"; exit 1; }
conc=16,64,16
duration=4
while [ $# -gt 0 ]; do
  case "$1" in
    --conc) conc="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
. "$(dirname "$0")/common.sh"
prepare_single_proxy

start_switchyard rss

memory() { grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '; }
sleep 1
echo "idle: $(memory)"
body='{"model":"mock-d0","stream":true,"messages":[{"role":"user","content":"hello"}]}'
for c in ${conc//,/ }; do
  rps="$(taskset -c 0 oha -z "${duration}s" -c "$c" --no-tui -m POST -H "authorization: Bearer $key" \
    -H 'content-type: application/json' -d "$body" http://127.0.0.1:18181/v1/chat/completions |
    awk '/Requests\/sec/ {print $2}')"
  sleep 1
  echo "after ${duration} s of streams at concurrency $c ($rps rps): $(memory)"
done
echo "rows counted locally (cut-off streams): $(grep -c 'usage_estimated=true' "$work/switchyard.log" || true)"
echo "logs in $work"
