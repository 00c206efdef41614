#!/usr/bin/env python3
"""Ledger cost benchmark: a fixed request rate through Switchyard to the mock, ledger on Postgres versus off.

Runs three configurations interleaved against one Postgres, each for --duration seconds at --rate requests/s
(open loop: oha with latency correction, so a stall shows up as latency, not as fewer requests):

- ledger-on: Switchyard writes every request's row to Postgres;
- ledger-off: `ledger.enabled: false`;
- ledger-off+db: ledger off, while a psql session makes Postgres do the same work the ledger causes (the same
  rows per second, inserted every flush interval with the daily rollup). On a 2-core machine Postgres shares
  the cores with the proxy and the load generator, so its CPU alone moves the tail; this control separates
  that from the cost of Switchyard's ledger path. (On a production deployment the database has its own host.)

Reports per configuration the median over repeats of p50/p99, the p99 ratios, ledger rows written per second
(counted in the database), Switchyard's CPU per request, and Postgres CPU per 1,000 rows (utime+stime of every
postgres process, sampled from /proc before and after each run, minus the ledger-off run).

Started by bench/ledger.sh, which builds what is needed; see bench/README.md.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from oha import process_cpu_seconds, save_results, summarise, wait_healthy
from oha import run_oha as oha_post

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def postgres_cpu_seconds():
    """utime + stime of every process owned by the postgres user (server, backends, background workers)."""
    import pwd

    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return 0.0
    seconds = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            seconds += process_cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return seconds


COUNT_BENCH_ROWS = "SELECT count(*) FROM ledger WHERE team = 'bench'"


def psql(db_url, sql):
    out = subprocess.run(["psql", db_url, "-Atc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def write_config(work, name, ledger_enabled, listen):
    base = open(os.path.join(ROOT, "bench", "switchyard-bench.yaml")).read()
    base = base.replace("listen: 127.0.0.1:18181", f"listen: {listen}")
    base = base.replace("policies_dir: policies", f"policies_dir: {os.path.join(ROOT, 'bench', 'policies')}")
    data = os.path.join(work, f"data-{name}")
    base += f"data_dir: {data}\nledger: {{ enabled: {'true' if ledger_enabled else 'false'} }}\n"
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(base)
    return path


def run_oha(oha, url, key, rate, duration, conc, cpus):
    body = json.dumps({"model": "mock-d0", "messages": [{"role": "user", "content": "Say hello."}]})
    return oha_post(oha, url, key, rate, duration, conc, cpus, body)


# What the ledger makes Postgres do per flush, for the ledger-off+db control: the same plain insert of new rows
# (team `db-load`, so the bench's own counts leave them out) and the same rollup upsert.
DB_LOAD_SQL = """
WITH ins AS (
    INSERT INTO ledger SELECT gen_random_uuid()::text, clock_timestamp(), 'load', 'db-load', 'k', 'mock-d0',
        'mock-d0', 'openai', 'mock', 'chat', 12, 8, 0, 0, 0, false, 0.15, 0.60, 0, 0.0000066, 0.0000066, false,
        NULL, NULL, 'honoured', 1, NULL, 'ok', 200
    FROM generate_series(1, {rows})
    RETURNING time, team, user_name, key_id, routed_model, local, estimated, input_tokens, output_tokens,
        cached_input_tokens, cost, baseline_cost
)
INSERT INTO ledger_daily AS d (day, team, user_name, key_id, model, local, requests, estimated_requests,
    input_tokens, output_tokens, cached_input_tokens, cost, baseline_cost)
SELECT (time AT TIME ZONE 'UTC')::date, team, user_name, key_id, routed_model, local, count(*),
    count(*) FILTER (WHERE estimated), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), sum(cost),
    sum(baseline_cost)
FROM ins GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (day, team, user_name, key_id, model, local) DO UPDATE SET requests = d.requests + EXCLUDED.requests,
    cost = d.cost + EXCLUDED.cost;
"""


def start_db_load(db_url, rate):
    """A psql session repeating the ledger's per-flush work every 100 ms (the default flush interval)."""
    script = DB_LOAD_SQL.format(rows=max(rate // 10, 1)) + "\\watch 0.1\n"
    p = subprocess.Popen(["psql", "-q", db_url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
    p.stdin.write(script)
    p.stdin.flush()
    return p


def one_run(a, work, name, config, key):
    env = dict(os.environ, SWITCHYARD_CONFIG=config, DATABASE_URL=a.database_url, BENCH_UPSTREAM_KEY="sk-bench",
               SWITCHYARD_LOG="warn")
    log = open(os.path.join(work, f"{name}.log"), "a")
    load = None
    proc = subprocess.Popen(["taskset", "-c", a.proxy_cpus, a.bin, "serve"], env=env, stdout=log, stderr=log)
    try:
        wait_healthy(f"http://{a.listen}/healthz", proc)
        # Warm the key cache and the connection pools.
        run_oha(a.oha, f"http://{a.listen}/v1/chat/completions", key, a.rate, 2, a.conc, a.loadgen_cpus)
        if name == "ledger-off+db":
            load = start_db_load(a.database_url, a.rate)
        time.sleep(0.5)
        rows_before = int(psql(a.database_url, COUNT_BENCH_ROWS))
        cpu_before = postgres_cpu_seconds()
        proxy_before = process_cpu_seconds(proc.pid)
        t0 = time.time()
        r = run_oha(a.oha, f"http://{a.listen}/v1/chat/completions", key, a.rate, a.duration, a.conc,
                    a.loadgen_cpus)
        # Rows of the run's last flush interval land just after it.
        time.sleep(0.5)
        elapsed = time.time() - t0
        cpu_after = postgres_cpu_seconds()
        proxy_after = process_cpu_seconds(proc.pid)
        rows_after = int(psql(a.database_url, COUNT_BENCH_ROWS))
    finally:
        if load is not None:
            load.kill()
            load.wait()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    total, ok, rps, p50_ms, p99_ms = summarise(r)
    return {
        "config": name,
        "requests": total,
        "ok": ok,
        "rps": rps,
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
        "rows": rows_after - rows_before,
        "rows_per_s": (rows_after - rows_before) / elapsed,
        "pg_cpu_s": cpu_after - cpu_before,
        "proxy_cpu_us_per_req": (proxy_after - proxy_before) / max(total, 1) * 1e6,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--oha", default=shutil.which("oha") or "oha")
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--conc", type=int, default=64, help="connections oha may open (open loop needs headroom)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--listen", default="127.0.0.1:18182")
    ap.add_argument("--proxy-cpus", default="1")
    ap.add_argument("--loadgen-cpus", default="0")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()

    configs = {
        "ledger-on": write_config(a.work, "ledger-on", True, a.listen),
        "ledger-off": write_config(a.work, "ledger-off", False, a.listen),
    }
    configs["ledger-off+db"] = configs["ledger-off"]
    env = dict(os.environ, SWITCHYARD_CONFIG=configs["ledger-on"], DATABASE_URL=a.database_url)
    key = subprocess.run([a.bin, "keys", "create", "--user", "bench", "--team", "bench"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()

    results = []
    for rep in range(a.repeats):
        for name in ("ledger-on", "ledger-off", "ledger-off+db"):
            r = one_run(a, a.work, name, configs[name], key)
            r["rep"] = rep
            results.append(r)
            print(f"rep {rep} {name:>10}: {r['rps']:7.0f} rps ({r['ok']}/{r['requests']} ok)  "
                  f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  rows {r['rows']} "
                  f"({r['rows_per_s']:.0f}/s)  postgres CPU {r['pg_cpu_s']:.2f} s  "
                  f"proxy CPU {r['proxy_cpu_us_per_req']:.0f} us/request", flush=True)

    def med(name, field):
        return statistics.median(r[field] for r in results if r["config"] == name)

    on_p99, off_p99, db_p99 = med("ledger-on", "p99_ms"), med("ledger-off", "p99_ms"), med("ledger-off+db", "p99_ms")
    pg_extra = med("ledger-on", "pg_cpu_s") - med("ledger-off", "pg_cpu_s")
    rows = med("ledger-on", "rows")
    print()
    print("| config | rps | p50 ms | p99 ms | proxy CPU us/request | ledger rows/s | Postgres CPU s per run |")
    print("|---|---|---|---|---|---|---|")
    for name in ("ledger-on", "ledger-off", "ledger-off+db"):
        print(f"| {name} | {med(name, 'rps'):.0f} | {med(name, 'p50_ms'):.3f} | {med(name, 'p99_ms'):.3f} | "
              f"{med(name, 'proxy_cpu_us_per_req'):.0f} | {med(name, 'rows_per_s'):.0f} | {med(name, 'pg_cpu_s'):.2f} |")
    print()
    print(f"p99 ratio ledger-on / ledger-off: {on_p99 / off_p99:.3f} (target <= 1.1)")
    print(f"p99 ratio ledger-on / ledger-off with the same database load: {on_p99 / db_p99:.3f}")
    if rows > 0:
        print(f"Postgres CPU per 1,000 ledger rows: {pg_extra / rows * 1000 * 1000:.1f} ms "
              f"(ledger-on minus ledger-off, medians over {a.repeats} repeats)")
    return save_results(a.work, "ledger-bench.json", results)


if __name__ == "__main__":
    sys.exit(main())
