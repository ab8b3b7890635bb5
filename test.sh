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

stage "1/4 cargo fmt --all -- --check"
cargo fmt --all -- --check

stage "2/4 cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

stage "3/4 cargo test --workspace"
cargo test --workspace

stage "4/4 interop suite (interop/run.sh)"
bash interop/run.sh

stage "all stages passed"
