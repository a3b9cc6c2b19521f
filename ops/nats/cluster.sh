#!/usr/bin/env bash
# Start, stop or inspect the 3-node NATS JetStream cluster of ops/nats/cluster/ on loopback
# (client ports 4222-4224, cluster ports 6222-6224, monitoring 8222-8224 by default).
#
#   ops/nats/cluster.sh start     # idempotent: starts the nodes that are not running
#   ops/nats/cluster.sh status
#   ops/nats/cluster.sh stop
#
# Environment:
#   NATS_BASE               state directory (default ./nats-data): nN/ (JetStream store),
#                           nN.log, nN.pid
#   NATS_CLIENT_PORT_BASE   client port of n1 (default 4222); n2 and n3 use the next two
#   NATS_CLUSTER_PORT_BASE  route port of n1 (default 6222); likewise
#   NATS_HTTP_PORT_BASE     monitoring port of n1 (default 8222); likewise
#   NATS_START_TIMEOUT      seconds `start` waits for the cluster (default 60)
#   NATS_SERVER_BIN         the nats-server binary (else nats-server on PATH, /usr/sbin)
# Give `stop` and `status` the same ports and base as `start`: a second cluster on this
# machine is e.g. NATS_BASE=./nats-b NATS_CLIENT_PORT_BASE=5222 NATS_CLUSTER_PORT_BASE=7222
# NATS_HTTP_PORT_BASE=9222 ops/nats/cluster.sh start.
#
# Each node gets its ports as NATS_CLIENT_PORT, NATS_CLUSTER_PORT, NATS_HTTP_PORT and
# NATS_ROUTES in its environment, which cluster/nN.conf reads. `start` returns once every
# node accepts connections and a JetStream meta leader is elected.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${NATS_BASE:-./nats-data}"
TIMEOUT="${NATS_START_TIMEOUT:-60}"
NODES=(n1 n2 n3)

bin() {
  if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"
  elif command -v nats-server >/dev/null 2>&1; then command -v nats-server
  elif [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server
  else echo "nats-server not found (apt-get install nats-server)" >&2; exit 1
  fi
}

CLIENT_BASE="${NATS_CLIENT_PORT_BASE:-4222}"
CLUSTER_BASE="${NATS_CLUSTER_PORT_BASE:-6222}"
HTTP_BASE="${NATS_HTTP_PORT_BASE:-8222}"
for v in "$CLIENT_BASE" "$CLUSTER_BASE" "$HTTP_BASE"; do
  case "$v" in
    '' | *[!0-9]*) echo "port bases must be numbers, got '$v'" >&2; exit 2 ;;
  esac
  if [ "$v" -lt 1 ] || [ "$v" -gt 65533 ]; then
    echo "port base $v out of range (1-65533)" >&2; exit 2
  fi
done

idx() { echo "${1#n}"; }
client_port() { echo $((CLIENT_BASE - 1 + $(idx "$1"))); }
cluster_port() { echo $((CLUSTER_BASE - 1 + $(idx "$1"))); }
http_port() { echo $((HTTP_BASE - 1 + $(idx "$1"))); }

# The routes of node $1: the cluster ports of the two others, as a config array.
routes() {
  local out="" m
  for m in "${NODES[@]}"; do
    [ "$m" = "$1" ] && continue
    out="${out:+$out, }nats-route://127.0.0.1:$(cluster_port "$m")"
  done
  echo "[$out]"
}

# The pid of a running node, or nothing.
pid_of() {
  local f="$BASE/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q nats-server "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

# True when the node answers on its monitoring port.
healthy() { curl -fsS "http://127.0.0.1:$(http_port "$1")/varz" >/dev/null 2>&1; }

# The JetStream meta leader as seen by a node (empty if none yet).
meta_leader() {
  curl -fsS "http://127.0.0.1:$(http_port "$1")/jsz" 2>/dev/null |
    tr -d ' \n' | grep -o '"meta_cluster":{[^}]*' | grep -o '"leader":"[^"]*"' | cut -d'"' -f4 || true
}

start() {
  local nats; nats="$(bin)"
  declare -A pids=()
  mkdir -p "$BASE"
  for n in "${NODES[@]}"; do
    if [ -n "$(pid_of "$n")" ]; then
      echo "$n already running (pid $(pid_of "$n"))"
      continue
    fi
    mkdir -p "$BASE/$n"
    # The store, log and pid file come from the command line and the ports from the
    # environment (the conf reads $NATS_*_PORT), so all of them are configurable.
    NATS_CLIENT_PORT="$(client_port "$n")" NATS_CLUSTER_PORT="$(cluster_port "$n")" \
      NATS_HTTP_PORT="$(http_port "$n")" NATS_ROUTES="$(routes "$n")" \
      "$nats" -c "$HERE/cluster/$n.conf" -sd "$BASE/$n" -l "$BASE/$n.log" -P "$BASE/$n.pid" \
      </dev/null >>"$BASE/$n.out" 2>&1 &
    pids[$n]=$!
    echo "$n started (pid $!, client port $(client_port "$n"))"
  done
  local deadline=$((SECONDS + TIMEOUT))
  for n in "${NODES[@]}"; do
    until healthy "$n"; do
      if [ -n "${pids[$n]:-}" ] && ! kill -0 "${pids[$n]}" 2>/dev/null; then
        echo "$n exited:" >&2; tail -n 5 "$BASE/$n.out" "$BASE/$n.log" >&2 2>/dev/null || true; exit 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "$n does not answer after ${TIMEOUT}s; see $BASE/$n.log" >&2; exit 1
      fi
      sleep 0.2
    done
  done
  local leader=""
  until leader="$(meta_leader n1)"; [ -n "$leader" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "no JetStream meta leader after ${TIMEOUT}s; see $BASE/n*.log" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "cluster up: JetStream meta leader $leader"
  echo "  stratus serve --nats nats://127.0.0.1:$(client_port n1) --nats-replicas 3"
}

stop() {
  local any=0
  for n in "${NODES[@]}"; do
    local pid; pid="$(pid_of "$n")"
    if [ -z "$pid" ]; then
      echo "$n not running"
      rm -f "$BASE/$n.pid"
      continue
    fi
    any=1
    kill "$pid"  # SIGTERM: nats-server shuts down cleanly (flushes, leaves the cluster)
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$n did not stop in 10s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$BASE/$n.pid"
    echo "$n stopped"
  done
  [ "$any" = 1 ] || true
}

status() {
  local up=0
  for n in "${NODES[@]}"; do
    local pid; pid="$(pid_of "$n")"
    if [ -n "$pid" ] && healthy "$n"; then
      echo "$n running (pid $pid, nats://127.0.0.1:$(client_port "$n"))"
      up=$((up + 1))
    elif [ -n "$pid" ]; then
      echo "$n starting or unhealthy (pid $pid)"
    else
      echo "$n stopped"
    fi
  done
  if [ "$up" -gt 0 ]; then
    local leader=""
    for n in "${NODES[@]}"; do
      [ -n "$(pid_of "$n")" ] && leader="$(meta_leader "$n")" && [ -n "$leader" ] && break
    done
    echo "JetStream meta leader: ${leader:-none}"
  fi
  [ "$up" -eq "${#NODES[@]}" ]
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
