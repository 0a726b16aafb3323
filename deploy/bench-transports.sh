#!/usr/bin/env bash
# What each transport costs the hub for the same fan-out (1000 subscribers, 256-byte messages,
# 10 000 messages, window 256, published over a WebSocket): subscribers on WebSocket (`--client
# raw`), server-sent events (`sse`) and the raw TCP transport (`tcp`), alternating, RUNS times
# each, on one fresh hub. Compare deliveries per server-CPU-second. Then connects per
# server-CPU-second: 5000 connections opened, authenticated and subscribed per transport (TCP:
# version byte and Token datagram; WebSocket: upgrade and connect; SSE: one GET). Output:
# target/bench-transports.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUNS=${RUNS:-3}

cargo build --release --locked --bin fanhub --bench loadgen -q
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)

. deploy/bench-common.sh   # tmp, pids + cleanup, free_port, wait_port, bench_limits_toml

FP=$(free_port); FA=$(free_port); FT=$(free_port)
{ bench_limits_toml; printf '[tcp]\nlisten = "127.0.0.1:%s"\n' "$FT"; } > "$tmp/fanhub.toml"
target/release/fanhub serve --config "$tmp/fanhub.toml" --listen "127.0.0.1:$FP" --admin-listen "127.0.0.1:$FA" --log-level warn 2>"$tmp/fanhub.log" &
FPID=$!; pids+=("$FPID")
wait_port "$FP"; wait_port "$FT"
TOKEN=$(target/release/fanhub token --config "$tmp/fanhub.toml" --sub bench)

out=target/bench-transports.md
echo "fanhub $(git rev-parse --short HEAD 2>/dev/null || echo '?') transports, $(nproc) cores, $(date -u +%F)" > "$out"
for run in $(seq "$RUNS"); do
  for client in raw sse tcp; do
    "$LOADGEN" --label "$client $run" --client "$client" --target fanhub --url "ws://127.0.0.1:$FP/ws" \
      --tcp "127.0.0.1:$FT" --token "$TOKEN" --server-pid "$FPID" --subs 1000 --size 256 --messages 10000 \
      --window 256 | tee -a "$out"
  done
done
# Connects: open, authenticate and subscribe 5000 connections per transport (on a fresh hub
# each, so every run starts from the same state), then hold them idle.
for run in $(seq "$RUNS"); do
  for client in raw sse tcp; do
    P2=$(free_port); A2=$(free_port); T2=$(free_port)
    { bench_limits_toml; printf '[tcp]\nlisten = "127.0.0.1:%s"\n' "$T2"; } > "$tmp/connects.toml"
    target/release/fanhub serve --config "$tmp/connects.toml" --listen "127.0.0.1:$P2" --admin-listen "127.0.0.1:$A2" --log-level warn 2>>"$tmp/fanhub.log" &
    CPID=$!; pids+=("$CPID")
    wait_port "$P2"; wait_port "$T2"
    "$LOADGEN" --idle --label "connects $client $run" --client "$client" --target fanhub --url "ws://127.0.0.1:$P2/ws" \
      --tcp "127.0.0.1:$T2" --token "$TOKEN" --server-pid "$CPID" --subs 5000 --sources 4 | tee -a "$out"
    kill "$CPID"; wait "$CPID" 2>/dev/null || true
  done
done
echo "results in $out"
