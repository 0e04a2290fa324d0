// Loads the tiny Hugging Face checkpoints under tests/fixtures/models/ (made
// by another tool); skipped when they are absent.
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelInfo, scanModelRoots } from '../../../electron/model/folder.js';
import { formatInspect, inspectModel } from '../../../electron/model/inspect.js';

const ROOT = path.resolve(__dirname, '../../fixtures/models');
const EXPECTED: Record<string, { arch: string; family: string }> = {
  'opt-tiny': { arch: 'OPTForCausalLM', family: 'opt' },
  'gpt2-tiny': { arch: 'GPT2LMHeadModel', family: 'gpt2' },
  'llama-tiny': { arch: 'LlamaForCausalLM', family: 'llama' },
  'llama-tiny-sharded': { arch: 'LlamaForCausalLM', family: 'llama' },
  'mistral-tiny': { arch: 'MistralForCausalLM', family: 'llama' },
  'qwen2-tiny': { arch: 'Qwen2ForCausalLM', family: 'llama' },
  'gptneox-tiny': { arch: 'GPTNeoXForCausalLM', family: 'gpt_neox' },
  'gptneox-seq-tiny': { arch: 'GPTNeoXForCausalLM', family: 'gpt_neox' },
  'olmo2-tiny': { arch: 'Olmo2ForCausalLM', family: 'olmo2' },
  'opt350m-tiny': { arch: 'OPTForCausalLM', family: 'opt' },
  'gemma2-tiny': { arch: 'Gemma2ForCausalLM', family: 'gemma2' },
  'gemma3-tiny': { arch: 'Gemma3ForCausalLM', family: 'gemma3' },
};
const present = existsSync(ROOT)
  ? readdirSync(ROOT).filter((n) => existsSync(path.join(ROOT, n, 'config.json')))
  : [];

describe.skipIf(present.length === 0)('tests/fixtures/models', () => {
  for (const name of present) {
    it(`loads ${name}`, async () => {
      const info = await loadModelInfo(path.join(ROOT, name));
      const exp = EXPECTED[name];
      if (exp) {
        expect(info.config.hfArchitecture).toBe(exp.arch);
        expect(info.config.family).toBe(exp.family);
      }
      expect(info.units.filter((u) => u.kind === 'block').length).toBe(info.config.layers);
      expect(info.parameterCount).toBeGreaterThan(0);
      for (const t of info.tensors) expect(path.isAbsolute(t.file)).toBe(true);
      const text = formatInspect(await inspectModel(path.join(ROOT, name)));
      expect(text).toContain(info.config.hfArchitecture);
    });
  }

  it('llama-tiny and llama-tiny-sharded hold the same tensors', async () => {
    if (!present.includes('llama-tiny') || !present.includes('llama-tiny-sharded')) return;
    const a = await loadModelInfo(path.join(ROOT, 'llama-tiny'));
    const b = await loadModelInfo(path.join(ROOT, 'llama-tiny-sharded'));
    const shapes = (i: typeof a) => Object.fromEntries(i.tensors.map((t) => [t.name, t.shape]));
    expect(shapes(b)).toEqual(shapes(a));
    expect(new Set(b.tensors.map((t) => t.file)).size).toBeGreaterThan(1);
  });

  it('scanModelRoots finds them all', async () => {
    const res = await scanModelRoots([ROOT]);
    expect(res.unsupported).toEqual([]);
    expect(res.models.map((m) => m.name).sort()).toEqual([...present].sort());
  });
});
