// The fault-injection figures of issue 14 in one run: SIGKILL of the engine, the CLI and `serve`
// (--kills each, at seeded random moments of one run, each resumed; rows lost and rows differing
// from the uninterrupted run counted), every damaged-checkpoint variant resumed, and the generated
// set of bad inputs run as real processes (crashes and unclear refusals counted).
//
//   npm run build:ts && npm run bench:faults              # 10 kills of each target, 150 steps
//   node dist/bench/faults/run.js --kills 3 --steps 80    # what CI's tests/faults run
//
// Writes bench/results/faults.json (every kill, variant and input) and bench/results/faults.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import { TrainOptions, filled } from '../../electron/common/options.js';
import { packageRoot } from '../../electron/engine/native.js';
import { startEngineJob } from '../../electron/engine/runner.js';
import { benchArgs, RESULTS } from '../common.js';
import { badInputs, tryBadInputs } from './bad-inputs.js';
import { damageCampaign } from './damage.js';
import { killCampaign, referenceRows } from './kills.js';
import type { KillReport, KillTarget } from './kills.js';

const DEMO = join(packageRoot(), 'resources');

async function main(): Promise<void> {
  const a = benchArgs(process.argv.slice(2), { kills: 10, steps: 150, seed: 1 });
  const work = mkdtempSync(join(tmpdir(), 'spw-faults-bench-'));
  const load0 = loadavg()[0];
  const t0 = Date.now();
  const say = (m: string) => process.stderr.write(`${m}\n`);

  say(`the uninterrupted run (${a.steps} steps)…`);
  const reference = await referenceRows(work, a.steps);
  const kills: Omit<KillReport, 'reference'>[] = [];
  for (const [i, target] of (['engine', 'cli', 'serve'] as KillTarget[]).entries()) {
    say(`SIGKILL of the ${target}, ${a.kills} times…`);
    const { reference: _, ...r } = await killCampaign({ target, kills: a.kills, seed: a.seed * 100 + i, steps: a.steps, work: join(work, target), reference });
    say(`  ${r.kills} kills, ${r.resumed} resumed, ${r.rowsLost} rows lost, ${r.rowsWrong} wrong, status ${r.status}`);
    kills.push(r);
  }

  say('damaged checkpoints…');
  const RUN = 'the-run';
  const options = filled(TrainOptions.parse({ model: join(DEMO, 'models', 'spillway-demo'), train: join(DEMO, 'datasets', 'sentiment-demo', 'train.jsonl'), task: { kind: 'sst2' }, steps: 7, seed: 2, q: 2, batchSize: 4, lr: 1e-4, threads: 2, zeroShot: false, evalFraction: 0, checkpointEvery: 3 }));
  await startEngineJob({ type: 'train', options: { ...options, runId: RUN, checkpointDir: join(work, 'ckpt') } }, () => {}).done;
  const damage = await damageCampaign(join(work, 'ckpt', 'step-00000006'), RUN, options, join(work, 'damaged'));

  say('bad inputs…');
  const dataDir = join(work, 'bad-data');
  mkdirSync(dataDir, { recursive: true });
  const bad = await tryBadInputs(badInputs(join(work, 'bad-files')), dataDir, 2);
  rmSync(work, { recursive: true, force: true });

  const minutes = (Date.now() - t0) / 60_000;
  const machine = `${availableParallelism()} cores, load average ${load0.toFixed(1)} at the start and ${loadavg()[0].toFixed(1)} at the end (a shared machine)`;
  writeFileSync(join(RESULTS, 'faults.json'), JSON.stringify({ machine, minutes, kills, damage, badInputs: bad.map(({ args: _, ...r }) => r) }, null, 2) + '\n');
  const count = (xs: readonly unknown[], f: (x: never) => boolean) => xs.filter(f as (x: unknown) => boolean).length;
  const md = [
    '# Fault injection: kills, damaged checkpoints, bad inputs',
    '',
    `\`node dist/bench/faults/run.js --kills ${a.kills} --steps ${a.steps} --seed ${a.seed}\`, CPU backend, ${machine}; ${minutes.toFixed(1)} min.`,
    '',
    `## SIGKILL at seeded random moments of one ${a.steps}-step run (demo model), each followed by its resume`,
    '',
    'Rows lost: steps with no row when the run ended. Rows wrong: rows whose losses or seed differ (bit for bit) from the same run never interrupted. Rebuilt: rows the resume rebuilt from the checkpoint\'s seed log (steps its dead supervisor never flushed).',
    '',
    '| Killed | Kills | Resumed | Killed after steps | Final status | Rows present | Rows lost | Rows wrong | Rows rebuilt |',
    '|---|---|---|---|---|---|---|---|---|',
    ...kills.map((k) => `| ${k.target} | ${k.kills} | ${k.resumed} | ${k.killedAfter.join(', ')} | ${k.status} | ${k.rowsPresent} / ${k.steps} | ${k.rowsLost} | ${k.rowsWrong} | ${k.rowsRebuilt} |`),
    '',
    `## Damaged checkpoints: ${count(damage, (d: { detected: boolean }) => d.detected)} of ${damage.length} refused before a step naming the file, ${count(damage, (d: { crashed: boolean }) => d.crashed)} crashes`,
    '',
    '| Damage | Refused, file named | Crash |',
    '|---|---|---|',
    ...damage.map((d) => `| ${d.name} | ${d.detected ? 'yes' : `**no**: ${d.message.slice(0, 120)}`} | ${d.crashed ? '**yes**' : 'no'} |`),
    '',
    `## Bad inputs: ${bad.length} tried as real \`spillway\` processes; ${count(bad, (b: { clear: boolean }) => b.clear)} refused with one line naming the flag or file, ${count(bad, (b: { crashed: boolean }) => b.crashed)} crashes`,
    '',
    ...bad.filter((b) => !b.clear || b.crashed).map((b) => `- **${b.name}** (exit ${b.code ?? b.signal}): ${b.message.slice(0, 200)}`),
    '',
  ].join('\n');
  writeFileSync(join(RESULTS, 'faults.md'), md);
  process.stdout.write(md);
}

void main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
