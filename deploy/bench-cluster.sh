#!/usr/bin/env bash
# Cluster fan-out benchmark: 1 publisher, S subscribers on one topic, delivered through Redis by
# 2 and by 3 `fanhub serve` nodes (subscribers spread round-robin over the nodes, the publisher
# on the first), beside the single-node in-memory figure. Same workload as "a: throughput" in
# deploy/bench.sh. Starts its own Redis on a free loopback port (never the system one), fresh for
# each cluster setup. Prints a markdown table and writes it to target/bench-cluster.md.
# Bounded: about 5 minutes at worst on 2 cores (each run is capped by `timeout`).
# Usage: bash deploy/bench-cluster.sh     (env: SUBS=1000 MESSAGES=5000 SIZE=256 WINDOW=256)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SUBS=${SUBS:-1000}
MESSAGES=${MESSAGES:-5000}
SIZE=${SIZE:-256}
WINDOW=${WINDOW:-256}
# Stall bound of one run (the loadgen stops publishing and reports the loss after this long
# without progress), and the hard cap of one loadgen process.
STALL_SECS=${STALL_SECS:-30}
RUN_CAP_SECS=${RUN_CAP_SECS:-80}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
command -v "$REDIS_SERVER" >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

cargo build --release --locked --bin fanhub --bench loadgen -q
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
FANHUB=target/release/fanhub

. deploy/bench-common.sh   # tmp, pids + cleanup, free_port, wait_port, bench_limits_toml
wait_ready() {
  for _ in $(seq 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "node on port $1 never became ready (GET /readyz)" >&2; curl -s "http://127.0.0.1:$1/readyz" >&2 || true; exit 1
}
# Kills the processes given and forgets them.
stop() {
  for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  local keep=() p q
  for p in "${pids[@]}"; do for q in "$@"; do [ "$p" = "$q" ] && continue 2; done; keep+=("$p"); done
  pids=("${keep[@]}")
}

{ bench_limits_toml; cat <<TOML
[topics.default_history]
max_messages = 1000
TOML
} > "$tmp/fanhub.toml"
TOKEN=$("$FANHUB" token --config "$tmp/fanhub.toml" --sub bench)

out=target/bench-cluster.md
raw="$tmp/rows.md"
notes="$tmp/notes.md"
: > "$raw"; : > "$notes"
rows=()

# start_nodes N [REDIS_PORT]: starts N nodes (with Redis when a port is given); sets NODE_PIDS and URLS.
start_nodes() {
  local n=$1 redis=${2:-} i p a
  NODE_PIDS=(); URLS=()
  for i in $(seq "$n"); do
    p=$(free_port); a=$(free_port)
    local extra=()
    [ -n "$redis" ] && extra=(--redis-url "redis://127.0.0.1:$redis/" --node-id "bench-$i")
    "$FANHUB" serve --config "$tmp/fanhub.toml" --listen "127.0.0.1:$p" --admin-listen "127.0.0.1:$a" \
      --log-level warn "${extra[@]}" 2>"$tmp/node-$n-$i.log" &
    NODE_PIDS+=("$!"); pids+=("$!")
    URLS+=("ws://127.0.0.1:$p/ws")
    wait_port "$p"
  done
  for u in "${URLS[@]}"; do p=${u#ws://127.0.0.1:}; wait_ready "${p%/ws}"; done
}

# run SETUP N_NODES [REDIS_PID]: one loadgen run over the started nodes; appends a table row.
run() {
  local setup=$1 nodes=$2 redis_pid=${3:-} rc=0 line
  local urls pidlist extra=()
  urls=$(IFS=,; echo "${URLS[*]}"); pidlist=$(IFS=,; echo "${NODE_PIDS[*]}")
  [ -n "$redis_pid" ] && extra=(--redis-pid "$redis_pid")
  echo "== $setup: $SUBS subscribers over $nodes node(s), $MESSAGES x $SIZE B, window $WINDOW" >&2
  line=$(timeout "$RUN_CAP_SECS" "$LOADGEN" --label "$setup" --target fanhub --url "$urls" --token "$TOKEN" \
    --server-pid "$pidlist" "${extra[@]}" --subs "$SUBS" --size "$SIZE" --messages "$MESSAGES" \
    --window "$WINDOW" --timeout-secs "$STALL_SECS" 2>"$tmp/loadgen.err") || rc=$?
  grep -v '^$' "$tmp/loadgen.err" | grep -v 'backtrace' >&2 || true
  # The loadgen's loss diagnostics (and any panic message) go into the results file too.
  grep -E '^loadgen:|panicked' "$tmp/loadgen.err" | sed "s/^/- $setup: /" >> "$notes" || true
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    echo "loadgen failed (exit $rc)" >&2
    rows+=("| $setup | failed (loadgen exit $rc$([ "$rc" = 124 ] && echo ', timed out')) | | | | | | | | |")
  else
    echo "$line" | tee -a "$raw" >&2
    # Loadgen cells: 2 label, 3 target, 4 workload, 5 deliveries/s, 6 per server-CPU-s, 7 p50,
    # 8 p99, 9 p999, 10 loss, 11 server CPU, 12 redis CPU.
    rows+=("$(echo "$line" | awk -F'|' -v expected="$((SUBS * MESSAGES))" '
      function first(s,  w, i, n) { n = split(s, w, " "); for (i = 1; i <= n; i++) if (w[i] ~ /^-?[0-9.]+$/) return w[i]; return "" }
      {
        label = $2; gsub(/^ +| +$/, "", label)
        scpu = first($11); rcpu = first($12); loss = first($10)
        recv = expected - loss
        per = (scpu > 0) ? sprintf("%.0f", recv / scpu) : "n/a"
        tot = scpu + rcpu
        perall = (tot > 0) ? sprintf("%.0f", recv / tot) : "n/a"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", label, first($5), scpu, rcpu, per, perall, first($7), first($8), first($9), loss
      }')")
  fi
  if [ "$rc" -ne 0 ] || grep -q 'missing\|stalled' "$tmp/loadgen.err"; then
    for f in "$tmp"/node-"$nodes"-*.log; do echo "-- warnings of $(basename "$f")" >&2; grep -E "WARN|ERROR" "$f" | tail -5 >&2 || true; done
  fi
}

# 1. One node, in-memory broker.
start_nodes 1
run "1 node memory" 1
stop "${NODE_PIDS[@]}"

# 2. and 3. Two and three nodes through a fresh private Redis each.
for n in 2 3; do
  RP=$(free_port)
  "$REDIS_SERVER" --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --loglevel warning >"$tmp/redis-$n.log" 2>&1 &
  RPID=$!; pids+=("$RPID")
  wait_port "$RP"
  start_nodes "$n" "$RP"
  run "$n nodes redis" "$n" "$RPID"
  stop "${NODE_PIDS[@]}" "$RPID"
done

{
  echo "fanhub $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo '+dirty'), redis $("$REDIS_SERVER" --version | awk '{print $3}' | sed 's/^v=//'), $(nproc) cores, $(date -u +%F)."
  echo "1 publisher (on the first node), S=$SUBS subscribers round-robin over the nodes, P=$SIZE B, N=$MESSAGES messages, window $WINDOW; load generator on the same machine."
  echo
  echo "| setup | deliveries/s | server CPU s (sum) | Redis CPU s | deliveries per server-CPU-s | per (server+Redis)-CPU-s | p50 ms | p99 ms | p999 ms | loss |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  if [ -s "$notes" ]; then echo "Problems:"; echo; cat "$notes"; echo; fi
  echo "Loadgen rows:"
  echo
  cat "$raw"
} > "$out"
echo
cat "$out"
echo; echo "results in $out"
