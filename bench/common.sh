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
