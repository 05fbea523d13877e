#!/usr/bin/env bash
# HTTP gateway load: wrk posts to `inferwatch ingest` in front of a local Tansu broker (acks
# awaited before each reply), then to `inferwatch run --listen` (in process, no Kafka). Reports
# events/s, p50/p99 request latency and the gateway's peak RSS, for NDJSON batches of 1,000
# events and for single events, and an overload run against a small in-flight bound.
#   ./benches/gateway.sh [SECONDS] [CONNECTIONS]      e.g. ./benches/gateway.sh 20 32
# Needs `tansu` (./scripts/test.sh installs it) and `wrk` (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
conns=${2:-32}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
# The test build's feature set: a plain `cargo build` would rebuild every dependency.
cargo test --release --workspace --all-targets --no-run --quiet
bin=${CARGO_TARGET_DIR:-target}/release/inferwatch
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Bodies: 1,000 events of the generator's steady traffic as NDJSON, and one event.
"$bin" generate --count 1000 --rate 1000 --out "$work/batch.ndjson" > /dev/null
head -1 "$work/batch.ndjson" > "$work/one.json"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
local f = io.open(os.getenv("BODY"), "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = os.getenv("CTYPE")
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.2f %.2f %.3f\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
LUA

load() { # name url body content-type events-per-request
    local r
    r=$(BODY="$3" CTYPE="$4" wrk -t2 -c"$conns" -d"${secs}s" -s "$work/post.lua" "$2" | grep '^RESULT')
    python3 - "$1" "$5" $r <<'PY'
import sys
name, per, _, n, bad, p50, p99, secs = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
n, bad, secs = int(n), int(bad), float(secs)
print(f"{name}: {(n - bad) * per / secs:,.0f} events/s accepted ({(n - bad) / secs:,.0f} requests/s "
      f"answered 2xx, {bad / secs:,.0f}/s refused); latency p50 {p50} ms, p99 {p99} ms")
PY
}
peak() { awk '/VmHWM/ {printf "  gateway peak RSS %d MB\n", $2 / 1024}' "/proc/$1/status"; }

# Tansu's memory engine by default: its SQLite engine takes about 47 k events/s even from a
# plain producer, so it would measure the broker, not the gateway (ENGINE=sqlite://broker.db).
engine=${ENGINE:-memory://tansu/}
port=$(free_port)
(cd "$work" && exec tansu broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$engine") \
    > "$work/broker.log" 2>&1 &
pids+=($!)
sleep 2
tansu topic create --broker "tcp://127.0.0.1:$port" --partitions 4 bench > /dev/null
tansu topic create --broker "tcp://127.0.0.1:$port" --partitions 4 ceiling > /dev/null
start=$(date +%s.%N)
"$bin" generate --brokers "127.0.0.1:$port" --topic ceiling --count 300000 --rate 1000000 > /dev/null 2>&1
end=$(date +%s.%N)
python3 -c "print(f'== for scale: inferwatch generate produces {300000 / ($end - $start):,.0f} events/s to the same broker ($engine)')"
gw=$(free_port)
"$bin" ingest --brokers "127.0.0.1:$port" --topic bench --listen "127.0.0.1:$gw" 2> "$work/ingest.log" &
ingest=$!
pids+=($ingest)
sleep 2
echo "== inferwatch ingest -> Kafka, each reply after acks=all, $conns connections, ${secs}s each"
load "NDJSON batches of 1,000" "http://127.0.0.1:$gw/v1/events" "$work/batch.ndjson" application/x-ndjson 1000
load "single events" "http://127.0.0.1:$gw/v1/events" "$work/one.json" application/json 1
peak $ingest
kill -INT $ingest; wait $ingest || true

echo "== overload: max_in_flight_events = 5000, $((conns * 4)) connections"
printf '[gateway]\nmax_in_flight_events = 5000\n' > "$work/small.toml"
gw=$(free_port)
"$bin" ingest --brokers "127.0.0.1:$port" --topic bench --listen "127.0.0.1:$gw" \
    --config "$work/small.toml" 2> "$work/ingest2.log" &
ingest=$!
pids+=($ingest)
sleep 2
conns=$((conns * 4)) load "NDJSON batches of 1,000 (refused: 429)" \
    "http://127.0.0.1:$gw/v1/events" "$work/batch.ndjson" application/x-ndjson 1000
curl -s "http://127.0.0.1:$gw/metrics" | grep -E '^inferwatch_gateway_requests_total' | sed 's/^/  /'
peak $ingest
kill -INT $ingest; wait $ingest || true

echo "== inferwatch run --listen (in process, no Kafka; refused: 429 while the pipeline's queue is full)"
gw=$(free_port)
"$bin" run --listen "127.0.0.1:$gw" --data-dir "$work/data" --window 1m 2> "$work/run.log" &
run=$!
pids+=($run)
sleep 2
load "NDJSON batches of 1,000" "http://127.0.0.1:$gw/v1/events" "$work/batch.ndjson" application/x-ndjson 1000
peak $run
kill -INT $run; wait $run || true
"$bin" query --data-dir "$work/data" "SELECT count(*) AS events FROM events"
