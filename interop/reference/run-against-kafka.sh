#!/usr/bin/env bash
# Checks the interop suite itself by running it against Apache Kafka 4.3.1 instead of spool.
# Every test should pass here; not part of CI.   interop/reference/run-against-kafka.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ref="$repo/.peers/kafka-ref"

if [ ! -f "$ref/libs/kafka_2.13-4.3.1.jar" ]; then
    mkdir -p "$ref"
    cp "$here/pom.xml" "$ref/pom.xml"
    (cd "$ref" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs)
fi
SPOOL_BIN="$here/kafka-as-spool" SPOOL_INTEROP_NO_BUILD=1 SPOOL_START_TIMEOUT="${SPOOL_START_TIMEOUT:-120}" \
    SPOOL_STOP_TIMEOUT="${SPOOL_STOP_TIMEOUT:-60}" exec bash "$repo/interop/run.sh" "$@"
