#!/bin/bash
# Runs a list of benchmark commands at once on a lent GPU (one process each, CUDA MPS when it
# starts), pauses them after MINUTES (runs are resumable and kept in flight), and returns every run
# folder that changed as $OUT/results.tgz.part-*. Usage, from the repo root on the device machine:
#   bash benchmarks/device/grid.sh benchmarks/device/ml1m_backbones.txt MINUTES
# Each line of the list is a benchmark script and its arguments (backbones.py, cllmrec.py,
# llmcfsr.py, llmser.py, sracl.py: each takes the three appended flags, run_records.add_run_arguments;
# llmser.py's training rows have not yet run on a GPU);
# `--data .devdata --device cuda --max-minutes MINUTES` is appended. Back here: unpack the parts
# in the repo root (cat results.tgz.part-* | tar xz), delete the in-flight copy of any run that
# finished there, and rerun the script with --report-only.
# What the call must carry (the tree travels without ../shared or ignored files):
#   .whl (pydantic, pydantic_core, annotated_types, typing_inspection wheels for cp312),
#   .devdata/D (a copy of ../shared/data/D for each dataset D: cache keys hash the raw bytes) and
#   cache/D/dataset (the prepared dataset). polars is not on the device and its wheel is larger
#   than a call may carry: benchmarks/device/shim stands in for it, reading the prepared cache.
# Method rows also need their text artefacts, made here first (the encoder, 88 MB, cannot travel;
# model_identities.json beside this script lets the device find them by key without it):
#   CLLMRec: nothing more (its scores are committed under benchmarks/results/artefacts);
#   LLM-CFSR: cache/D/semantic/semantic-<fine-tuned>/embeddings.npy (Yelp 31 MB, Beauty 19 MB);
#   LLM-ESR and LLM-CFSR w/o fine-tuning: the raw one, semantic-<raw>/embeddings.npy, and
#   cache/D/llmesr (the neighbour lists; faiss is not on the device).
#   The directory names are in benchmarks/results/llmcfsr.md (semantic stage table).
# The tree plus what is carried must stay under 64 MiB: check with benchmarks/device/budget.sh.
# Tracked in-flight states (benchmarks/results/inflight, ~6-23 MB a run) and other datasets'
# finished runs count; benchmarks/device/aside.sh moves what a call does not need out of the
# tree for that call and back after. Raw data may travel as .devdata/D.tar.xz (tar cJf
# .devdata/D.tar.xz -C ../shared/data D: Yelp 8.1 -> 2.2 MB); it is unpacked here. A Yelp call
# carries one embedding matrix (31 MB): the fine-tuned rows and the raw rows are two calls.
# Trying it here without a GPU: SKIP_PIP=1 DEV=cpu OUT=/tmp/out bash benchmarks/device/grid.sh LIST 1
set -u
LIST=$1
MIN=${2:-7}
source "$(dirname "$0")/common.sh"
install_wheels .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/benchmarks/device/shim PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, pydantic; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pydantic', pydantic.VERSION)" || exit 4
start_mps python3
rm -rf /tmp/logs && mkdir -p /tmp/logs
for a in .devdata/*.tar.xz; do [ -e "$a" ] && tar xJf "$a" -C .devdata; done
mkdir -p cache/text && { [ -f cache/text/model_identities.json ] || cp benchmarks/device/model_identities.json cache/text/; }
python3 -c "import sys; sys.path[:0] = ['benchmarks', 'src']; from run_records import restore, restore_artefacts; from backbones import RUNS; from llmseqrec import paths; print('restored', restore(RUNS), restore_artefacts(paths.cache_root()))" || exit 5
start=$(date +%s)
touch /tmp/marker
n=0
while read -r line; do
  [ -z "$line" ] || [ "${line#\#}" != "$line" ] && continue
  n=$((n + 1))
  timeout -s TERM -k 30 $(awk "BEGIN { print int($MIN * 60 + 40) }") python3 $line --data .devdata \
    --device ${DEV:-cuda} --max-minutes $MIN > /tmp/logs/run-$n.txt 2>&1 &
done < "$LIST"
showruns() { for l in $(find runs -name log.jsonl -newer /tmp/marker | sort); do echo "$l epochs $(grep -c '"event": "epoch"' $l) $(tail -n 1 $l | cut -c1-140)"; done; }
sleep ${CHECK:-75}
alive=$(jobs -r | wc -l)
echo "$n started, alive after ${CHECK:-75} s: $alive"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for f in /tmp/logs/run-*.txt; do echo "== $f"; tail -c 300 $f; echo; done
showruns
if [ "$alive" -eq 0 ]; then exit 6; fi
wait
echo "grid wall $(( $(date +%s) - start )) s"
showruns
for f in /tmp/logs/run-*.txt; do echo "== $f"; grep -E '^== |^\{"' $f; done
# A run stopped by the timeout wrote its state after its last whole epoch: keep it in flight.
python3 -c "import sys; sys.path[:0] = ['benchmarks', 'src']; from run_records import keep_inflight; from backbones import RUNS; [print('kept in flight', d) for d in sorted(RUNS.glob('*/*/*')) if keep_inflight(d, RUNS)]"
# Whole run folders with any file changed here (kept copies keep their source's older mtimes).
find benchmarks/results/runs benchmarks/results/inflight -type f -newer /tmp/marker -printf '%h\n' | sort -u > /tmp/changed.txt
wc -l < /tmp/changed.txt
tar czf /tmp/results.tgz -T /tmp/changed.txt
ls -la /tmp/results.tgz
split -b 15m /tmp/results.tgz $OUT/results.tgz.part-
ls -la $OUT
