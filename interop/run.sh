#!/usr/bin/env bash
# Interop suite: real third-party Kafka clients against `spool broker`, and Spool's client and CLI against Apache
# Kafka 4.3.1; a full run rewrites COMPATIBILITY.md (see interop/SCENARIOS.md and interop/tests/matrix.py).
#   interop/run.sh [pytest args...]     e.g. interop/run.sh -k kcat -x
# Environment:
#   SPOOL_BIN              broker binary to test (default: target/release/spool, built here)
#   SPOOL_INTEROP_NO_BUILD=1  skip `cargo build --release -p spool-cli`
#   SPOOL_INTEROP_TIMEOUT  whole-suite limit in seconds (default 1800)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

echo "=== interop: install peers ==="
bash "$here/install-peers.sh"

if [ "${SPOOL_INTEROP_NO_BUILD:-0}" = "1" ]; then
    echo "=== interop: build skipped (SPOOL_INTEROP_NO_BUILD=1) ==="
else
    echo "=== interop: cargo build --release -p spool-cli -p spool-interop-peer ==="
    cargo build --release -p spool-cli -p spool-interop-peer
fi

export SPOOL_BIN="${SPOOL_BIN:-$repo/target/release/spool}"
python="$repo/.peers/venv/bin/python"
limit="${SPOOL_INTEROP_TIMEOUT:-1800}"

# A full run (no pytest arguments) against spool writes the compatibility matrix; a partial one must not.
if [ "$#" -eq 0 ] && [ "${SPOOL_MATRIX_OUT+set}" != set ] && [ "$(basename "$SPOOL_BIN")" = spool ]; then
    export SPOOL_MATRIX_OUT="$repo/COMPATIBILITY.md"
fi
echo "=== interop: pytest (SPOOL_BIN=$SPOOL_BIN${SPOOL_MATRIX_OUT:+, writes $SPOOL_MATRIX_OUT}) ==="
cd "$here"
status=0
# The outer timeout is a last resort; every test has its own limit (pytest.ini) and every client call a deadline.
timeout --signal=TERM --kill-after=30 "$limit" \
    "$python" -m pytest -c "$here/pytest.ini" --rootdir "$here" -v "$@" || status=$?

case "$status" in
    0) echo "=== interop: passed ===" ;;
    5) echo "=== interop: FAILED: pytest collected no tests (exit 5) ===" >&2; exit 1 ;;
    124) echo "=== interop: FAILED: suite exceeded ${limit}s and was stopped ===" >&2; exit 1 ;;
    *) echo "=== interop: FAILED (pytest exit $status) ===" >&2; exit "$status" ;;
esac
