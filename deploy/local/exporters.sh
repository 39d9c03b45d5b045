#!/usr/bin/env bash
# Debian's node exporter (1.5) and postgres exporter (0.11) on loopback, for the local Prometheus
# (prometheus.sh) to scrape: real clients of the gateway that nobody here wrote.
#   deploy/local/exporters.sh install|start|stop|status|logs [-f|N]
# The postgres exporter watches the local PostgreSQL (PG_DSN): stopping it (postgres.sh stop) turns
# its pg_up to 0 at the next scrape, which the bundled PostgresDown rule alerts on.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_BIN=/usr/bin/prometheus-node-exporter
PGX_BIN=/usr/bin/prometheus-postgres-exporter
DIR="$STATE/exporters"
NODE_PID="$DIR/node-exporter.pid"
PGX_PID="$DIR/postgres-exporter.pid"
NODE_LOG="$DIR/node-exporter.log"
PGX_LOG="$DIR/postgres-exporter.log"
NODE_ADDR="127.0.0.1:$NODE_EXPORTER_PORT"
PGX_ADDR="127.0.0.1:$PG_EXPORTER_PORT"
START_TIMEOUT="${EXPORTERS_START_TIMEOUT:-20}"

# The packages' postinst enables (and, outside containers, starts) their own services on :9100 and
# :9187; they are not ours to keep running. The node exporter also ships textfile-collector timers.
stop_debian_services() {
  command -v systemctl >/dev/null 2>&1 || return 0
  local unit
  for unit in prometheus-node-exporter prometheus-postgres-exporter \
    prometheus-node-exporter-apt.timer prometheus-node-exporter-smartmon.timer \
    prometheus-node-exporter-nvme.timer prometheus-node-exporter-ipmitool-sensor.timer \
    prometheus-node-exporter-mellanox-hca-temp.timer; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then systemctl stop "$unit" 2>/dev/null || true; fi
    systemctl disable "$unit" >/dev/null 2>&1 || true
  done
}

do_install() {
  if [ -x "$NODE_BIN" ] && [ -x "$PGX_BIN" ]; then return 0; fi
  apt_install prometheus-node-exporter prometheus-postgres-exporter
  [ -x "$NODE_BIN" ] || die "$NODE_BIN still missing after installing prometheus-node-exporter"
  [ -x "$PGX_BIN" ] || die "$PGX_BIN still missing after installing prometheus-postgres-exporter"
  stop_debian_services
}

ready() { http_ok "$1" /metrics; }

# The local PostgreSQL has no TLS; the exporter's driver would otherwise insist on it.
pg_exporter_dsn() {
  case "$PG_DSN" in
    *sslmode=*) echo "$PG_DSN" ;;
    *\?*) echo "$PG_DSN&sslmode=disable" ;;
    *) echo "$PG_DSN?sslmode=disable" ;;
  esac
}

# start_one NAME PIDFILE LOGFILE PORT MATCH CMD...: idempotent, as the other scripts' start
# (MATCH: what the running process's command line contains, for pid_alive).
start_one() {
  local name=$1 pidfile=$2 log=$3 port=$4 match=$5; shift 5
  if pid_alive "$pidfile" "$match"; then
    wait_until "$START_TIMEOUT" ready "$port" || { tail_log "$log"; die "$name not ready on 127.0.0.1:$port"; }
    return 0
  fi
  [ -f "$pidfile" ] && say "removing stale $name pid file (process $(head -n1 "$pidfile") is gone)"
  rm -f "$pidfile"
  port_open "$port" && die "port $port is taken by a process this script did not start"
  [ -f "$log" ] && mv -f "$log" "$log.prev"
  : >"$log"
  say "starting $name on 127.0.0.1:$port (log: $log)"
  # setsid + the child writing its own pid before exec: as kafka.sh does, for the same reasons.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" </dev/null >>"$log" 2>&1 &
  wait_until 5 test -s "$pidfile" || die "$name did not write its pid file"
  if ! wait_until "$START_TIMEOUT" ready "$port"; then
    tail_log "$log"; stop_pid "$pidfile" "$match" "$name"; die "$name did not become ready on 127.0.0.1:$port"
  fi
}

do_start() {
  do_install
  stop_debian_services
  mkdir -p "$DIR"
  # The collectors the bundled rules and the dashboards use, not the ~40 defaults: every series is
  # remote-written through the gateway into Kafka every scrape.
  start_one node-exporter "$NODE_PID" "$NODE_LOG" "$NODE_EXPORTER_PORT" "$NODE_BIN" \
    "$NODE_BIN" --web.listen-address="$NODE_ADDR" --collector.disable-defaults \
    --collector.cpu --collector.loadavg --collector.meminfo --collector.filesystem --collector.time
  # pg_settings (~300 series of server settings) left out for the same reason.
  start_one postgres-exporter "$PGX_PID" "$PGX_LOG" "$PG_EXPORTER_PORT" "$PGX_BIN" \
    env DATA_SOURCE_NAME="$(pg_exporter_dsn)" \
    "$PGX_BIN" --web.listen-address="$PGX_ADDR" --disable-settings-metrics
  do_status
}

do_stop() {
  stop_pid "$NODE_PID" "$NODE_BIN" node-exporter
  stop_pid "$PGX_PID" "$PGX_BIN" postgres-exporter
  status_line node-exp stopped "$NODE_ADDR"
  status_line pg-exp stopped "$PGX_ADDR"
}

do_status() {
  local rc=0
  if pid_alive "$NODE_PID" "$NODE_BIN" && ready "$NODE_EXPORTER_PORT"; then
    status_line node-exp running "$NODE_ADDR" "pid $(head -n1 "$NODE_PID"), $("$NODE_BIN" --version 2>&1 | head -n1)"
  else
    status_line node-exp stopped "$NODE_ADDR"; rc=1
  fi
  if pid_alive "$PGX_PID" "$PGX_BIN" && ready "$PG_EXPORTER_PORT"; then
    status_line pg-exp running "$PGX_ADDR" "pid $(head -n1 "$PGX_PID"), watching 127.0.0.1:$PG_PORT"
  else
    status_line pg-exp stopped "$PGX_ADDR"; rc=1
  fi
  return "$rc"
}

do_logs() {
  local f
  for f in "$NODE_LOG" "$PGX_LOG"; do
    if [ "${1:-}" = "-f" ]; then continue; fi
    echo "----- $f -----"; tail -n "${1:-100}" "$f" 2>/dev/null || true
  done
  if [ "${1:-}" = "-f" ]; then tail -n 100 -F "$NODE_LOG" "$PGX_LOG"; fi
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  logs) do_logs "${2:-}" ;;
  *) echo "usage: $0 install|start|stop|status|logs [-f|N]   (node and postgres exporters)" >&2; exit 2 ;;
esac
