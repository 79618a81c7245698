#!/bin/bash
# Moves tracked files a device call does not need out of the working tree for that call, so the
# tree plus what is carried stays under the tool's 64 MiB (see budget.sh), and puts them back.
#   bash benchmarks/device/aside.sh out benchmarks/results/inflight/ml-1m benchmarks/results/runs/beauty
#   ... the device call ...
#   bash benchmarks/device/aside.sh back
# Paths keep their place under /tmp/aside; `git status` shows them deleted until they are back.
set -eu
ASIDE=/tmp/aside
case "${1:-}" in
  out)
    shift
    for p in "$@"; do mkdir -p "$ASIDE/$(dirname "$p")"; mv "$p" "$ASIDE/$p"; echo "aside: $p"; done ;;
  back)
    [ -d "$ASIDE" ] || { echo "nothing aside"; exit 0; }
    (cd "$ASIDE" && find . -type f -print0) | while IFS= read -r -d '' f; do
      f=${f#./}; mkdir -p "$(dirname "$f")"
      if [ -e "$f" ]; then echo "kept the newer $f (the call wrote it); aside copy left in $ASIDE"
      else mv "$ASIDE/$f" "$f"; fi
    done
    find "$ASIDE" -type d -empty -delete 2>/dev/null || true
    git status --short | grep '^ D' || echo "all back" ;;
  *) echo "usage: aside.sh out PATH... | back"; exit 2 ;;
esac
