#!/usr/bin/env bash
# Side by side on one NDJSON file: inferwatch's file replay against DuckDB doing a smaller
# job with the same input and outputs an analyst would want (events as Parquet zstd at level
# 1, inferwatch's default, and one GROUP BY per window and key with latency quantiles).
# Prints each one's wall time, CPU time and peak RSS, then the wall ratio inferwatch /
# DuckDB (the target is at most 0.5). inferwatch runs twice: with the `events` table, the
# job compared, and without it (`sink.write_events = false`), which shows what the events
# table's Parquet encoding costs on its own.
#   ./benches/vs-duckdb.sh [EVENTS] [ROUTES] [WINDOW]   e.g. ./benches/vs-duckdb.sh 2000000 0 1m
# INFERWATCH_BIN=path skips the build; BENCH_DIR=dir keeps the input between runs.
# DuckDB comes from pip (`python3 -m pip install duckdb`).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
routes=${2:-0}
window=${3:-1m}
work=${BENCH_DIR:-$(mktemp -d)}
if [ -z "${INFERWATCH_BIN:-}" ]; then
    # The test build's feature set: a plain `cargo build` would rebuild every dependency.
    cargo test --release --workspace --all-targets --no-run --quiet
fi
bin=${INFERWATCH_BIN:-${CARGO_TARGET_DIR:-target}/release/inferwatch}
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet duckdb
input="$work/steady-$events-$routes.ndjson"
[ -f "$input" ] || "$bin" generate --count "$events" --rate 100000 --routes "$routes" --out "$input"
echo "input: $(du -h "$input" | cut -f1) ($events events), window $window"

# DuckDB's job. The generator writes `timestamp` as RFC 3339 text or as epoch milliseconds,
# so the column is read as JSON and converted by its type.
seconds=$(python3 -c "
import re, sys
m = re.fullmatch(r'(\d+)(ms|s|m|h|d)', '$window')
if not m: sys.exit('WINDOW must look like 30s, 1m, 1h')
print(int(m[1]) * {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}[m[2]])")
cat > "$work/duckdb-job.py" <<EOF
import duckdb, os, sys
input_path, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute(f"""
COPY (
  SELECT * EXCLUDE (timestamp),
    CASE WHEN json_type(timestamp) = 'VARCHAR'
         THEN CAST(json_extract_string(timestamp, '\$') AS TIMESTAMPTZ)
         ELSE make_timestamptz(CAST(CAST(timestamp AS DOUBLE) * 1000 AS BIGINT))
    END AS timestamp
  FROM read_json('{input_path}', format = 'newline_delimited', ignore_errors = true,
    columns = {{event_id: 'VARCHAR', timestamp: 'JSON', service: 'VARCHAR',
      model: 'VARCHAR', model_version: 'VARCHAR', route: 'VARCHAR', tenant: 'VARCHAR',
      session_id: 'VARCHAR', status: 'VARCHAR', latency_ms: 'DOUBLE', tokens_in: 'BIGINT',
      tokens_out: 'BIGINT', tokens_cached: 'BIGINT', cost_usd: 'DOUBLE',
      prediction: 'VARCHAR', confidence: 'DOUBLE', correct: 'BOOLEAN',
      quality_score: 'DOUBLE', flags: 'VARCHAR[]', approval: 'VARCHAR', step: 'BIGINT',
      tool: 'VARCHAR', input_hash: 'VARCHAR', output_chars: 'BIGINT',
      attributes: 'MAP(VARCHAR, VARCHAR)', schema_version: 'BIGINT'}})
) TO '{out}/events.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)
""")
con.execute(f"""
COPY (
  SELECT time_bucket(INTERVAL '$seconds seconds', timestamp) AS window_start,
    service, model, model_version, route, count(*) AS requests,
    count(*) FILTER (WHERE status <> 'ok') AS errors,
    quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS latency_quantiles,
    sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd,
    avg(confidence) AS mean_confidence, avg(CAST(correct AS DOUBLE)) AS accuracy
  FROM '{out}/events.parquet'
  GROUP BY ALL
) TO '{out}/metrics.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)
""")
print(con.execute(f"SELECT count(*) FROM '{out}/metrics.parquet'").fetchone()[0], "metric rows")
EOF

# Runs one side: wall seconds, CPU seconds and peak RSS (KB) on the last line of $work/$1.log.
measure() {
    local name=$1
    shift
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$work/$name.time" "$@" > "$work/$name.log" 2>&1
    end=$(date +%s.%N)
    read -r user sys rss < <(tail -1 "$work/$name.time")
    python3 -c "print(f'$name: {$end - $start:.2f} s wall, {$user + $sys:.2f} CPU-s, peak RSS {$rss / 1024:.0f} MB')
open('$work/$name.wall', 'w').write(str($end - $start))"
}

printf '[sink]\nwrite_events = false\n' > "$work/no-events.toml"
rm -rf "$work/iw-data" "$work/iw-data-no-events" "$work/duckdb-out"
measure inferwatch "$bin" run --source "file:$input" --data-dir "$work/iw-data" --window "$window"
measure duckdb python3 "$work/duckdb-job.py" "$input" "$work/duckdb-out"
measure inferwatch-no-events "$bin" run --source "file:$input" --data-dir "$work/iw-data-no-events" \
    --window "$window" --config "$work/no-events.toml"
python3 -c "
wall = lambda name: float(open(f'$work/{name}.wall').read())
iw, dd, bare = wall('inferwatch'), wall('duckdb'), wall('inferwatch-no-events')
print(f'wall ratio inferwatch / DuckDB: {iw / dd:.2f} (target at most 0.50)')
print(f'without the events table: {bare / dd:.2f}; the table takes {1 - bare / iw:.0%} of the wall time')"
