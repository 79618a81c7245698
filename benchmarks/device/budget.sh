#!/bin/bash
# Will a device call fit? The tool copies the working tree (tracked files and untracked,
# unignored ones) plus the carried paths, 64 MiB in all. Usage, here in the repo root:
#   bash benchmarks/device/budget.sh .whl .devdata/yelp cache/yelp/dataset cache/yelp/semantic/semantic-cb0c529d7a0b/embeddings.npy
# Lists the largest tracked files too: in-flight states a call does not need can be moved out
# of the tree for that call (mv to /tmp, back after; see grid.sh).
set -u
# Summed over every file: `du -c` under xargs prints one total per batch of arguments, and the
# last batch's total alone read as the tree once the tree outgrew one batch.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
carry=0
for p in "$@"; do
  [ -e "$p" ] || { echo "missing: $p"; exit 2; }
  s=$(du -sb "$p" | cut -f1); carry=$((carry + s)); printf '%8.1f MB  %s\n' "$(echo "$s/1000000" | bc -l)" "$p"
done
limit=$((64 * 1024 * 1024))
printf 'tree %.1f MB + carry %.1f MB = %.1f MB of %.1f MB\n' "$(echo "$tree/1000000" | bc -l)" "$(echo "$carry/1000000" | bc -l)" "$(echo "($tree+$carry)/1000000" | bc -l)" "$(echo "$limit/1000000" | bc -l)"
echo "largest tracked files:"; git ls-files -z | xargs -0 du -b 2>/dev/null | sort -n | tail -n 5
[ $((tree + carry)) -le $limit ] && echo fits || { echo "does NOT fit"; exit 1; }
