// LoRA, LoLDU and trainable-tokens runs with the frozen base streamed from the SSD or CPU memory, as `spillway train
// --train lora --offload ssd` runs them (the engine in its own process, the demo data): every step
// reads the base and writes nothing back (its measured I/O), the spill folder is empty afterwards,
// and the losses and the saved adapter are bit-identical to the resident run's. A bf16 base trains
// the same float32 adapters on the SSD as resident. Bits are compared exactly: the engine
// guarantees placement invariance (docs/TIERED-STORE.md).
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { startEngineJob } from '../../electron/engine/runner.js';
import type { TrainEvent, TrainOptions } from '../../electron/engine/trainer.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { demoTrainOptions } from '../helpers/train-options.js';

let work: string;
let model: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-frozen-offload-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

async function run(name: string, over: Partial<TrainOptions>): Promise<{ events: TrainEvent[]; out: string }> {
  const out = join(work, name);
  const events: TrainEvent[] = [];
  const job = startEngineJob({ type: 'train', options: demoTrainOptions(model, { steps: 5, seed: 4, out, ...over }) }, (e) => events.push(e as TrainEvent));
  await job.done;
  return { events, out };
}

const steps = (events: TrainEvent[]) => events.flatMap((e) => (e.type === 'step' ? [e] : []));
const losses = (events: TrainEvent[]) => steps(events).map((e) => [e.step, e.lossPlus, e.lossMinus]);
const adapter = (out: string) => readFileSync(join(out, 'adapter_model.safetensors'));

describe('a frozen base streamed from its tier', () => {
  for (const set of [{ trainable: 'lora', rank: 2, targets: ['q', 'v', 'down'] }, { trainable: 'loldu', rank: 4, targets: ['q', 'v'] }, { trainable: 'tokens' }] as const) {
    for (const masters of ['fp32', 'bf16'] as const) {
      it(`${set.trainable}, ${masters} base: on the SSD and in CPU memory it is read every step, never written, and trains the resident run's bits`, async () => {
        const base = { ...set, masters, lr: 1e-2 };
        const resident = await run(`${set.trainable}-${masters}-resident`, base);
        expect(steps(resident.events)).toHaveLength(5);
        for (const offload of ['ssd', 'cpu'] as const) {
          const spill = mkdtempSync(join(tmpdir(), 'spw-frozen-spill-'));
          const tiered = await run(`${set.trainable}-${masters}-${offload}`, { ...base, offload, spillDirs: [spill], writeBackEvery: 1 });
          const done = tiered.events.at(-1);
          expect(done, JSON.stringify(done)).toMatchObject({ type: 'done', status: 'completed' });
          for (const s of steps(tiered.events)) {
            expect(s.io, `step ${s.step}`).toBeDefined();
            expect(s.io!.h2dBytes).toBeGreaterThan(0);
            expect(s.io!.d2hBytes).toBe(0);
            expect(s.io!.ssdWriteBytes).toBe(0);
            if (offload === 'ssd') expect(s.io!.ssdReadBytes).toBeGreaterThan(0);
          }
          expect(losses(tiered.events)).toEqual(losses(resident.events));
          expect(adapter(tiered.out).equals(adapter(resident.out))).toBe(true);
          expect(readdirSync(spill)).toEqual([]);
        }
      });
    }
  }
});
