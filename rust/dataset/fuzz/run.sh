#!/usr/bin/env bash
# Fuzz the transcoder for SECONDS (default 60) on the stable toolchain.
# Usage: rust/dataset/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-60}"
mkdir -p corpus/transcode
# Seed with a few small corpus files when the shared generator is around.
GEN="$(cd ../../../.. && pwd)/shared/corpus/make_corpus.py"
if [ -f "$GEN" ] && [ -z "$(ls -A corpus/transcode 2>/dev/null)" ]; then
  tmp="$(mktemp -d)"
  if python3 "$GEN" --out "$tmp" --profile small --syntax all --only CURVE --only GENIE --only RTSTRUCT >/dev/null 2>&1; then
    i=0
    for f in "$tmp"/*/*/*.dcm; do
      # first byte selects the syntaxes and options; see fuzz_targets/transcode.rs
      for sel in 0 0x43 0x85; do
        { printf "\\x$(printf %02x $((sel)))"; head -c 20000 "$f"; } > "corpus/transcode/seed-$i-$sel"
      done
      i=$((i + 1))
    done
  fi
  rm -rf "$tmp"
fi
exec ../../fuzz-run.sh . transcode "$SECONDS_TO_RUN"
