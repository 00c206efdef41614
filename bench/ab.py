#!/usr/bin/env python3
"""Two or more Switchyard binaries under the same closed-loop load, interleaved: before/after figures for one
change, measured in one run so that the machine's own drift (a shared VM's neighbours) falls on both.

Each round starts every binary in turn on a fresh SQLite store (bench/switchyard-bench.yaml, ledger on), warms it
for 2 s, then drives it with wrk (the shared harness's post.lua) at --conc connections for --duration seconds:
requests per second, wrk's p50 and p99, the process's CPU time per request and its peak RSS. Proxy on
--proxy-cpus, wrk and the mock on --loadgen-cpus. Prints every run, then medians per binary and the ratio of each
to the first.

--history-kb K sends a 21-turn conversation of about K KB instead of the one-line default; --body FILE any body.

Started by bench/ab.sh, which builds the mock; see bench/README.md.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess

from latency import peak_rss_mb, write_config
from oha import process_cpu_seconds, wait_healthy


def run_wrk(a, url, key, body):
    cmd = ["taskset", "-c", a.loadgen_cpus, "wrk", "-t1", f"-c{a.conc}", f"-d{a.duration}s", "-s", a.lua,
           "-H", f"Authorization: Bearer {key}", url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=dict(os.environ, BENCH_BODY=body)).stdout
    # post.lua prints one JSON summary as its last line.
    return json.loads(out.strip().splitlines()[-1])


def measure(a, name, binary, rnd, body):
    work = os.path.join(a.work, f"ab-{rnd}-{name}")
    os.makedirs(work, exist_ok=True)
    config = write_config(work, a.listen)
    env = dict(os.environ, SWITCHYARD_CONFIG=config, DATABASE_URL=f"sqlite://{work}/ab.sqlite?mode=rwc",
               BENCH_UPSTREAM_KEY="sk-bench", SWITCHYARD_LOG=os.environ.get("SWITCHYARD_LOG", "info"))
    key = subprocess.run([binary, "keys", "create", "--user", "bench", "--team", "bench"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    url = f"http://{a.listen}/v1/chat/completions"
    with open(os.path.join(work, "switchyard.log"), "w") as log:
        proc = subprocess.Popen(["taskset", "-c", a.proxy_cpus, binary, "serve"], env=env, stdout=log, stderr=log)
        try:
            wait_healthy(f"http://{a.listen}/healthz", proc)
            warm = argparse.Namespace(**{**vars(a), "duration": 2})
            run_wrk(warm, url, key, body)
            cpu0 = process_cpu_seconds(proc.pid)
            r = run_wrk(a, url, key, body)
            cpu1 = process_cpu_seconds(proc.pid)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    n = max(r["requests"], 1)
    errors = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    return {"round": rnd, "name": name, "rps": n / r["duration_us"] * 1e6, "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "cpu_us_per_req": (cpu1 - cpu0) / n * 1e6, "rss_mb": rss,
            "errors": errors}


def history(kb):
    """21 alternating turns of about kb KB in all, the user's first and last."""
    sentence = "Here is some more context about the quarterly report and its figures. "
    per_turn = kb * 1024 // 21
    turn = (sentence * (per_turn // len(sentence) + 1))[:per_turn]
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(21)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", help="NAME=PATH (or PATH) of each binary; the first is the baseline")
    ap.add_argument("--work", required=True)
    ap.add_argument("--lua", required=True, help="the shared harness's post.lua")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--body", help="a file with the request body (default: a short chat request to mock-d0)")
    ap.add_argument("--history-kb", type=int, default=0,
                    help="instead, a 21-turn conversation of about this many KB (a chat with its history)")
    ap.add_argument("--stream", action="store_true", help="the default body, streamed")
    ap.add_argument("--listen", default="127.0.0.1:18185")
    ap.add_argument("--proxy-cpus", default="1")
    ap.add_argument("--loadgen-cpus", default="0")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    bins = [b.split("=", 1) if "=" in b else (os.path.basename(b), b) for b in a.binaries]
    if a.body:
        body = open(a.body).read().strip()
    else:
        req = {"model": "mock-d0", "messages": history(a.history_kb) if a.history_kb else
               [{"role": "user", "content": "hi"}]}
        if a.stream:
            req["stream"] = True
        body = json.dumps(req)

    results = []
    for rnd in range(a.rounds):
        for name, path in bins:
            r = measure(a, name, path, rnd, body)
            results.append(r)
            print(f"round {rnd} {name:>12}: {r['rps']:8.0f} rps  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                  f"CPU {r['cpu_us_per_req']:.1f} us/request  RSS peak {r['rss_mb']:.0f} MB  errors {r['errors']}",
                  flush=True)

    def med(name, field):
        return statistics.median(r[field] for r in results if r["name"] == name)

    base = bins[0][0]
    print(f"\nMedians over {a.rounds} round(s), {a.conc} connections, {a.duration} s each; ratios against {base}.\n")
    print("| binary | rps | rps ratio | p50 ms | p99 ms | CPU us / request | CPU ratio | RSS peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _ in bins:
        print(f"| {name} | {med(name, 'rps'):.0f} | {med(name, 'rps') / med(base, 'rps'):.3f} | "
              f"{med(name, 'p50_ms'):.3f} | {med(name, 'p99_ms'):.3f} | {med(name, 'cpu_us_per_req'):.1f} | "
              f"{med(name, 'cpu_us_per_req') / med(base, 'cpu_us_per_req'):.3f} | {med(name, 'rss_mb'):.0f} |")
    with open(os.path.join(a.work, "ab.json"), "w") as f:
        json.dump(results, f, indent=1)
    errors = sum(r["errors"] for r in results)
    print(f"\nwrk errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
