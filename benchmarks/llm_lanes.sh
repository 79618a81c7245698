#!/bin/bash
# A long LLM stage on every CPU core of this machine until a stop time: one one-thread shard per
# core (`--llm-threads 1 --llm-shard k/n`), each restarted every RESTART seconds (default 1800),
# because a shard copies what it finished (LLMSeR's chunks, the response cache's new answers) to
# benchmarks/results only when it exits. Commit those after each restart; the next machine goes
# on from there. A lane ends when its shard has nothing left (exit 0), at the stop time, or on
# any other error (said in its log; no retry loop).
#   llmser: `llmser.py --stage DATASET [flags]` (CCG, SNF and ARV chunks of 16 users)
#   sracl:  `sracl.py --datasets DATASET --llm-stage --llm-kinds item,user [flags]` (summaries)
# Usage, from the repo root (the lanes outlive the shell that starts them):
#   setsid nohup bash benchmarks/llm_lanes.sh llmser office 16:45 --stage-ablation wo_snf > /dev/null 2>&1 &
#   setsid nohup bash benchmarks/llm_lanes.sh sracl beauty 16:45 > /dev/null 2>&1 &
# (HH:MM is the next such time, so 01:00 given at 23:00 is tomorrow; or give "YYYY-MM-DD HH:MM".)
# Logs: $LOGS/<method>-<dataset>-lane<k>.log (LOGS defaults to /tmp/llm-lanes). LANES overrides
# nproc. Afterwards, one process: LLMSeR `llmser.py --stage D` assembles the stage once every
# chunk is there (`--llm-free-twin` reads a partial one); SRA-CL `sracl.py --datasets D
# --llm-stage` writes the artefacts once every summary is cached. Then each `--report-only`.
set -u
usage="usage: llm_lanes.sh llmser|sracl DATASET HH:MM [flags of that method's script]"
[ $# -ge 3 ] || { echo "$usage"; exit 2; }
method=$1
dataset=$2
stop_time=$3
case $method in
  llmser) stage=(benchmarks/llmser.py --stage "$dataset") ;;
  sracl) stage=(benchmarks/sracl.py --datasets "$dataset" --llm-stage --llm-kinds item,user) ;;
  *) echo "unknown method '$method'; $usage"; exit 2 ;;
esac
stop_at=$(date -d "$stop_time" +%s) || exit 2
# A bare clock time already past today means tomorrow (lanes started before midnight).
if [[ $stop_time =~ ^[0-9]{1,2}:[0-9]{2}$ ]] && [ "$stop_at" -le "$(date +%s)" ]; then
  stop_at=$(date -d "tomorrow $stop_time" +%s) || exit 2
fi
shift 3
lanes=${LANES:-$(nproc)}
restart=${RESTART:-1800}
logs=${LOGS:-/tmp/llm-lanes}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$logs"
[ "$stop_at" -gt "$(date +%s)" ] || { echo "stop time $stop_time has passed"; exit 2; }

lane() {
  local k=$1 log="$logs/$method-$dataset-lane$1.log" left seconds rc
  shift
  while [ "$(date +%s)" -lt "$stop_at" ]; do
    left=$((stop_at - $(date +%s)))
    seconds=$((left < restart ? left : restart))
    echo "=== $(date -u +%H:%M:%S) shard $k/$lanes for ${seconds} s" >> "$log"
    timeout -s TERM "$seconds" "$python" "${stage[@]}" "$@" \
      --llm-threads 1 --llm-shard "$k/$lanes" >> "$log" 2>&1
    rc=$?
    echo "=== $(date -u +%H:%M:%S) exit $rc" >> "$log"
    [ "$rc" -eq 124 ] || break # 124: stopped by the timeout, work kept; 0: shard done
  done
}

for k in $(seq 0 $((lanes - 1))); do
  lane "$k" "$@" &
done
wait
