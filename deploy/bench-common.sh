# Sourced by deploy/bench*.sh (not run on its own): a scratch directory removed on exit, with
# every process whose pid is in `pids` killed first; free loopback ports; waiting for a TCP
# listener; and the [limits] / default policy every benchmark config starts with (raised so a
# run measures fan-out, not the abuse limits).
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

bench_limits_toml() {
  cat <<'TOML'
[demo]
enabled = false
[limits]
max_connections = 200000
max_connections_per_user = 200000
max_connections_per_ip = 200000
publish_rate_per_second = 10000000
publish_burst = 10000000
[topics.default_policy]
kind = "best_effort"
queue_messages = 4096
queue_bytes = 67108864
TOML
}
