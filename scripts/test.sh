#!/usr/bin/env bash
# Installs what the tests need, then runs every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reference implementations for metric checks, and the readers the Parquet tables must suit.
if ! python3 -c "import pyarrow, duckdb, numpy" 2>/dev/null; then
    echo "installing Python test dependencies (pyarrow, duckdb, numpy)..."
    python3 -m pip install --quiet --disable-pip-version-check pyarrow duckdb numpy
fi

cargo test --release --workspace --all-targets "$@"
