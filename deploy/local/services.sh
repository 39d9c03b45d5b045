#!/usr/bin/env bash
# All local services at once, then the project's Kafka topics.
#   deploy/local/services.sh up|down|status
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(kafka postgres redis alertmanager apicurio)
# The exporters watch the local PostgreSQL and the host; Prometheus (agent) scrapes them and
# remote-writes to the gateway, which the tests start on GATEWAY_PORT (until then it retries).
SERVICES+=(exporters prometheus)

case "${1:-}" in
  up)
    # Not a service: the browser and driver the console's browser test drives (installed once).
    "$LOCAL_DIR/chromium.sh" install
    # Nor this: promtool (Debian's prometheus package), for the differential PromQL tests.
    "$LOCAL_DIR/prometheus.sh" install
    for s in "${SERVICES[@]}"; do "$LOCAL_DIR/$s.sh" start; done
    cd "$REPO_ROOT"
    if [ -x .venv/bin/python ] && [ -f connectors/kafka/topics.py ]; then
      say "creating project topics (python -m connectors.kafka.topics)"
      .venv/bin/python -m connectors.kafka.topics || die "python -m connectors.kafka.topics failed (see above)"
    else
      say "skipping topic creation (.venv/bin/python or connectors/kafka/topics.py missing)"
    fi
    ;;
  down)
    # Stop everything even if one stop fails, then report the first failure.
    rc=0
    for s in "${SERVICES[@]}"; do "$LOCAL_DIR/$s.sh" stop || rc=1; done
    exit "$rc"
    ;;
  status)
    rc=0
    for s in "${SERVICES[@]}"; do "$LOCAL_DIR/$s.sh" status || rc=1; done
    echo "state dir: $GDS_STATE_DIR"
    exit "$rc"
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
