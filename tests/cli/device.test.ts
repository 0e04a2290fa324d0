// --device and --gemm as a person meets them on the command line: real child processes, the real
// addon. CUDA_VISIBLE_DEVICES is set empty, which the CUDA runtime reads as "no device visible", so
// `auto` takes the CPU here and on a GPU machine alike (or because this build has no CUDA at all).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { jsonLines, runSpillway } from '../helpers/cli.js';
import { ROOT } from '../helpers/engine.js';
import { DEMO_DATA } from '../helpers/tiny-model.js';

const NO_GPU = { CUDA_VISIBLE_DEVICES: '' };
const WHY_NOT_CUDA = '(CUDA reports no device: .+|this build of the engine has no CUDA backend .+)';
const model = join(ROOT, 'resources', 'models', 'spillway-demo');
const train = join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');
const evalData = join(DEMO_DATA, 'sentiment-demo', 'eval.jsonl');
const small = ['--model', model, '--data', train, '--eval-data', evalData, '--eval-max', '8', '--steps', '1', '--batch-size', '4'];

let data: string;
const spillway = (args: string[], env: NodeJS.ProcessEnv = NO_GPU) => runSpillway(args, data, env);

beforeAll(() => {
  data = mkdtempSync(join(tmpdir(), 'spw-device-'));
});

describe('spillway train --device', () => {
  it('auto takes the CPU when no GPU is visible, says why in one line, and keeps the device with the run', async () => {
    const human = await spillway(['train', ...small]);
    expect(human.code, human.stderr).toBe(0);
    const firstLine = human.stderr.split('\n')[0];
    expect(firstLine).toMatch(new RegExp(`^device auto: the CPU, because ${WHY_NOT_CUDA}$`));

    const r = await spillway(['train', ...small, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const start = jsonLines(r.stdout)[0] as { type: string; runId: string; device: Record<string, unknown> };
    expect(start.type).toBe('start');
    expect(start.device).toMatchObject({ asked: 'auto', id: 'cpu', gemm: 'fp32', backend: 'cpu', pciBusId: null });
    expect(start.device.reason).toBe(firstLine);

    const show = await spillway(['runs', 'show', start.runId]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/^device {6}cpu: .+, \d+ cores \(asked auto\)$/m);
    const list = await spillway(['runs', 'list']);
    expect(list.stdout.split('\n').find((l) => l.startsWith(start.runId))).toMatch(/ completed .* cpu /);
  });

  it('a CUDA device asked for where none is visible: exit 1 with the reason, and no run recorded', async () => {
    const before = (JSON.parse((await spillway(['runs', 'list', '--json'])).stdout) as unknown[]).length;
    const r = await spillway(['train', ...small, '--device', 'cuda:0', '--gemm', 'tf32']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`device cuda:0 asked for, but ${WHY_NOT_CUDA}; use --device cpu or auto`));
    expect((JSON.parse((await spillway(['runs', 'list', '--json'])).stdout) as unknown[]).length).toBe(before);
  });

  it('--gemm on the CPU is noted as fp32; an unknown device or precision is refused before anything runs', async () => {
    const r = await spillway(['train', ...small, '--device', 'cpu', '--gemm', 'bf16']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').slice(0, 2)).toEqual(['device cpu, as asked', 'GEMMs run in fp32 on the CPU (--gemm bf16 applies on a CUDA device)']);

    const before = (JSON.parse((await spillway(['runs', 'list', '--json'])).stdout) as unknown[]).length;
    const gpu = await spillway(['train', ...small, '--device', 'gpu']);
    expect(gpu.code).toBe(1);
    expect(gpu.stderr).toContain('--device: unknown device "gpu" (auto, cpu, cuda or cuda:N)');
    const fp16 = await spillway(['train', ...small, '--gemm', 'fp16']);
    expect(fp16.code).toBe(1);
    expect(fp16.stderr).toContain('unknown GEMM precision fp16 (fp32, tf32, bf16)');
    expect((JSON.parse((await spillway(['runs', 'list', '--json'])).stdout) as unknown[]).length).toBe(before);
  });
});

describe('spillway score and plan --device', () => {
  it('score refuses a CUDA device that is not there with the same reason', async () => {
    const r = await spillway(['score', '--model', model, '--data', evalData, '--task', 'sst2', '--device', 'cuda']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`device cuda asked for, but ${WHY_NOT_CUDA}; use --device cpu or auto`));
  });

  it('plan says which device it planned for, and refuses one that is not there', async () => {
    const r = await spillway(['plan', '--model', model, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as { computeDevice: string; device: { id: string; gemm: string; defaultBudget: number | null; reason: string } };
    expect(p.device).toMatchObject({ id: 'cpu', gemm: 'fp32', defaultBudget: null });
    expect(p.device.reason).toMatch(new RegExp(`^device auto: the CPU, because ${WHY_NOT_CUDA}$`));
    const human = await spillway(['plan', '--model', model]);
    expect(human.stdout.split('\n')[0]).toBe(p.device.reason);
    const cuda = await spillway(['plan', '--model', model, '--device', 'cuda:1']);
    expect(cuda.code).toBe(1);
    expect(cuda.stderr).toMatch(new RegExp(`device cuda:1 asked for, but ${WHY_NOT_CUDA}; use --device cpu or auto`));
  });
});
