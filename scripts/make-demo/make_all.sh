#!/usr/bin/env bash
# Rebuild the embedded demo model and datasets from scratch, deterministically.
#   resources/models/spillway-demo/   (config, model.safetensors, tokenizer files)
#   resources/datasets/               (sentiment-demo/{train,eval}.jsonl + small template demos)
# Needs /usr/bin/python3 with torch (CPU) + numpy, and node (for the tokenizer check,
# run against node_modules/@huggingface/tokenizers). Wall time on 2 CPU cores:
# ~20 s data+tokenizer+JS check, ~8 min pretraining (17.6 min measured on a shared,
# overloaded box; PyTorch thread oversubscription hurts), ~1 min checks. See resources/README.md.
# usage: scripts/make-demo/make_all.sh [--skip-mezo]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=2 PYTHONHASHSEED=0
D=scripts/make-demo
start=$(date +%s)
$PY $D/gen_data.py 80000
$PY $D/gen_tokenizer.py
if [[ -z "${SKIP_JS_CHECK:-}" ]]; then $PY $D/check_tokenizer.py; else echo "skipping JS tokenizer check"; fi
$PY $D/pretrain.py 1.0 resources/models/spillway-demo
if [[ "${1:-}" == "--skip-mezo" ]]; then
  $PY $D/check.py --no-mezo
else
  # demo hyperparameters from resources/demo.json
  read -r LR EPS BS STEPS EVERY < <($PY -c "import json;d=json.load(open('resources/demo.json'));print(d['lr'],d['eps'],d['batchSize'],d['steps'],d['evalEvery'])")
  $PY $D/check.py --lr "$LR" --eps "$EPS" --bs "$BS" --steps "$STEPS" --eval-every "$EVERY" --seeds 0,1,2 --json $D/build/check.json
fi
echo "make_all: done in $(( $(date +%s) - start ))s"
