#!/usr/bin/env bash
# What consuming an upstream costs beside publishing over a WebSocket, for the same fan-out
# (1000 WebSocket subscribers of `bench/load`, 256-byte messages, 10 000 messages, window 256):
# `ws` publishes over the hub's WebSocket; `redis` appends to a Redis stream (XADD, pipelined
# up to 64) and `nats` publishes to a JetStream stream (up to 64 acknowledgements awaited
# together), which the hub consumes as sources into the same topic. Alternating, RUNS times
# each, on one hub and one private redis-server. Latency is publish-to-subscriber (`ws`) and
# produce-to-subscriber (`redis`: through Redis, the source's fetch, lane and publish); hub CPU
# per record is the server CPU divided by the messages. Then the latency at a steady rate (PACED
# messages per second, 5 s): how long a record takes from the producer to every subscriber when
# nothing queues. Output: target/bench-sources.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUNS=${RUNS:-3}
N=${N:-10000}
PACED=${PACED:-500}

cargo build --release --locked --bin fanhub --bench loadgen -q
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

FP=$(free_port); FA=$(free_port)
{ bench_limits_toml; cat <<TOML
[[sources]]
name = "bench"
kind = "redis"
url = "redis://127.0.0.1:$RP"
[sources.consumer]
max_poll_records = 512
fetch_max_wait_ms = 100
[[sources.mappings]]
upstream = "bench"
topic = "bench/load"
headers = false
max_buffered_messages = 4096
[[sources]]
name = "bench-nats"
kind = "nats"
url = "nats://127.0.0.1:$NP"
stream = "BENCH"
retry_initial_ms = 100
retry_max_ms = 500
[sources.consumer]
max_poll_records = 512
fetch_max_wait_ms = 100
[[sources.mappings]]
upstream = "bench.load"
topic = "bench/load"
headers = false
max_buffered_messages = 4096
TOML
} > "$tmp/fanhub.toml"
target/release/fanhub serve --config "$tmp/fanhub.toml" --listen "127.0.0.1:$FP" --admin-listen "127.0.0.1:$FA" --log-level warn 2>"$tmp/fanhub.log" &
FPID=$!; pids+=("$FPID")
wait_port "$FP"
TOKEN=$(target/release/fanhub token --config "$tmp/fanhub.toml" --sub bench)

# Warm-up: creates the JetStream stream and waits until the hub's NATS consumer delivers.
"$LOADGEN" --label warm-up --target fanhub --url "ws://127.0.0.1:$FP/ws" --token "$TOKEN" --subs 1 --messages 100 \
  --upstream "nats://127.0.0.1:$NP" >/dev/null

out=target/bench-sources.md
echo "fanhub $(git rev-parse --short HEAD 2>/dev/null || echo '?') sources, $(nproc) cores, $(date -u +%F)" > "$out"
for run in $(seq "$RUNS"); do
  for via in ws redis nats; do
    upstream=()
    [ "$via" = redis ] && upstream=(--upstream "redis://127.0.0.1:$RP/")
    [ "$via" = nats ] && upstream=(--upstream "nats://127.0.0.1:$NP")
    "$LOADGEN" --label "$via $run" --target fanhub --url "ws://127.0.0.1:$FP/ws" --token "$TOKEN" \
      --server-pid "$FPID" --subs 1000 --size 256 --messages "$N" --window 256 \
      "${upstream[@]}" | tee -a "$out"
  done
done
for run in $(seq "$RUNS"); do
  for via in ws redis nats; do
    upstream=()
    [ "$via" = redis ] && upstream=(--upstream "redis://127.0.0.1:$RP/")
    [ "$via" = nats ] && upstream=(--upstream "nats://127.0.0.1:$NP")
    "$LOADGEN" --label "$via paced $run" --target fanhub --url "ws://127.0.0.1:$FP/ws" --token "$TOKEN" \
      --server-pid "$FPID" --subs 1000 --size 256 --messages $((PACED * 5)) --rate "$PACED" \
      "${upstream[@]}" | tee -a "$out"
  done
done
echo "results in $out"
