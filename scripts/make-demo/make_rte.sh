#!/usr/bin/env bash
# Rebuild the RTE-pairs model (the harder task of bench/time-to-accuracy.ts --task rte) and its data
# from scratch, deterministically:
#   resources/models/spillway-rte/      (config, model.safetensors, the demo's tokenizer files)
#   resources/datasets/rte-pairs/       ({train,eval}.jsonl)
# The demo's tokenizer is reused: it was learnt over every dataset under resources/datasets and the
# RTE prompt, so each word of the RTE corpus is already one token. Needs /usr/bin/python3 with torch
# (CPU) + numpy. Wall time on 2 free CPU cores: ~1 min to tokenize, ~8 min pretraining, seconds of checks.
# usage: scripts/make-demo/make_rte.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=2 PYTHONHASHSEED=0
D=scripts/make-demo
OUT=resources/models/spillway-rte
start=$(date +%s)
$PY $D/gen_rte.py 80000
$PY $D/pretrain.py 2.0 $OUT $D/build/rte-corpus.jsonl
cp resources/models/spillway-demo/tokenizer.json resources/models/spillway-demo/tokenizer_config.json $OUT/
$PY $D/check_rte.py --model $OUT --json $D/build/check-rte.json
echo "make_rte: done in $(( $(date +%s) - start ))s"
