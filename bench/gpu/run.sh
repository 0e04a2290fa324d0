#!/usr/bin/env bash
# GPU benchmark of one MeZO step, in two sections (each can be turned off):
#
# RESIDENT (RESIDENT=1, default): Spillway's CUDA engine with all parameters resident on the
# device (fp32 weights; GEMMs in each of --gemm's precisions: fp32, tf32, bf16) against a
# PyTorch MeZO step at the same precision (transformers OPTForCausalLM, sdpa attention, model resident
# on the same GPU; fp32, TF32 matmuls, bf16 autocast).
# STREAMED (STREAMED=1, default): ZO2's regime. Every transformer block lives on the CPU (pinned;
# STREAM_OFFLOAD=ssd: in a spill file) and visits the GPU once per step; embeddings and head stay
# resident; masters fp32 and bf16; updates applied on the device and written back (ZO2's way).
# Per configuration: step time, peak GPU memory (NVML, whole process), H2D/D2H bytes per step
# and the transfer efficiency against the calibrated H2D bandwidth (ALGORITHMS.md §5).
# Models are random-initialised OPT shapes written on this machine.
#
# usage (repository root, on a GPU machine; bench/gpu/README.md has the device tool's calls):
#   PART=1.3b bench/gpu/run.sh             # resident, streamed and ZO2's schedule on OPT-1.3B
#   PART=6.7b bench/gpu/run.sh             # the same on OPT-6.7B
#   ESTIMATE_ONLY=1 PART=6.7b bench/gpu/run.sh   # print the expected wall time and stop (runs anywhere)
# Resident knobs: MODELS (1.3b), BATCHES ("1 16"), SEQ (512), GEMMS ("fp32 tf32 bf16"),
#   TORCH_PRECISIONS (fp32,tf32,bf16), STEPS (5), WARMUP (2).
# Streamed knobs: STREAM_MODELS ("1.3b 6.7b"; STREAM_13B=1 adds 13b, written in bf16 to fit the disk),
#   STREAM_SHAPES ("1x512 16x512 1x2048": B x T; 1x2048 is the shape of ZO2's published memory figures;
#   STREAM_LONG=1 adds 16x2048), STREAM_MASTERS ("fp32 bf16"), STREAM_UPDATE (device | home),
#   STREAM_OFFLOAD (cpu | ssd), STREAM_GEMMS (fp32), STREAM_SLOTS (2), STREAM_STEPS (3), STREAM_WARMUP (1),
#   SPILL (ssd: spill folder, default $WORK/spill). ZO2_SCHEDULE (1): ZO2's schedule on the streamed shapes.
# MERGE=FILE.json merges an earlier report's rows into this one; NAME (gpu-zo-step) names the outputs.
# Needs: nvidia-smi, $PYTHON (python3) with torch, transformers and safetensors; what the machine lacks (node,
# OpenBLAS, the CUDA-built addon, the CLI's runtime) comes from .gpucarry (bench/gpu/carry.sh; native/tests/gpu_env.sh).
# Optional: ZO2 sources in $CARRY/zo2 (liangyuwang/zo2): its own OPT speed test is tried.
# Writes $RESULTS/$NAME.json, .md and .log (NAME defaults to gpu-zo-step).
set -u
# PART: the two halves of the benchmark the device tool's calls fit (bench/gpu/README.md): 1.3b (resident
# OPT-1.3B, streamed OPT-1.3B, ZO2's schedule on OPT-1.3B) and 6.7b (the same for OPT-6.7B). Unset: the knobs' defaults.
# 6.7b leaves the reduced-precision GEMM rows to 1.3b and times 2 steps (after 1 warm-up) to fit one call.
case "${PART:-}" in
  1.3b) : "${MODELS:=1.3b}" "${STREAM_MODELS:=1.3b}" "${STREAM_SHAPES:=1x512 1x2048}" "${STEPS:=3}" "${WARMUP:=1}" "${STREAM_STEPS:=2}" ;;
  6.7b) : "${MODELS:=6.7b}" "${STREAM_MODELS:=6.7b}" "${STREAM_SHAPES:=1x512 1x2048}" "${GEMMS:=fp32}" "${TORCH_PRECISIONS:=fp32,tf32}" "${STEPS:=2}" "${WARMUP:=1}" "${STREAM_STEPS:=2}" ;;
  "") ;;
  *) echo "PART must be 1.3b or 6.7b"; exit 2 ;;
esac
RESULTS=${RESULTS:-bench/results}
MODELS=${MODELS:-1.3b}
BATCHES=${BATCHES:-"1 16"}
SEQ=${SEQ:-512}
GEMMS=${GEMMS:-"fp32 tf32 bf16"}   # Spillway's GEMM precisions (--gemm), one engine each
TORCH_PRECISIONS=${TORCH_PRECISIONS:-"fp32,tf32,bf16"}   # PyTorch MeZO: fp32, TF32 matmuls, bf16 autocast
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
ZO2=${ZO2:-1}
ZO2_SCHEDULE=${ZO2_SCHEDULE:-1}   # ZO2's schedule re-implemented (zo2_schedule.py) on the streamed models and shapes
DEVICE=${DEVICE:-cuda}     # cpu: a smoke test of the scripts without a GPU (MODELS=tiny)
PYTHON=${PYTHON:-python3}  # with torch, transformers and safetensors
THREADS=${THREADS:-16}
RESIDENT=${RESIDENT:-1}
STREAMED=${STREAMED:-1}
STREAM_MODELS=${STREAM_MODELS:-"1.3b 6.7b"}
[ "${STREAM_13B:-0}" = 1 ] && STREAM_MODELS="$STREAM_MODELS 13b"
STREAM_SHAPES=${STREAM_SHAPES:-"1x512 16x512 1x2048"}
[ "${STREAM_LONG:-0}" = 1 ] && STREAM_SHAPES="$STREAM_SHAPES 16x2048"
STREAM_MASTERS=${STREAM_MASTERS:-"fp32 bf16"}
STREAM_UPDATE=${STREAM_UPDATE:-device}
STREAM_OFFLOAD=${STREAM_OFFLOAD:-cpu}
STREAM_GEMMS=${STREAM_GEMMS:-fp32}
STREAM_SLOTS=${STREAM_SLOTS:-2}
STREAM_STEPS=${STREAM_STEPS:-3}
STREAM_WARMUP=${STREAM_WARMUP:-1}
WORK=${WORK:-${TMPDIR:-/tmp}/spillway-gpu-bench}        # raw outputs
MODEL_DIR=${MODEL_DIR:-${TMPDIR:-/tmp}/spillway-gpu-models}  # the generated models (GiBs)
here=$(cd "$(dirname "$0")" && pwd)
estimate() {
  $PYTHON "$here/estimate.py" --resident "$RESIDENT" --models "$MODELS" --batches "$BATCHES" --seq "$SEQ" \
    --gemms "$GEMMS" --steps "$STEPS" --warmup "$WARMUP" --streamed "$STREAMED" --stream-models "$STREAM_MODELS" \
    --stream-shapes "$STREAM_SHAPES" --stream-masters "$STREAM_MASTERS" --stream-gemms "$STREAM_GEMMS" \
    --stream-offload "$STREAM_OFFLOAD" --stream-update "$STREAM_UPDATE" --stream-steps "$STREAM_STEPS" --stream-warmup "$STREAM_WARMUP" \
    --zo2-schedule "$ZO2_SCHEDULE" --torch-precisions "$TORCH_PRECISIONS"
}
if [ "${ESTIMATE_ONLY:-0}" = 1 ]; then echo "== expected wall time on one H100 (rough, +-30%)"; estimate; exit 0; fi
mkdir -p "$WORK" "$RESULTS" "$MODEL_DIR"
NAME=${NAME:-gpu-zo-step}   # output basename: $RESULTS/$NAME.{json,md,log}
LOG="$RESULTS/$NAME.log"
exec > >(tee "$LOG") 2>&1

echo "== spillway GPU ZO-step benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi 2>&1 | head -12 | tee "$WORK/nvidia-smi.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
echo "cpu cores: $(nproc); $($PYTHON -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)')"
git log -1 --format='tree at commit %h (%s) plus uncommitted changes' 2>/dev/null
echo "== expected wall time on one H100 (rough, +-30%; bench/gpu/estimate.py)"
estimate
T_START=$(date +%s)

. "$here/../../native/tests/gpu_env.sh"
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

# One model folder per shape, written once (--reuse) with token rows for every batch size and
# sequence length either section asks for. 13b is written in bf16 (26 GB; fp32 would not fit
# the 64 GiB disk beside the others): when the disk is short, the other models are deleted first.
maxb=0; for b in $BATCHES; do [ "$b" -gt "$maxb" ] && maxb=$b; done
SEQS=""
for s in $STREAM_SHAPES; do
  b=${s%x*}; t=${s#*x}
  [ "$b" -gt "$maxb" ] && maxb=$b
  [ "$t" != "$SEQ" ] && case " $SEQS " in *" $t "*) ;; *) SEQS="$SEQS $t";; esac
done
SEQS=$(echo $SEQS | tr ' ' ,)
model_dir() { if [ "$1" = 13b ]; then echo "$MODEL_DIR/opt-13b-bf16"; else echo "$MODEL_DIR/opt-$1"; fi; }
write_model() { # SHAPE
  local m=$1 dir; dir=$(model_dir "$1")
  local dtype=f32; [ "$m" = 13b ] && dtype=bf16
  if [ ! -f "$dir/spec.json" ]; then
    local need; need=$($PYTHON -c "import sys; sys.path.insert(0, '$here'); from estimate import params; print(int(params('$m')['all'] * (2 if '$dtype' == 'bf16' else 4) + 4 * 2**30))")
    local avail; avail=$(df --output=avail -B1 "$MODEL_DIR" | tail -1)
    if [ "$avail" -lt "$need" ]; then
      echo "disk: $((avail / 2**30)) GiB free, OPT-$m needs $((need / 2**30)) GiB: deleting the other generated models"
      for d in "$MODEL_DIR"/opt-*; do [ "$d" != "$dir" ] && rm -rf "$d"; done
    fi
  fi
  $PYTHON "$here/make_opt_model.py" --shape "$m" --out "$dir" --seq "$SEQ" --batch "$maxb" --dtype "$dtype" \
    ${SEQS:+--extra-seqs "$SEQS"} --reuse
}

FILES=()
[ "$RESIDENT" = 1 ] && for m in $MODELS; do
  dir=$(model_dir "$m")
  echo "== OPT-$m: model"
  write_model "$m" || { echo "model writer failed"; continue; }
  # One engine per GEMM precision for every batch size, in increasing size (one load of the model each).
  for g in $GEMMS; do
    echo "== OPT-$m: Spillway CUDA, batches $BATCHES x $SEQ, gemm $g"
    f="$WORK/spillway-$m-$g.json"
    SPILLWAY_GEMM=$g sampled "$f" node "$here/spillway_step.mjs" "$ADDON" "$dir" --batches "$(echo $BATCHES | tr ' ' ,)" --engine reuse \
      --steps "$STEPS" --warmup "$WARMUP" --gemm "$g" --device "$DEVICE" --threads "$THREADS" && FILES+=("$m:$f")
  done
  echo "== OPT-$m: PyTorch MeZO, batches $BATCHES x $SEQ, $TORCH_PRECISIONS"
  f="$WORK/torch-$m.json"
  sampled "$f" $PYTHON "$here/mezo_torch_gpu.py" "$dir" --batches "$(echo $BATCHES | tr ' ' ,)" --precisions "$TORCH_PRECISIONS" \
    --steps "$STEPS" --warmup "$WARMUP" --device "$DEVICE" && FILES+=("$m:$f")
done
[ "$RESIDENT" = 1 ] && echo "== resident section: $(( $(date +%s) - T_START )) s"

# ---- STREAMED: ZO2's regime (blocks homed on the CPU or the SSD, one visit to the GPU per step)
if [ "$STREAMED" = 1 ]; then
  T_STREAM=$(date +%s)
  shapes=$(echo $STREAM_SHAPES | tr ' ' ,)
  for m in $STREAM_MODELS; do
    dir=$(model_dir "$m")
    echo "== OPT-$m: model"
    write_model "$m" || { echo "model writer failed"; continue; }
    for mast in $STREAM_MASTERS; do
      for g in $STREAM_GEMMS; do
        echo "== OPT-$m: Spillway CUDA streamed, offload $STREAM_OFFLOAD, masters $mast, update on $STREAM_UPDATE, gemm $g, slots $STREAM_SLOTS, shapes $STREAM_SHAPES"
        f="$WORK/stream-$m-$STREAM_OFFLOAD-$mast-$STREAM_UPDATE-$g.json"
        spill=()
        if [ "$STREAM_OFFLOAD" = ssd ]; then mkdir -p "${SPILL:-$WORK/spill}"; spill=(--spill "${SPILL:-$WORK/spill}"); fi
        # A hang (or a far slower run than expected) costs at most the timeout; on SIGTERM the script
        # writes the shapes it finished.
        case $m in 13b) tmo=900;; 6.7b) tmo=480;; *) tmo=240;; esac
        SPILLWAY_GEMM=$g sampled "$f" timeout -k 15 "${STREAM_TIMEOUT:-$tmo}" node "$here/spillway_step.mjs" "$ADDON" "$dir" --shapes "$shapes" \
          --steps "$STREAM_STEPS" --warmup "$STREAM_WARMUP" --gemm "$g" --offload "$STREAM_OFFLOAD" --masters "$mast" \
          --update-on "$STREAM_UPDATE" --slots "$STREAM_SLOTS" "${spill[@]}" --device "$DEVICE" --threads "$THREADS" && FILES+=("$m:$f")
      done
    done
  done
  echo "== streamed section: $(( $(date +%s) - T_STREAM )) s"
fi

# ---- ZO2's schedule, re-implemented (zo2_schedule.py: its three streams, host synchronisation, dual
# forward per module, fp16 offload), on the streamed models and shapes: the step-time comparison at no
# more GPU memory than it takes.
if [ "$ZO2_SCHEDULE" = 1 ]; then
  shapes=$(echo $STREAM_SHAPES | tr ' ' ,)
  for m in $STREAM_MODELS; do
    dir=$(model_dir "$m")
    write_model "$m" >/dev/null || continue
    echo "== OPT-$m: ZO2's schedule re-implemented in PyTorch (fp16 offload, autocast fp16), shapes $STREAM_SHAPES"
    f="$WORK/zo2schedule-$m.json"
    sampled "$f" timeout -k 15 "${ZO2_TIMEOUT:-300}" $PYTHON "$here/zo2_schedule.py" "$dir" --shapes "$shapes" --steps "$STREAM_STEPS" \
      --warmup "$STREAM_WARMUP" --device "$DEVICE" && FILES+=("$m:$f")
  done
fi

if [ "$ZO2" = 1 ] && [ -d "$CARRY/zo2/zo2" ]; then
  echo "== ZO2 ($(cat "$CARRY/zo2/COMMIT" 2>/dev/null)): its own test/mezo_sgd/hf_opt/test_speed.py, opt_1_3b, zo2 (offloaded), fp32, batch 1, seq 512"
  ( cd "$CARRY/zo2" && timeout 150 $PYTHON test/mezo_sgd/hf_opt/test_speed.py --model_name opt_1_3b --task causalLM \
      --zo_method zo2 --model_dtype fp32 --batch_size 1 --sequence_length 512 --max_steps 7 ) >"$WORK/zo2.txt" 2>&1
  echo "zo2 exit status $?" >>"$WORK/zo2.txt"
  tail -40 "$WORK/zo2.txt"
  FILES+=("zo2:$WORK/zo2.txt")
fi

[ -n "${MERGE:-}" ] && [ -f "$MERGE" ] && cp "$MERGE" "$WORK/merge.json" && FILES+=("json:$WORK/merge.json")
echo "== total: $(( $(date +%s) - T_START )) s"
$PYTHON "$here/report.py" --out "$RESULTS/$NAME" --smi "$WORK/nvidia-smi.txt" "${FILES[@]}"
