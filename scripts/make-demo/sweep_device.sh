#!/usr/bin/env bash
# device-side sweep: each run pinned to 2 cores, 8 at a time
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=2
jobs=()
for lr in $LRS; do for s in 0 1 2; do jobs+=("$lr $s"); done; done
i=0
for j in "${jobs[@]}"; do
  set -- $j
  slot=$(( i % 8 ))
  taskset -c $((2*slot)),$((2*slot+1)) python3 scripts/make-demo/check.py --lr $1 --eps ${EPS:-1e-3} --bs ${BS:-16} --steps ${STEPS:-1500} --eval-every ${EVERY:-50} --seeds $2 --json $OUT/r_${1}_${2}.json > $OUT/r_${1}_${2}.log 2>&1 &
  i=$((i+1))
  if (( i % 8 == 0 )); then wait; fi
done
wait
tail -n 1 $OUT/*.log
