#!/usr/bin/env bash
# Two builds (or two settings of one build) of the engine side by side on the `npm run bench`
# step (OPT-125M shape, 2 threads), interleaved so that a busy machine slows both alike:
#
#   bench/zo-step-ab.sh BEFORE_ROOT AFTER_ROOT [ROUNDS]
#   BEFORE_ENV='SPILLWAY_CPU_GEMM=openblas' bench/zo-step-ab.sh . .     # one build, two settings
#
# Each ROOT is a checkout with its dist/ and native/build/ built (`npm run build`) and
# bench/work/ holding the model and batches `npm run bench` wrote (a symlink to one folder serves
# both). BEFORE_ENV / AFTER_ENV: variables (NAME=value, space-separated) for that side's engine.
# BATCH: 16x64 (default), 4x256 or 1x512. Prints one line per run: which side, its timed steps'
# wall ms, their CPU ms (user + system of the engine process, which load on the machine inflates
# far less), and the first step's L+ (the same on both sides where the bits are).
set -euo pipefail
before=$1 after=$2 rounds=${3:-4} batch=${BATCH:-16x64}
run() {
  local root=$1 vars=$2
  # shellcheck disable=SC2086
  (cd "$root" && printf 'warmup\nstep\nstep\nstep\n' |
    env $vars node dist/bench/zo-step.js --engine-child "bench/work/batch-$batch.json" --threads 2 2>/dev/null) |
    node -e 'const s = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.startsWith("{\"ms\"")).map(JSON.parse).filter((x) => !x.warmup);
      if (!s.length) { console.log("no steps (is bench/work/ there? run npm run bench once)"); process.exit(0); }
      console.log(s.map((x) => x.ms.toFixed(0)).join(" "), "| cpu", s.map((x) => x.cpuMs.toFixed(0)).join(" "), "| L+", s[0].lossPlus.toFixed(7))'
}
for ((r = 1; r <= rounds; r++)); do
  # Alternate which side goes first.
  if ((r % 2)); then order="before after"; else order="after before"; fi
  for side in $order; do
    if [ "$side" = after ]; then echo "after  $(run "$after" "${AFTER_ENV:-}")"; else echo "before $(run "$before" "${BEFORE_ENV:-}")"; fi
  done
done
