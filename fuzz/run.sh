#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on any crash, leak, timeout or
# out-of-memory. Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, all)
#
# Needs the nightly toolchain; installs cargo-fuzz when it is missing. New inputs found go to
# fuzz/target/corpus-work/<target> (not committed); fuzz/corpus/<target> is only read. A crash
# leaves its input in fuzz/artifacts/<target>/: reproduce with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request record_batch embedded)
fi
# 2 GiB: far above what any single input may legitimately use (the broker's 64 MiB
# decompression cap, a 100 MiB frame), far below what an unbounded allocation reaches.
rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh needs the nightly toolchain (cargo-fuzz instruments with -Z flags);" \
        "installing it with rustup" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Build every target first, so the time budget goes to fuzzing.
cargo +nightly fuzz build

for target in "${targets[@]}"; do
    work="target/corpus-work/$target"
    mkdir -p "$work" "artifacts/$target"
    echo "== fuzzing $target for ${seconds}s (rss limit ${rss_limit_mb} MB)"
    # -timeout: one input running 10 s is a hang, not a slow input.
    cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" \
        -rss_limit_mb="$rss_limit_mb" \
        -timeout=10 \
        -print_final_stats=1
done
echo "fuzzing passed: ${targets[*]} (${seconds}s each)"
