#!/usr/bin/env bash
# Classifier speed benchmark: single-request latency by prompt length and concurrent throughput, for a few
# worker/thread layouts. Needs scripts/setup-models.sh to have run. Numbers depend on what else the machine runs.
#
# usage: [LAYOUTS="w t b us solo,w t b us solo"] bench/classifier.sh [DATA.jsonl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data="${1:-../shared/data/routing/dev_routing.jsonl}"
scripts/setup-models.sh >/dev/null
cargo build --release --example classifier_bench
bin="${CARGO_TARGET_DIR:-target}/release/examples/classifier_bench"
# Override with e.g. LAYOUTS="2 1 1 0 2" for a quick run.
if [ -n "${LAYOUTS:-}" ]; then
    mapfile -t LAYOUTS < <(echo "$LAYOUTS" | tr ',' '\n')
else
    LAYOUTS=("2 1 1 0 2" "2 1 1 0 0" "1 2 1 0 0" "2 2 1 0 0")
fi
# workers threads max_batch window_us solo_threads
# 2 1 1 0 2 is the default on 2 cores (one text per ONNX run: the dynamic-int8 graph's vectors then do not depend on
# batch peers; a request alone runs on the 2-thread solo session).
for layout in "${LAYOUTS[@]}"; do
    # shellcheck disable=SC2086
    "$bin" "$data" $layout
    echo
done
