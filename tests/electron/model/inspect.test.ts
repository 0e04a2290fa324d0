import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../electron/model/errors.js';
import { formatBytes, formatInspect, formatParams, inspectModel } from '../../../electron/model/inspect.js';
import { GPT2_CONFIG, LLAMA_CONFIG, OPT_CONFIG, gpt2Spec, llamaSpec, numel, optSpec, specTensors, tempDir, writeModel } from './helpers.js';

let root: string;
beforeAll(async () => {
  root = await tempDir();
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('inspectModel / formatInspect', () => {
  it('reports a plain JSON-able summary', async () => {
    const dir = await writeModel(path.join(root, 'llama'), LLAMA_CONFIG, specTensors(llamaSpec(), 'BF16'));
    const r = await inspectModel(dir);
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
    expect(r).toMatchObject({
      name: 'llama',
      dir,
      architecture: 'LlamaForCausalLM',
      family: 'llama',
      parameterCount: numel(llamaSpec()),
      dtypes: { BF16: numel(llamaSpec()) },
      layers: 2,
      hidden: 16,
      heads: 4,
      kvHeads: 2,
      vocabSize: 70,
      maxPositions: 64,
      tiedEmbeddings: false,
      tokenizer: 'tokenizer.json',
      weightFiles: 1,
      unusedTensors: 0,
    });
    expect(r.units.map((u) => [u.kind, u.count])).toEqual([
      ['embed', 1],
      ['block', 2],
      ['head', 1],
    ]);
    const text = formatInspect(r);
    const lines = text.trimEnd().split('\n');
    // Values start in the same column on every line.
    const col = lines[0].indexOf('llama');
    for (const l of lines) expect(l.slice(0, col)).toMatch(/^\S.*\s{2,}$|^\S+\s{2,}$/);
    expect(text).toMatch(/attention heads\s+4 x 4 \(2 kv heads\)/);
    expect(text).toMatch(/tied embeddings\s+no/);
    expect(text).toMatch(/parameters\s+\d+\.\dK/);
  });

  it('names the RoPE scaling and which layers slide a window', async () => {
    const cfg = {
      ...LLAMA_CONFIG,
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      use_sliding_window: true,
      sliding_window: 32,
      max_window_layers: 1,
      rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 16 },
    };
    const dir = await writeModel(path.join(root, 'qwen2-yarn'), cfg, specTensors(llamaSpec(cfg, { qkvBias: true })));
    const r = await inspectModel(dir);
    expect(r).toMatchObject({ ropeTheta: 10000, ropeScaling: 'yarn x4', slidingWindow: 32, slidingLayers: 1 });
    expect(formatInspect(r)).toMatch(/max positions\s+64 \(RoPE theta 10000, yarn x4, sliding window 32 on 1 of 2 layers\)/);
  });

  it('names partial rotary (Phi-3) and layers without RoPE (SmolLM3)', async () => {
    const fixtures = path.resolve(__dirname, '../../fixtures/models');
    const phi = await inspectModel(path.join(fixtures, 'phi3-tiny'));
    expect(phi).toMatchObject({ family: 'phi3', rotaryDim: 6, headDim: 8, ropeLayers: 2 });
    expect(formatInspect(phi)).toMatch(/max positions\s+64 \(RoPE theta 10000, longrope, 6 of 8 dims, sliding window 5\)/);
    const smol = await inspectModel(path.join(fixtures, 'smollm3-tiny'));
    expect(smol).toMatchObject({ family: 'llama', rotaryDim: 8, ropeLayers: 1, layers: 2 });
    expect(formatInspect(smol)).toMatch(/max positions\s+64 \(RoPE theta 5000000, on 1 of 2 layers\)/);
  });

  it('counts unused tensors (tied lm_head)', async () => {
    const dir = await writeModel(path.join(root, 'opt'), OPT_CONFIG, specTensors(optSpec(OPT_CONFIG, 'model.decoder.', true)), {
      tokenizer: null,
    });
    const r = await inspectModel(dir);
    expect(r.unusedTensors).toBe(1);
    expect(r.tokenizer).toBe(null);
    expect(formatInspect(r)).toMatch(/unused tensors\s+1/);
  });

  it("does not count GPT-2's attention-mask buffers as unused tensors", async () => {
    // Hub GPT-2 checkpoints saved by older transformers carry h.N.attn.bias (and attn.masked_bias) in F32.
    const spec = gpt2Spec();
    const buffers: [string, number[]][] = [
      ['transformer.h.0.attn.bias', [1, 1, 32, 32]],
      ['transformer.h.1.attn.masked_bias', []],
      ['transformer.h.1.extra', [4]],
    ];
    const dir = await writeModel(path.join(root, 'gpt2-buffers'), GPT2_CONFIG, specTensors([...spec, ...buffers]));
    const r = await inspectModel(dir);
    expect(r.parameterCount).toBe(numel(spec));
    expect(r.unusedTensors).toBe(1);
  });

  it('propagates ModelError', async () => {
    await expect(inspectModel(path.join(root, 'nothing'))).rejects.toBeInstanceOf(ModelError);
  });

  it('formats sizes and counts', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(2_500_000)).toBe('2.5 MB');
    expect(formatBytes(13_476_000_000)).toBe('13.48 GB');
    expect(formatParams(125_239_296)).toBe('125.2M');
    expect(formatParams(6_738_415_616)).toBe('6.74B');
    expect(formatParams(999)).toBe('999');
  });
});
