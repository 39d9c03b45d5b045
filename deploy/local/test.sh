#!/usr/bin/env bash
# The whole test suite against real local services (what CI and `make test` run).
#   deploy/local/test.sh [pytest args...]      KEEP_SERVICES=1 leaves the services running afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

echo "==> python environment (deploy/local/venv.sh)"
"$here/venv.sh"

if [ "${KEEP_SERVICES:-0}" != 1 ]; then
  # Registered before `up` so that a half-started set of services is cleaned up too.
  trap 'echo "==> stopping local services (KEEP_SERVICES=1 keeps them)"; "$here/services.sh" down >/dev/null || true' EXIT
fi
echo "==> starting local services (deploy/local/services.sh up)"
"$here/services.sh" up

. "$here/env.sh"
echo "==> pytest $* (KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS PG_DSN=$PG_DSN REDIS_URL=$REDIS_URL)"
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if [ "$rc" = 5 ]; then
  # pytest's "no tests collected": a wrong path or a broken collection must not pass CI.
  echo "==> FAILED: pytest collected no tests" >&2
  exit 1
fi
if [ "$rc" = 0 ]; then echo "==> tests passed"; else echo "==> tests FAILED (pytest exit code $rc)" >&2; fi
exit "$rc"
