#!/bin/bash
# Lent-GPU grid for issue #3: ML-1M p-lru backbone rows, one process per (model, seed), all on
# one GPU at once (MPS when it starts). Runs pause after MINUTES and are kept in flight; what
# changed comes back as $OUT/results.tgz.part-* (unpack in the repo root, then run
# `python benchmarks/backbones.py --report-only`; delete the in-flight copy of a run that finished
# there). Usage, from the repo root on the device machine:
#   bash benchmarks/device/ml1m_grid.sh MINUTES      [SPECS="narm:42 ..." to choose rows]
# What the call must carry (the device tree travels without ../shared or ignored files):
#   .whl (pydantic, pydantic_core, annotated_types, typing_inspection wheels for cp312),
#   .devdata/ml-1m (a copy of ../shared/data/ml-1m: the cache key hashes the raw bytes) and
#   cache/ml-1m/dataset (the prepared dataset). polars is not on the device and its wheel is
#   larger than a call may carry: benchmarks/device/shim stands in for it, reading the cache.
set -u
MIN=${1:-7}
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/benchmarks/device/shim PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
python3 -c "import torch, pydantic; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pydantic', pydantic.VERSION)" || exit 4
if nvidia-cuda-mps-control -d 2>/dev/null; then
  if python3 -c "import torch; torch.zeros(8, device='cuda').sum().item()"; then echo "MPS on"
  else echo quit | nvidia-cuda-mps-control; sleep 2; echo "MPS failed, off"; fi
else echo "no MPS"; fi
mkdir -p /tmp/logs
python3 -c "import sys; sys.path[:0] = ['benchmarks', 'src']; from run_records import restore; from backbones import RUNS; print('restored', restore(RUNS))" || exit 5
start=$(date +%s)
touch /tmp/marker
SPECS=${SPECS:-"lrurec:43 sasrec:43 sasrec:44 lrurec:44 bert4rec:42 narm:42 gru4rec:42 fmlprec:42 hstu:42"}
for spec in $SPECS; do
  spec=${spec/:/ }
  set -- $spec
  timeout -s TERM -k 30 $(awk "BEGIN { print int($MIN * 60 + 40) }") python3 benchmarks/backbones.py --data .devdata --only ml-1m \
    --models $1 --seeds $2 --device ${DEV:-cuda} --max-minutes $MIN > /tmp/logs/$1-$2.txt 2>&1 &
done
sleep ${CHECK:-75}
alive=$(jobs -r | wc -l)
echo "alive after 75 s: $alive"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for f in /tmp/logs/*-*.txt; do echo "== $f"; tail -c 300 $f; echo; done
showruns() { for l in runs/ml-1m/none-*/*/log.jsonl; do echo "$l epochs $(grep -c '"event": "epoch"' $l) $(tail -n 1 $l | cut -c1-160)"; done; }
showruns
if [ "$alive" -eq 0 ]; then exit 6; fi
wait
echo "grid wall $(( $(date +%s) - start )) s"
showruns
for f in /tmp/logs/*-*.txt; do echo "== $f"; grep -E '^== |^\{"hr|^\{"recall' $f; done
python3 -c "import sys; sys.path[:0] = ['benchmarks', 'src']; from run_records import keep_inflight; from backbones import RUNS; [print('kept in flight', d) for d in sorted(RUNS.glob('ml-1m/none-*/*')) if keep_inflight(d, RUNS)]"
cp -r /tmp/logs benchmarks/results/device-logs
# Whole run folders with any file changed here (kept copies keep their source's older mtimes).
find benchmarks/results/runs/ml-1m benchmarks/results/inflight/ml-1m benchmarks/results/device-logs -type f -newer /tmp/marker -printf '%h\n' | sort -u > /tmp/changed.txt
wc -l < /tmp/changed.txt
tar czf /tmp/results.tgz -T /tmp/changed.txt
ls -la /tmp/results.tgz
split -b 15m /tmp/results.tgz $OUT/results.tgz.part-
ls -la $OUT
