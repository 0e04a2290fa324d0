#!/usr/bin/env bash
# Packs what the GPU machine lacks into .gpucarry/ (git-ignored), for the device tool's `carry`:
#   node.xz          this machine's node binary (the GPU machine has none)
#   openblas.tar.xz  OpenBLAS (lib/ with libgfortran and libquadmath, include/) as Debian 12 ships it
#   runtime.tar.xz   dist/ (the built TypeScript) and the CLI's runtime node_modules (zod, tokenizers,
#                    better-sqlite3's binary, the data readers, ws), for `spillway train` on the GPU
#   spillway.node    the addon as built here, CUDA included (npm run build:native)
#   specs.json       engine specs of the fixture models (zo_step_compare, tier_compare, golden_compare)
# native/tests/gpu_env.sh unpacks them there. usage (repository root): npm run build && bench/gpu/carry.sh
set -eu
CARRY=${SPILLWAY_GPU_CARRY:-.gpucarry}
ADDON=native/build/Release/spillway.node
[ -f "$ADDON" ] || { echo "build the addon first: npm run build:native"; exit 1; }
[ -d dist/electron ] || { echo "build the TypeScript first: npm run build:ts"; exit 1; }
node -e "process.exit(require('./$ADDON').cudaCompiled ? 0 : 1)" || { echo "$ADDON has no CUDA backend (nvcc missing when it was built)"; exit 1; }
mkdir -p "$CARRY"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# node and OpenBLAS change with the machine, not the tree: packed again only when newer than the carried ones.
node_bin=$(readlink -f "$(command -v node)")
[ "$CARRY/node.xz" -nt "$node_bin" ] || xz -T0 -6 -c "$node_bin" >"$CARRY/node.xz"

blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libopenblas.so.0)
if [ ! "$CARRY/openblas.tar.xz" -nt "$blas" ]; then
mkdir -p "$tmp/openblas/lib" "$tmp/openblas/include"
cp "$blas" "$tmp/openblas/lib/libopenblas.so.0"
ln -s libopenblas.so.0 "$tmp/openblas/lib/libopenblas.so"
for dep in libgfortran.so.5 libquadmath.so.0; do cp "$(readlink -f /usr/lib/x86_64-linux-gnu/$dep)" "$tmp/openblas/lib/$dep"; done
cp /usr/include/x86_64-linux-gnu/cblas*.h /usr/include/x86_64-linux-gnu/openblas_config*.h "$tmp/openblas/include/" 2>/dev/null ||
  cp /usr/include/cblas*.h /usr/include/openblas_config*.h "$tmp/openblas/include/"
tar -C "$tmp/openblas" -cJf "$CARRY/openblas.tar.xz" lib include
fi

# The runtime closure of the CLI's dependencies (package.json's, less the build tools and the GUI's chart library).
mods=$(node -e '
  const fs = require("fs"), path = require("path");
  const skip = new Set(["cmake-js", "node-addon-api", "chart.js"]);
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name) || skip.has(name)) return;
    const pj = path.join("node_modules", name, "package.json");
    if (!fs.existsSync(pj)) return;
    seen.add(name);
    for (const d of Object.keys(JSON.parse(fs.readFileSync(pj, "utf8")).dependencies ?? {})) visit(d);
  };
  for (const d of Object.keys(require("./package.json").dependencies)) visit(d);
  console.log([...seen].map((m) => "node_modules/" + m).join("\n"));
')
# better-sqlite3: its binary and JavaScript, not the SQLite sources it was built from.
tar -cJf "$CARRY/runtime.tar.xz" --exclude='node_modules/better-sqlite3/deps' --exclude='node_modules/better-sqlite3/src' \
  --exclude='node_modules/better-sqlite3/build/Release/obj*' --exclude='*.map' dist/electron dist/bench package.json $mods

cp "$ADDON" "$CARRY/spillway.node"
node native/tests/zo_step_compare.mjs make-specs "$CARRY/specs.json" >/dev/null
du -sh "$CARRY"/* | sed 's/^/  /'
echo "$(du -sb "$CARRY" | cut -f1) bytes in $CARRY (the device tool carries at most 64 MiB)"
