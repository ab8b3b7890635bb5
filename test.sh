#!/usr/bin/env bash
# The project's single test command: formatting, lints, unit/integration tests, interop suite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

stage() {
    echo
    echo "=================================================================="
    echo "== $*"
    echo "=================================================================="
}

stage "1/6 cargo fmt --all -- --check"
cargo fmt --all -- --check

stage "2/6 cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

stage "3/6 cargo test --workspace"
cargo test --workspace

stage "4/6 fuzzing (fuzz/run.sh, ${FUZZ_SECONDS:-30}s per target; fails on any crash)"
# Bounded: the corpus replays every seed (real requests and batches, and the hostile cases of
# crates/spool-broker/tests/hostile_input.rs), then mutates for the rest of the time.
bash fuzz/run.sh "${FUZZ_SECONDS:-30}"

stage "5/6 interop suite (interop/run.sh; rewrites COMPATIBILITY.md)"
bash interop/run.sh

stage "6/6 COMPATIBILITY.md matches this run"
# The matrix is written by the interop run, never by hand: the committed one must be what this code produces.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    if ! git diff --exit-code -- COMPATIBILITY.md; then
        echo "COMPATIBILITY.md differs from what this run measured (diff above): commit the regenerated file" >&2
        exit 1
    fi
else
    echo "not a git work tree: nothing to compare COMPATIBILITY.md with"
fi

stage "all stages passed"
