#!/usr/bin/env bash
# Two builds of the engine side by side on the `npm run bench` step (OPT-125M shape, batch
# 16 x 64, 2 threads), interleaved so that a busy machine slows both alike:
#
#   bench/zo-step-ab.sh BEFORE_ROOT AFTER_ROOT [ROUNDS]
#
# Each ROOT is a checkout with its dist/ and native/build/ built (`npm run build`) and
# bench/work/ holding the model and batch `npm run bench` wrote (a symlink to one folder serves
# both). Prints one line per run: which build, its timed steps' wall ms, and their CPU ms
# (user + system of the engine process), which load on the machine inflates far less.
set -euo pipefail
before=$1 after=$2 rounds=${3:-4}
run() {
  (cd "$1" && node dist/bench/zo-step.js --engine-child --threads 2 --steps 3 --warmup 1 2>/dev/null) |
    node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); const s = r.steps.filter((x) => !x.warmup);
      console.log(s.map((x) => x.ms.toFixed(0)).join(" "), "| cpu", s.map((x) => x.cpuMs.toFixed(0)).join(" "))'
}
for ((r = 1; r <= rounds; r++)); do
  # Alternate which build goes first.
  if ((r % 2)); then order="before after"; else order="after before"; fi
  for side in $order; do
    root=$before
    [ "$side" = after ] && root=$after
    echo "$side $(run "$root")"
  done
done
