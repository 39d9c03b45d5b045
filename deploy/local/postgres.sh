#!/usr/bin/env bash
# PostgreSQL cluster for tests on 127.0.0.1:$PG_PORT: role `gds` (superuser, trust auth), database `gds`.
#   deploy/local/postgres.sh start|stop|status|logs [-f|N]
# Integration tests stop and start it to simulate an outage, so both must be quick and repeatable.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$STATE/pg"
DATA="$DIR/data"
SOCK="$STATE/pg-sock"
LOG_FILE="$DIR/postgres.log"
ADDR="127.0.0.1:$PG_PORT"

find_pg_bin() {
  # PostgreSQL 15 (Debian 12) preferred, otherwise the newest installed major version.
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then echo /usr/lib/postgresql/15/bin; return; fi
  # shellcheck disable=SC2012  # paths are /usr/lib/postgresql/<number>/bin
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}
PG_BIN=$(find_pg_bin)
if [ -z "$PG_BIN" ] && [ "${1:-}" = start ]; then   # only `start` installs; stop/status must not
  apt_install postgresql
  PG_BIN=$(find_pg_bin)
  [ -n "$PG_BIN" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin found"
fi

# postgres refuses to run as root: run server tools as the `postgres` OS user (created by the package).
AS_PG=()
if [ "$(id -u)" = 0 ] && [ -n "$PG_BIN" ]; then
  id postgres >/dev/null 2>&1 || die "no 'postgres' OS user; is the postgresql package installed?"
  AS_PG=(runuser -u postgres --)
fi
pg() { "${AS_PG[@]}" "$PG_BIN/$1" "${@:2}"; }
# Options passed at every start (not written into postgresql.conf), so a PG_PORT change just works.
# fsync/synchronous_commit/full_page_writes off: test data is disposable and speed matters.
server_opts() {
  local o="-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$SOCK"
  o+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  # TimescaleDB is optional (Debian 12 does not package it); preload it only when it is installed.
  if [ -f "$("$PG_BIN/pg_config" --pkglibdir 2>/dev/null)/timescaledb.so" ]; then
    o+=" -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
  fi
  echo "$o"
}

running() { [ -n "$PG_BIN" ] && [ -f "$DATA/PG_VERSION" ] && pg pg_ctl status -D "$DATA" >/dev/null 2>&1; }
accepting() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; }
accepting_or_down() { accepting || ! running; }

prepare_dirs() {
  mkdir -p "$DIR" "$SOCK"
  if [ "${#AS_PG[@]}" -gt 0 ]; then
    chown postgres:postgres "$DIR" "$SOCK"
    "${AS_PG[@]}" test -w "$DIR" \
      || die "user postgres cannot write $DIR: set GDS_STATE_DIR to a directory outside /root"
  fi
}

init_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  say "initdb in $DATA"
  # trust auth: loopback-only throwaway cluster; --no-sync: nothing here is worth an fsync.
  pg initdb -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$DIR/initdb.log" 2>&1 \
    || { tail_log "$DIR/initdb.log"; rm -rf "$DATA"; die "initdb failed"; }
}

ensure_role_db() {
  # Idempotent on every start (a few ms): survives a cluster created by an older script version.
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gds') THEN CREATE ROLE gds LOGIN SUPERUSER; END IF;
END $$;
SELECT 'CREATE DATABASE gds OWNER gds' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'gds')\gexec
SQL
}

do_start() {
  prepare_dirs
  init_cluster
  # pg_ctl status only does kill -0 on postmaster.pid: just after a kill -9 the dead postmaster can
  # linger as a zombie for a moment. Wait until it either answers or is really gone.
  if running && ! wait_until 15 accepting_or_down; then
    tail_log "$LOG_FILE"; die "postgres is running but not accepting connections on $ADDR"
  fi
  if ! running; then
    if port_open "$PG_PORT"; then die "port $PG_PORT is taken by a process this script did not start"; fi
    say "starting postgres on $ADDR (log: $LOG_FILE)"
    # -w waits until it accepts connections; pg_ctl also copes with a stale postmaster.pid.
    pg pg_ctl start -D "$DATA" -l "$LOG_FILE" -w -t 60 -o "$(server_opts)" >/dev/null \
      || { tail_log "$LOG_FILE"; die "postgres did not start on $ADDR"; }
  fi
  ensure_role_db || { tail_log "$LOG_FILE"; die "could not create role/database gds"; }
  do_status
}

do_stop() {
  if running; then
    say "stopping postgres"
    # fast: roll back open transactions and disconnect clients instead of waiting for them.
    pg pg_ctl stop -D "$DATA" -m fast -w -t 30 >/dev/null \
      || pg pg_ctl stop -D "$DATA" -m immediate -w -t 30 >/dev/null
  fi
  status_line postgres stopped "$ADDR"
}

do_status() {
  if running && accepting; then
    status_line postgres running "$ADDR" "pid $(head -n1 "$DATA/postmaster.pid"), $PG_DSN"
  else
    status_line postgres stopped "$ADDR"; return 1
  fi
}

usage_dispatch postgres "$@"
