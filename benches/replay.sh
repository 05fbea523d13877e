#!/usr/bin/env bash
# End-to-end benchmark: file replay through decode, windows and the Parquet sinks.
# Reports events/s (wall and per CPU-second) and peak RSS, using /usr/bin/time when present,
# with one thread (--threads 1: everything on one thread) and with the default (one worker
# per core, a sink thread).
#   ./benches/replay.sh [EVENTS] [ROUTES]   e.g. ./benches/replay.sh 10000000 50  (~1,000 keys)
# INFERWATCH_BIN=path skips the build and measures that binary.
# BENCH_DATA_DIR=s3://bucket/bench (with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY) measures the Parquet writes into an object store instead.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
routes=${2:-0}
work=${BENCH_DIR:-$(mktemp -d)}
if [ -z "${INFERWATCH_BIN:-}" ]; then
    # The test build's feature set: a plain `cargo build` would rebuild every dependency.
    cargo test --release --workspace --all-targets --no-run --quiet
fi
bin=${INFERWATCH_BIN:-${CARGO_TARGET_DIR:-target}/release/inferwatch}
input="$work/replay-$events-$routes.ndjson"
[ -f "$input" ] || "$bin" generate --count "$events" --rate 100000 --routes "$routes" --out "$input"
echo "input: $(du -h "$input" | cut -f1) ($events events), one window: --window 1h"
printf '[sink]\nwrite_events = false\n' > "$work/no-events.toml"
data=${BENCH_DATA_DIR:-$work/data}
for mode in "decode+aggregate" "decode+aggregate+events-parquet"; do
    for threads in 1 0; do
        # A bucket needs no clearing: a replay replaces its files (deterministic names).
        case "$data" in *://*) ;; *) rm -rf "$data" ;; esac
        config=()
        [ "$mode" = "decode+aggregate" ] && config=(--config "$work/no-events.toml")
        label="$mode, threads $([ "$threads" = 0 ] && echo default || echo "$threads")"
        start=$(date +%s.%N)
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -f "$label: cpu %U user + %S sys s, peak RSS %M KB" \
                "$bin" run --source "file:$input" --data-dir "$data" --window 1h \
                --threads "$threads" "${config[@]}"
        else
            "$bin" run --source "file:$input" --data-dir "$data" --window 1h \
                --threads "$threads" "${config[@]}"
        fi
        end=$(date +%s.%N)
        echo "$label: $(python3 -c "print(f'{$events / ($end - $start):,.0f} events/s wall, {$end - $start:.2f} s')")"
    done
done
# Generated times jitter around a start at midnight: the first events fall in the hour before,
# so `--window 1h` gives two windows of the same keys.
"$bin" query --data-dir "$data" "SELECT count(*) AS metric_rows, count(DISTINCT window_start) AS windows,
    count(DISTINCT concat(service, '|', model, '|', coalesce(model_version, ''), '|', route)) AS keys,
    sum(requests) AS events FROM metrics"
