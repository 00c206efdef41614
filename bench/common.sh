# Set-up shared by the benchmark scripts (sourced, not run): the shared harness copied to a temporary folder as
# its README asks, and the Switchyard binary (SWITCHYARD_BIN=path skips the build, e.g. to measure a binary
# already built). Sets `root` and `work`; `build_switchyard` sets `bin`.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${SWITCHYARD_SHARED:-$root/../shared}"
[ -d "$shared/bench" ] || { echo "no harness at $shared/bench (set SWITCHYARD_SHARED)"; exit 1; }

work="$(mktemp -d)"
cp -r "$shared/bench" "$work/"
chmod -R u+w "$work"

# Sets `bin` to the Switchyard binary: SWITCHYARD_BIN, else a release build of this checkout.
build_switchyard() {
  bin="${SWITCHYARD_BIN:-}"
  if [ -z "$bin" ]; then
    cargo build --release --locked --manifest-path "$root/Cargo.toml"
    bin="$root/target/release/switchyard"
  fi
}

# Builds the harness's mock upstream and starts it on CPU 0, port 18080; sets `mock` to its PID.
start_mock() {
  cargo build --release --quiet --manifest-path "$work/bench/mock/Cargo.toml"
  taskset -c 0 "$work/bench/mock/target/release/mock-openai" --port 18080 >"$work/mock.log" 2>&1 &
  mock=$!
}

# Starts `bin` pinned to CPU 1 with the benchmark config (bench/switchyard-bench.yaml) and an embedded SQLite store
# named `$1` in the work folder (SWITCHYARD_BENCH_CONFIG names another config), and waits until it answers; sets
# `key` to a new API key and `pid` to its PID.
# SWITCHYARD_LOG (default info) sets its log level.
start_switchyard() {
  export SWITCHYARD_CONFIG="${SWITCHYARD_BENCH_CONFIG:-$root/bench/switchyard-bench.yaml}"
  export DATABASE_URL="sqlite://$work/$1.sqlite?mode=rwc"
  export BENCH_UPSTREAM_KEY=sk-bench
  export SWITCHYARD_LOG="${SWITCHYARD_LOG:-info}"
  key="$("$bin" keys create --user bench --team bench 2>/dev/null)"
  taskset -c 1 "$bin" serve 2>"$work/switchyard.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18181/healthz >/dev/null && break; sleep 0.1; done
}

# The set-up of a script that drives one Switchyard process itself: builds (or takes) the binary and starts the
# mock, and stops both the mock and the Switchyard that `start_switchyard` starts when the script exits.
prepare_single_proxy() {
  build_switchyard
  trap 'kill "${pid:-}" "${mock:-}" 2>/dev/null || true' EXIT
  start_mock
}
