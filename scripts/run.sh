#!/usr/bin/env bash
# Quick start: builds Switchyard and runs it with examples/config.yaml and the embedded SQLite store (.data/).
#   scripts/run.sh
# Provider keys come from the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, …); deployments
# whose key is not set are skipped by routing. On the first run a key for user `demo` (team `default`) is created
# and printed once.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/setup-models.sh ]; then
  scripts/setup-models.sh
fi
cargo build --release --locked
bin=target/release/switchyard
export SWITCHYARD_CONFIG="${SWITCHYARD_CONFIG:-examples/config.yaml}"

"$bin" config check
if [ "$("$bin" keys list --json)" = "[]" ]; then
  key="$("$bin" keys create --user demo --team default 2>/dev/null)"
  echo
  echo "First run: created an API key for user 'demo' in team 'default'. It is shown only this once:"
  echo "  $key"
  echo "Try: curl -s http://127.0.0.1:8080/v1/models -H \"Authorization: Bearer $key\""
  echo
fi
exec "$bin" serve
