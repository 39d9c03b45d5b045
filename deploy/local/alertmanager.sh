#!/usr/bin/env bash
# Alertmanager from Debian's prometheus-alertmanager package (it also ships amtool, which the
# routing tests use for `amtool check-config`).
#   deploy/local/alertmanager.sh install|start|stop|status|logs [-f|N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --------------------------------------------------------------------------- install
# Installs the package when amtool or the alertmanager binary is missing; never starts Debian's
# own service (policy-rc.d would be needed to stop it on a plain machine; we run our own
# instance on loopback below, so only the binaries matter).
AM_BIN="$(command -v prometheus-alertmanager || echo /usr/bin/prometheus-alertmanager)"

do_install() {
  if command -v amtool >/dev/null 2>&1 && [ -x "$AM_BIN" ]; then return 0; fi
  apt_install prometheus-alertmanager
  command -v amtool >/dev/null 2>&1 || die "amtool still missing after installing prometheus-alertmanager"
  AM_BIN="$(command -v prometheus-alertmanager || echo /usr/bin/prometheus-alertmanager)"
  # Debian starts its own alertmanager on :9093 after install; that is not ours to keep running.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then
    systemctl stop prometheus-alertmanager 2>/dev/null || true
  fi
}

# --------------------------------------------------------------------------- start/stop/status
# Our own instance on 127.0.0.1:$ALERTMANAGER_PORT: no gossip (--cluster.listen-address=), its own
# storage under $GDS_STATE_DIR, and a config written at every start whose single route sends every
# alert, grouped by alertname, to a webhook receiver the integration tests listen on
# (127.0.0.1:$ALERTMANAGER_WEBHOOK_PORT). Short group_wait/group_interval keep the tests quick.
DIR="$STATE/alertmanager"
DATA="$DIR/data"
CONFIG="$DIR/alertmanager.yml"
PID_FILE="$DIR/alertmanager.pid"
LOG_FILE="$DIR/alertmanager.log"
ADDR="127.0.0.1:$ALERTMANAGER_PORT"
START_TIMEOUT="${ALERTMANAGER_START_TIMEOUT:-30}"
MATCH=prometheus-alertmanager   # pid_alive pattern: the Debian binary's name

write_config() {
  # Rewritten on every start so that a changed ALERTMANAGER_WEBHOOK_PORT takes effect.
  cat >"$CONFIG" <<YAML
# Written by deploy/local/alertmanager.sh at every start; edits are lost.
global:
  resolve_timeout: 1m
route:
  receiver: test-webhook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: test-webhook
    webhook_configs:
      - url: http://127.0.0.1:$ALERTMANAGER_WEBHOOK_PORT/
        send_resolved: true
YAML
  amtool check-config "$CONFIG" >"$DIR/check-config.log" 2>&1 \
    || { tail_log "$DIR/check-config.log"; die "amtool check-config rejected $CONFIG"; }
}

ready() { http_ok "$ALERTMANAGER_PORT" /-/ready; }
alive_and_ready() {
  pid_alive "$PID_FILE" "$MATCH" || { tail_log "$LOG_FILE"; die "alertmanager exited during startup"; }
  ready
}

do_start() {
  do_install
  mkdir -p "$DIR" "$DATA"
  if pid_alive "$PID_FILE" "$MATCH"; then
    wait_until "$START_TIMEOUT" alive_and_ready || { tail_log "$LOG_FILE"; die "alertmanager not ready on $ADDR"; }
    do_status; return 0
  fi
  [ -f "$PID_FILE" ] && say "removing stale alertmanager pid file (process $(head -n1 "$PID_FILE") is gone)"
  rm -f "$PID_FILE"
  port_open "$ALERTMANAGER_PORT" && die "port $ALERTMANAGER_PORT is taken by a process this script did not start"
  write_config
  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  : >"$LOG_FILE"
  say "starting alertmanager on $ADDR (log: $LOG_FILE)"
  # setsid + the child writing its own pid before exec: as kafka.sh does, for the same reasons.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$AM_BIN" --config.file="$CONFIG" --storage.path="$DATA" \
    --web.listen-address="$ADDR" --web.external-url="$ALERTMANAGER_URL" \
    --cluster.listen-address= --log.level=info \
    </dev/null >>"$LOG_FILE" 2>&1 &
  wait_until 5 test -s "$PID_FILE" || die "alertmanager did not write its pid file"
  if ! wait_until "$START_TIMEOUT" alive_and_ready; then
    tail_log "$LOG_FILE"; do_stop; die "alertmanager did not become ready on $ADDR within ${START_TIMEOUT}s"
  fi
  do_status
}

do_stop() {
  stop_pid "$PID_FILE" "$MATCH" alertmanager
  status_line alertmanager stopped "$ADDR"
}

do_status() {
  if pid_alive "$PID_FILE" "$MATCH" && ready; then
    status_line alertmanager running "$ADDR" \
      "pid $(head -n1 "$PID_FILE"), $ALERTMANAGER_URL, webhook -> 127.0.0.1:$ALERTMANAGER_WEBHOOK_PORT"
  elif pid_alive "$PID_FILE" "$MATCH"; then
    status_line alertmanager starting "$ADDR" "pid $(head -n1 "$PID_FILE"), not ready yet"; return 1
  else
    status_line alertmanager stopped "$ADDR" "$([ -f "$PID_FILE" ] && echo '(stale pid file)')"; return 1
  fi
}

case "${1:-}" in
  install) do_install ;;
  *) usage_dispatch alertmanager "$@" ;;
esac
