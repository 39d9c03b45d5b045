#!/usr/bin/env bash
# promtool from Debian's prometheus package (Prometheus 2.42), for the differential test of our
# PromQL evaluator against Prometheus' own (tests/integration/test_promtool_differential.py) and for
# running the repo's promtool suites under `promtool test rules` (test_promtool_suites.py).
# Only the binaries matter: Debian's own prometheus service is never kept running.
#   deploy/local/prometheus.sh install|status
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMTOOL_BIN=/usr/bin/promtool

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
  if [ -x "$PROMTOOL_BIN" ]; then return 0; fi
  apt_install prometheus
  [ -x "$PROMTOOL_BIN" ] || die "$PROMTOOL_BIN still missing after installing prometheus"
  stop_debian_service
}

do_status() {
  if [ -x "$PROMTOOL_BIN" ]; then
    status_line promtool installed "-" "$("$PROMTOOL_BIN" --version 2>&1 | head -n1)"
  else
    status_line promtool missing "-" "run: deploy/local/prometheus.sh install"; return 1
  fi
}

case "${1:-}" in
  install) do_install ;;
  status) do_status ;;
  *) echo "usage: $0 install|status   (promtool)" >&2; exit 2 ;;
esac
