// A full disk never corrupts a checkpoint and stops a run cleanly with the
// reason. Real files, real child processes and a real ENOSPC: the run's
// folders are small tmpfs mounts made for the test (this needs root, as CI
// has; without it every test here fails and says so).
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startEngineJob } from '../../electron/engine/runner.js';
import { DiskWriteError, writeFolderAtomic } from '../../electron/engine/safe-write.js';
import { TrainOptions } from '../../electron/common/options.js';
import type { TrainEvent } from '../../electron/engine/trainer.js';
import { readSafetensorsHeader } from '../../electron/model/index.js';
import { RunSupervisor } from '../../electron/services/runs/supervisor.js';
import { ROOT } from '../helpers/engine.js';
import { DEMO_DATA, makeTinyLlama } from '../helpers/tiny-model.js';

const execFileP = promisify(execFile);
const BIN = join(ROOT, 'bin', 'spillway.js');
const TRAIN = join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');

let work: string;
let model: string;
let dataDir: string;
const mounted: string[] = [];

/** Mounts a tmpfs of the given options on dir; a clear failure where mounting is not permitted. */
function mountTmpfs(dir: string, opts: string): string {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    const why = (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message;
    throw new Error(
      `the disk-full tests need to mount a small tmpfs (they run as root, as CI does); ` +
        `\`mount -t tmpfs -o ${opts} tmpfs ${dir}\` failed: ${why}`,
    );
  }
  mounted.push(dir);
  return dir;
}

function remount(dir: string, opts: string): void {
  execFileSync('mount', ['-o', `remount,${opts}`, dir], { stdio: 'pipe' });
}

/** Bytes a folder takes on a filesystem of 4 KiB pages (tmpfs). */
function pagesOf(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + Math.ceil(statSync(join(dir, f)).size / 4096) * 4096, 0);
}

async function spillway(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [BIN, ...args], { env: { ...process.env, SPILLWAY_THREADS: '1', SPILLWAY_DATA_DIR: dataDir }, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const jsonLines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
const stepLosses = (ev: Record<string, unknown>[]) => ev.filter((e) => e.type === 'step').map((e) => [e.step, e.lossPlus, e.lossMinus]);
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const SIZE = String.raw`\d+(\.\d)? (B|KiB|MiB|GiB)`;

const trainArgs = (over: string[]) => [
  'train', '--model', model, '--data', TRAIN, '--task', 'sst2', '--steps', '8', '--batch-size', '4', '--lr', '1e-2',
  '--seed', '9', '--threads', '1', '--no-zero-shot', '--eval-fraction', '0', '--json', ...over,
];

let reference: Record<string, unknown>[];
/** The bytes one checkpoint of the tiny model takes on tmpfs. */
let checkpointBytes: number;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-diskfull-'));
  dataDir = join(work, 'data');
  model = await makeTinyLlama(join(work, 'tiny'));
  // Fail every test with the reason at once when tmpfs cannot be mounted here.
  mountTmpfs(join(work, 'probe'), 'size=64k');
  // The uninterrupted run on a roomy folder: the losses to compare with, and the size of a checkpoint.
  const r = await spillway(trainArgs(['--checkpoint-every', '2', '--checkpoint-dir', join(work, 'ref-ckpt')]));
  expect(r.code, r.stderr).toBe(0);
  reference = jsonLines(r.stdout);
  expect(stepLosses(reference)).toHaveLength(8);
  checkpointBytes = pagesOf(join(work, 'ref-ckpt', 'step-00000006'));
});

afterAll(() => {
  for (const dir of mounted.reverse()) {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    }
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a full disk during a run', () => {
  it('stops the run with the reason, keeps the previous checkpoint, and resumes from it with the same losses', async () => {
    // Room for one checkpoint and a half: the one at step 2 fits, the one at step 4 does not.
    const mnt = mountTmpfs(join(work, 'mnt-bytes'), `size=${Math.ceil((checkpointBytes * 1.5) / 4096) * 4}k`);
    const ckpt = join(mnt, 'ckpt');
    const r = await spillway(trainArgs(['--checkpoint-every', '2', '--checkpoint-dir', ckpt]));
    expect(r.code).toBe(1);
    const ev = jsonLines(r.stdout);
    expect(ev.map((e) => e.type)).toEqual(['start', 'step', 'step', 'checkpoint', 'step', 'step', 'error']);
    expect(stepLosses(ev)).toEqual(stepLosses(reference).slice(0, 4));
    const message = ev.at(-1)?.message as string;
    expect(message).toMatch(
      new RegExp(
        `^checkpoint not written: disk full at ${esc(join(ckpt, 'step-00000004'))} \\(needs ${SIZE}, ${SIZE} free\\); ` +
          `the previous checkpoint \\(step 2\\) is intact at ${esc(join(ckpt, 'step-00000002'))}$`,
      ),
    );
    expect(message).not.toMatch(/\n\s+at /); // a reason, not a stack

    // Nothing half-written is left behind, and the earlier checkpoint is whole.
    expect(readdirSync(ckpt)).toEqual(['step-00000002']);
    const kept = join(ckpt, 'step-00000002');
    const header = await readSafetensorsHeader(join(kept, 'model.safetensors'));
    expect(header.tensors.length).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(join(kept, 'spillway.json'), 'utf8')).steps_done).toBe(2);
    expect(readFileSync(join(kept, 'seedlog.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);

    // The run is recorded as failed, with the reason.
    const sup = RunSupervisor.open(dataDir);
    try {
      const run = sup.listRuns().find((x) => (x.config as { options?: TrainOptions }).options?.checkpointDir === ckpt);
      expect(run?.status).toBe('failed');
      expect(run?.error).toBe(message);

      // Free some space, then resume the same run: it continues from step 2 with the losses of the uninterrupted run.
      remount(mnt, `size=${Math.ceil((checkpointBytes * 4) / 4096) * 4}k`);
      await sup.resume(run!.id);
      const done = await sup.waitFor(run!.id);
      expect(done.error).toBeNull();
      expect(done.status).toBe('completed');
      expect(done.resumedFrom).toBe(kept);
      const steps = sup.getMetrics(run!.id).steps.map((s) => [s.step, s.lossPlus, s.lossMinus]);
      expect(steps).toEqual(stepLosses(reference));
    } finally {
      await sup.close();
    }
    // The checkpoint it resumed from is never pruned by the resumed run.
    expect(readdirSync(ckpt)).toEqual(['step-00000002', 'step-00000004', 'step-00000006']);
  });

  it('cleans up a checkpoint that hits ENOSPC half-way through writing', async () => {
    // Bytes to spare but hardly any inodes: the free-space check passes and the write itself
    // fails with ENOSPC after a few files of the second checkpoint (root + ckpt + 7 per checkpoint).
    const mnt = mountTmpfs(join(work, 'mnt-inodes'), 'size=4m,nr_inodes=12');
    const ckpt = join(mnt, 'ckpt');
    const r = await spillway(trainArgs(['--checkpoint-every', '2', '--checkpoint-dir', ckpt]));
    expect(r.code).toBe(1);
    const ev = jsonLines(r.stdout);
    expect(ev.filter((e) => e.type === 'checkpoint').map((e) => e.step)).toEqual([2]);
    expect(ev.at(-1)?.message).toMatch(
      new RegExp(
        `^checkpoint not written: disk full \\(no free inodes\\) at ${esc(join(ckpt, 'step-00000004'))} \\(needs ${SIZE}, ${SIZE} free\\); ` +
          `the previous checkpoint \\(step 2\\) is intact at ${esc(join(ckpt, 'step-00000002'))}$`,
      ),
    );
    expect(readdirSync(ckpt)).toEqual(['step-00000002']);

    // Resumed with inodes to spare, by hand from the folder: the same losses as the uninterrupted run.
    remount(mnt, 'nr_inodes=1000');
    const resumed = await spillway(trainArgs(['--checkpoint-every', '2', '--checkpoint-dir', ckpt, '--resume', join(ckpt, 'step-00000002')]));
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(stepLosses(jsonLines(resumed.stdout))).toEqual(stepLosses(reference).slice(2));
  });

  it('fails the final save cleanly when the output folder fills up mid-run', async () => {
    const mnt = mountTmpfs(join(work, 'mnt-out'), `size=${Math.ceil((checkpointBytes * 3) / 4096) * 4}k`);
    const out = join(mnt, 'tuned');
    const ckpt = join(work, 'out-ckpt');
    const options = TrainOptions.parse({
      model,
      train: TRAIN,
      task: { kind: 'sst2' },
      steps: 400,
      batchSize: 4,
      lr: 1e-2,
      seed: 9,
      threads: 1,
      zeroShot: false,
      evalFraction: 0,
      checkpointEvery: 150,
      checkpointDir: ckpt,
      out,
    });
    // Someone else fills the disk while the run trains, once the preflight has let it start
    // (at its first step; the run has hundreds of steps to go).
    const fill = () => {
      const { bavail, bsize } = statfsSync(mnt);
      try {
        writeFileSync(join(mnt, 'filler'), Buffer.alloc(Number(bavail) * Number(bsize)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      }
    };
    const events: TrainEvent[] = [];
    const job = startEngineJob({ type: 'train', options }, (e) => {
      if ((e as TrainEvent).type === 'step' && !events.some((x) => x.type === 'step')) fill();
      events.push(e as TrainEvent);
    });
    await expect(job.done).rejects.toThrow(
      new RegExp(
        `^model not saved: disk full at ${esc(out)} \\(needs ${SIZE}, ${SIZE} free\\); ` +
          `the last checkpoint \\(step 300\\) is intact at ${esc(join(ckpt, 'step-00000300'))}$`,
      ),
    );
    await job.done.catch((e: Error) => expect(e.name).toBe('EngineJobError'));
    expect(events.filter((e) => e.type === 'step')).toHaveLength(400);
    expect(events.some((e) => e.type === 'done')).toBe(false);
    expect(readdirSync(mnt).sort()).toEqual(['filler']);
  });
});

describe('preflight', () => {
  it('refuses to start when the checkpoint folder cannot hold one checkpoint', async () => {
    const mnt = mountTmpfs(join(work, 'mnt-small'), `size=${Math.max(4, Math.floor(checkpointBytes / 2 / 4096) * 4)}k`);
    const ckpt = join(mnt, 'ckpt');
    const r = await spillway(trainArgs(['--checkpoint-every', '2', '--checkpoint-dir', ckpt]));
    expect(r.code).toBe(1);
    const ev = jsonLines(r.stdout);
    expect(ev.map((e) => e.type)).toEqual(['error']);
    expect(ev[0].message).toMatch(
      new RegExp(`^cannot start training: not enough disk space at ${esc(ckpt)} for one checkpoint \\(needs ${SIZE}, ${SIZE} free\\)`),
    );
    expect(existsSync(ckpt) ? readdirSync(ckpt) : []).toEqual([]);
  });

  it('adds up a checkpoint and the final model on the same filesystem', async () => {
    // Room for one checkpoint, not for a checkpoint and the model.
    const mnt = mountTmpfs(join(work, 'mnt-both'), `size=${Math.ceil((checkpointBytes * 1.5) / 4096) * 4}k`);
    const r = await spillway(trainArgs(['--checkpoint-every', '2', '--checkpoint-dir', join(mnt, 'ckpt'), '--out', join(mnt, 'out')]));
    expect(r.code).toBe(1);
    const ev = jsonLines(r.stdout);
    expect(ev.map((e) => e.type)).toEqual(['error']);
    expect(ev[0].message).toMatch(
      new RegExp(
        `^cannot start training: not enough disk space at ${esc(join(mnt, 'ckpt'))} and ${esc(join(mnt, 'out'))} ` +
          `for one checkpoint and the fine-tuned model \\(needs ${SIZE}, ${SIZE} free\\)`,
      ),
    );
  });
});

describe('writeFolderAtomic', () => {
  it('leaves the folder it would replace intact when the disk fills mid-write, and removes its temporary', async () => {
    const mnt = mountTmpfs(join(work, 'mnt-unit'), 'size=256k');
    const dest = join(mnt, 'folder');
    await writeFolderAtomic(dest, [{ name: 'a.bin', data: Buffer.alloc(64 * 1024, 1) }, { name: 'b.txt', data: 'first\n' }], { what: 'not written' });
    const before = statfsSync(mnt).bavail;
    // Too big for what is left; skip the early check so that write(2) itself fails with ENOSPC.
    const big = [{ name: 'a.bin', data: [Buffer.alloc(128 * 1024, 2), Buffer.alloc(128 * 1024, 3)] }, { name: 'b.txt', data: 'second\n' }];
    const err = await writeFolderAtomic(dest, big, { what: 'not written', precheck: false, note: () => 'the old one is intact' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DiskWriteError);
    const d = err as DiskWriteError;
    expect(d.code).toBe('ENOSPC');
    expect(d.early).toBe(false);
    expect(d.message).toMatch(new RegExp(`^not written: disk full at ${esc(dest)} \\(needs 264\\.0 KiB, ${SIZE} free\\); the old one is intact$`));
    expect(readdirSync(mnt)).toEqual(['folder']);
    expect(statfsSync(mnt).bavail).toBe(before);
    expect(readFileSync(join(dest, 'a.bin')).equals(Buffer.alloc(64 * 1024, 1))).toBe(true);
    expect(readFileSync(join(dest, 'b.txt'), 'utf8')).toBe('first\n');

    // With the early check (the default) it refuses before writing anything.
    const early = await writeFolderAtomic(dest, big, { what: 'not written' }).catch((e: unknown) => e);
    expect((early as DiskWriteError).early).toBe(true);
    expect((early as DiskWriteError).message).toMatch(/^not written: disk full at .* \(needs 264\.0 KiB, \d+\.\d KiB free\)$/);

    // A replacement that fits swaps the folder whole.
    await writeFolderAtomic(dest, [{ name: 'c.txt', data: 'third\n' }], { what: 'not written' });
    expect(readdirSync(dest)).toEqual(['c.txt']);
    expect(readdirSync(mnt)).toEqual(['folder']);
  });
});
