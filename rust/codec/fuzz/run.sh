#!/usr/bin/env bash
# Fuzz the PDU codec for SECONDS (default 60) on the stable toolchain.
# Usage: rust/codec/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-60}"
mkdir -p corpus/pdu_stream
# Seeds: a real A-ASSOCIATE-RQ, a release and a small two-PDU message.
if [ -z "$(ls -A corpus/pdu_stream 2>/dev/null)" ]; then
  printf '\x10\x00\x01\x00\x00\x00\x2a\x00\x01\x00\x00DICOM_GATEWAY   ECHOSCU         \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' > corpus/pdu_stream/seed-rq-head
  printf '\x01\x01\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00' > corpus/pdu_stream/seed-release
  printf '\x03\x00\x04\x00\x00\x00\x00\x16\x00\x00\x00\x12\x01\x03\x00\x00\x00\x08\x02\x00\x00\x00\x01\x01\x00\x00\x00\x00' > corpus/pdu_stream/seed-pdata
fi
exec ../../fuzz-run.sh . pdu_stream "$SECONDS_TO_RUN"
