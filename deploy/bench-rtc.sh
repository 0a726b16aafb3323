#!/usr/bin/env bash
# WebRTC data-channel fan-out benchmark on loopback: N str0m peers (benches/rtc_load.rs) receive
# F frames/s of S bytes from one WebSocket publisher, through a private release fanhub. Matrix:
# 50 and 200 peers x 16 KiB and 64 KiB at 30 fps on a best-effort topic (frames on the
# `fanhub-lossy` channel), plus two runs on a reliable topic (50 and 200 peers, 16 KiB, `fanhub`
# channel).
# Each run gets a fresh server, so its RSS and CPU figures are its own. The peers run on the same
# machine as the server and compete with it for the cores (the last column shows how much).
# Prints a markdown table and writes it to target/bench-rtc.md. Bounded: each run is capped by
# `timeout`; about 4-6 minutes in all on 2 cores.
# Usage: bash deploy/bench-rtc.sh     (env: SECONDS_PER_RUN=10 FPS=30; PERF=1 records a perf
# profile of the server during the 200-peer 64 KiB run into target/bench-rtc.perf.txt;
# OUT=path for the table, default target/bench-rtc.md; DRIVERS=n sets webrtc.drivers, default 0
# = one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SECS=${SECONDS_PER_RUN:-10}
FPS=${FPS:-30}
RUN_CAP_SECS=${RUN_CAP_SECS:-150}
PERF=${PERF:-0}
DRIVERS=${DRIVERS:-0}   # webrtc.drivers (0 = one per core)

# BENCH_SERVER_BIN / BENCH_LOAD_BIN: measure other builds (e.g. a baseline) instead of this tree's.
if [ -z "${BENCH_SERVER_BIN:-}" ] || [ -z "${BENCH_LOAD_BIN:-}" ]; then
  cargo build --release --locked --bin fanhub --bench rtc_load -q
fi
RTC_LOAD=${BENCH_LOAD_BIN:-$(ls -t target/release/deps/rtc_load-* | grep -v '\.d$' | head -1)}
FANHUB=${BENCH_SERVER_BIN:-target/release/fanhub}

. deploy/bench-common.sh   # tmp, pids + cleanup, free_port, wait_port, bench_limits_toml

# Limits raised as in deploy/bench.sh. `video/>`: best-effort with a short queue (8 frames, a
# viewer wants the newest frame, not a backlog), no history. `reliable/>`: reliable, a slow
# peer is disconnected (slow_consumer) rather than silently losing frames.
{ bench_limits_toml; cat <<TOML
[[topics.declare]]
pattern = "video/>"
policy = { kind = "best_effort", queue_messages = 8, queue_bytes = 8388608, overflow = "drop_oldest" }
history = { max_messages = 0 }
[[topics.declare]]
pattern = "reliable/>"
policy = { kind = "reliable", queue_messages = 512, queue_bytes = 67108864, overflow = "disconnect" }
history = { max_messages = 1000, max_bytes = 134217728 }
[webrtc]
enabled = true
udp_listen = "127.0.0.1:0"
drivers = ${DRIVERS}
TOML
} > "$tmp/fanhub.toml"
TOKEN=$("$FANHUB" token --config "$tmp/fanhub.toml" --sub bench)

# Other work on this machine would distort the figures: before each run wait (at most
# IDLE_WAIT_SECS) until the CPUs are at most 15 % busy over 2 s; the stderr details of each run
# say how much CPU other processes took during it anyway.
IDLE_WAIT_SECS=${IDLE_WAIT_SECS:-30}
wait_idle() {
  local a b busy total
  for _ in $(seq $((IDLE_WAIT_SECS / 2))); do
    read -ra a < /proc/stat; sleep 2; read -ra b < /proc/stat
    busy=$(( b[1]+b[2]+b[3]+b[6]+b[7]+b[8] - a[1]-a[2]-a[3]-a[6]-a[7]-a[8] ))
    total=$(( busy + b[4]+b[5] - a[4]-a[5] ))
    [ "$total" -gt 0 ] && [ $((100 * busy / total)) -le 15 ] && return 0
  done
  echo "bench-rtc: warning: the machine stayed busy (other processes) for ${IDLE_WAIT_SECS} s; this run is disturbed" >&2
}

SPID=""
start_server() {
  PORT=$(free_port); ADMIN=$(free_port)
  "$FANHUB" serve --config "$tmp/fanhub.toml" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" \
    --log-level warn 2>"$tmp/fanhub.log" &
  SPID=$!; pids+=("$SPID")
  wait_port "$PORT"
}
stop_server() {
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
}

out=${OUT:-target/bench-rtc.md}
{
  echo "fanhub $(git rev-parse --short HEAD 2>/dev/null || echo '?') WebRTC data channels (str0m 0.25), loopback, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%F)."
  echo "Peers and publisher share the machine with the server. ${FPS} fps for ${SECS} s per run; loss = 1 - delivered / (frames published x peers);"
  echo "latency = peer receive time - the record's publish time; server CPU over the publish window (% = cores busy); RSS/peer = server VmRSS growth while the peers joined, divided by peers."
  echo
  echo "| run | peers | fps | frame | topic | delivered frames/s (of ideal) | MB/s | loss | p50 ms | p99 ms | server CPU (% of a core) | server RSS/peer KiB | load generator CPU |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$out"
details="$tmp/details.txt"
: > "$details"

run() {
  local label=$1 peers=$2 size=$3 policy=$4
  wait_idle
  start_server
  local errf="$tmp/run.err"
  : > "$errf"
  if [ "$PERF" = 1 ] && [ "$peers" = 200 ] && [ "$size" = 65536 ] && command -v perf >/dev/null; then
    ( for _ in $(seq 600); do grep -q publishing "$errf" 2>/dev/null && break; sleep 0.2; done
      sleep 1
      perf record -F 299 --call-graph dwarf,16384 -p "$SPID" -o "$tmp/perf.data" -- sleep 5 >/dev/null 2>&1 || true ) &
    pids+=("$!")
  fi
  if ! timeout "$RUN_CAP_SECS" "$RTC_LOAD" --url "http://127.0.0.1:$PORT" --token "$TOKEN" --server-pid "$SPID" \
      --label "$label" --peers "$peers" --fps "$FPS" --size "$size" --seconds "$SECS" --policy "$policy" \
      >>"$out" 2>"$errf"; then
    echo "| $label | $peers | $FPS | $((size / 1024)) KiB | $policy | run failed (see stderr) | | | | | | | |" >> "$out"
  fi
  cat "$errf" >&2
  tail -n 1 "$out"
  grep -h '^rtc_load' "$errf" >> "$details" || true
  if [ "$PERF" = 1 ] && [ -f "$tmp/perf.data" ]; then
    wait "${pids[-1]}" 2>/dev/null || true
    { echo "# server profile, 200 peers x 64 KiB: inclusive (children) then self time"
      perf report -i "$tmp/perf.data" --children --percent-limit 3 --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | grep -v '(inlined)' | head -60
      perf report -i "$tmp/perf.data" --no-children --percent-limit 1 --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
    } > target/bench-rtc.perf.txt || true
    rm -f "$tmp/perf.data"
  fi
  if grep -q 'ERROR\|panicked' "$tmp/fanhub.log"; then
    echo "server log:" >&2; grep 'ERROR\|panicked' "$tmp/fanhub.log" | tail -5 >&2
  fi
  stop_server
}

run "a: lossy" 50 16384 lossy
run "b: lossy" 50 65536 lossy
run "c: lossy" 200 16384 lossy
run "d: lossy" 200 65536 lossy
run "e: reliable" 50 16384 reliable
run "f: reliable" 200 16384 reliable

{ echo; echo '```'; cat "$details"; echo '```'; } >> "$out"
echo
cat "$out"
echo; echo "results in $out"
