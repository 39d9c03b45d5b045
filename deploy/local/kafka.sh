#!/usr/bin/env bash
# Single-node Kafka 3.9 broker in KRaft mode (broker + controller in one JVM) on 127.0.0.1.
# Jars come from Maven Central via kafka/pom.xml (no Kafka tarball download is possible here).
#   deploy/local/kafka.sh start|stop|status|logs [-f|N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIBS="$LOCAL_DIR/kafka/libs"            # gitignored; resolved once
DIR="$STATE/kafka"
DATA="$DIR/data"
PID_FILE="$DIR/kafka.pid"
LOG_FILE="$DIR/kafka.log"
MAIN=kafka.Kafka
ADDR="127.0.0.1:$KAFKA_PORT"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"

JVM=("${JAVA_HOME:+$JAVA_HOME/bin/}java" -Xmx768m -Xms256m -XX:+UseG1GC -Djava.awt.headless=true
     -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*")

resolve_jars() {
  if compgen -G "$LIBS/*.jar" >/dev/null; then return 0; fi
  need_cmd java openjdk-17-jre-headless
  need_cmd mvn maven
  say "resolving Kafka jars with Maven (first time only, ~15 s)"
  # Download into a temp dir and rename: an interrupted run must not leave a half-filled libs dir
  # that the "already resolved" check above would then trust.
  local tmp="$LIBS.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -f "$LOCAL_DIR/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$DIR/mvn.log" 2>&1; then
    rm -rf "$tmp"; tail_log "$DIR/mvn.log"; die "mvn could not resolve the Kafka jars"
  fi
  rm -rf "$LIBS"; mv "$tmp" "$LIBS"
}

write_config() {
  # Rewritten on every start so that KAFKA_PORT / KAFKA_CONTROLLER_PORT changes take effect.
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=4
# Single node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Tests create consumer groups constantly; the default 3 s join delay would slow every one of them.
group.initial.rebalance.delay.ms=0
# Topics are created explicitly (connectors.kafka.topics, test fixtures): a typo must fail, not create a topic.
auto.create.topics.enable=false
PROPS
  # Console appender; stdout/stderr are redirected to kafka.log, which also catches JVM crash output.
  cat >"$DIR/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
PROPS
}

format_storage() {
  [ -f "$DATA/meta.properties" ] && return 0
  say "formatting Kafka storage in $DATA"
  local id
  # log4j logs to stdout too: keep only the last line, and check it really is a cluster id.
  id=$("${JVM[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOG_FILE" | tail -n1)
  [[ "$id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka.tools.StorageTool random-uuid printed '$id', not a cluster id"
  "${JVM[@]}" kafka.tools.StorageTool format -t "$id" -c "$DIR/server.properties" >>"$LOG_FILE" 2>&1 \
    || { tail_log "$LOG_FILE"; die "kafka storage format failed"; }
}

ready() { port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null; }
alive_and_ready() {
  pid_alive "$PID_FILE" "$MAIN" || { tail_log "$LOG_FILE"; die "kafka exited during startup"; }
  ready
}

do_start() {
  mkdir -p "$DIR"
  if pid_alive "$PID_FILE" "$MAIN"; then
    # Already running (maybe still booting from a concurrent start): just wait for readiness.
    wait_until "$START_TIMEOUT" alive_and_ready || { tail_log "$LOG_FILE"; die "kafka not ready on $ADDR"; }
    do_status; return 0
  fi
  [ -f "$PID_FILE" ] && say "removing stale kafka pid file (process $(head -n1 "$PID_FILE") is gone)"
  rm -f "$PID_FILE"
  if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
    die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by a process this script did not start"
  fi
  need_cmd java openjdk-17-jre-headless
  resolve_jars
  write_config
  # A fresh log per run: readiness is detected by grepping it for "Kafka Server started".
  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  : >"$LOG_FILE"
  format_storage
  say "starting kafka on $ADDR (log: $LOG_FILE)"
  # setsid: own session, so a terminal Ctrl-C or a CI step killing its process group leaves it alone.
  # The child writes its own pid before exec'ing java, so the pid file is right even if setsid forks.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
    "${JVM[@]}" "$MAIN" "$DIR/server.properties" </dev/null >>"$LOG_FILE" 2>&1 &
  wait_until 5 test -s "$PID_FILE" || die "kafka did not write its pid file"
  local t0=$SECONDS
  if ! wait_until "$START_TIMEOUT" alive_and_ready; then
    tail_log "$LOG_FILE"; do_stop; die "kafka did not become ready on $ADDR within ${START_TIMEOUT}s"
  fi
  say "kafka ready after $((SECONDS - t0)) s"
  do_status
}

do_stop() {
  stop_pid "$PID_FILE" "$MAIN" kafka
  status_line kafka stopped "$ADDR"
}

do_status() {
  if pid_alive "$PID_FILE" "$MAIN" && port_open "$KAFKA_PORT"; then
    status_line kafka running "$ADDR" "pid $(head -n1 "$PID_FILE")"
  elif pid_alive "$PID_FILE" "$MAIN"; then
    status_line kafka starting "$ADDR" "pid $(head -n1 "$PID_FILE"), port not open yet"; return 1
  else
    status_line kafka stopped "$ADDR" "$([ -f "$PID_FILE" ] && echo '(stale pid file)')"; return 1
  fi
}

usage_dispatch kafka "$@"
