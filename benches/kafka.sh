#!/usr/bin/env bash
# End-to-end Kafka benchmark: produce generated events to a local Tansu broker, consume them
# with `inferwatch run --brokers`, report events/s for each side and the checkpoint overhead.
#   ./benches/kafka.sh [EVENTS] [PARTITIONS]      e.g. ./benches/kafka.sh 1000000 4
# Needs `tansu` on the PATH (./scripts/test.sh installs it). The consumer's figure includes
# about 5 s of --stop-when-idle at the end, which the script subtracts.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
partitions=${2:-4}
work=$(mktemp -d)
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
# The test build's feature set: a plain `cargo build` would rebuild every dependency.
cargo test --release --workspace --all-targets --no-run --quiet
bin=${CARGO_TARGET_DIR:-target}/release/inferwatch
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && exec tansu broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://broker.db) \
    > "$work/broker.log" 2>&1 &
broker=$!
sleep 2
tansu topic create --broker "tcp://127.0.0.1:$port" --partitions "$partitions" bench > /dev/null
for t in inference-dead-letter inference-metrics; do
    tansu topic create --broker "tcp://127.0.0.1:$port" --partitions 1 "$t" > /dev/null
done
start=$(date +%s.%N)
"$bin" generate --brokers "127.0.0.1:$port" --topic bench --count "$events" --rate 10000
end=$(date +%s.%N)
python3 -c "print(f'produce: {$events / ($end - $start):,.0f} events/s')"
start=$(date +%s.%N)
/usr/bin/time -f "consumer cpu %U user + %S sys s, peak RSS %M KB" \
    "$bin" run --brokers "127.0.0.1:$port" --topic bench --group bench --data-dir "$work/data" \
    --window 1m --stop-when-idle 5s
end=$(date +%s.%N)
python3 -c "print(f'consume: {$events / ($end - $start - 5):,.0f} events/s wall (idle tail subtracted)')"
"$bin" query --data-dir "$work/data" "SELECT count(*) AS events, count(DISTINCT event_id) AS distinct_ids FROM events"
