// Checkpoints and resume: a run interrupted (even by SIGKILL) and resumed from
// its last checkpoint gives the same losses and the same final weights, bit for
// bit, as a run that was never interrupted (CPU backend).
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { startEngineJob } from '../../electron/engine/runner.js';
import { latestCheckpoint } from '../../electron/engine/checkpoint.js';
import type { TrainEvent, TrainOptions } from '../../electron/engine/trainer.js';
import { EventLog, waitForCheckpoint, waitForSteps } from '../helpers/events.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { DEMO_TRAIN, demoTrainOptions } from '../helpers/train-options.js';

let work: string;
let model: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-resume-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

const options = (over: Partial<TrainOptions> = {}): TrainOptions =>
  demoTrainOptions(model, {
    steps: 8,
    seed: 9,
    ...over,
  });

async function runToEnd(o: TrainOptions): Promise<TrainEvent[]> {
  const events: TrainEvent[] = [];
  const job = startEngineJob({ type: 'train', options: o }, (e) => events.push(e as TrainEvent));
  await job.done;
  return events;
}

const stepLosses = (events: TrainEvent[]) =>
  events.flatMap((e) => (e.type === 'step' ? [[e.step, e.lossPlus, e.lossMinus] as const] : []));

describe('checkpoint and resume', () => {
  it('continues bit-identically from a checkpoint', async () => {
    const whole = await runToEnd(options({ out: join(work, 'whole') }));

    const ckpts = join(work, 'ckpt-a');
    const first = await runToEnd(options({ steps: 8, checkpointEvery: 3, checkpointDir: ckpts, out: join(work, 'first') }));
    const written = first.filter((e) => e.type === 'checkpoint').map((e) => (e.type === 'checkpoint' ? e.step : -1));
    expect(written).toEqual([3, 6]);
    const resumeFrom = join(ckpts, 'step-00000006');
    expect(await latestCheckpoint(ckpts)).toBe(resumeFrom);

    const rest = await runToEnd(options({ resumeFrom, out: join(work, 'resumed') }));
    expect(stepLosses(rest).map((s) => s[0])).toEqual([7, 8]);
    expect(stepLosses(rest)).toEqual(stepLosses(whole).slice(6));
    const a = readFileSync(join(work, 'whole', 'model.safetensors'));
    const b = readFileSync(join(work, 'resumed', 'model.safetensors'));
    expect(b.equals(a)).toBe(true);
    // The update's record is the same; each entry also keeps its step's measures (times differ).
    const updates = (dir: string) =>
      readFileSync(join(work, dir, 'seedlog.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const { at: _at, step_ms: _ms, ...rest } = JSON.parse(l) as Record<string, unknown>;
          return rest;
        });
    expect(updates('resumed')).toEqual(updates('whole'));
  });

  it('resumes an adapter run (LoRA, FZOO) bit-identically from its trained tensors', async () => {
    const adapter = { trainable: 'lora', rank: 2, targets: ['q', 'v', 'o'], estimator: 'fzoo', q: 3, lr: 1e-3 } as const;
    const whole = await runToEnd(options({ ...adapter, out: join(work, 'lora-whole'), merge: true }));
    expect(whole.find((e) => e.type === 'error')).toBeUndefined();
    expect(readdirSync(join(work, 'lora-whole')).sort()).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'merged', 'seedlog.jsonl', 'spillway.json', 'trainable.safetensors']));
    expect(readdirSync(join(work, 'lora-whole'))).not.toContain('model.safetensors');
    expect(readdirSync(join(work, 'lora-whole', 'merged'))).toEqual(expect.arrayContaining(['config.json', 'model.safetensors']));
    const ckpts = join(work, 'ckpt-lora');
    await runToEnd(options({ ...adapter, checkpointEvery: 5, checkpointDir: ckpts }));
    const resumeFrom = join(ckpts, 'step-00000005');
    // A checkpoint of an adapter run keeps the adapters, not the (frozen) model.
    expect(readdirSync(resumeFrom)).toContain('trainable.safetensors');
    expect(readdirSync(resumeFrom)).not.toContain('model.safetensors');
    const rest = await runToEnd(options({ ...adapter, resumeFrom, out: join(work, 'lora-resumed') }));
    expect(stepLosses(rest)).toEqual(stepLosses(whole).slice(5));
    for (const f of ['adapter_model.safetensors', 'trainable.safetensors']) {
      expect(readFileSync(join(work, 'lora-resumed', f)).equals(readFileSync(join(work, 'lora-whole', f))), f).toBe(true);
    }
    // The seed log holds the coefficient each probe's noise was applied with: FZOO's, normalised by the probes' spread.
    const log = readFileSync(join(work, 'lora-whole', 'seedlog.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { coef: number; projected_grad: number; lr: number });
    expect(log).toHaveLength(8 * 3);
    expect(log.every((e) => Number.isFinite(e.coef) && e.coef !== (e.lr * e.projected_grad) / 3)).toBe(true);
  });

  it('resumes a trainable-tokens run bit-identically, and saves its rows as peft does', async () => {
    const set = { trainable: 'tokens', lr: 1e-2 } as const;
    const whole = await runToEnd(options({ ...set, out: join(work, 'tokens-whole'), merge: true }));
    expect(whole.find((e) => e.type === 'error')).toBeUndefined();
    const config = JSON.parse(readFileSync(join(work, 'tokens-whole', 'adapter_config.json'), 'utf8')) as { peft_type: string; token_indices: number[] };
    expect(config.peft_type).toBe('TRAINABLE_TOKENS');
    expect(config.token_indices.length).toBeGreaterThan(0);
    expect(readdirSync(join(work, 'tokens-whole', 'merged'))).toEqual(expect.arrayContaining(['config.json', 'model.safetensors']));
    const ckpts = join(work, 'ckpt-tokens');
    await runToEnd(options({ ...set, checkpointEvery: 5, checkpointDir: ckpts }));
    const resumeFrom = join(ckpts, 'step-00000005');
    expect(readdirSync(resumeFrom)).toContain('trainable.safetensors');
    expect(readdirSync(resumeFrom)).not.toContain('model.safetensors');
    const rest = await runToEnd(options({ ...set, resumeFrom, out: join(work, 'tokens-resumed') }));
    expect(stepLosses(rest)).toEqual(stepLosses(whole).slice(5));
    for (const f of ['adapter_model.safetensors', 'trainable.safetensors']) {
      expect(readFileSync(join(work, 'tokens-resumed', f)).equals(readFileSync(join(work, 'tokens-whole', f))), f).toBe(true);
    }
  });

  it('resumes bf16 masters bit-identically, in the checkpoint\'s precision, with blocks on the SSD', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-resume-spill-'));
    const bf16 = (over: Partial<TrainOptions>) => options({ masters: 'bf16', offload: 'ssd', spillDirs: [spill], writeBackEvery: 2, ...over });
    const whole = await runToEnd(bf16({ steps: 6, out: join(work, 'bf16-whole') }));
    const ckpts = join(work, 'ckpt-bf16');
    await runToEnd(bf16({ steps: 6, checkpointEvery: 3, checkpointDir: ckpts }));
    const resumeFrom = join(ckpts, 'step-00000003');
    // Not given: the checkpoint's precision is used (and the placement may differ: resident here).
    const rest = await runToEnd(options({ resumeFrom, steps: 6, out: join(work, 'bf16-resumed') }));
    expect(stepLosses(rest).map((s) => s[0])).toEqual([4, 5, 6]);
    expect(stepLosses(rest)).toEqual(stepLosses(whole).slice(3));
    expect(readFileSync(join(work, 'bf16-resumed', 'model.safetensors')).equals(readFileSync(join(work, 'bf16-whole', 'model.safetensors')))).toBe(true);
    // Given differently: refused, naming both.
    const wrong = await runToEnd(options({ resumeFrom, steps: 6, masters: 'fp16' })).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(wrong).toMatch(/was trained with bf16 masters; resume it with --masters bf16 \(not fp16\)/);
  });

  it('counts a step whose update is applied when the stop lands in the evaluation after it', async () => {
    // Each step is followed by an evaluation of all 512 examples in chunks of 64, far longer than
    // the step, so the stop sent on the first step event cancels a chunk of that evaluation: the
    // checkpoint on stop must hold the step (its weights are updated and its seed is logged), and
    // resume from there bit-identically.
    const evalEach = { eval: DEMO_TRAIN, evalFraction: 0, evalEvery: 1, batchSize: 32 };
    const ckpts = join(work, 'ckpt-stop-in-eval');
    const events = new EventLog<TrainEvent>();
    const job = startEngineJob({ type: 'train', options: options({ ...evalEach, steps: 100_000, checkpointDir: ckpts }) }, (e) => events.push(e as TrainEvent));
    await waitForSteps(events, 1, job);
    job.stop();
    await job.done;
    const done = events.at(-1);
    expect(done).toMatchObject({ type: 'done', status: 'stopped' });
    const stepsDone = (done as Extract<TrainEvent, { type: 'done' }>).steps;
    expect(stepsDone).toBe(stepLosses(events).length);
    const last = await latestCheckpoint(ckpts);
    expect(last).toBe(join(ckpts, `step-${String(stepsDone).padStart(8, '0')}`));
    expect(readFileSync(join(last as string, 'seedlog.jsonl'), 'utf8').trim().split('\n')).toHaveLength(stepsDone);

    const resumed = await runToEnd(options({ ...evalEach, steps: stepsDone + 2, resumeFrom: last as string }));
    const whole = await runToEnd(options({ ...evalEach, steps: stepsDone + 2 }));
    expect(stepLosses(resumed)).toEqual(stepLosses(whole).slice(stepsDone));
  });

  it('resumes after SIGKILL from the last checkpoint', async () => {
    const ckpts = join(work, 'ckpt-kill');
    const events = new EventLog<TrainEvent>();
    const job = startEngineJob({ type: 'train', options: options({ steps: 100_000, checkpointEvery: 2, checkpointDir: ckpts }) }, (e) => events.push(e as TrainEvent));
    await waitForCheckpoint(events, 4, job);
    job.kill('SIGKILL');
    await job.done.catch(() => undefined);
    const last = await latestCheckpoint(ckpts);
    expect(last).not.toBeNull();
    const stepsDone = Number(/step-(\d+)$/.exec(last as string)?.[1]);
    expect(stepsDone).toBeGreaterThanOrEqual(4);
    const resumed = await runToEnd(options({ steps: stepsDone + 2, resumeFrom: last as string }));
    const before = stepLosses(events).filter((s) => s[0] <= stepsDone);
    const whole = await runToEnd(options({ steps: stepsDone + 2 }));
    expect(stepLosses(whole).slice(0, stepsDone)).toEqual(before);
    expect(stepLosses(resumed)).toEqual(stepLosses(whole).slice(stepsDone));
  });

  it('keeps checkpointing into the same folder it resumed from', async () => {
    // The resume source is one of the run's own checkpoints; later checkpoints must
    // neither prune it away nor need it again (the side files are read once).
    const ckpts = join(work, 'ckpt-same');
    await runToEnd(options({ steps: 2, checkpointEvery: 1, checkpointDir: ckpts }));
    const from = join(ckpts, 'step-00000001');
    const events = await runToEnd(options({ steps: 6, checkpointEvery: 1, checkpointDir: ckpts, resumeFrom: from, out: join(work, 'same-out') }));
    expect(events.filter((e) => e.type === 'checkpoint').map((e) => (e.type === 'checkpoint' ? e.step : -1))).toEqual([2, 3, 4, 5]);
    expect(events.at(-1)?.type).toBe('done');
    expect(readFileSync(join(work, 'same-out', 'config.json'), 'utf8')).toContain('LlamaForCausalLM');
  });

  it('refuses a folder that is not a checkpoint', async () => {
    const job = startEngineJob({ type: 'train', options: options({ resumeFrom: model }) }, () => {});
    await expect(job.done).rejects.toThrow(/not a Spillway checkpoint/);
  });
});
