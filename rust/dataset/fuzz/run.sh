#!/usr/bin/env bash
# Fuzz the transcoder and the header scan for SECONDS in total (default 60,
# split between the two targets) on the stable toolchain.
# Usage: rust/dataset/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-60}"
SCAN_SECONDS=$((SECONDS_TO_RUN / 3))
[ "$SCAN_SECONDS" -ge 1 ] || SCAN_SECONDS=1
TRANSCODE_SECONDS=$((SECONDS_TO_RUN - SCAN_SECONDS))
[ "$TRANSCODE_SECONDS" -ge 1 ] || TRANSCODE_SECONDS=1
mkdir -p corpus/transcode corpus/scan
# Seed with a few small files of the project's test corpus (gateway.testing.corpus)
# when the project is installed.
seed_transcode=""; seed_scan=""
[ -n "$(ls -A corpus/transcode 2>/dev/null)" ] || seed_transcode=1
[ -n "$(ls -A corpus/scan 2>/dev/null)" ] || seed_scan=1
if python3 -c "import gateway.testing.corpus" 2>/dev/null && [ -n "$seed_transcode$seed_scan" ]; then
  tmp="$(mktemp -d)"
  if python3 -m gateway.testing.corpus --out "$tmp" --profile small --syntax all --only CURVE --only GENIE --only RTSTRUCT >/dev/null 2>&1; then
    i=0
    for f in "$tmp"/*/*/*.dcm; do
      if [ -n "$seed_transcode" ]; then
        # first byte selects the syntaxes and options; see fuzz_targets/transcode.rs
        for sel in 0 0x43 0x85; do
          { printf "\\x$(printf %02x $((sel)))"; head -c 20000 "$f"; } > "corpus/transcode/seed-$i-$sel"
        done
      fi
      # scan: the bare dataset (File Meta stripped), first byte = syntax (fuzz_targets/scan.rs)
      [ -z "$seed_scan" ] || python3 - "$f" "corpus/scan/seed-$i" <<'PY' || true
import struct, sys
data = open(sys.argv[1], "rb").read()
end = 144 + struct.unpack("<I", data[140:144])[0]
ts = data[132:end].split(b"\x10\x00UI", 1)[1][2:].split(b"\x00", 1)[0]
sel = {b"1.2.840.10008.1.2": 0, b"1.2.840.10008.1.2.1": 1, b"1.2.840.10008.1.2.2": 2}.get(ts.rstrip(b" "), 1)
open(sys.argv[2], "wb").write(bytes([sel]) + data[end:end + 20000])
PY
      i=$((i + 1))
    done
  fi
  rm -rf "$tmp"
fi
../../fuzz-run.sh . transcode "$TRANSCODE_SECONDS"
exec ../../fuzz-run.sh . scan "$SCAN_SECONDS"
