#!/usr/bin/env bash
# GPU proof of the CUDA backend, run from the repository root on a machine with
# an NVIDIA GPU, nvcc and cmake:
#   1. builds the native core + backend_ops with CUDA (cmake directly; the Node
#      addon too when node and node_modules are there: npm run build:native),
#   2. runs backend_ops (every kernel, CPU vs CUDA, the staging ring, the copy
#      queue and its events, pin_host) once per GEMM precision: SPILLWAY_GEMM=fp32
#      (with --perf timings and the copy-queue bandwidth/overlap), then tf32 and
#      bf16 (looser, stated thresholds on the GEMM ops; --perf-gemm timings),
#   3. compute-sanitizer memcheck (fp32 and bf16) and racecheck (fp32),
#   4. when Node and an addon are available, one MeZO step + scoring of each
#      fixture model on CPU vs CUDA (native/tests/zo_step_compare.mjs): fp32
#      decides; tf32 and bf16 runs are recorded for information (their
#      tolerances are fp32's),
# and writes everything, with the machine's description, to a report file,
# ending with one summary line per part.
#
# usage: native/tests/gpu_proof.sh [REPORT]     (default: native/tests/gpu-report.txt)
# Optional carry folder ($SPILLWAY_GPU_CARRY, default .gpucarry) for machines
# without these: node.xz (a node binary), openblas.tar.xz (lib/ + include/ of
# OpenBLAS), spillway.node (an addon built elsewhere), specs.json (from
# `node native/tests/zo_step_compare.mjs make-specs`).
set -u
REPORT=${1:-native/tests/gpu-report.txt}
CARRY=${SPILLWAY_GPU_CARRY:-.gpucarry}
WORK=${TMPDIR:-/tmp}/spillway-gpu-proof
mkdir -p "$WORK" "$(dirname "$REPORT")"
exec > >(tee "$REPORT") 2>&1
status=0

echo "== spillway CUDA backend proof, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "== machine"
nvidia-smi 2>&1 | head -12
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
echo "cpu cores: $(nproc); kernel $(uname -r); $(nvcc --version 2>&1 | tail -2 | head -1)"
git log -1 --format='tree at commit %h (%s) plus uncommitted changes' 2>/dev/null

# ---- what the carry folder brings
CMAKE_BLAS=()
if [ -f "$CARRY/openblas.tar.xz" ]; then
  mkdir -p "$WORK/openblas" && tar -C "$WORK/openblas" -xJf "$CARRY/openblas.tar.xz"
  export LD_LIBRARY_PATH="$WORK/openblas/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  CMAKE_BLAS=(-DCBLAS_INCLUDE_DIR="$WORK/openblas/include" -DOPENBLAS_LIBRARY="$WORK/openblas/lib/libopenblas.so")
  echo "OpenBLAS: carried (Debian 12 build)"
fi
if ! command -v node >/dev/null && [ -f "$CARRY/node.xz" ]; then
  mkdir -p "$WORK/bin" && xz -dc "$CARRY/node.xz" >"$WORK/bin/node" && chmod +x "$WORK/bin/node"
  export PATH="$WORK/bin:$PATH"
  echo "node: carried $(node --version)"
fi
# cuBLAS: the loader path first, else a pip-installed one (nvidia-cublas under the Python environment).
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas.so.13'; then
  CUBLAS=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libcublas.so.13' -print 2>/dev/null | head -1)
  if [ -n "$CUBLAS" ]; then
    export LD_LIBRARY_PATH="$(dirname "$CUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "cuBLAS: $CUBLAS"
  else
    echo "cuBLAS: not found (GEMMs use the tiled kernel)"
  fi
fi

# ---- build
echo "== build: cmake, Release, CUDA architectures 75;80;86;89;90;120 (+PTX 120)"
ADDON=OFF
if command -v node >/dev/null && [ -d node_modules/node-addon-api ] && [ -d node_modules/cmake-js ]; then ADDON=ON; fi
rm -rf "$WORK/build"
start=$(date +%s%N)
if cmake -S native -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPILLWAY_ADDON=OFF "${CMAKE_BLAS[@]}" >"$WORK/cmake.log" 2>&1 &&
   cmake --build "$WORK/build" -j "$(nproc)" >>"$WORK/cmake.log" 2>&1; then
  echo "built backend_ops in $(( ($(date +%s%N) - start) / 1000000 )) ms (configure + build, $(nproc) cores)"
  grep -E 'CUDA backend|Linking' "$WORK/cmake.log"
else
  echo "BUILD FAILED"; tail -40 "$WORK/cmake.log"; exit 1
fi
ADDON_PATH=""
if [ "$ADDON" = ON ]; then
  if npm run build:native >"$WORK/addon.log" 2>&1; then ADDON_PATH=native/build/Release/spillway.node; echo "addon built with npm run build:native"
  else echo "addon build failed:"; tail -20 "$WORK/addon.log"; fi
elif [ -f "$CARRY/spillway.node" ]; then
  ADDON_PATH="$CARRY/spillway.node"
  echo "addon: carried, built on the CPU machine with npm run build:native (not rebuilt here: no node_modules)"
fi

# ---- kernels, once per GEMM precision
SUMMARY=()
for gemm in fp32 tf32 bf16; do
  if [ $gemm = fp32 ]; then perf=--perf; else perf=--perf-gemm; fi
  echo "== backend_ops, SPILLWAY_GEMM=$gemm $perf (CPU backend vs CUDA backend, same inputs)"
  SPILLWAY_GEMM=$gemm "$WORK/build/backend_ops" $perf 2>&1 | tee "$WORK/backend_ops-$gemm.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || status=1
  SUMMARY+=("backend_ops SPILLWAY_GEMM=$gemm: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/backend_ops-$gemm.log" | tail -1 || true) (exit $rc); $(grep -E '^backends:' "$WORK/backend_ops-$gemm.log" | cut -d'|' -f2 | sed 's/^ *//')")
done
# The one-warp-per-query attention kernel (the fallback beside the tiled default) against the CPU too,
# with --perf so the attention rows of the two kernels can be compared.
echo "== backend_ops, SPILLWAY_ATTENTION=warp --perf (the fallback attention kernel)"
SPILLWAY_ATTENTION=warp SPILLWAY_GEMM=fp32 "$WORK/build/backend_ops" --perf 2>&1 | tee "$WORK/backend_ops-warp-attention.log" | grep -E 'attention|passed'
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || status=1
SUMMARY+=("backend_ops SPILLWAY_ATTENTION=warp: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/backend_ops-warp-attention.log" | tail -1 || true) (exit $rc)")
if [ -x "$CARRY/backend_ops" ]; then
  echo "== backend_ops as built on the CPU machine (correctness only, fp32)"
  SPILLWAY_GEMM=fp32 "$CARRY/backend_ops" | tail -1
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

# ---- sanitizers: out-of-bounds accesses (memcheck) and shared-memory races (racecheck) in our kernels
# (API errors are not reported: backend_ops provokes an out-of-memory cudaMalloc and a failing
# cudaHostRegister on purpose.) memcheck also runs in bf16 mode: its rounding kernel and scratch.
if command -v compute-sanitizer >/dev/null; then
  for run in memcheck:fp32 memcheck:bf16 racecheck:fp32; do
    tool=${run%%:*}; gemm=${run##*:}
    echo "== compute-sanitizer --tool $tool backend_ops, SPILLWAY_GEMM=$gemm (correctness shapes)"
    if SPILLWAY_GEMM=$gemm compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 3 "$WORK/build/backend_ops" >"$WORK/$tool-$gemm.log" 2>&1; then
      line="$tool ($gemm): clean ($(grep -E 'passed, .* failed' "$WORK/$tool-$gemm.log"); $(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$WORK/$tool-$gemm.log" | head -1))"
    else
      line="$tool ($gemm): FAILED"; grep -E '^=========' "$WORK/$tool-$gemm.log" | head -30; status=1
    fi
    echo "$line"; SUMMARY+=("$line")
  done
else
  SUMMARY+=("compute-sanitizer: not on this machine")
fi

# ---- engine: one MeZO step CPU vs CUDA
if [ -n "$ADDON_PATH" ] && command -v node >/dev/null; then
  SPECS="$CARRY/specs.json"
  if [ ! -f "$SPECS" ] && [ -d dist ]; then node native/tests/zo_step_compare.mjs make-specs "$WORK/specs.json" && SPECS="$WORK/specs.json"; fi
  if [ -f "$SPECS" ]; then
    echo "== zo_step_compare (engine: one MeZO step, q=2, + scoring; CPU vs CUDA, all masters resident on the GPU)"
    if SPILLWAY_GEMM=fp32 node native/tests/zo_step_compare.mjs run "$ADDON_PATH" "$SPECS"; then SUMMARY+=("zo_step_compare fp32: PASS")
    else status=1; SUMMARY+=("zo_step_compare fp32: FAIL"); fi
    # Reduced-precision GEMMs: how far a step moves from the CPU's (L+, L-, g, weights). For the record:
    # the tolerances are fp32's, so a "failure" here is information, not a verdict.
    for gemm in tf32 bf16; do
      echo "== zo_step_compare, SPILLWAY_GEMM=$gemm (informational: fp32 tolerances)"
      SPILLWAY_GEMM=$gemm node native/tests/zo_step_compare.mjs run "$ADDON_PATH" "$SPECS"
      SUMMARY+=("zo_step_compare $gemm: exit $? (informational)")
    done
  else
    echo "== zo_step_compare skipped: no specs (needs dist/ or $CARRY/specs.json)"
  fi
else
  echo "== zo_step_compare skipped: no node or no addon"
fi
echo "== summary"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "== overall: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
