#!/usr/bin/env bash
# Debian's Chromium and its chromedriver, for the console's browser test
# (tests/integration/test_console.py drives /usr/bin/chromium through /usr/bin/chromedriver;
# Selenium never downloads a browser or driver of its own).
#   deploy/local/chromium.sh install|status
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM_BIN=/usr/bin/chromium
CHROMEDRIVER_BIN=/usr/bin/chromedriver

# Installs both packages when either binary is missing; a no-op (and no apt-get call) otherwise.
do_install() {
  if [ -x "$CHROMIUM_BIN" ] && [ -x "$CHROMEDRIVER_BIN" ]; then return 0; fi
  apt_install chromium chromium-driver
  [ -x "$CHROMIUM_BIN" ] || die "$CHROMIUM_BIN still missing after installing chromium"
  [ -x "$CHROMEDRIVER_BIN" ] || die "$CHROMEDRIVER_BIN still missing after installing chromium-driver"
}

do_status() {
  if [ -x "$CHROMIUM_BIN" ] && [ -x "$CHROMEDRIVER_BIN" ]; then
    status_line chromium installed "-" "$("$CHROMIUM_BIN" --version 2>/dev/null | head -n1)"
  else
    status_line chromium missing "-" "run: deploy/local/chromium.sh install"; return 1
  fi
}

case "${1:-}" in
  install) do_install ;;
  status) do_status ;;
  *) echo "usage: $0 install|status   (chromium)" >&2; exit 2 ;;
esac
