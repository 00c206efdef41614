"""Helpers shared by the open-loop benchmarks (bench/ledger.py, bench/latency.py): oha runs, process CPU time,
waiting for a proxy to answer. Python standard library only."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """utime + stime of one process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid):
    """utime + stime of a process and its live descendants (nginx's master and its worker)."""
    total = 0.0
    stack = [str(pid)]
    while stack:
        p = stack.pop()
        try:
            total += process_cpu_seconds(p)
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack.extend(f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def wait_healthy(url, proc, seconds=30, any_status=False):
    """Waits until `url` answers 200 (any HTTP status with `any_status`) while `proc` runs."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(proc.args)} exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered {url}")


def run_oha(oha, url, key, rate, duration, conc, cpus, body):
    """A fixed `rate` of POSTs for `duration` seconds over at most `conc` connections (open loop: with latency
    correction, a request that had to wait for a free connection counts its wait as latency); `rate` 0 is the
    closed loop instead, each connection sending its next request as soon as the last one is answered. `key` may
    be None (the mock called directly). Returns oha's JSON report."""
    cmd = (["taskset", "-c", cpus] if cpus else []) + [oha, url, "-m", "POST"]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    cmd += [
        "-H", "content-type: application/json", "-d", body, "-z", f"{duration}s",
        "-c", str(conc), "--no-tui", "--output-format", "json",
    ]
    if rate > 0:
        cmd += ["-q", str(rate), "--latency-correction"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def summarise(report):
    """(requests, ok, rps, p50 ms, p99 ms) of an oha report."""
    codes = report.get("statusCodeDistribution", {})
    pct = report["latencyPercentiles"]
    return (
        sum(int(v) for v in codes.values()),
        int(codes.get("200", 0)),
        report["summary"]["requestsPerSec"],
        pct["p50"] * 1000,
        pct["p99"] * 1000,
    )


def save_results(work, name, results):
    """Prints the count of failed requests, writes every run's figures to `work/name` and returns the exit code
    (1 if any request failed)."""
    failed = sum(r["requests"] - r["ok"] for r in results)
    print(f"non-200 responses: {failed}")
    with open(os.path.join(work, name), "w") as f:
        json.dump(results, f, indent=1)
    return 1 if failed else 0
