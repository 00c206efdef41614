#!/usr/bin/env bash
# Ledger cost: a fixed 2,000 requests/s through Switchyard to the mock, ledger on Postgres versus off, one run.
#   bench/ledger.sh [bench/ledger.py options, e.g. --rate 2000 --duration 20 --repeats 3]
# Needs: the shared harness's mock (../shared/bench, copied to a temporary folder), oha (cargo install oha
# --locked), psql and a Postgres (BENCH_POSTGRES, default the local one; the script drops and recreates the
# database `switchyard_ledger_bench` on it). The proxy is pinned to CPU 1, oha and the mock to CPU 0.
set -euo pipefail
server="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
db="switchyard_ledger_bench"
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked"; exit 1; }
. "$(dirname "$0")/common.sh"
build_switchyard
trap 'kill "${mock:-}" 2>/dev/null || true' EXIT

start_mock

psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
python3 "$root/bench/ledger.py" --bin "$bin" --database-url "$server/$db" --work "$work" "$@"
echo "results and logs in $work"
