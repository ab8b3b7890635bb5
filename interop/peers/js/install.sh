#!/usr/bin/env bash
# JavaScript peer of the interop suite: kafkajs and its compression codec plugins from npm, exactly as pinned by
# package-lock.json (`npm ci`), installed OUTSIDE the repo tree:
#   $SPOOL_PEERS_DIR/js-peer/node_modules   kafkajs, kafkajs-snappy, kafkajs-lz4, @sensejs/kafkajs-zstd-support
# peer.js (run from this folder) loads them from there (see deps.js).
# Reinstalls only when package.json, package-lock.json or the Node version change (the lz4 and zstd codecs are
# native addons built for one Node ABI). Fails loudly (non-zero) if anything cannot be installed or loaded.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
interop="$(cd "$here/../.." && pwd)"
peers="${SPOOL_PEERS_DIR:-$(cd "$interop/.." && pwd)/.peers}"
out="$peers/js-peer"

die() { echo "js peer: ERROR: $*" >&2; exit 1; }
log() { echo "js peer: $*" >&2; }

command -v node >/dev/null 2>&1 || die "node not found on PATH (needs Node.js 20+)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] 2>/dev/null || die "needs Node.js 20+, found $(node --version)"
[ -f "$here/package-lock.json" ] || die "$here/package-lock.json missing (the exact pins)"

want_sum="$( { cat "$here/package.json" "$here/package-lock.json"; node --version; } | sha256sum | awk '{print $1}')"
stamp="$out/.lock.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_sum" ] || [ ! -d "$out/node_modules" ]; then
    for tool in make g++ python3; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found: node-gyp needs it to build the codec addons"
    done
    log "npm ci into $out (kafkajs and codec plugins; builds the lz4 and zstd native addons)"
    rm -f "$stamp"
    mkdir -p "$out"
    cp "$here/package.json" "$here/package-lock.json" "$out/"
    # npm's download cache lives beside the install, so a reinstall after a lock change downloads only what changed.
    # build_from_source: zstd-napi's install script would first try to download a prebuilt binary from outside
    # the npm registry; node-gyp builds it instead, against the headers of the Node we run (nodedir), which it
    # would otherwise download too.
    node_prefix="$(dirname "$(dirname "$(command -v node)")")"
    [ -f "$node_prefix/include/node/node_api.h" ] \
        || die "Node's C headers not found under $node_prefix/include/node (node-gyp needs them for the codec addons)"
    (cd "$out" && npm_config_cache="$peers/npm-cache" npm_config_nodedir="$node_prefix" \
        npm_config_build_from_source=true npm ci --no-audit --no-fund >&2) || die "npm ci failed in $out"
    echo "$want_sum" > "$stamp"
fi

# Every run: load kafkajs and every codec (a native addon that did not build fails here, not in a test).
versions="$(cd "$here" && SPOOL_PEERS_DIR="$peers" node deps.js --versions)" \
    || { rm -f "$stamp"; die "the installed kafkajs peer does not load (node deps.js --versions); rerun to reinstall"; }

echo "peers installed:"
echo "  node $(node --version)"
while IFS= read -r line; do echo "  $line"; done <<< "$versions"
echo "  (js peer: $here/peer.js, modules: $out/node_modules)"
