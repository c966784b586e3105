#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them all.
# This is the README's test command and the only thing CI runs.
#
# The project and its test tools go into a virtualenv (.venv, made on first use):
# Debian 12's system Python refuses `pip install` (PEP 668).
# Extra arguments go to pytest, e.g. `./scripts/test.sh tests/test_echo.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

STAGE="" STAGE_STARTED=0 SUITE_STARTED=$(date +%s)
TIMES=()
stage() {  # stage NAME: close the previous stage (its time), open the next one
  local now; now=$(date +%s)
  [ -n "$STAGE" ] && TIMES+=("$(printf '%-16s %4d s' "$STAGE" $((now - STAGE_STARTED)))")
  STAGE="$1" STAGE_STARTED=$now
  [ -n "$STAGE" ] && printf '\n==> %s\n' "$STAGE"
  return 0
}
summary() {
  stage ""
  printf '\n==> stage times\n'
  printf '  %s\n' "${TIMES[@]}"
  printf '  %-16s %4d s\n' "total" $(($(date +%s) - SUITE_STARTED))
}
trap summary EXIT

stage "system packages"
# Real peers the tests talk to (DCMTK, Orthanc, PostgreSQL), the tools some tests read the
# system with (ss, strace), and venv when Python lacks it.
packages=()
[ -x /usr/bin/dcmdump ] || packages+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || packages+=(orthanc)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
command -v ss >/dev/null || packages+=(iproute2)
command -v strace >/dev/null || packages+=(strace)
python3 -c "import ensurepip" 2>/dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing ${packages[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
else
  echo "dcmtk, orthanc, postgresql already installed"
fi
# Orthanc's package starts a system service on 4242/8042; tests start their own.
$SUDO systemctl stop orthanc >/dev/null 2>&1 || $SUDO service orthanc stop >/dev/null 2>&1 || true

stage "build"
# The project (Rust extension built by maturin: about a minute, silent) and its built-in plugins.
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check ".[test,postgres]" ./plugins

stage "cargo test"
# Rust: unit and property tests of the pure crates.
cargo test -q -p dicom-gateway-codec -p dicom-gateway-dataset -p dicom-gateway-imaging

stage "fuzz"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
for target in rust/codec/fuzz rust/dataset/fuzz rust/imaging/fuzz; do
  [ -x "$target/run.sh" ] && "$target/run.sh" "$FUZZ_SECONDS"
done

stage "stubtest"
# The compiled module's typed stubs match what it exports (STYLE 4).
python -m mypy.stubtest gateway._rust

stage "pytest"
# Python: unit and integration tests against real peers. Every optional peer was
# installed above, so a test that would skip for a missing one fails instead;
# -rs lists the reasons of whatever skipped.
export DICOM_GATEWAY_REQUIRE_PEERS=1
python -m pytest -q -p no:cacheprovider -rs "$@"
