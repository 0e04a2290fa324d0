#!/usr/bin/env bash
# GPU proof of the CUDA backend and of the product on it, run from the repository root on a machine
# with an NVIDIA GPU, nvcc and cmake (what it lacks comes from .gpucarry: bench/gpu/carry.sh):
#   1. builds the native core + backend_ops with CUDA (cmake directly),
#   2. backend_ops (every kernel, CPU vs CUDA; the staging ring, copy queue, events, pin_host, the
#      device budget's error type, --gemm reaching the backend) per GEMM precision: fp32 (with --perf
#      and the copy-queue bandwidth), tf32 and bf16 (--perf-gemm); the warp attention kernel,
#   3. compute-sanitizer memcheck and racecheck (fp32),
#   4. one MeZO step + scoring of each fixture model, CPU vs CUDA (zo_step_compare.mjs): fp32 decides;
#      tf32 and bf16 for the record,
#   5. the forward pass against the PyTorch golden files on CUDA per GEMM precision (golden_compare.mjs):
#      fp32 must pass; whether tf32 passes decides if it may become the GPU's default GEMM mode,
#   6. the tiered store's placement matrix on CUDA, bit for bit (tier_compare.mjs),
#   7. the product path: `spillway train --device cuda` on the demo, its losses against the CPU's
#      (fp32 golden tolerance per step, 1e-5 relative) and bit for bit across placements on CUDA
#      (resident, streamed from CPU memory, from the SSD, the planner's default placement; bf16 masters
#      resident and from the SSD), tf32 GEMMs against the CPU (for the record), and a run over the
#      device budget failing with its reason,
#   8. what the next session turns into fixtures: the devices and NVML (doctor --json), a calibration on
#      the GPU (plan --recalibrate --json), a GPU run's telemetry (runs export --format json),
# and writes everything, with the machine's description, to a report, ending with one line per part.
#
# usage: native/tests/gpu_proof.sh [REPORT]     (default native/tests/gpu-report.txt; the JSON files go beside it)
#        PROOF_DEVICE=cpu PROOF_BUILD=native/build PROOF_STEPS=3 native/tests/gpu_proof.sh /tmp/dry/gpu-report.txt
#        (a dry run of the script without a GPU: the CUDA steps fail or are skipped, the product path runs on the CPU)
set -u
REPORT=${1:-native/tests/gpu-report.txt}
OUTDIR=$(dirname "$REPORT")
DEV=${PROOF_DEVICE:-cuda}
WORK=${TMPDIR:-/tmp}/spillway-gpu-proof
mkdir -p "$WORK" "$OUTDIR"
exec > >(tee "$REPORT") 2>&1
status=0
T0=$(date +%s)

echo "== spillway GPU proof, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "== machine"
nvidia-smi 2>&1 | head -12
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,pci.bus_id --format=csv 2>&1
echo "cpu cores: $(nproc); kernel $(uname -r); $(nvcc --version 2>&1 | tail -2 | head -1)"
git log -1 --format='tree at commit %h (%s) plus uncommitted changes' 2>/dev/null
. native/tests/gpu_env.sh
SUMMARY=()
SANITIZERS=()   # their pids: a bare `wait` would also wait for the report's tee
part() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }

# ---- build (PROOF_BUILD=DIR reuses a build folder holding backend_ops instead: the CPU dry run's native/build)
rm -rf "$WORK"/memcheck.* "$WORK"/racecheck.*
if [ -n "${PROOF_BUILD:-}" ]; then
  BUILD=$PROOF_BUILD
  part "build: reusing $BUILD (PROOF_BUILD)"
  SUMMARY+=("build: reused $BUILD")
else
  BUILD=$WORK/build
  part "build: cmake, Release, CUDA architectures 75;80;86;89;90;120 (+PTX 120)"
  CMAKE_BLAS=()
  [ -n "${OPENBLAS_DIR:-}" ] && CMAKE_BLAS=(-DCBLAS_INCLUDE_DIR="$OPENBLAS_DIR/include" -DOPENBLAS_LIBRARY="$OPENBLAS_DIR/lib/libopenblas.so")
  rm -rf "$BUILD"
  if cmake -S native -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPILLWAY_ADDON=OFF "${CMAKE_BLAS[@]}" >"$WORK/cmake.log" 2>&1 &&
     cmake --build "$BUILD" -j "$(nproc)" >>"$WORK/cmake.log" 2>&1; then
    grep -E 'CUDA backend' "$WORK/cmake.log"
    SUMMARY+=("build: ok")
  else
    echo "BUILD FAILED"; tail -40 "$WORK/cmake.log"; status=1; SUMMARY+=("build: FAILED")
  fi
fi
echo "addon: $ADDON ($(node -e "const a=require('./$ADDON'); console.log(a.cudaCompiled ? 'CUDA compiled in' : 'no CUDA')" 2>&1))"

# ---- kernels, once per GEMM precision
if [ -x "$BUILD/backend_ops" ]; then
  for gemm in fp32 tf32 bf16; do
    if [ $gemm = fp32 ]; then perf=--perf; else perf=--perf-gemm; fi
    part "backend_ops, SPILLWAY_GEMM=$gemm $perf (CPU backend vs CUDA backend, same inputs)"
    SPILLWAY_GEMM=$gemm timeout 240 "$BUILD/backend_ops" $perf 2>&1 | tee "$WORK/backend_ops-$gemm.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || status=1
    SUMMARY+=("backend_ops SPILLWAY_GEMM=$gemm: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/backend_ops-$gemm.log" | tail -1 || true) (exit $rc); $(grep -E '^backends:' "$WORK/backend_ops-$gemm.log" | cut -d'|' -f2 | sed 's/^ *//')")
  done
  part "backend_ops, SPILLWAY_ATTENTION=warp (the fallback attention kernel)"
  SPILLWAY_ATTENTION=warp SPILLWAY_GEMM=fp32 timeout 120 "$BUILD/backend_ops" 2>&1 | tee "$WORK/backend_ops-warp.log" | grep -E 'attention|passed'
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || status=1
  SUMMARY+=("backend_ops SPILLWAY_ATTENTION=warp: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/backend_ops-warp.log" | tail -1 || true) (exit $rc)")
  # Out-of-bounds accesses (memcheck) and shared-memory races (racecheck) in our kernels, in the background
  # while the engine and product checks run (their verdicts are collected at the end); API errors are not
  # reported (backend_ops provokes an out-of-memory cudaMalloc and a failing cudaHostRegister on purpose).
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
      part "compute-sanitizer --tool $tool backend_ops (correctness shapes, fp32), in the background"
      ( SPILLWAY_GEMM=fp32 timeout 240 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 3 "$BUILD/backend_ops" >"$WORK/$tool.log" 2>&1
        echo $? >"$WORK/$tool.rc" ) &
      SANITIZERS+=($!)
    done
  fi
fi

# ---- engine: one MeZO step CPU vs CUDA, the golden forward, the placement matrix
SPECS="$CARRY/specs.json"
[ -f "$SPECS" ] || { node native/tests/zo_step_compare.mjs make-specs "$WORK/specs.json" && SPECS="$WORK/specs.json"; }
part "zo_step_compare (one MeZO step, q=2, + scoring; CPU vs CUDA, masters resident on the GPU)"
if SPILLWAY_GEMM=fp32 node native/tests/zo_step_compare.mjs run "$ADDON" "$SPECS"; then SUMMARY+=("zo_step_compare fp32: PASS")
else status=1; SUMMARY+=("zo_step_compare fp32: FAIL"); fi
for gemm in tf32 bf16; do
  part "zo_step_compare, SPILLWAY_GEMM=$gemm (for the record: the tolerances are fp32's)"
  SPILLWAY_GEMM=$gemm node native/tests/zo_step_compare.mjs run "$ADDON" "$SPECS" >"$WORK/zo-$gemm.log" 2>&1
  rc=$?; grep -E 'PASS|FAIL|all passed' "$WORK/zo-$gemm.log"
  SUMMARY+=("zo_step_compare $gemm: exit $rc (for the record)")
done
for gemm in fp32 tf32 bf16; do
  part "golden_compare $DEV gemm $gemm (the forward against the PyTorch golden files, forward-golden.test.ts' tolerances)"
  node native/tests/golden_compare.mjs "$ADDON" "$SPECS" "$DEV" $gemm
  rc=$?
  if [ $gemm = fp32 ]; then
    [ "$rc" = 0 ] || status=1
    SUMMARY+=("golden_compare fp32: $([ $rc = 0 ] && echo PASS || echo FAIL)")
  else
    if [ "$DEV" = cpu ]; then SUMMARY+=("golden_compare $gemm: exit $rc (the CPU computes in fp32 whatever is asked: says nothing of the GPU)")
    else SUMMARY+=("golden_compare $gemm: $([ $rc = 0 ] && echo "PASS: the golden tolerances hold ($gemm may be the GPU default)" || echo "FAIL: the golden tolerances do not hold (fp32 stays the default)")"); fi
  fi
done
part "tier_compare $DEV (placement matrix: CPU- and SSD-homed blocks, K, read-ahead, device updates, two folders; fp32/bf16/fp16)"
mkdir -p "$WORK/tier-spill"
if timeout 240 node native/tests/tier_compare.mjs "$ADDON" "$SPECS" "$WORK/tier-spill" "$DEV"; then SUMMARY+=("tier_compare $DEV: PASS (bit-identical)")
else status=1; SUMMARY+=("tier_compare $DEV: FAIL"); fi

# ---- the product: spillway train on the device, against the CPU and across placements
export SPILLWAY_DATA_DIR="$WORK/data"
rm -rf "$SPILLWAY_DATA_DIR" "$WORK/spill" && mkdir -p "$WORK/spill" "$WORK/runs"
STEPS=${PROOF_STEPS:-100}
train() { # NAME FLAGS...: the demo, STEPS steps, its events as JSON lines in $WORK/runs/NAME.jsonl
  local name=$1; shift
  part "spillway train $* (demo, $STEPS steps)"
  node bin/spillway.js train --steps "$STEPS" --json "$@" >"$WORK/runs/$name.jsonl" 2>"$WORK/runs/$name.err"
  local rc=$?
  grep -h '"type":"done"' "$WORK/runs/$name.jsonl" | cut -c1-240
  [ $rc = 0 ] || { tail -3 "$WORK/runs/$name.err" "$WORK/runs/$name.jsonl"; }
  return $rc
}
compare() { # LABEL REF OTHER MODE [TOL]
  local label=$1 ref=$2 other=$3; shift 3
  local line; line=$(node native/tests/compare_runs.mjs "$WORK/runs/$ref.jsonl" "$WORK/runs/$other.jsonl" "$@" "$label")
  local rc=$?
  echo "$line"; SUMMARY+=("$line")
  return $rc
}
train cpu --device cpu
train dev --device "$DEV" --offload none
train dev-cpu --device "$DEV" --offload cpu
train dev-ssd --device "$DEV" --offload ssd --spill "$WORK/spill"
train dev-default --device "$DEV"
train dev-bf16 --device "$DEV" --offload none --masters bf16
train dev-bf16-ssd --device "$DEV" --offload ssd --spill "$WORK/spill" --masters bf16 --update-on device
train dev-tf32 --device "$DEV" --offload none --gemm tf32
compare "train $DEV vs cpu (fp32 golden tolerance per step)" cpu dev --rel 1e-5 || status=1
compare "train $DEV, blocks streamed from CPU memory vs resident" dev dev-cpu --exact || status=1
compare "train $DEV, blocks streamed from the SSD vs resident" dev dev-ssd --exact || status=1
compare "train $DEV, the planner's default placement vs resident" dev dev-default --exact || status=1
compare "train $DEV bf16 masters, from the SSD with device updates vs resident" dev-bf16 dev-bf16-ssd --exact || status=1
compare "train $DEV --gemm tf32 vs cpu (for the record: fp32's tolerance)" cpu dev-tf32 --rel 1e-5
grep -h '^{"type":"start"' "$WORK/runs/dev.jsonl" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const e=JSON.parse(s);console.log('device of the run:', JSON.stringify(e.device))})"
# Out of device memory: a budget the model cannot fit, refused with the plan's terms and what to change.
part "spillway train --device $DEV --gpu-mem 1MB --offload none (must fail, saying why)"
if node bin/spillway.js train --steps 2 --device "$DEV" --gpu-mem 1MB --offload none >"$WORK/runs/oom.out" 2>&1; then
  status=1; SUMMARY+=("out of device memory: FAIL (the run did not fail)")
else
  msg=$(grep -o 'out of device memory on .*' "$WORK/runs/oom.out" | head -1)
  echo "$msg"
  if [ -n "$msg" ]; then SUMMARY+=("out of device memory: PASS (${msg:0:120}…)"); else status=1; SUMMARY+=("out of device memory: FAIL ($(tail -1 "$WORK/runs/oom.out"))"); fi
fi

# ---- what the next session turns into fixtures (tests/fixtures/gpu)
part "fixtures: devices and NVML, a calibration on the device, a run's telemetry"
node bin/spillway.js doctor --json >"$OUTDIR/gpu-devices.json" 2>&1
node bin/spillway.js plan --model resources/models/spillway-demo --device "$DEV" --recalibrate --spill "$WORK/spill" --json >"$OUTDIR/gpu-calibration.json" 2>&1
run_id=$(grep -ho '"runId":"[^"]*"' "$WORK/runs/dev-default.jsonl" | head -1 | cut -d'"' -f4)
[ -n "$run_id" ] && node bin/spillway.js runs export "$run_id" --format json --out "$OUTDIR/gpu-run-export.json"
echo "wrote $(ls "$OUTDIR"/gpu-devices.json "$OUTDIR"/gpu-calibration.json "$OUTDIR"/gpu-run-export.json 2>/dev/null | tr '\n' ' ')"
cp "$WORK"/runs/*.jsonl "$OUTDIR/" 2>/dev/null

part "compute-sanitizer: waiting for the runs in the background"
[ ${#SANITIZERS[@]} -gt 0 ] && wait "${SANITIZERS[@]}"
for tool in memcheck racecheck; do
  [ -f "$WORK/$tool.rc" ] || { SUMMARY+=("$tool: not run (no compute-sanitizer or no backend_ops)"); continue; }
  if [ "$(cat "$WORK/$tool.rc")" = 0 ]; then
    line="$tool: clean ($(grep -E 'passed, .* failed' "$WORK/$tool.log"); $(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$WORK/$tool.log" | head -1))"
  else
    line="$tool: FAILED or timed out (exit $(cat "$WORK/$tool.rc"))"; grep -E '^=========' "$WORK/$tool.log" | head -30; status=1
  fi
  echo "$line"; SUMMARY+=("$line")
done

echo "== summary ($(( $(date +%s) - T0 )) s)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "== overall: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
