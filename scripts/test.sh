#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them all.
# This is the README's test command and the only thing CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Real peers the tests talk to (DCMTK, Orthanc).
if ! [ -x /usr/bin/dcmdump ] || ! [ -x /usr/sbin/Orthanc ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dcmtk orthanc postgresql >/dev/null
fi
# Orthanc's package starts a system service on 4242/8042; tests start their own.
$SUDO systemctl stop orthanc >/dev/null 2>&1 || $SUDO service orthanc stop >/dev/null 2>&1 || true

# The project (Rust extension built by maturin) and its built-in plugins.
python3 -m pip install -q --disable-pip-version-check ".[test,postgres]" ./plugins

# Rust: unit and property tests of the pure crates, then bounded fuzzing.
cargo test -q -p dicom-gateway-codec -p dicom-gateway-dataset
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
for target in rust/codec/fuzz rust/dataset/fuzz; do
  [ -x "$target/run.sh" ] && "$target/run.sh" "$FUZZ_SECONDS"
done

# The compiled module's typed stubs match what it exports (STYLE 4).
python3 -m mypy.stubtest gateway._rust

# Python: unit and integration tests against real peers.
python3 -m pytest -q -p no:cacheprovider "$@"
