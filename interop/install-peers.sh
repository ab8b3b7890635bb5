#!/usr/bin/env bash
# Installs the third-party Kafka peers used by the interop suite:
#   - kcat (librdkafka CLI) from Debian's packages
#   - a Python venv at .peers/venv with pytest, pytest-timeout and confluent-kafka
# Idempotent: when everything is already in place it only checks and prints versions.
# Fails (non-zero) if anything cannot be installed; it never skips a peer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
peers="${SPOOL_PEERS_DIR:-$repo/.peers}"
venv="$peers/venv"
req="$here/requirements.txt"

die() { echo "install-peers: ERROR: $*" >&2; exit 1; }
log() { echo "install-peers: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
        apt_updated=1
    fi
}

has_candidate() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# ---- kcat -------------------------------------------------------------------
find_kcat() {
    if command -v kcat >/dev/null 2>&1; then
        command -v kcat
    elif command -v kafkacat >/dev/null 2>&1; then
        command -v kafkacat
    else
        return 1
    fi
}

if ! kcat_bin="$(find_kcat)"; then
    command -v apt-get >/dev/null 2>&1 || die "kcat is not installed and apt-get is not available"
    pkg=""
    for candidate in kcat kafkacat; do
        if has_candidate "$candidate"; then pkg="$candidate"; break; fi
    done
    if [ -z "$pkg" ]; then
        apt_update_once
        for candidate in kcat kafkacat; do
            if has_candidate "$candidate"; then pkg="$candidate"; break; fi
        done
    fi
    [ -n "$pkg" ] || die "neither 'kcat' nor 'kafkacat' has an install candidate in apt"
    log "apt-get install -y $pkg"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >&2; then
        # A stale package list can name files the mirror no longer has: refresh once and retry.
        if [ "$apt_updated" -eq 0 ]; then
            apt_update_once
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >&2 \
                || die "apt-get install $pkg failed"
        else
            die "apt-get install $pkg failed"
        fi
    fi
    kcat_bin="$(find_kcat)" || die "installed $pkg but found neither kcat nor kafkacat on PATH"
fi
kcat_version="$("$kcat_bin" -V 2>&1 | grep -m1 '^Version')" || die "$kcat_bin -V printed no version"
for codec in gzip snappy lz4 zstd; do
    case "$kcat_version" in
        *builtin.features=*"$codec"*) ;;
        *) die "kcat's librdkafka lacks $codec support: $kcat_version" ;;
    esac
done

# ---- Python venv ------------------------------------------------------------
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || die "$python not found"

stamp="$venv/.requirements.sha256"
want_sum="$(sha256sum "$req" | awk '{print $1}')"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_sum" ] \
    && "$venv/bin/python" -c 'import confluent_kafka, pytest, pytest_timeout, kafka, aiokafka, cramjam, lz4, snappy, zstandard' 2>/dev/null; then
    :
else
    mkdir -p "$peers"
    if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        # Missing, or broken (e.g. the interpreter it pointed at is gone): (re)create it.
        log "creating venv $venv"
        "$python" -m venv --clear "$venv" || die "python -m venv failed"
    fi
    log "pip install -r $req"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2 \
        || die "pip install of the Python peers failed"
    "$venv/bin/python" -c 'import confluent_kafka, pytest, pytest_timeout, kafka, aiokafka, cramjam, lz4, snappy, zstandard' \
        || die "Python peers installed but cannot be imported"
    echo "$want_sum" > "$stamp"
fi

py_versions="$("$venv/bin/python" - <<'PY'
import sys, confluent_kafka, pytest, pytest_timeout
from importlib.metadata import version
print(f"python {sys.version.split()[0]}")
print(f"confluent-kafka {version('confluent-kafka')} (bundled librdkafka {confluent_kafka.libversion()[0]})")
print(f"pytest {pytest.__version__}")
print(f"pytest-timeout {version('pytest-timeout')}")
PY
)" || die "cannot query Python peer versions"

echo "peers installed:"
echo "  kcat: $kcat_bin: $kcat_version"
while IFS= read -r line; do echo "  $line"; done <<< "$py_versions"
echo "  venv: $venv"

# ---- per-language peers (Java, Go, JavaScript, ...): each folder's install.sh ---------------------
# Each prints its own "peers installed" lines and fails loudly; downloads are cached under .peers/.
for peer_install in "$here"/peers/*/install.sh; do
    [ -e "$peer_install" ] || continue
    log "$(basename "$(dirname "$peer_install")"): $peer_install"
    SPOOL_PEERS_DIR="$peers" bash "$peer_install" || die "$peer_install failed"
done
