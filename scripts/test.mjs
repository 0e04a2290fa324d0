#!/usr/bin/env node
// `npm test`: builds, then every suite, each whatever became of the others, and a summary. Exits
// non-zero when any step failed (chaining with && stopped at the first failure, so the suites
// after it never ran and their failures stayed hidden).
import { spawnSync } from 'node:child_process';

const steps = [
  ['build: TypeScript', ['run', 'build:ts']],
  ['build: renderer', ['run', 'build:renderer']],
  ['types: renderer (svelte-check)', ['run', 'check:renderer']],
  ['tests (vitest)', ['exec', '--', 'vitest', 'run']],
  ['renderer specs (vitest, Svelte)', ['run', 'test:renderer']],
];

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const results = [];
for (const [name, args] of steps) {
  console.log(`\n=== ${name}: npm ${args.join(' ')}`);
  const t0 = Date.now();
  const r = spawnSync(npm, args, { stdio: 'inherit' });
  const ok = r.status === 0;
  results.push({ name, ok, detail: ok ? '' : r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`, s: (Date.now() - t0) / 1000 });
}

console.log('\n=== summary');
for (const r of results) console.log(`${r.ok ? 'pass' : 'FAIL'}  ${r.name} (${r.s.toFixed(0)} s)${r.detail ? `: ${r.detail}` : ''}`);
const failed = results.filter((r) => !r.ok).length;
console.log(failed ? `${failed} of ${results.length} steps failed` : `all ${results.length} steps passed`);
process.exit(failed ? 1 : 0);
