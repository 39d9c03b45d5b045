#!/usr/bin/env bash
# All benchmarks, then one Markdown table of the run's figures (bench/report.py) on stdout.
#   bench/run.sh [NAME...]        default: every bench below; NAMEs pick some (e.g. alerting cardinality)
#   BENCH=quick bench/run.sh      small sizes: checks that everything runs end to end (minutes, not figures)
# Every JSON line is appended to bench/results.jsonl after a line naming the machine; progress and the
# lines themselves go to stderr as they come. Starts the local services (left running:
# `deploy/local/services.sh down` stops them). A bench that fails is reported and its figures read "not run".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mode="${BENCH:-full}"
case "$mode" in full|quick) ;; *) echo "BENCH=$mode: expected full or quick" >&2; exit 2 ;; esac
deploy/local/venv.sh
deploy/local/services.sh up >/dev/null
. deploy/local/env.sh

# per-bench arguments; full = each bench's defaults (issue 16's sizes)
declare -A args
if [ "$mode" = quick ]; then
  args=(
    [alerting]="--instances 200 --samples 50"
    [cardinality]="--sizes 10000,100000 --min-messages 200000"
    [catchup]="--instances 100 --history 600 --steady-s 30"
    [delivery]="--instances 200 --seconds 20 --load-seconds 20 --warmup 5 --live-max-seconds 20"
    [latency]="--instances 50"
    [state]="--instances 200 --samples 20"
    [backtest]="--messages 200000 --series 4000"
    [promql]="--messages 100000 --series 2000"
    [gateway]="--batches 40"
    [ops]="--settle-s 4"
  )
fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(alerting cardinality catchup delivery latency state backtest promql gateway ops)

out=bench/results.jsonl
run=$(mktemp /tmp/bench-run.XXXXXX.jsonl)
machine=$(printf '{"bench": "machine", "cpus": %s, "mem_gib": %s, "cpu": "%s", "python": "%s", "at": "%s", "mode": "%s"}' \
  "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" \
  "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" "$(.venv/bin/python -V | cut -d' ' -f2)" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$mode")
echo "$machine" | tee -a "$out" >>"$run"
started=$SECONDS
for b in "${names[@]}"; do
  [ -f "bench/$b.py" ] || { echo "==> bench/$b.py: no such bench" >&2; continue; }
  echo "==> bench/$b.py ${args[$b]:-} ($(date -u +%H:%M:%S), $(( (SECONDS - started) / 60 )) min into the run)" >&2
  t=$SECONDS
  # shellcheck disable=SC2086 # the arguments are words
  if ! .venv/bin/python "bench/$b.py" ${args[$b]:-} | tee -a "$out" "$run" >&2; then
    echo "==> bench/$b.py FAILED (its figures read 'not run')" >&2
  fi
  echo "==> bench/$b.py took $(( SECONDS - t )) s" >&2
done
printf '{"bench": "run", "mode": "%s", "seconds": %s}\n' "$mode" "$(( SECONDS - started ))" | tee -a "$out" >>"$run"
.venv/bin/python -m bench.report "$run"
rm -f "$run"
