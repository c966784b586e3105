#!/usr/bin/env bash
# Fuzz the film renderer for SECONDS (default 60) on the stable toolchain.
# Usage: rust/imaging/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-60}"
mkdir -p corpus/render
# Seeds: a 2×2 16-bit frame on a 2×3 film, and a 1×1 RGB frame on a 1×1 colour sheet.
if [ -z "$(ls -A corpus/render 2>/dev/null)" ]; then
  printf '\x01\x01\x01\x8c\x01\x28\x00\x90\x01\x10\xf8\x01\x01\x40\x50\x04\x00\x01\x00\x02\x00\x03\x00\x04' > corpus/render/seed-u16
  printf '\x00\x00\x03\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x10\x10\x21\xff\x00\x00' > corpus/render/seed-rgb
fi
exec ../../fuzz-run.sh . render "$SECONDS_TO_RUN"
