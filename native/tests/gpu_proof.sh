#!/usr/bin/env bash
# GPU proof of the CUDA backend, run from the repository root on a machine with
# an NVIDIA GPU, nvcc and cmake:
#   1. builds the native core + backend_ops with CUDA (cmake directly; the Node
#      addon too when node and node_modules are there: npm run build:native),
#   2. runs backend_ops (every kernel, CPU vs CUDA, then --perf timings),
#   3. when Node and an addon are available, one MeZO step + scoring of each
#      fixture model on CPU vs CUDA (native/tests/zo_step_compare.mjs),
# and writes everything, with the machine's description, to a report file.
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

# ---- kernels
echo "== backend_ops (CPU backend vs CUDA backend, same inputs)"
"$WORK/build/backend_ops" --perf || status=1
if [ -x "$CARRY/backend_ops" ]; then
  echo "== backend_ops as built on the CPU machine (correctness only)"
  "$CARRY/backend_ops" | tail -1 || status=1
fi

# ---- sanitizers: out-of-bounds accesses (memcheck) and shared-memory races (racecheck) in our kernels
# (API errors are not reported: backend_ops provokes an out-of-memory cudaMalloc on purpose)
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool backend_ops (correctness shapes)"
    if compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 3 "$WORK/build/backend_ops" >"$WORK/$tool.log" 2>&1; then
      echo "$tool: clean ($(grep -E 'passed, .* failed' "$WORK/$tool.log"); $(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$WORK/$tool.log" | head -1))"
    else
      echo "$tool: FAILED"; grep -E '^=========' "$WORK/$tool.log" | head -30; status=1
    fi
  done
fi

# ---- engine: one MeZO step CPU vs CUDA
if [ -n "$ADDON_PATH" ] && command -v node >/dev/null; then
  SPECS="$CARRY/specs.json"
  if [ ! -f "$SPECS" ] && [ -d dist ]; then node native/tests/zo_step_compare.mjs make-specs "$WORK/specs.json" && SPECS="$WORK/specs.json"; fi
  if [ -f "$SPECS" ]; then
    echo "== zo_step_compare (engine: one MeZO step, q=2, + scoring; CPU vs CUDA, all masters resident on the GPU)"
    node native/tests/zo_step_compare.mjs run "$ADDON_PATH" "$SPECS" || status=1
  else
    echo "== zo_step_compare skipped: no specs (needs dist/ or $CARRY/specs.json)"
  fi
else
  echo "== zo_step_compare skipped: no node or no addon"
fi
echo "== overall: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
