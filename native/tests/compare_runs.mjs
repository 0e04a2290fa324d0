// Two `spillway train --json` runs compared step by step: L+ and L- of every step bit for bit
// (--exact: the same device, another placement), or within a relative tolerance (--rel TOL: another
// device; the fp32 golden tolerance of one step is 1e-5, native/tests/zo_step_compare.mjs). Prints one
// line with the devices, the steps, the largest difference and the final evaluations; exit status 1
// when the runs differ beyond it (or did not both complete).
//   node native/tests/compare_runs.mjs REF.jsonl OTHER.jsonl (--exact | --rel 1e-5) [LABEL]
import { readFileSync } from 'node:fs';

const [refPath, otherPath, mode, ...rest] = process.argv.slice(2);
const exact = mode === '--exact';
const [tolArg, label = ''] = exact ? [undefined, rest[0]] : rest;
const tol = exact ? 0 : Number(mode === '--rel' ? tolArg : NaN);
if (!exact && !(tol > 0)) {
  console.error('usage: compare_runs.mjs REF.jsonl OTHER.jsonl (--exact | --rel TOL) [LABEL]');
  process.exit(2);
}

function read(path) {
  const events = readFileSync(path, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return {
    start: events.find((e) => e.type === 'start'),
    steps: events.filter((e) => e.type === 'step'),
    done: events.find((e) => e.type === 'done'),
    error: events.find((e) => e.type === 'error'),
  };
}

const a = read(refPath);
const b = read(otherPath);
const where = (r) => (r.start ? `${r.start.device.id} (${r.start.backend})` : 'no start');
let worst = 0;
let worstStep = 0;
const n = Math.min(a.steps.length, b.steps.length);
for (let i = 0; i < n; i++) {
  for (const k of ['lossPlus', 'lossMinus']) {
    const x = a.steps[i][k];
    const y = b.steps[i][k];
    const d = exact ? (Object.is(x, y) ? 0 : Math.abs(x - y) || Infinity) : Math.abs(x - y) / Math.max(1, Math.abs(x));
    if (d > worst) {
      worst = d;
      worstStep = a.steps[i].step;
    }
  }
}
const complete = a.done && b.done && a.steps.length === b.steps.length && n > 0;
const pass = complete && worst <= tol;
const acc = (r) => (r.done?.eval?.accuracy == null ? 'n/a' : `${(100 * r.done.eval.accuracy).toFixed(1)}%`);
console.log(
  `${label ? `${label}: ` : ''}${pass ? 'PASS' : 'FAIL'}  ${where(b)} vs ${where(a)}: ${n} steps, ` +
    (exact ? (worst === 0 ? 'L+ and L- bit-identical' : `differ from step ${worstStep} (by ${worst})`) : `max relative |dL| ${worst.toExponential(2)} (tol ${tol}) at step ${worstStep}`) +
    `; held-out accuracy ${acc(a)} / ${acc(b)}` +
    (complete ? '' : `; incomplete (${a.error?.message ?? b.error?.message ?? `${a.steps.length} and ${b.steps.length} steps`})`),
);
process.exit(pass ? 0 : 1);
