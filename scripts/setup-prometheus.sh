#!/bin/sh
# Installs Prometheus and promtool from the Debian package, for tests/prometheus.rs (scripts/test.sh runs this first)
# and for trying the dashboards locally. Idempotent: does nothing when both are on PATH. Needs root (CI runs as
# root) or sudo.
#
# The Debian package ships a systemd unit; in containers without systemd its start is skipped, which is what the
# test wants: it starts its own Prometheus with a generated config on a free port.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    prometheus --version 2>&1 | head -n 1
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup-prometheus: need root or sudo to apt-get install prometheus" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends prometheus

for bin in prometheus promtool; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "setup-prometheus: the prometheus package did not provide $bin" >&2
        exit 1
    fi
done
prometheus --version 2>&1 | head -n 1
