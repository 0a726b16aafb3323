#!/usr/bin/env bash
# What consuming an upstream costs beside publishing over a WebSocket, for the same fan-out
# (1000 WebSocket subscribers of `bench/load`, 256-byte messages, 10 000 messages, window 256):
# `ws` publishes over the hub's WebSocket; the others produce upstream, up to 64 at a time,
# into what the hub consumes as a source into the same topic: `redis` XADDs to a Redis stream
# (pipelined), `nats` publishes to a JetStream stream (acknowledgements awaited together),
# `postgres` INSERTs outbox rows (one statement per batch, in a scratch database of PG_URL's
# server), `kafka` produces to a topic of a tansu broker (when `tansu` is installed; the hub and
# the load generator are then built with the `kafka` feature). Alternating, RUNS times each, on
# one hub and private redis-server, nats-server and tansu. Latency is publish-to-subscriber
# (`ws`) and produce-to-subscriber (through the upstream, the source's fetch, lane and publish);
# hub CPU per record is the server CPU divided by the messages. Then the latency at a steady
# rate (PACED messages per second, 5 s, each produced alone): how long a record takes from the
# producer to every subscriber when nothing queues. Output: target/bench-sources.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUNS=${RUNS:-3}
N=${N:-10000}
PACED=${PACED:-500}
FETCH_WAIT_MS=${FETCH_WAIT_MS:-100}   # every source's fetch_max_wait_ms
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
KAFKA=$(command -v tansu >/dev/null && echo kafka || true)
VIAS=${VIAS:-ws redis nats postgres $KAFKA}   # which publish paths to measure, in this order

features=()
case " $VIAS " in *" kafka "*) features=(--features kafka) ;; *) KAFKA= ;; esac
cargo build --release --locked --bin fanhub --bench loadgen -q "${features[@]}"
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)

. deploy/bench-common.sh   # tmp, pids + cleanup, free_port, wait_port, bench_limits_toml

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --logfile "$tmp/redis.log" --daemonize no &
RPID=$!; pids+=("$RPID")
wait_port "$RP"
NP=$(free_port)
nats-server -js -a 127.0.0.1 -p "$NP" -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
NPID=$!; pids+=("$NPID")
wait_port "$NP"
# A scratch database, dropped on exit after the hub is gone.
DB=fanhub_bench_$$
PG_DB_URL="${PG_URL%/*}/$DB"
psql -q "$PG_URL" -c "CREATE DATABASE $DB"
trap 'cleanup; psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true' EXIT
KP=$(free_port)
if [ -n "$KAFKA" ]; then
  mkdir -p "$tmp/tansu"
  (cd "$tmp/tansu" && exec tansu broker --listener-url "tcp://127.0.0.1:$KP" --advertised-listener-url "tcp://127.0.0.1:$KP" \
    --storage-engine sqlite://tansu.db --silent) >"$tmp/tansu.log" 2>&1 &
  pids+=("$!")
  wait_port "$KP"
fi
upstream_of() {
  case "$1" in
    redis) echo "redis://127.0.0.1:$RP/" ;;
    nats) echo "nats://127.0.0.1:$NP" ;;
    postgres) echo "$PG_DB_URL" ;;
    kafka) echo "kafka://127.0.0.1:$KP" ;;
  esac
}

FP=$(free_port); FA=$(free_port)
source_toml() {  # name kind url [extra source keys]
  cat <<TOML
[[sources]]
name = "$1"
kind = "$2"
url = "$3"
retry_initial_ms = 100
retry_max_ms = 500
$4
[sources.consumer]
max_poll_records = 512
fetch_max_wait_ms = $FETCH_WAIT_MS
[[sources.mappings]]
upstream = "$5"
topic = "bench/load"
headers = false
max_buffered_messages = 4096
TOML
}
{
  bench_limits_toml
  source_toml bench redis "$(upstream_of redis)" "" bench
  source_toml bench-nats nats "$(upstream_of nats)" 'stream = "BENCH"' bench.load
  source_toml bench-pg postgres "$PG_DB_URL" 'table = "fanhub_bench_outbox"
channel = "fanhub_bench_outbox"' bench.load
  [ -n "$KAFKA" ] && source_toml bench-kafka kafka "$(upstream_of kafka)" "" bench.load
} > "$tmp/fanhub.toml"

# The JetStream stream, the outbox table and the Kafka topic exist before the hub starts.
for via in nats postgres $KAFKA; do
  "$LOADGEN" --prepare-upstream --upstream "$(upstream_of "$via")"
done
target/release/fanhub serve --config "$tmp/fanhub.toml" --listen "127.0.0.1:$FP" --admin-listen "127.0.0.1:$FA" --log-level warn 2>"$tmp/fanhub.log" &
FPID=$!; pids+=("$FPID")
wait_port "$FP"
TOKEN=$(target/release/fanhub token --config "$tmp/fanhub.toml" --sub bench)
# Warm-up: waits until each source delivers.
for via in redis nats postgres $KAFKA; do
  "$LOADGEN" --label warm-up --target fanhub --url "ws://127.0.0.1:$FP/ws" --token "$TOKEN" --subs 1 --messages 100 \
    --upstream "$(upstream_of "$via")" >/dev/null
done

out=target/bench-sources.md
echo "fanhub $(git rev-parse --short HEAD 2>/dev/null || echo '?') sources, $(nproc) cores, $(date -u +%F)" > "$out"
for run in $(seq "$RUNS"); do
  for via in $VIAS; do
    upstream=()
    [ "$via" = ws ] || upstream=(--upstream "$(upstream_of "$via")")
    "$LOADGEN" --label "$via $run" --target fanhub --url "ws://127.0.0.1:$FP/ws" --token "$TOKEN" \
      --server-pid "$FPID" --subs 1000 --size 256 --messages "$N" --window 256 \
      "${upstream[@]}" | tee -a "$out"
  done
done
for run in $(seq "$RUNS"); do
  for via in $VIAS; do
    upstream=()
    [ "$via" = ws ] || upstream=(--upstream "$(upstream_of "$via")")
    "$LOADGEN" --label "$via paced $run" --target fanhub --url "ws://127.0.0.1:$FP/ws" --token "$TOKEN" \
      --server-pid "$FPID" --subs 1000 --size 256 --messages $((PACED * 5)) --rate "$PACED" \
      "${upstream[@]}" | tee -a "$out"
  done
done
echo "results in $out"
