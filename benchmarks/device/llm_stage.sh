#!/bin/bash
# The LLMSeR LLM stage on a lent GPU: one stage shard per process, all on the GPU (CUDA MPS),
# for MINUTES, going on from the chunks committed under benchmarks/results/artefacts.
#
# Nothing it needs beyond the tree fits one device call (64 MiB with the tree): the chat model
# (98 MB GGUF, packaged here), the item texts' sentence embeddings (the 88 MB encoder does not
# travel; the stage's omega reads them from its cache), the cp312 wheels of transformers and
# friends (the device has torch, numpy, pyarrow, tqdm and PyYAML only) and the data. So `pack`
# puts them in one tar cut into parts, each carried by one call to the warm machine (parts
# are kept there between calls: .devllm is ignored), and the last call unpacks and runs.
#
# Here:    bash benchmarks/device/llm_stage.sh pack DATASET [llmser.py stage flags]
#            -> .devllm/part-*; prints the calls (run tool: carry, command) that fit.
# Device:  bash benchmarks/device/llm_stage.sh run DATASET MINUTES SHARDS [llmser.py stage flags]
#            -> $OUT/stage.tgz: the new chunks and answers, paths as in the tree.
# Back here: tar xzf <files_at>/stage.tgz in the repo root, `bash benchmarks/device/aside.sh
# back`, commit benchmarks/results/artefacts and benchmarks/results/llm-answers, then the
# usual `llmser.py --stage D --llm-free-twin` / `--report-only`.
# The tree must shrink for these calls (runs, in-flight states and other stages' artefacts
# are not needed): `pack` prints the aside.sh line. Chunks made on the GPU name it; GPU
# kernels round differently from this CPU's, so some answers may differ from what a CPU would
# have given (the report counts chunks per machine).
# Trying `run` here without a GPU: SKIP_PIP=1 DEV=cpu OUT=/tmp/out bash ... run D 2 1
set -u
MODE=${1:-}
DATASET=${2:-}
case "$MODE" in
pack)
  shift 2
  PY=${PYTHON:-.venv/bin/python}
  rm -rf .devllm && mkdir -p .devllm/payload/wheels || exit 2
  "$PY" benchmarks/llmser.py --stage "$DATASET" "$@" --device-pack .devllm/payload || exit 3
  # cp312 wheels, no dependencies resolved: the device's own torch, numpy, tqdm, PyYAML stay
  platforms=""
  for v in 17 24 27 28 31 34; do platforms="$platforms --platform manylinux_2_${v}_x86_64"; done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $platforms --platform manylinux2014_x86_64 --platform any \
    -d .devllm/payload/wheels $("$PY" - <<'EOF'
from importlib.metadata import version
names = ["transformers", "tokenizers", "safetensors", "huggingface_hub", "hf-xet", "httpx2",
         "httpcore2", "anyio", "h11", "certifi", "idna", "regex", "llguidance", "gguf",
         "packaging", "pydantic", "pydantic_core", "annotated_types", "typing_inspection",
         "click", "typer", "shellingham", "rich", "markdown-it-py", "mdurl", "pygments",
         "annotated-doc", "kernels", "truststore", "charset_normalizer",
         "accelerate", "psutil"]
print(" ".join(f"{n}=={version(n)}" for n in names))
EOF
) || exit 4
  raw=$("$PY" -c "import sys; sys.path.insert(0, 'src'); from pathlib import Path; \
from llmseqrec.data.prepare import preset_spec; print(preset_spec('$DATASET', Path('../shared/data')).path)")
  [ -f "$raw" ] && raw=$(dirname "$raw") # a preset names its file or its folder
  tar cJf .devllm/payload/devdata.tar.xz -C "$(dirname "$raw")" "$(basename "$raw")" || exit 5
  mkdir -p ".devllm/payload/cache/$DATASET" && cp -r "cache/$DATASET/dataset" ".devllm/payload/cache/$DATASET/"
  tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | grep -zv -e '^benchmarks/results/runs/' \
    -e '^benchmarks/results/inflight/' -e '^benchmarks/results/llm-answers/' -e '^benchmarks/results/artefacts/' \
    | xargs -0 -r stat -c %s | awk '{ s += $1 } END { print s + 0 }')
  stage=$(git ls-files -z "benchmarks/results/artefacts/$DATASET/llmser" | xargs -0 -r stat -c %s | awk '{ s += $1 } END { print s + 0 }')
  part=$(( (64 * 1024 * 1024 - tree - stage) * 9 / 10 )) # a tenth kept for chunks added meanwhile
  tar cf - -C .devllm/payload . | split -b "$part" -d - .devllm/part-
  rm -rf .devllm/payload
  others=$(cd benchmarks/results/artefacts && ls -d */* | grep -v "^$DATASET/llmser$" | sed 's|^|benchmarks/results/artefacts/|' | tr '\n' ' ')
  echo "tree without runs, in-flight states, answers and other artefacts: $((tree / 1000000)) MB; this stage's artefacts $((stage / 1000000)) MB"
  echo "first, here: bash benchmarks/device/aside.sh out benchmarks/results/runs benchmarks/results/inflight benchmarks/results/llm-answers $others"
  parts=(.devllm/part-*)
  for p in "${parts[@]}"; do
    if [ "$p" != "${parts[-1]}" ]; then
      echo "call: carry [\"$p\"], command: ls -la .devllm   ($(( $(stat -c %s "$p") / 1000000 )) MB)"
    else
      echo "last call: carry [\"$p\"], command: bash benchmarks/device/llm_stage.sh run $DATASET 7 8 $*   ($(( $(stat -c %s "$p") / 1000000 )) MB)"
    fi
  done
  echo "each call within the machine's idle release (about 30 s) of the last, or the parts are lost"
  ;;
run)
  MIN=$3
  SHARDS=$4
  shift 4
  OUT=${OUT:?the device tool sets OUT}
  start=$(date +%s)
  rm -rf /tmp/payload /tmp/logs && mkdir -p /tmp/payload /tmp/logs
  cat .devllm/part-* | tar xf - -C /tmp/payload || { echo "payload incomplete: $(ls .devllm)"; exit 3; }
  source "$(dirname "$0")/common.sh"
  install_wheels /tmp/payload/wheels/*.whl || exit 4
  mkdir -p .devdata cache/text "cache/$DATASET"
  tar xJf /tmp/payload/devdata.tar.xz -C .devdata
  cp -r "/tmp/payload/cache/$DATASET/dataset" "cache/$DATASET/"
  cp /tmp/payload/cache/text/* cache/text/
  # the GGUF as the package it ships in; the sentence encoder is found by its recorded identity
  export PYTHONPATH=/tmp/site:/tmp/payload:$PWD/benchmarks/device/shim PYTHONUNBUFFERED=1
  PY=${PYTHON:-python3}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  "$PY" -c "import torch, transformers, llguidance; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)" || exit 5
  [ "${DEV:-cuda}" = cuda ] && start_mps "$PY"
  touch /tmp/marker
  for k in $(seq 0 $((SHARDS - 1))); do
    OMP_NUM_THREADS=1 timeout -s TERM -k 30 $((MIN * 60)) "$PY" benchmarks/llmser.py --stage "$DATASET" \
      --data .devdata "$@" --llm-threads 1 --llm-shard "$k/$SHARDS" > "/tmp/logs/shard-$k.txt" 2>&1 &
  done
  sleep 60
  for f in /tmp/logs/shard-*.txt; do echo "== $f after 60 s"; tail -c 400 "$f"; echo; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  wait
  for f in /tmp/logs/shard-*.txt; do echo "== $f"; tail -c 300 "$f"; echo; done
  find benchmarks/results/artefacts benchmarks/results/llm-answers -type f -newer /tmp/marker > /tmp/new.txt
  echo "$(grep -c '/chunks/llm-' /tmp/new.txt) new chunks, $(grep -c 'llm-answers' /tmp/new.txt) answer parts in $(($(date +%s) - start)) s"
  tar czf "$OUT/stage.tgz" -T /tmp/new.txt && ls -la "$OUT"
  ;;
*)
  echo "usage: llm_stage.sh pack DATASET [flags] | run DATASET MINUTES SHARDS [flags]"
  exit 2
  ;;
esac
