import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../electron/model/errors.js';
import { loadModelInfo, resolveModelDir, scanModelRoots, tensorId } from '../../../electron/model/folder.js';
import { writeSafetensors } from '../../../electron/model/safetensors.js';
import type { ModelInfo } from '../../../electron/model/types.js';
import {
  GPT2_CONFIG,
  LLAMA_CONFIG,
  OPT_CONFIG,
  gpt2Spec,
  llamaSpec,
  numel,
  optSpec,
  rawFile,
  specTensors,
  tempDir,
  tensor,
  writeModel,
} from './helpers.js';

let root: string;
let n = 0;
const sub = (name: string) => path.join(root, `${name}-${n++}`);

beforeAll(async () => {
  root = await tempDir();
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

async function loadFails(p: string, pattern: RegExp, kind?: 'invalid' | 'unsupported'): Promise<ModelError> {
  let err: unknown;
  try {
    await loadModelInfo(p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelError);
  const me = err as ModelError;
  expect(me.message).toMatch(pattern);
  if (kind) expect(me.kind).toBe(kind);
  return me;
}

function checkUnitsConsistent(info: ModelInfo) {
  const byName = new Map(info.tensors.map((t) => [t.name, t]));
  for (const u of info.units) {
    for (const t of Object.values(u.tensors)) {
      expect(byName.get(t.name)).toEqual(t);
      expect(t.offset + t.nbytes).toBeLessThanOrEqual(info.sizeOnDisk + 1e12);
    }
  }
  expect(info.units[0].kind).toBe('embed');
  expect(info.units.at(-1)!.kind).toBe('head');
  expect(info.units.filter((u) => u.kind === 'block').map((u) => u.index)).toEqual(
    Array.from({ length: info.config.layers }, (_, i) => i),
  );
}

describe('loadModelInfo: OPT', () => {
  it('maps every role with the HF names and shapes', async () => {
    const dir = await writeModel(sub('opt'), OPT_CONFIG, specTensors(optSpec(), 'F16'), { tokenizer: 'vocab+merges' });
    const info = await loadModelInfo(dir);
    expect(info.name).toBe(path.basename(dir));
    expect(info.dir).toBe(dir);
    expect(info.config.family).toBe('opt');
    checkUnitsConsistent(info);
    const embed = info.units[0];
    expect(Object.keys(embed.tensors).sort()).toEqual(['pos', 'tok']);
    expect(embed.tensors.pos.shape).toEqual([26, 16]);
    const b1 = info.units[2];
    expect(b1.index).toBe(1);
    expect(Object.keys(b1.tensors).sort()).toEqual(
      [
        'attn_norm_b', 'attn_norm_w', 'fc1_b', 'fc1_w', 'fc2_b', 'fc2_w', 'k_b', 'k_w',
        'mlp_norm_b', 'mlp_norm_w', 'o_b', 'o_w', 'q_b', 'q_w', 'v_b', 'v_w',
      ],
    );
    expect(b1.tensors.o_w.name).toBe('model.decoder.layers.1.self_attn.out_proj.weight');
    expect(b1.tensors.mlp_norm_w.name).toBe('model.decoder.layers.1.final_layer_norm.weight');
    expect(b1.tensors.fc1_w.shape).toEqual([32, 16]);
    const head = info.units.at(-1)!;
    expect(Object.keys(head.tensors).sort()).toEqual(['norm_b', 'norm_w']);
    expect(head.tensors.norm_w.name).toBe('model.decoder.final_layer_norm.weight');
    expect(info.parameterCount).toBe(numel(optSpec()));
    expect(info.dtypes).toEqual({ F16: numel(optSpec()) });
    expect(info.sizeOnDisk).toBe((await fsp.stat(path.join(dir, 'model.safetensors'))).size);
    expect(info.tokenizer).toEqual({
      kind: 'vocab+merges',
      files: [path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt')],
    });
    // The seam's invariants: offsets inside the file, ids unique.
    const size = info.sizeOnDisk;
    for (const t of info.tensors) expect(t.offset + t.nbytes).toBeLessThanOrEqual(size);
    expect(new Set(info.tensors.map((t) => tensorId(t.name))).size).toBe(info.tensors.length);
  });

  it('ignores lm_head when tied; requires it when not tied', async () => {
    const tied = await writeModel(sub('opt-lm'), OPT_CONFIG, specTensors(optSpec(OPT_CONFIG, 'model.decoder.', true)));
    const info = await loadModelInfo(tied);
    expect(info.units.at(-1)!.tensors.lm_head).toBeUndefined();
    expect(info.parameterCount).toBe(numel(optSpec()));
    expect(info.tensors.some((t) => t.name === 'lm_head.weight')).toBe(true);

    const untiedCfg = { ...OPT_CONFIG, tie_word_embeddings: false };
    const untied = await writeModel(sub('opt-untied'), untiedCfg, specTensors(optSpec(OPT_CONFIG, 'model.decoder.', true)));
    const u = await loadModelInfo(untied);
    expect(u.units.at(-1)!.tensors.lm_head.shape).toEqual([50, 16]);
    expect(u.parameterCount).toBe(numel(optSpec()) + 50 * 16);

    const missing = await writeModel(sub('opt-untied-missing'), untiedCfg, specTensors(optSpec()));
    await loadFails(missing, /missing tensor "lm_head.weight"/);
  });

  it('accepts the decoder.* prefix without model.', async () => {
    const dir = await writeModel(sub('opt-noprefix'), OPT_CONFIG, specTensors(optSpec(OPT_CONFIG, 'decoder.')));
    const info = await loadModelInfo(dir);
    expect(info.units[0].tensors.tok.name).toBe('decoder.embed_tokens.weight');
  });

  it('missing tensor and wrong shape give clear errors', async () => {
    const spec = optSpec().filter(([name]) => name !== 'model.decoder.layers.1.fc2.bias');
    const dir = await writeModel(sub('opt-missing'), OPT_CONFIG, specTensors(spec));
    const me = await loadFails(dir, /missing tensor "model.decoder.layers.1.fc2.bias"/);
    expect(me.tensor).toBe('model.decoder.layers.1.fc2.bias');

    const wrong = optSpec().map(([name, s]): [string, number[]] =>
      name === 'model.decoder.layers.0.fc1.weight' ? [name, [16, 32]] : [name, s],
    );
    const dir2 = await writeModel(sub('opt-shape'), OPT_CONFIG, specTensors(wrong));
    await loadFails(
      dir2,
      /tensor "model.decoder.layers.0.fc1.weight" in .*model.safetensors has shape \[16,32\], expected \[32,16\] from config.json/,
    );
  });

  it('OPT-350m: post-LN blocks, no final norm, project_in/project_out around narrower embeddings', async () => {
    const E = 8;
    const C = OPT_CONFIG.hidden_size;
    const spec = optSpec()
      .filter(([name]) => !name.startsWith('model.decoder.final_layer_norm.'))
      .map(([name, s]): [string, number[]] => (name === 'model.decoder.embed_tokens.weight' ? [name, [OPT_CONFIG.vocab_size, E]] : [name, s]));
    spec.push(['model.decoder.project_in.weight', [C, E]], ['model.decoder.project_out.weight', [E, C]]);
    const cfg = { ...OPT_CONFIG, do_layer_norm_before: false, word_embed_proj_dim: E };
    const info = await loadModelInfo(await writeModel(sub('opt-350m'), cfg, specTensors(spec)));
    const roles = (kind: string) => Object.keys(info.units.find((u) => u.kind === kind)!.tensors).sort();
    expect(roles('embed')).toEqual(['pos', 'proj', 'tok']);
    expect(roles('head')).toEqual(['proj']);
    expect(info.config).toMatchObject({ postNorm: true, finalNorm: false, embedDim: E });
    // project_out must be there, and [E, C].
    const noOut = spec.filter(([name]) => name !== 'model.decoder.project_out.weight');
    await loadFails(await writeModel(sub('opt-350m-noout'), cfg, specTensors(noOut)), /missing tensor "model.decoder.project_out.weight"/);
  });

  it('config without a required field / unknown architecture', async () => {
    const { ffn_dim: _f, ...noFfn } = OPT_CONFIG;
    const dir = await writeModel(sub('opt-noffn'), noFfn, specTensors(optSpec()));
    await loadFails(dir, new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/config.json is missing required field "ffn_dim"`));
    const bert = await writeModel(sub('bert'), { architectures: ['BertModel'] }, [tensor('x', [1])]);
    await loadFails(bert, /unsupported architecture BertModel .*supported: OPTForCausalLM, GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, /);
  });

  it('broken config.json and missing weights', async () => {
    const dir = sub('broken');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'config.json'), '{ nope');
    await loadFails(dir, /config.json is not valid JSON/);
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(OPT_CONFIG));
    await loadFails(dir, /has no model.safetensors or model.safetensors.index.json/);
    await fsp.writeFile(path.join(dir, 'pytorch_model.bin'), 'x');
    await loadFails(dir, /only PyTorch .bin weights/, 'unsupported');
    await fsp.writeFile(path.join(dir, 'model.safetensors'), rawFile('[]', 0));
    await loadFails(dir, /header must be a JSON object/);
    await loadFails(path.join(root, 'does-not-exist'), /does not exist/);
  });
});

describe('loadModelInfo: GPT-2', () => {
  it('maps Conv1D weights as transposed, with and without the transformer. prefix', async () => {
    for (const prefix of ['transformer.', '']) {
      const spec = gpt2Spec(GPT2_CONFIG, prefix);
      const dir = await writeModel(sub('gpt2'), GPT2_CONFIG, specTensors(spec));
      const info = await loadModelInfo(dir);
      checkUnitsConsistent(info);
      const b = info.units[1];
      expect(b.tensors.qkv_w.name).toBe(`${prefix}h.0.attn.c_attn.weight`);
      expect(b.tensors.qkv_w.shape).toEqual([16, 48]);
      expect(b.tensors.qkv_w.transposed).toBe(true);
      expect(b.tensors.o_w.transposed).toBe(true);
      expect(b.tensors.fc1_w.transposed).toBe(true);
      expect(b.tensors.fc2_w.transposed).toBe(true);
      expect(b.tensors.qkv_b.transposed).toBe(false);
      expect(b.tensors.attn_norm_w.name).toBe(`${prefix}h.0.ln_1.weight`);
      expect(info.units[0].tensors.pos.shape).toEqual([32, 16]);
      expect(info.units.at(-1)!.tensors.norm_w.name).toBe(`${prefix}ln_f.weight`);
      expect(info.tensors.find((t) => t.name === `${prefix}h.1.mlp.c_fc.weight`)!.transposed).toBe(true);
      expect(info.parameterCount).toBe(numel(spec));
      expect(info.tokenizer?.kind).toBe('tokenizer.json');
    }
  });

  it('tolerates unsupported dtypes on tensors no unit uses, rejects them where used', async () => {
    // Old GPT-2 checkpoints carry attn.bias causal-mask buffers.
    const spec = gpt2Spec();
    const dir = await writeModel(sub('gpt2-mask'), GPT2_CONFIG, specTensors(spec));
    const mask = rawFileWithMask(spec);
    await fsp.writeFile(path.join(dir, 'model.safetensors'), mask);
    const info = await loadModelInfo(dir);
    expect(info.parameterCount).toBe(numel(spec));
    expect(info.tensors.some((t) => t.name === 'transformer.h.0.attn.bias')).toBe(false);

    const spec2 = spec.filter(([nm]) => nm !== 'transformer.ln_f.bias');
    await fsp.writeFile(path.join(dir, 'model.safetensors'), rawFileWithMask(spec2, 'transformer.ln_f.bias'));
    await loadFails(dir, /unsupported dtype U8 for tensor "transformer.ln_f.bias" in file .*model.safetensors/, 'unsupported');
  });
});

/** Builds a GPT-2 file by hand with U8 tensors (`h.0.attn.bias`, plus `extraU8` of shape [C]). */
function rawFileWithMask(spec: [string, number[]][], extraU8?: string): Buffer {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape] of spec) {
    const nb = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + nb] };
    off += nb;
  }
  header['transformer.h.0.attn.bias'] = { dtype: 'U8', shape: [1, 1, 32, 32], data_offsets: [off, off + 1024] };
  off += 1024;
  if (extraU8) {
    header[extraU8] = { dtype: 'U8', shape: [16], data_offsets: [off, off + 16] };
    off += 16;
  }
  return rawFile(header, off);
}

describe('loadModelInfo: Llama family', () => {
  it('Llama (GQA, untied)', async () => {
    const spec = llamaSpec();
    const dir = await writeModel(sub('llama'), LLAMA_CONFIG, specTensors(spec, 'BF16'));
    const info = await loadModelInfo(dir);
    checkUnitsConsistent(info);
    expect(Object.keys(info.units[0].tensors)).toEqual(['tok']);
    const b = info.units[1];
    expect(Object.keys(b.tensors).sort()).toEqual(
      ['attn_norm_w', 'down_w', 'gate_w', 'k_w', 'mlp_norm_w', 'o_w', 'q_w', 'up_w', 'v_w'],
    );
    expect(b.tensors.k_w.shape).toEqual([8, 16]);
    expect(b.tensors.gate_w.name).toBe('model.layers.0.mlp.gate_proj.weight');
    expect(info.units.at(-1)!.tensors.lm_head.name).toBe('lm_head.weight');
    expect(info.units.at(-1)!.tensors.norm_w.name).toBe('model.norm.weight');
    expect(info.parameterCount).toBe(numel(spec));
    expect(info.dtypes).toEqual({ BF16: numel(spec) });
  });

  it('Llama with attention_bias and mlp_bias, and head_dim override', async () => {
    const cfg = { ...LLAMA_CONFIG, attention_bias: true, mlp_bias: true, head_dim: 8 };
    const spec = llamaSpec(cfg, { qkvBias: true, oBias: true, mlpBias: true });
    const dir = await writeModel(sub('llama-bias'), cfg, specTensors(spec));
    const info = await loadModelInfo(dir);
    const b = info.units[1];
    expect(b.tensors.q_w.shape).toEqual([32, 16]);
    expect(b.tensors.o_w.shape).toEqual([16, 32]);
    expect(b.tensors.o_b.shape).toEqual([16]);
    expect(b.tensors.down_b.shape).toEqual([16]);
    expect(info.parameterCount).toBe(numel(spec));
  });

  it('Mistral', async () => {
    const cfg = { ...LLAMA_CONFIG, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 16 };
    const dir = await writeModel(sub('mistral'), cfg, specTensors(llamaSpec(cfg)));
    const info = await loadModelInfo(dir);
    expect(info.config.hfArchitecture).toBe('MistralForCausalLM');
    expect(info.config.family).toBe('llama');
    expect(info.config.layerAttention.map((l) => l.window)).toEqual(Array(info.config.layers).fill(16));
    checkUnitsConsistent(info);
  });

  it('Qwen2 (qkv bias, no o bias, tied)', async () => {
    const cfg = {
      ...LLAMA_CONFIG,
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      tie_word_embeddings: true,
      rope_theta: 1000000,
    };
    const spec = llamaSpec(cfg, { qkvBias: true, lmHead: false });
    const dir = await writeModel(sub('qwen2'), cfg, specTensors(spec));
    const info = await loadModelInfo(dir);
    const b = info.units[1];
    expect(b.tensors.q_b.shape).toEqual([16]);
    expect(b.tensors.k_b.shape).toEqual([8]);
    expect(b.tensors.o_b).toBeUndefined();
    expect(info.units.at(-1)!.tensors.lm_head).toBeUndefined();
    expect(info.config.ropes[0].theta).toBe(1000000);
    expect(info.parameterCount).toBe(numel(spec));

    const noBias = await writeModel(sub('qwen2-nobias'), cfg, specTensors(llamaSpec(cfg, { lmHead: false })));
    await loadFails(noBias, /missing tensor "model.layers.0.self_attn.q_proj.bias"/);
  });
});

describe('sharded checkpoints', () => {
  async function sharded(name: string, mutate?: (wm: Record<string, string>) => void): Promise<string> {
    const dir = sub(name);
    await fsp.mkdir(dir);
    const spec = llamaSpec();
    const half = Math.ceil(spec.length / 2);
    const shards = [spec.slice(0, half), spec.slice(half)];
    const wm: Record<string, string> = {};
    for (let i = 0; i < 2; i++) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(dir, file), specTensors(shards[i]));
      for (const [nm] of shards[i]) wm[nm] = file;
    }
    mutate?.(wm);
    await fsp.writeFile(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: 0 }, weight_map: wm }),
    );
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(LLAMA_CONFIG));
    return dir;
  }

  it('loads every shard', async () => {
    const dir = await sharded('llama-sharded');
    const info = await loadModelInfo(dir);
    const files = new Set(info.tensors.map((t) => path.basename(t.file)));
    expect(files).toEqual(new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']));
    expect(info.parameterCount).toBe(numel(llamaSpec()));
    let size = 0;
    for (const f of files) size += (await fsp.stat(path.join(dir, f))).size;
    expect(info.sizeOnDisk).toBe(size);
    checkUnitsConsistent(info);
  });

  it('index naming a tensor its shard lacks', async () => {
    const dir = await sharded('llama-bad-index', (wm) => {
      wm['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    });
    await loadFails(dir, /"model.norm.weight" is listed in .*index.json under model-00001-of-00002.safetensors but is stored in model-00002/);
    const dir2 = await sharded('llama-ghost', (wm) => {
      wm['ghost.weight'] = 'model-00002-of-00002.safetensors';
    });
    await loadFails(dir2, /"ghost.weight" .* is not in that file/);
  });

  it('missing shard, path escape and duplicates across shards', async () => {
    const dir = await sharded('llama-missing-shard', (wm) => {
      wm['model.norm.weight'] = 'model-00003-of-00002.safetensors';
    });
    await loadFails(dir, /shard model-00003-of-00002.safetensors listed in .* is missing/);
    const dir2 = await sharded('llama-escape', (wm) => {
      wm['model.norm.weight'] = '../x.safetensors';
    });
    await loadFails(dir2, /invalid shard/);
    const dir3 = await sharded('llama-dup');
    await writeSafetensors(path.join(dir3, 'model-00001-of-00002.safetensors'), [
      ...specTensors(llamaSpec().slice(0, Math.ceil(llamaSpec().length / 2))),
      tensor('model.norm.weight', [16]),
    ]);
    await loadFails(dir3, /"model.norm.weight" appears in both/);
  });
});

describe('Hugging Face cache layout', () => {
  async function cacheRepo(hub: string, repo: string, revs: string[], main: string | null) {
    const top = path.join(hub, `models--${repo.replace('/', '--')}`);
    await fsp.mkdir(path.join(top, 'blobs'), { recursive: true });
    await fsp.mkdir(path.join(top, 'refs'), { recursive: true });
    for (const rev of revs) {
      const snap = path.join(top, 'snapshots', rev);
      await fsp.mkdir(snap, { recursive: true });
      // Real files go to blobs/, the snapshot holds relative symlinks.
      const tmp = await writeModel(path.join(top, `tmp-${rev}`), GPT2_CONFIG, specTensors(gpt2Spec()));
      for (const f of await fsp.readdir(tmp)) {
        const blob = path.join(top, 'blobs', `${rev}-${f}`);
        await fsp.rename(path.join(tmp, f), blob);
        await fsp.symlink(path.relative(snap, blob), path.join(snap, f));
      }
      await fsp.rmdir(tmp);
    }
    if (main) await fsp.writeFile(path.join(top, 'refs', 'main'), main);
    return top;
  }

  it('resolves refs/main, symlinked blobs, org/name', async () => {
    const hub = sub('hub');
    const top = await cacheRepo(hub, 'acme/tiny-gpt2', ['aaa111', 'bbb222'], 'aaa111');
    const r = await resolveModelDir(top);
    expect(r).toMatchObject({ name: 'acme/tiny-gpt2', revision: 'aaa111', dir: path.join(top, 'snapshots', 'aaa111') });
    const info = await loadModelInfo(top);
    expect(info.name).toBe('acme/tiny-gpt2');
    expect(info.dir).toBe(path.join(top, 'snapshots', 'aaa111'));
    const blob = await fsp.realpath(path.join(top, 'blobs', 'aaa111-model.safetensors'));
    for (const t of info.tensors) expect(t.file).toBe(blob);
    expect(info.sizeOnDisk).toBe((await fsp.stat(blob)).size);
    // A snapshot folder directly.
    const snap = await loadModelInfo(path.join(top, 'snapshots', 'bbb222'));
    expect(snap.name).toBe('acme/tiny-gpt2');
    expect(snap.dir).toBe(path.join(top, 'snapshots', 'bbb222'));
  });

  it('without refs/main: the only or the newest snapshot', async () => {
    const hub = sub('hub2');
    const one = await cacheRepo(hub, 'gpt2', ['only'], null);
    expect((await resolveModelDir(one)).revision).toBe('only');
    expect((await resolveModelDir(one)).name).toBe('gpt2');
    const two = await cacheRepo(hub, 'org/two', ['old', 'new'], 'missing-rev');
    const past = new Date(Date.now() - 3600_000);
    await fsp.utimes(path.join(two, 'snapshots', 'old'), past, past);
    expect((await resolveModelDir(two)).revision).toBe('new');
  });

  it('scanModelRoots finds cache repos and plain folders and explains unsupported ones', async () => {
    const scanRoot = sub('scan');
    const hub = path.join(scanRoot, '.cache', 'huggingface', 'hub');
    await cacheRepo(hub, 'acme/tiny-gpt2', ['r1'], 'r1');
    await fsp.mkdir(path.join(hub, 'datasets--acme--data'), { recursive: true });
    await writeModel(path.join(scanRoot, 'models', 'my-opt'), OPT_CONFIG, specTensors(optSpec()));
    await writeModel(
      path.join(scanRoot, 'models', 'opt-noaffine'),
      { ...OPT_CONFIG, layer_norm_elementwise_affine: false },
      specTensors(optSpec()),
    );
    await writeModel(path.join(scanRoot, 'models', 'bert'), { architectures: ['BertModel'] }, [tensor('x', [1])]);
    // Not a model: a config.json with no architecture and no weights.
    await fsp.mkdir(path.join(scanRoot, 'other'), { recursive: true });
    await fsp.writeFile(path.join(scanRoot, 'other', 'config.json'), '{"theme":"dark"}');
    // Too deep to be found with maxDepth 2.
    await writeModel(path.join(scanRoot, 'a', 'b', 'c', 'd', 'deep'), OPT_CONFIG, specTensors(optSpec()));

    const res = await scanModelRoots([scanRoot, path.join(scanRoot, 'nonexistent'), hub], { maxDepth: 4 });
    expect(res.models.map((m) => m.name)).toEqual(['acme/tiny-gpt2', 'my-opt']);
    expect(res.unsupported.map((u) => [u.name, u.hfArchitecture])).toEqual([
      ['bert', 'BertModel'],
      ['opt-noaffine', 'OPTForCausalLM'],
    ]);
    expect(res.unsupported[1].reason).toMatch(/layer_norm_elementwise_affine/);
    expect(res.unsupported[0].reason).toMatch(/supported: OPTForCausalLM/);

    const deep = await scanModelRoots([scanRoot], { maxDepth: 6 });
    expect(deep.models.map((m) => m.name)).toContain('deep');
  });
});
