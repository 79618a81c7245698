#!/bin/bash
# A long LLMSeR LLM stage on every CPU core of this machine until a stop time: one one-thread
# shard per core (`llmser.py --stage D --llm-threads 1 --llm-shard k/n`), each restarted every
# RESTART seconds (default 1800), because a shard copies its finished chunks to
# benchmarks/results/artefacts only when it exits. Commit those after each restart; the next
# machine goes on from there. A lane ends when its shard has nothing left (exit 0), at the stop
# time, or on any other error (said in its log; no retry loop).
# Usage, from the repo root (the lanes outlive the shell that starts them):
#   setsid nohup bash benchmarks/llmser_lanes.sh beauty 16:45 > /dev/null 2>&1 &
#   setsid nohup bash benchmarks/llmser_lanes.sh office 16:45 --stage-ablation wo_snf > /dev/null 2>&1 &
# (HH:MM is the next such time, so 01:00 given at 23:00 is tomorrow; or give "YYYY-MM-DD HH:MM".)
# Logs: $LOGS/<dataset>-lane<k>.log (LOGS defaults to /tmp/llmser-lanes). LANES overrides nproc.
# Afterwards, one process, seconds: `llmser.py --stage D --llm-free-twin` (the report's choice
# table on a partial stage) or, once every chunk is there, `--stage D` (assembles), then
# `llmser.py --report-only`.
set -u
[ $# -ge 2 ] || { echo "usage: llmser_lanes.sh DATASET HH:MM [llmser.py flags]"; exit 2; }
dataset=$1
stop_time=$2
stop_at=$(date -d "$stop_time" +%s) || exit 2
# A bare clock time already past today means tomorrow (lanes started before midnight).
if [[ $stop_time =~ ^[0-9]{1,2}:[0-9]{2}$ ]] && [ "$stop_at" -le "$(date +%s)" ]; then
  stop_at=$(date -d "tomorrow $stop_time" +%s) || exit 2
fi
shift 2
lanes=${LANES:-$(nproc)}
restart=${RESTART:-1800}
logs=${LOGS:-/tmp/llmser-lanes}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$logs"
[ "$stop_at" -gt "$(date +%s)" ] || { echo "stop time $stop_time has passed"; exit 2; }

lane() {
  local k=$1 log="$logs/$dataset-lane$1.log" left seconds rc
  shift
  while [ "$(date +%s)" -lt "$stop_at" ]; do
    left=$((stop_at - $(date +%s)))
    seconds=$((left < restart ? left : restart))
    echo "=== $(date -u +%H:%M:%S) shard $k/$lanes for ${seconds} s" >> "$log"
    timeout -s TERM "$seconds" "$python" benchmarks/llmser.py --stage "$dataset" "$@" \
      --llm-threads 1 --llm-shard "$k/$lanes" >> "$log" 2>&1
    rc=$?
    echo "=== $(date -u +%H:%M:%S) exit $rc" >> "$log"
    [ "$rc" -eq 124 ] || break # 124: stopped by the timeout, chunks kept; 0: shard done
  done
}

for k in $(seq 0 $((lanes - 1))); do
  lane "$k" "$@" &
done
wait
