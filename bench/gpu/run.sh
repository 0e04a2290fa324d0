#!/usr/bin/env bash
# GPU benchmark: one MeZO step of Spillway's CUDA engine (all parameters resident
# on the device, fp32 weights; GEMMs in each of SPILLWAY_GEMM's precisions: fp32,
# tf32, bf16) against a PyTorch MeZO step (transformers OPTForCausalLM, sdpa
# attention, model resident on the same GPU; fp32 and TF32 matmuls), on
# random-initialised OPT-shaped models written on this machine.
#
# usage (repository root, on a GPU machine):
#   bench/gpu/run.sh                       # OPT-1.3B, batch 1 and 16, sequence 512, gemm fp32 tf32 bf16
#   MODELS="1.3b 6.7b" SEQ=512 BATCHES="1 16" GEMMS="tf32 bf16" RESULTS=bench/results bench/gpu/run.sh
# Needs: nvidia-smi, python3 with torch + transformers, node (or $CARRY/node.xz),
# the addon built with CUDA ($ADDON, default native/build/Release/spillway.node,
# else $CARRY/spillway-bench.node), OpenBLAS (or $CARRY/openblas.tar.xz).
# Optional: ZO2 sources in $CARRY/zo2 (liangyuwang/zo2): its own OPT speed test is tried.
# Writes $RESULTS/gpu-zo-step.json, .md and .log.
set -u
CARRY=${SPILLWAY_GPU_CARRY:-.gpucarry}
RESULTS=${RESULTS:-bench/results}
MODELS=${MODELS:-1.3b}
BATCHES=${BATCHES:-"1 16"}
SEQ=${SEQ:-512}
GEMMS=${GEMMS:-"fp32 tf32 bf16"}   # Spillway's GEMM precisions (SPILLWAY_GEMM), one engine each
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
ZO2=${ZO2:-1}
WORK=${WORK:-${TMPDIR:-/tmp}/spillway-gpu-bench}        # raw outputs
MODEL_DIR=${MODEL_DIR:-${TMPDIR:-/tmp}/spillway-gpu-models}  # the generated models (GiBs)
mkdir -p "$WORK" "$RESULTS" "$MODEL_DIR"
LOG="$RESULTS/gpu-zo-step.log"
exec > >(tee "$LOG") 2>&1
here=$(cd "$(dirname "$0")" && pwd)

echo "== spillway GPU ZO-step benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi 2>&1 | head -12 | tee "$WORK/nvidia-smi.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
echo "cpu cores: $(nproc); $(python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)')"
git log -1 --format='tree at commit %h (%s) plus uncommitted changes' 2>/dev/null

if [ -f "$CARRY/openblas.tar.xz" ] && ! ldconfig -p 2>/dev/null | grep -q libopenblas.so.0; then
  mkdir -p "$WORK/openblas" && tar -C "$WORK/openblas" -xJf "$CARRY/openblas.tar.xz"
  export LD_LIBRARY_PATH="$WORK/openblas/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if ! command -v node >/dev/null && [ -f "$CARRY/node.xz" ]; then
  mkdir -p "$WORK/bin" && xz -dc "$CARRY/node.xz" >"$WORK/bin/node" && chmod +x "$WORK/bin/node"
  export PATH="$WORK/bin:$PATH"
fi
# cuBLAS (the addon dlopens libcublas.so.13): the loader path, else the pip wheel under python3's site-packages.
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas.so.13'; then
  SP=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))')
  CUBLAS=$(find $SP /usr/local/cuda* -name 'libcublas.so.13' 2>/dev/null | head -1)
  [ -n "$CUBLAS" ] && export LD_LIBRARY_PATH="$(dirname "$CUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "cuBLAS: ${CUBLAS:-not found (the engine falls back to its tiled GEMM)}"
fi
ADDON=${ADDON:-native/build/Release/spillway.node}
[ -f "$ADDON" ] || ADDON="$CARRY/spillway-bench.node"
echo "node $(node --version); addon $ADDON"

# Peak GPU memory used (nvidia-smi, whole device) while a command runs.
sampled() { # OUTFILE CMD...
  local out=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$WORK/smi.log" 2>/dev/null &
  local smi=$!
  "$@" >"$out"
  local rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  echo "$(sort -n "$WORK/smi.log" | tail -1)" >"$out.smi"
  return $rc
}

FILES=()
for m in $MODELS; do
  dir="$MODEL_DIR/opt-$m"
  echo "== OPT-$m: model"
  maxb=0; for b in $BATCHES; do [ "$b" -gt "$maxb" ] && maxb=$b; done
  python3 "$here/make_opt_model.py" --shape "$m" --out "$dir" --seq "$SEQ" --batch "$maxb" || { echo "model writer failed"; continue; }
  for b in $BATCHES; do
    for g in $GEMMS; do
      echo "== OPT-$m: Spillway CUDA, batch $b x $SEQ, gemm $g"
      f="$WORK/spillway-$m-b$b-$g.json"
      SPILLWAY_GEMM=$g sampled "$f" node "$here/spillway_step.mjs" "$ADDON" "$dir" --batches "$b" --steps "$STEPS" \
        --warmup "$WARMUP" --gemm "$g" && FILES+=("$m:$f")
    done
  done
  echo "== OPT-$m: PyTorch MeZO, batches $BATCHES x $SEQ, fp32 and tf32"
  f="$WORK/torch-$m.json"
  sampled "$f" python3 "$here/mezo_torch_gpu.py" "$dir" --batches "$(echo $BATCHES | tr ' ' ,)" --steps "$STEPS" --warmup "$WARMUP" && FILES+=("$m:$f")
done

if [ "$ZO2" = 1 ] && [ -d "$CARRY/zo2/zo2" ]; then
  echo "== ZO2 ($(cat "$CARRY/zo2/COMMIT" 2>/dev/null)): its own test/mezo_sgd/hf_opt/test_speed.py, opt_1_3b, zo2 (offloaded), fp32, batch 1, seq 512"
  ( cd "$CARRY/zo2" && timeout ${ZO2_TIMEOUT:-150} python3 test/mezo_sgd/hf_opt/test_speed.py --model_name opt_1_3b --task causalLM \
      --zo_method zo2 --model_dtype fp32 --batch_size 1 --sequence_length 512 --max_steps 7 ) >"$WORK/zo2.txt" 2>&1
  echo "zo2 exit status $?" >>"$WORK/zo2.txt"
  tail -40 "$WORK/zo2.txt"
  FILES+=("zo2:$WORK/zo2.txt")
fi

python3 "$here/report.py" --out "$RESULTS/gpu-zo-step" --smi "$WORK/nvidia-smi.txt" "${FILES[@]}"
