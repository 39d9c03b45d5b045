# Shared helpers for the deploy/local service scripts. Sourced, never run.
# shellcheck shell=bash

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
# Ports, GDS_STATE_DIR and the derived addresses live in env.sh only, so they cannot drift apart.
# shellcheck source=env.sh
. "$LOCAL_DIR/env.sh"
STATE="$GDS_STATE_DIR"
mkdir -p "$STATE"

say() { echo "==> $*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }

# One status line per service, same shape for every script: "name  state  address  detail".
status_line() { printf '%-12s %-8s %-22s %s\n' "$1" "$2" "$3" "${4:-}"; }

# Show the end of a log when something failed: the reason is almost always in its last lines.
tail_log() {
  local file=$1 n=${2:-40}
  if [ -f "$file" ]; then
    echo "----- last $n lines of $file -----" >&2
    tail -n "$n" "$file" >&2
    echo "-----" >&2
  else
    echo "(no log file at $file)" >&2
  fi
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash /dev/tcp: no nc needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True if GET http://127.0.0.1:$1$2 answers 200, with bash's /dev/tcp only (a fresh CI machine
# may have no curl): the readiness check of the HTTP services.
http_ok() {
  local status
  status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" \
    && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$2" "$1" >&3 && head -n1 <&3) 2>/dev/null) \
    || return 1
  [[ "$status" == *" 200 "* ]]
}

# wait_until TIMEOUT_SECONDS CMD...: poll CMD every 0.2 s; false on timeout.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# pid_alive PIDFILE PATTERN: the pid in PIDFILE is running AND its command line contains PATTERN
# (a bare kill -0 would trust a recycled pid after a kill -9 or a reboot).
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n1 "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$2"
}

gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_pid PIDFILE PATTERN NAME: SIGTERM, wait up to 20 s, then SIGKILL. No-op if not running.
stop_pid() {
  local pidfile=$1 pattern=$2 name=$3 pid
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(head -n1 "$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 20 gone "$pid"; then
    say "$name did not stop within 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 gone "$pid" || die "could not kill $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# need_cmd CMD APT_PACKAGE: install the package when CMD is missing. A fresh CI machine has
# neither redis-server nor PostgreSQL; the scripts must work there without manual steps.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  apt_install "$2"
  command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  say "installing $* with apt-get"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# usage_dispatch NAME "$@": shared command-line handling for the per-service scripts, which
# define do_start, do_stop, do_status and LOG_FILE.
usage_dispatch() {
  local name=$1; shift
  case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    logs)
      if [ "${2:-}" = "-f" ]; then tail -n 100 -F "$LOG_FILE"; else tail -n "${2:-100}" "$LOG_FILE"; fi ;;
    *) echo "usage: $0 start|stop|status|logs [-f|N]   ($name)" >&2; exit 2 ;;
  esac
}
