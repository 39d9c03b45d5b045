#!/usr/bin/env bash
# All benchmarks, one JSON line each, also appended to bench/results.jsonl with the machine.
# Starts the local services (left running: `deploy/local/services.sh down` stops them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
deploy/local/venv.sh
deploy/local/services.sh up >/dev/null
. deploy/local/env.sh
out=bench/results.jsonl
machine=$(printf '{"bench": "machine", "cpus": %s, "mem_gib": %s, "cpu": "%s", "python": "%s", "at": "%s"}' \
  "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" \
  "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" "$(.venv/bin/python -V | cut -d' ' -f2)" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
echo "$machine" | tee -a "$out"
for b in alerting delivery latency state backtest promql gateway; do
  [ -f "bench/$b.py" ] || continue
  echo "==> bench/$b.py" >&2
  .venv/bin/python "bench/$b.py" "$@" | tee -a "$out"
done
