#!/usr/bin/env bash
# Classifier speed benchmark: single-request latency by prompt length and concurrent throughput, for a few
# worker/thread layouts. Needs scripts/setup-models.sh to have run. Numbers depend on what else the machine runs.
#
# usage: [LAYOUTS="w t b us,w t b us"] bench/classifier.sh [DATA.jsonl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data="${1:-../shared/data/routing/dev_routing.jsonl}"
scripts/setup-models.sh >/dev/null
cargo build --release --example classifier_bench
bin="${CARGO_TARGET_DIR:-target}/release/examples/classifier_bench"
# Override with e.g. LAYOUTS="2 1 1 0" for a quick run.
if [ -n "${LAYOUTS:-}" ]; then
    mapfile -t LAYOUTS < <(echo "$LAYOUTS" | tr ',' '\n')
else
    LAYOUTS=("2 1 1 0" "1 2 1 0" "1 1 1 0" "2 1 4 0")
fi
# workers threads max_batch window_us
# 2 1 1 0 is the default (one text per ONNX run: the dynamic-int8 graph's vectors then do not depend on batch peers).
for layout in "${LAYOUTS[@]}"; do
    # shellcheck disable=SC2086
    "$bin" "$data" $layout
    echo
done
