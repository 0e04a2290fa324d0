# Sourced by native/tests/gpu_proof.sh and bench/gpu/run.sh on the GPU machine: what .gpucarry
# (bench/gpu/carry.sh, made on the CPU machine) brings, put in place where the machine lacks it.
#   CARRY (default .gpucarry) is read; node and OpenBLAS go to a scratch folder of their own (never under a
#   run's $OUT, whose files are sent back), unpacked once; PATH and LD_LIBRARY_PATH are set; ADDON names the
#   CUDA-built addon (native/build/Release/spillway.node once this has run).
CARRY=${SPILLWAY_GPU_CARRY:-${CARRY:-.gpucarry}}
ENVDIR=${TMPDIR:-/tmp}/spillway-gpu-env
mkdir -p "$ENVDIR"
if [ -f "$CARRY/openblas.tar.xz" ] && ! ldconfig -p 2>/dev/null | grep -q 'libopenblas.so.0'; then
  OPENBLAS_DIR="$ENVDIR/openblas"
  [ -f "$OPENBLAS_DIR/lib/libopenblas.so.0" ] || { mkdir -p "$OPENBLAS_DIR" && tar -C "$OPENBLAS_DIR" -xJf "$CARRY/openblas.tar.xz"; }
  export LD_LIBRARY_PATH="$OPENBLAS_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "OpenBLAS: carried (Debian 12 build)"
fi
if ! command -v node >/dev/null && [ -f "$CARRY/node.xz" ]; then
  [ -x "$ENVDIR/bin/node" ] || { mkdir -p "$ENVDIR/bin" && xz -dc "$CARRY/node.xz" >"$ENVDIR/bin/node.tmp" && chmod +x "$ENVDIR/bin/node.tmp" && mv "$ENVDIR/bin/node.tmp" "$ENVDIR/bin/node"; }
  export PATH="$ENVDIR/bin:$PATH"
  echo "node: carried $(node --version)"
fi
# The CLI's runtime (dist/ and node_modules/) where the tree has none: `spillway train` runs here.
if [ -f "$CARRY/runtime.tar.xz" ] && { [ ! -d dist/electron ] || [ ! -d node_modules/zod ]; }; then
  tar -xJf "$CARRY/runtime.tar.xz" && echo "runtime: carried dist/ and node_modules/"
fi
mkdir -p native/build/Release
if [ -f "$CARRY/spillway.node" ] && [ ! -f native/build/Release/spillway.node ]; then
  cp "$CARRY/spillway.node" native/build/Release/spillway.node && echo "addon: carried (built with CUDA on the CPU machine)"
fi
ADDON=${ADDON:-native/build/Release/spillway.node}
# cuBLAS (the engine dlopens libcublas.so.13): the loader's path, else a pip-installed one beside the Python
# environment (PyTorch's nvidia-cublas wheel).
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas.so.13'; then
  SITE=$(${PYTHON:-python3} -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
  CUBLAS=$(find $SITE /usr/local/cuda* /opt -name 'libcublas.so.13' 2>/dev/null | head -1)
  if [ -n "$CUBLAS" ]; then
    export LD_LIBRARY_PATH="$(dirname "$CUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "cuBLAS: $CUBLAS"
  else
    echo "cuBLAS: not found (GEMMs use the tiled kernel)"
  fi
fi
