#!/usr/bin/env bash
# Installs what the tests need, then runs every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reference implementations for metric checks, and the readers the Parquet tables must suit.
if ! python3 -c "import pyarrow, duckdb, numpy, scipy, sklearn" 2>/dev/null; then
    echo "installing Python test dependencies (pyarrow, duckdb, numpy, scipy, scikit-learn)..."
    python3 -m pip install --quiet --disable-pip-version-check pyarrow duckdb numpy scipy scikit-learn
fi

# The Kafka-protocol broker the integration tests start on a free loopback port (not needed
# when INFERWATCH_TEST_BROKERS points at another Kafka).
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${INFERWATCH_TEST_BROKERS:-}" ] && ! command -v tansu >/dev/null 2>&1; then
    echo "installing the Tansu broker for the Kafka tests (cargo install, about 8 minutes)..."
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --quiet
fi

cargo test --release --workspace --all-targets "$@"
