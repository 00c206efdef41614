#!/usr/bin/env python3
"""Added latency under an open loop: fixed request rates over 16 connections, the mock called directly and
through Switchyard, interleaved in one run.

wrk's closed loop (bench/run.sh) answers "how many requests per second on one core"; at delay 0 it keeps the
proxy's core saturated, so the latency it reports there is mostly queueing (16 in flight / throughput). Rate 0
runs that closed loop here too, so that nginx's added latency in it can be set beside Switchyard's. This
benchmark answers "how much latency does Switchyard add at a given load": oha sends a fixed rate with latency
correction (a request that waits for a free connection counts its wait), so the p50 and p99 are what a client
sees at that load. The difference to the direct run at the same rate is Switchyard's added latency.

With nginx installed (`apt-get install nginx-light`), nginx as a plain keep-alive reverse proxy runs as a third
target, pinned like Switchyard: it does no work beyond forwarding, so its added latency is the floor this set-up
puts under any proxy (two more loopback hops, each waking a process on the other CPU).

The proxy runs bench/switchyard-bench.yaml (named models, no classification, the embedded SQLite store with the
ledger on), pinned to --proxy-cpus; oha and the mock to --loadgen-cpus. Reports medians over --repeats.
--delay 50 asks the mock to wait 50 ms before it answers (the model mock-d50), as a real API does: the proxy's
core then idles between requests even in the closed loop, so rate 0 shows the added latency of an unsaturated
proxy at concurrency 16.

Started by bench/latency.sh, which builds what is needed; see bench/README.md.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys

from oha import run_oha, save_results, summarise, tree_cpu_seconds, wait_healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def body(stream, delay_ms):
    b = {"model": f"mock-d{delay_ms}", "messages": [{"role": "user", "content": " ".join(["hello"] * 16)}],
         "max_tokens": 64}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b, separators=(",", ":"))


def write_config(work, listen):
    base = open(os.path.join(ROOT, "bench", "switchyard-bench.yaml")).read()
    base = base.replace("listen: 127.0.0.1:18181", f"listen: {listen}")
    base = base.replace("policies_dir: policies", f"policies_dir: {os.path.join(ROOT, 'bench', 'policies')}")
    base += f"data_dir: {os.path.join(work, 'data')}\n"
    path = os.path.join(work, "latency.yaml")
    with open(path, "w") as f:
        f.write(base)
    return path


NGINX_CONF = """worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-tmp;
  proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp;
  scgi_temp_path {work}/nginx-tmp;
  upstream mock {{ server {upstream}; keepalive 64; }}
  server {{
    listen {listen};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def start_nginx(a, log):
    """nginx as a plain keep-alive reverse proxy to the mock, one worker, pinned like Switchyard."""
    upstream = a.mock_url.split("//", 1)[1].split("/", 1)[0]
    path = os.path.join(a.work, "nginx.conf")
    with open(path, "w") as f:
        f.write(NGINX_CONF.format(work=a.work, upstream=upstream, listen=a.nginx_listen))
    proc = subprocess.Popen(["taskset", "-c", a.proxy_cpus, a.nginx, "-c", path], stdout=log, stderr=log)
    wait_healthy(f"http://{a.nginx_listen}/nginx-health-probe", proc, any_status=True)
    return proc


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--oha", default=shutil.which("oha") or "oha")
    ap.add_argument("--work", required=True)
    ap.add_argument("--rates", default="1000,5000,10000",
                    help="requests/s, comma-separated; 0 is the closed loop (as fast as the connections go)")
    ap.add_argument("--modes", default="json", help="json, stream or both, comma-separated")
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--delay", type=int, choices=[0, 50], default=0,
                    help="the mock's delay before answering, ms (the model mock-d0 or mock-d50)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--database-url", help="the store for keys and the ledger (default: SQLite in the work folder)")
    ap.add_argument("--listen", default="127.0.0.1:18183")
    ap.add_argument("--mock-url", default="http://127.0.0.1:18080/v1/chat/completions")
    ap.add_argument("--nginx", default=shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin"),
                    help="nginx binary for the do-nothing proxy baseline; --nginx '' skips it")
    ap.add_argument("--nginx-listen", default="127.0.0.1:18184")
    ap.add_argument("--proxy-cpus", default="1")
    ap.add_argument("--loadgen-cpus", default="0")
    a = ap.parse_args()
    rates = [int(x) for x in a.rates.split(",") if x]
    modes = [m for m in a.modes.split(",") if m]

    config = write_config(a.work, a.listen)
    env = dict(os.environ, SWITCHYARD_CONFIG=config, DATABASE_URL=a.database_url or f"sqlite://{a.work}/latency.sqlite?mode=rwc",
               BENCH_UPSTREAM_KEY="sk-bench", SWITCHYARD_LOG=os.environ.get("SWITCHYARD_LOG", "info"))
    key = subprocess.run([a.bin, "keys", "create", "--user", "bench", "--team", "bench"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    log = open(os.path.join(a.work, "switchyard-latency.log"), "a")
    proc = subprocess.Popen(["taskset", "-c", a.proxy_cpus, a.bin, "serve"], env=env, stdout=log, stderr=log)
    proxy_url = f"http://{a.listen}/v1/chat/completions"
    targets = {"direct": (a.mock_url, None), "switchyard": (proxy_url, key)}
    pids = {"switchyard": proc.pid}
    nginx = None
    results = []
    try:
        wait_healthy(f"http://{a.listen}/healthz", proc)
        if a.nginx:
            nginx = start_nginx(a, log)
            targets["nginx"] = (f"http://{a.nginx_listen}/v1/chat/completions", None)
            pids["nginx"] = nginx.pid
        for mode in modes:
            # Warm the key cache, the connection pools and the allocator (closed loop when that is all there is).
            run_oha(a.oha, proxy_url, key, max(rates), 2, a.conc, a.loadgen_cpus, body(mode == "stream", a.delay))
        for rep in range(a.repeats):
            for mode in modes:
                for rate in rates:
                    for name, (url, k) in targets.items():
                        pid = pids.get(name)
                        cpu0 = tree_cpu_seconds(pid) if pid else 0.0
                        report = run_oha(a.oha, url, k, rate, a.duration, a.conc, a.loadgen_cpus,
                                         body(mode == "stream", a.delay))
                        cpu1 = tree_cpu_seconds(pid) if pid else 0.0
                        total, ok, rps, p50, p99 = summarise(report)
                        r = {"rep": rep, "mode": mode, "rate": rate, "delay_ms": a.delay, "target": name,
                             "requests": total, "ok": ok,
                             "rps": rps, "p50_ms": p50, "p99_ms": p99,
                             "p999_ms": report["latencyPercentiles"].get("p99.9", 0) * 1000}
                        if pid:
                            r["cpu_us_per_req"] = (cpu1 - cpu0) / max(total, 1) * 1e6
                            r["cpu_pct"] = (cpu1 - cpu0) / a.duration * 100
                        results.append(r)
                        print(f"rep {rep} {mode:>6} {rate or 'closed':>6}/s {name:>10}: {rps:8.0f} rps ({ok}/{total} ok)  "
                              f"p50 {p50:.3f} ms  p99 {p99:.3f} ms"
                              + (f"  CPU {r['cpu_us_per_req']:.0f} us/request ({r['cpu_pct']:.0f}%)"
                                 if pid else ""), flush=True)
        rss = peak_rss_mb(proc.pid)
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()

    def med(mode, rate, name, field):
        return statistics.median(r[field] for r in results
                                 if (r["mode"], r["rate"], r["target"]) == (mode, rate, name))

    print()
    print(f"Medians over {a.repeats} repeat(s), {a.conc} connections, {a.duration} s per point, "
          f"mock delay {a.delay} ms; "
          f"Switchyard peak RSS {rss:.0f} MB.")
    print()
    print("| mode | rate /s | target | rps | p50 ms | p99 ms | + p50 ms | + p99 ms | CPU us / request | CPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in modes:
        for rate in rates:
            d50, d99 = med(mode, rate, "direct", "p50_ms"), med(mode, rate, "direct", "p99_ms")
            for name in targets:
                p50, p99 = med(mode, rate, name, "p50_ms"), med(mode, rate, name, "p99_ms")
                # The direct runs have no proxy process, hence no CPU figures.
                cpu_us, cpu_pct = ((f"{med(mode, rate, name, 'cpu_us_per_req'):.0f}",
                                    f"{med(mode, rate, name, 'cpu_pct'):.0f}") if name in pids else ("", ""))
                print(f"| {mode} | {rate or 'closed loop'} | {name} | {med(mode, rate, name, 'rps'):.0f} | {p50:.3f} | {p99:.3f} | "
                      f"{p50 - d50:+.3f} | {p99 - d99:+.3f} | {cpu_us} | {cpu_pct} |")
    print()
    return save_results(a.work, "latency-bench.json", results)


if __name__ == "__main__":
    sys.exit(main())
