#!/usr/bin/env bash
# Sustained saturation: one Switchyard process under back-to-back closed-loop wrk windows (JSON, 16 connections,
# no upstream delay), printing after each window its rate, latency, CPU per request, and where the ledger stands
# (rows queued in memory, bytes in the spool). Short benchmark runs hide a ledger that cannot keep up: its queue
# (100,000 rows) absorbs the difference for a while.
#   bench/sustained.sh [--windows 12] [--duration 5] [--body JSON]
# Needs wrk (apt-get install wrk) and the shared harness (../shared/bench, copied to a temporary folder). The proxy
# is pinned to CPU 1, wrk and the mock to CPU 0, as in bench/run.sh.
set -euo pipefail
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
windows=12
duration=5
body='{"model":"mock-d0","messages":[{"role":"user","content":"hi"}]}'
while [ $# -gt 0 ]; do
  case "$1" in
    --windows) windows="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --body) body="$2"; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
. "$(dirname "$0")/common.sh"
prepare_single_proxy

start_switchyard sustained

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
metric() { curl -sf http://127.0.0.1:18181/metrics | awk -v m="$1" '$1 == m {print $2}'; }
tick_hz="$(getconf CLK_TCK)"
printf '%-7s %8s %8s %8s %10s %12s %14s\n' window rps p50_ms p99_ms cpu_us/req ledger_queue spool_bytes
for w in $(seq 1 "$windows"); do
  before="$(cpu_ticks)"
  line="$(BENCH_BODY="$body" BENCH_HEADERS="Authorization: Bearer $key" taskset -c 0 \
    wrk -t1 -c16 -d"${duration}s" -s "$work/bench/bench/post.lua" http://127.0.0.1:18181/v1/chat/completions |
    tail -1)"
  after="$(cpu_ticks)"
  python3 - "$w" "$line" "$before" "$after" "$tick_hz" "$(metric switchyard_ledger_queue_depth)" \
    "$(metric switchyard_ledger_spool_bytes)" <<'EOF'
import json, sys
w, line, before, after, hz, queue, spool = sys.argv[1:]
d = json.loads(line)
n = d["requests"]
cpu_us = (int(after) - int(before)) * 1e6 / int(hz) / max(n, 1)
print(f"{w:<7} {n / (d['duration_us'] / 1e6):8.0f} {d['p50_us'] / 1000:8.3f} {d['p99_us'] / 1000:8.3f} "
      f"{cpu_us:10.1f} {queue:>12} {spool:>14}")
EOF
done
sleep 2
echo "after the load: ledger queue $(metric switchyard_ledger_queue_depth), spool bytes $(metric switchyard_ledger_spool_bytes)"
echo "results and logs in $work"
