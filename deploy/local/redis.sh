#!/usr/bin/env bash
# redis-server on 127.0.0.1:$REDIS_PORT, no persistence (test data is disposable).
#   deploy/local/redis.sh start|stop|status|logs [-f|N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$STATE/redis"
PID_FILE="$DIR/redis.pid"
LOG_FILE="$DIR/redis.log"
ADDR="127.0.0.1:$REDIS_PORT"

pong() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

do_start() {
  need_cmd redis-server redis-server   # the Debian package also ships redis-cli
  need_cmd redis-cli redis-tools
  mkdir -p "$DIR"
  if pid_alive "$PID_FILE" redis-server && pong; then do_status; return 0; fi
  if ! pid_alive "$PID_FILE" redis-server && port_open "$REDIS_PORT"; then
    die "port $REDIS_PORT is taken by a process this script did not start"
  fi
  if ! pid_alive "$PID_FILE" redis-server; then
    rm -f "$PID_FILE"
    say "starting redis on $ADDR (log: $LOG_FILE)"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
      --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" --dir "$DIR" \
      --save '' --appendonly no \
      || { tail_log "$LOG_FILE"; die "redis-server failed to start"; }
  fi
  wait_until 20 pong || { tail_log "$LOG_FILE"; die "redis did not answer PING on $ADDR"; }
  do_status
}

do_stop() {
  stop_pid "$PID_FILE" redis-server redis
  status_line redis stopped "$ADDR"
}

do_status() {
  if pid_alive "$PID_FILE" redis-server && pong; then
    status_line redis running "$ADDR" "pid $(head -n1 "$PID_FILE"), $REDIS_URL"
  else
    status_line redis stopped "$ADDR"; return 1
  fi
}

usage_dispatch redis "$@"
