#!/usr/bin/env bash
# Run one cargo-fuzz target for a bounded time on the stable toolchain.
# Usage: rust/fuzz-run.sh FUZZ_DIR TARGET SECONDS   (the crates' fuzz/run.sh call this)
set -euo pipefail
cd "$1"
export RUSTC_BOOTSTRAP=1   # cargo-fuzz needs -Z flags; this machine has only stable
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
mkdir -p "corpus/$2"
log="$(mktemp)"
# libFuzzer prints every new input; keep the log and show its end (and all of it on failure).
if ! cargo fuzz run "$2" "corpus/$2" -- -max_total_time="$3" -max_len=65536 -rss_limit_mb=2048 >"$log" 2>&1; then
  cat "$log"; exit 1
fi
tail -n 3 "$log"
