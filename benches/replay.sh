#!/usr/bin/env bash
# End-to-end benchmark: file replay through decode, windows and the Parquet sinks.
# Reports events/s (wall and per CPU-second) and peak RSS, using /usr/bin/time when present.
#   ./benches/replay.sh [EVENTS] [ROUTES]   e.g. ./benches/replay.sh 10000000 50  (~1,000 keys)
# BENCH_DATA_DIR=s3://bucket/bench (with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY) measures the Parquet writes into an object store instead.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
routes=${2:-0}
work=${BENCH_DIR:-$(mktemp -d)}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/inferwatch
input="$work/replay-$events-$routes.ndjson"
[ -f "$input" ] || "$bin" generate --count "$events" --rate 100000 --routes "$routes" --out "$input"
echo "input: $(du -h "$input" | cut -f1) ($events events), one window: --window 1h"
printf '[sink]\nwrite_events = false\n' > "$work/no-events.toml"
data=${BENCH_DATA_DIR:-$work/data}
for mode in "decode+aggregate" "decode+aggregate+events-parquet"; do
    # A bucket needs no clearing: a replay replaces its files (names are deterministic).
    case "$data" in *://*) ;; *) rm -rf "$data" ;; esac
    config=()
    [ "$mode" = "decode+aggregate" ] && config=(--config "$work/no-events.toml")
    start=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "cpu %U user + %S sys s, peak RSS %M KB" \
            "$bin" run --source "file:$input" --data-dir "$data" --window 1h "${config[@]}"
    else
        "$bin" run --source "file:$input" --data-dir "$data" --window 1h "${config[@]}"
    fi
    end=$(date +%s.%N)
    echo "$mode: $(python3 -c "print(f'{$events / ($end - $start):,.0f} events/s wall')")"
done
"$bin" query --data-dir "$data" "SELECT count(*) AS keys, sum(requests) AS events FROM metrics"
