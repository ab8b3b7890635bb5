#!/usr/bin/env bash
# Builds the franz-go peers of the interop suite with the machine's Go toolchain:
#   $SPOOL_PEERS_DIR/go-peer/bin/go-peer    the scenario peer (interop/SCENARIOS.md), this folder's main package
#   $SPOOL_PEERS_DIR/go-peer/bin/kgo.test   franz-go's own pkg/kgo test binary, run against a broker by
#                                           interop/tests/test_franz_go.py (kgo integration tests)
#   $SPOOL_PEERS_DIR/go-peer/bin/test2json  Go's test2json, to read that binary's results
# The versions are pinned by go.mod/go.sum. Modules and build cache live under $SPOOL_PEERS_DIR/go-peer, so the
# Go module proxy is contacted only on the first build. Rebuilds only when a source file or the Go version changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
peers="${SPOOL_PEERS_DIR:-$repo/.peers}"
out="$peers/go-peer"
bin="$out/bin"

die() { echo "go-peer install: ERROR: $*" >&2; exit 1; }
log() { echo "go-peer install: $*" >&2; }

go_cmd="$(command -v go || true)"
if [ -z "$go_cmd" ] && [ -x /usr/local/go/bin/go ]; then
    go_cmd=/usr/local/go/bin/go
fi
[ -n "$go_cmd" ] || die "no Go toolchain: 'go' is not on PATH (nor at /usr/local/go/bin/go)"

# Never let go fetch a different toolchain behind our back: go.mod's 'go' line (franz-go's own minimum) must be
# met by the installed Go, or this fails here with a clear message.
export GOTOOLCHAIN=local
export GOMODCACHE="$out/gomod" GOCACHE="$out/gocache"
# Module cache files are read-only by default, which makes 'rm -rf .peers' fail; -modcacherw keeps them writable.
export GOFLAGS="-modcacherw -mod=readonly"
go_version="$("$go_cmd" env GOVERSION)" || die "'$go_cmd env GOVERSION' failed"
need="$(awk '$1 == "go" {print $2; exit}' "$here/go.mod")"
if ! printf '%s\n%s\n' "go$need" "$go_version" | sort -V -C; then
    die "franz-go needs Go >= $need (go.mod); the installed $go_cmd is $go_version"
fi

stamp="$out/.sources.sha256"
want_sum="$(cd "$here" && cat go.mod go.sum ./*.go install.sh | sha256sum | awk '{print $1}') $go_version"
if [ -x "$bin/go-peer" ] && [ -x "$bin/kgo.test" ] && [ -x "$bin/test2json" ] && [ -f "$stamp" ] \
    && [ "$(cat "$stamp")" = "$want_sum" ]; then
    :
else
    mkdir -p "$bin"
    cd "$here"
    log "go mod download (cache: $GOMODCACHE)"
    "$go_cmd" mod download || die "go mod download failed (needs the Go module proxy on a first build)"
    "$go_cmd" mod verify >&2 || die "go mod verify failed: the module cache does not match go.sum"
    log "building go-peer"
    "$go_cmd" build -trimpath -o "$bin/go-peer" . || die "go build of the franz-go peer failed"
    log "building franz-go's pkg/kgo test binary"
    "$go_cmd" test -c -o "$bin/kgo.test" github.com/twmb/franz-go/pkg/kgo \
        || die "go test -c github.com/twmb/franz-go/pkg/kgo failed"
    "$go_cmd" build -o "$bin/test2json" cmd/test2json || die "go build cmd/test2json failed"
    echo "$want_sum" > "$stamp"
fi

franz_version="$("$bin/go-peer" --version)" || die "$bin/go-peer --version failed"
kadm_version="$(cd "$here" && "$go_cmd" list -m -f '{{.Version}}' github.com/twmb/franz-go/pkg/kadm)" \
    || die "cannot read the kadm version from go.mod"
echo "peers installed:"
echo "  franz-go $franz_version, kadm $kadm_version ($go_version): $bin/go-peer"
echo "  franz-go $franz_version pkg/kgo tests: $bin/kgo.test"
