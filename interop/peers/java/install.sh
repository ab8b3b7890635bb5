#!/usr/bin/env bash
# Java peer of the interop suite: Apache Kafka 4.3.1's jars from Maven Central (kafka-clients for the peer program,
# kafka-tools / kafka_2.13 for the CLI tools tests) and the peer compiled against them.
#   $SPOOL_PEERS_DIR/kafka-ref/libs     the jars (shared with interop/reference/run-against-kafka.sh, same pom)
#   $SPOOL_PEERS_DIR/java-peer/classes  the compiled peer (rebuilt only when its sources change)
# Idempotent and quick when everything is in place; fails loudly (non-zero) otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
interop="$(cd "$here/../.." && pwd)"
peers="${SPOOL_PEERS_DIR:-$(cd "$interop/.." && pwd)/.peers}"
ref="$peers/kafka-ref"
libs="$ref/libs"
out="$peers/java-peer"
kafka_version="4.3.1"

die() { echo "java peer: ERROR: $*" >&2; exit 1; }
log() { echo "java peer: $*" >&2; }

command -v java >/dev/null 2>&1 || die "java not found on PATH (needs a JDK 17+)"
command -v javac >/dev/null 2>&1 || die "javac not found on PATH (needs a JDK 17+, not only a JRE)"
java_major="$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
if ! [ "${java_major%%.*}" -ge 17 ] 2>/dev/null; then
    die "needs Java 17+, found '$java_major'"
fi

# ---- Kafka's jars ----------------------------------------------------------------------------------------------
if [ ! -f "$libs/kafka_2.13-$kafka_version.jar" ] || [ ! -f "$libs/kafka-clients-$kafka_version.jar" ] \
    || [ ! -f "$libs/kafka-tools-$kafka_version.jar" ]; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found: needed once to fetch Kafka $kafka_version's jars"
    mkdir -p "$ref"
    cp "$interop/reference/pom.xml" "$ref/pom.xml"
    log "fetching Kafka $kafka_version jars from Maven Central into $libs"
    (cd "$ref" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs >&2) \
        || die "mvn dependency:copy-dependencies failed in $ref"
fi
for jar in "kafka-clients-$kafka_version.jar" "kafka-tools-$kafka_version.jar" "kafka_2.13-$kafka_version.jar"; do
    [ -f "$libs/$jar" ] || die "$libs/$jar missing after mvn dependency:copy-dependencies"
done

# ---- the peer program --------------------------------------------------------------------------------------------
mapfile -t sources < <(find "$here/src" -name '*.java' | LC_ALL=C sort)
[ "${#sources[@]}" -gt 0 ] || die "no Java sources under $here/src"
# The stamp covers the sources, this script (javac flags), the JDK and the jar list: any change recompiles.
want_sum="$( { cat "${sources[@]}" "${BASH_SOURCE[0]}"; javac -version 2>&1; ls "$libs"; } | sha256sum | awk '{print $1}')"
stamp="$out/.sources.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_sum" ]; then
    log "compiling ${#sources[@]} source files into $out/classes"
    rm -rf "$out/classes"
    mkdir -p "$out/classes"
    javac -Xlint:all --release 17 -encoding UTF-8 -cp "$libs/*" -d "$out/classes" "${sources[@]}" >&2 \
        || die "javac failed"
    echo "$want_sum" > "$stamp"
fi

peer_version="$(java -Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$out/classes:$libs/*" \
    spool.interop.Peer --version)" || die "the Java peer does not run (java ... spool.interop.Peer --version)"
[ "$peer_version" = "$kafka_version" ] || die "peer reports kafka-clients '$peer_version', expected $kafka_version"

echo "peers installed:"
echo "  java: $(java -version 2>&1 | head -1)"
echo "  kafka-clients $peer_version (Java peer: $out/classes, jars: $libs)"
