// The native loader re-checks what the TypeScript side already validated: a spec
// that points outside its file, or whose byte count disagrees with its shape, is
// a clear error and never a crash.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { engineSpec } from '../../electron/engine/spec.js';
import { loadNative } from '../../electron/engine/native.js';
import { loadModelInfo } from '../../electron/model/index.js';
import type { ModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';

async function specWith(mutate: (info: ModelInfo) => void): Promise<unknown> {
  const info = await loadModelInfo(join(FIXTURE_MODELS, 'llama-tiny'));
  mutate(info);
  return engineSpec(info);
}

describe('the native loader', () => {
  const Engine = loadNative().Engine;

  it('refuses a tensor lying outside its file', async () => {
    const spec = await specWith((info) => {
      info.units[1].tensors.q_w.offset += 1 << 30;
    });
    await expect(new Engine({ threads: 1 }).load(spec)).rejects.toThrow(/lies outside .*model\.safetensors/);
  });

  it('refuses a byte count that does not match the shape', async () => {
    const spec = await specWith((info) => {
      info.units[1].tensors.q_w.nbytes -= 4;
    });
    await expect(new Engine({ threads: 1 }).load(spec)).rejects.toThrow(/do not match its shape/);
  });

  it('refuses a missing file', async () => {
    const spec = await specWith((info) => {
      info.units[0].tensors.tok.file = '/nonexistent/model.safetensors';
    });
    await expect(new Engine({ threads: 1 }).load(spec)).rejects.toThrow(/cannot open \/nonexistent\/model\.safetensors/);
  });

  it('refuses a malformed spec with a type error, not a crash', () => {
    expect(() => new Engine({ threads: 1 }).load({ config: {}, units: [] })).toThrow(/missing field 'family'/);
    expect(() => new Engine({ threads: 1 }).load(42)).toThrow(/model spec/);
  });

  // Each family's recipe says which tensors its blocks hold (native/src/arch/): roles are bound
  // to the parameter struct once, at load, and anything the recipe would misread is refused.
  it('refuses a role the engine does not know, naming it', async () => {
    const spec = await specWith((info) => {
      info.units[1].tensors.q_proj = info.units[1].tensors.q_w;
    });
    expect(() => new Engine({ threads: 1 }).load(spec)).toThrow(/block 0 has no role 'q_proj'/);
  });

  it("refuses a tensor the family's recipe would not read", async () => {
    const spec = await specWith((info) => {
      info.units[2].tensors.fc1_w = info.units[2].tensors.up_w;
    });
    expect(() => new Engine({ threads: 1 }).load(spec)).toThrow(/block 1: the llama recipe reads no 'fc1_w'/);
  });

  it('refuses a block missing a tensor its recipe needs', async () => {
    const spec = await specWith((info) => {
      delete info.units[1].tensors.gate_w;
    });
    expect(() => new Engine({ threads: 1 }).load(spec)).toThrow(/block 0 of a llama model needs 'gate_w'/);
  });

  it('refuses a shape or layout the config does not imply', async () => {
    const swapped = await specWith((info) => {
      const t = info.units[1].tensors;
      [t.q_w, t.k_w] = [t.k_w, t.q_w];
    });
    expect(() => new Engine({ threads: 1 }).load(swapped)).toThrow(/tensor model\.layers\.0\.self_attn\.k_proj\.weight has shape \[16,32\], expected \[32,32\]/);
    const transposed = await specWith((info) => {
      info.units[1].tensors.down_w.transposed = true;
    });
    expect(() => new Engine({ threads: 1 }).load(transposed)).toThrow(/down_proj\.weight must not be stored \[in, out\]/);
  });

  it('refuses an unknown family, naming the ones it has', async () => {
    const spec = (await specWith(() => {})) as { config: Record<string, unknown> };
    spec.config.family = 'mamba';
    expect(() => new Engine({ threads: 1 }).load(spec)).toThrow(/unknown model family 'mamba' \(the engine has opt, gpt2, llama(, \w+)*\)/);
    expect(() => new Engine({ threads: 1 }).load(spec)).toThrow(/gpt_neox, olmo2/);
  });

  it('refuses to step before a model is loaded', () => {
    expect(() => new Engine({ threads: 1 }).info()).not.toThrow();
    expect(() =>
      new Engine({ threads: 1 }).score({
        tokens: new Int32Array(2),
        seqStart: new Int32Array([0, 2]),
        scoreStart: new Int32Array([1]),
        scoreEnd: new Int32Array([2]),
        exampleStart: new Int32Array([0, 1]),
        exampleKind: new Int32Array([0]),
        label: new Int32Array([-1]),
      }),
    ).toThrow(/no model loaded/);
  });
});
