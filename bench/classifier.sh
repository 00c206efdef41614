#!/usr/bin/env bash
# Classifier speed benchmark: single-request latency by prompt length and concurrent throughput, for a few
# worker/thread layouts. Needs scripts/setup-models.sh to have run. Numbers depend on what else the machine runs.
#
# usage: bench/classifier.sh [DATA.jsonl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data="${1:-../shared/data/routing/dev_routing.jsonl}"
scripts/setup-models.sh >/dev/null
cargo build --release --example classifier_bench
bin="${CARGO_TARGET_DIR:-target}/release/examples/classifier_bench"
# workers threads max_batch window_us
for layout in "1 1 16 0" "1 2 16 0" "2 1 16 0" "2 1 1 0" "2 1 16 500"; do
    # shellcheck disable=SC2086
    "$bin" "$data" $layout
    echo
done
