#!/usr/bin/env bash
# Debian's `prometheus` package (Prometheus 2.42):
# - promtool, for the differential test of our PromQL evaluator against Prometheus' own
#   (tests/integration/test_promtool_differential.py) and for running the repo's promtool suites
#   under `promtool test rules` (test_promtool_suites.py);
# - a Prometheus server of our own in agent mode on 127.0.0.1:$PROMETHEUS_PORT that scrapes the local
#   exporters (exporters.sh) every few seconds and remote-writes everything to the gateway
#   (http://127.0.0.1:$GATEWAY_PORT/api/v1/write): a real remote_write client of the gateway.
# Debian's own prometheus service is never kept running.
#   deploy/local/prometheus.sh install|start|stop|status|logs [-f|N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMTOOL_BIN=/usr/bin/promtool
PROM_BIN=/usr/bin/prometheus

# Debian's unit/init script starts a server on :9090 after install (unless policy-rc.d forbids it,
# as in containers); it is not ours to keep running.
stop_debian_service() {
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus 2>/dev/null || true
    systemctl disable prometheus 2>/dev/null || true
  elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
}

# Installs the package when promtool is missing; a no-op (and no apt-get call) otherwise.
# --no-install-recommends (apt_install) keeps prometheus-node-exporter out.
do_install() {
  if [ -x "$PROMTOOL_BIN" ] && [ -x "$PROM_BIN" ]; then return 0; fi
  apt_install prometheus
  [ -x "$PROMTOOL_BIN" ] || die "$PROMTOOL_BIN still missing after installing prometheus"
  [ -x "$PROM_BIN" ] || die "$PROM_BIN still missing after installing prometheus"
  stop_debian_service
}

# --------------------------------------------------------------------------- agent
# Agent mode (--enable-feature=agent): scrape and remote_write only, no local queries or rules (the
# alerting job evaluates the rules on the Kafka stream). Samples wait in the agent's WAL while the
# gateway is down or answers 5xx/429, and are re-sent in order, as with any remote_write receiver.
# A short flush deadline: with no gateway listening, the default 1m made every stop a SIGKILL.
GATEWAY_PORT="${GATEWAY_PORT:-19201}"
DIR="$STATE/prometheus"
DATA="$DIR/agent-data"
CONFIG="$DIR/prometheus.yml"
PID_FILE="$DIR/prometheus.pid"
LOG_FILE="$DIR/prometheus.log"
ADDR="127.0.0.1:$PROMETHEUS_PORT"
WRITE_URL="http://127.0.0.1:$GATEWAY_PORT/api/v1/write"
SCRAPE_INTERVAL="${PROMETHEUS_SCRAPE_INTERVAL:-5s}"
# How long the WAL keeps samples the gateway has not taken yet (a gateway left down for a day
# would otherwise be sent a day of samples when it comes back).
RETENTION="${PROMETHEUS_AGENT_RETENTION:-30m}"
START_TIMEOUT="${PROMETHEUS_START_TIMEOUT:-30}"
MATCH="$PROM_BIN"

write_config() {
  # Rewritten on every start so that changed ports take effect. `database_type` says which
  # gds.metrics.{database_type}.{environment} topic the gateway writes each exporter's samples to;
  # the environment is the gateway's default (GATEWAY_DEFAULT_ENVIRONMENT) unless a label says.
  local auth=""
  if [ -n "${PROMETHEUS_REMOTE_WRITE_TOKEN:-}" ]; then
    printf '%s' "$PROMETHEUS_REMOTE_WRITE_TOKEN" >"$DIR/remote-write.token"
    chmod 600 "$DIR/remote-write.token"
    auth="    authorization: {type: Bearer, credentials_file: $DIR/remote-write.token}
"
  fi
  cat >"$CONFIG" <<YAML
# Written by deploy/local/prometheus.sh at every start; edits are lost.
global:
  scrape_interval: $SCRAPE_INTERVAL
  scrape_timeout: $SCRAPE_INTERVAL
scrape_configs:
  - job_name: postgres
    static_configs:
      - targets: ["127.0.0.1:$PG_EXPORTER_PORT"]
        labels: {database_type: postgresql}
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:$NODE_EXPORTER_PORT"]
        labels: {database_type: os}
remote_write:
  - url: $WRITE_URL
    name: gateway
$auth    # small, prompt batches: the alerting job downstream evaluates on event time
    queue_config: {batch_send_deadline: 1s, max_samples_per_send: 2000, min_backoff: 100ms, max_backoff: 2s}
YAML
  "$PROMTOOL_BIN" check config --syntax-only "$CONFIG" >"$DIR/check-config.log" 2>&1 \
    || { tail_log "$DIR/check-config.log"; die "promtool check config rejected $CONFIG"; }
}

ready() { http_ok "$PROMETHEUS_PORT" /-/ready; }
alive_and_ready() {
  pid_alive "$PID_FILE" "$MATCH" || { tail_log "$LOG_FILE"; die "prometheus exited during startup"; }
  ready
}

do_start() {
  do_install
  stop_debian_service
  mkdir -p "$DIR" "$DATA"
  if pid_alive "$PID_FILE" "$MATCH"; then
    wait_until "$START_TIMEOUT" alive_and_ready || { tail_log "$LOG_FILE"; die "prometheus not ready on $ADDR"; }
    do_status; return 0
  fi
  [ -f "$PID_FILE" ] && say "removing stale prometheus pid file (process $(head -n1 "$PID_FILE") is gone)"
  rm -f "$PID_FILE"
  port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is taken by a process this script did not start"
  write_config
  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  : >"$LOG_FILE"
  say "starting prometheus (agent) on $ADDR, remote_write -> $WRITE_URL (log: $LOG_FILE)"
  # setsid + the child writing its own pid before exec: as kafka.sh does, for the same reasons.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$PROM_BIN" --enable-feature=agent --config.file="$CONFIG" --storage.agent.path="$DATA" \
    --storage.agent.retention.max-time="$RETENTION" --web.listen-address="$ADDR" \
    --storage.remote.flush-deadline=5s \
    --web.external-url="http://$ADDR" --log.level=info \
    </dev/null >>"$LOG_FILE" 2>&1 &
  wait_until 5 test -s "$PID_FILE" || die "prometheus did not write its pid file"
  if ! wait_until "$START_TIMEOUT" alive_and_ready; then
    tail_log "$LOG_FILE"; do_stop; die "prometheus did not become ready on $ADDR within ${START_TIMEOUT}s"
  fi
  do_status
}

do_stop() {
  stop_pid "$PID_FILE" "$MATCH" prometheus
  status_line prometheus stopped "$ADDR"
}

do_status() {
  local rc=0
  if [ -x "$PROMTOOL_BIN" ]; then
    status_line promtool installed "-" "$("$PROMTOOL_BIN" --version 2>&1 | head -n1)"
  else
    status_line promtool missing "-" "run: deploy/local/prometheus.sh install"; rc=1
  fi
  if pid_alive "$PID_FILE" "$MATCH" && ready; then
    status_line prometheus running "$ADDR" "pid $(head -n1 "$PID_FILE"), agent, every $SCRAPE_INTERVAL -> $WRITE_URL"
  elif pid_alive "$PID_FILE" "$MATCH"; then
    status_line prometheus starting "$ADDR" "pid $(head -n1 "$PID_FILE"), not ready yet"; rc=1
  else
    status_line prometheus stopped "$ADDR" "$([ -f "$PID_FILE" ] && echo '(stale pid file)')"; rc=1
  fi
  return "$rc"
}

case "${1:-}" in
  install) do_install ;;
  *) usage_dispatch prometheus "$@" ;;
esac
