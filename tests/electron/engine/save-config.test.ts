// The config.json a fine-tuned model is saved with: float32 everywhere, every other byte as the
// source wrote it (transformers' typed configs refuse 5 where a float field held 5.0).
import { describe, expect, it } from 'vitest';

import { float32Config } from '../../../electron/engine/trainer.js';

const side = (configText: string) => ({ configText, config: JSON.parse(configText) as Record<string, unknown> });

describe('float32Config', () => {
  it('keeps float literals and sets every dtype (torch_dtype, dtype, a sub-config\'s) to float32', () => {
    const text = '{\n  "final_logit_softcapping": 30.0,\n  "dtype": "bfloat16",\n  "torch_dtype": "bfloat16",\n  "text_config": { "torch_dtype": null, "rope_theta": 1000000.0 }\n}\n';
    const out = float32Config(side(text));
    expect(out).toContain('"final_logit_softcapping": 30.0');
    expect(out).toContain('"rope_theta": 1000000.0');
    expect(JSON.parse(out)).toEqual({
      final_logit_softcapping: 30,
      dtype: 'float32',
      torch_dtype: 'float32',
      text_config: { torch_dtype: 'float32', rope_theta: 1e6 },
    });
  });

  it('adds torch_dtype when the source has none', () => {
    expect(JSON.parse(float32Config(side('{"hidden_size": 64, "eps": 1.0}')))).toEqual({ torch_dtype: 'float32', hidden_size: 64, eps: 1 });
    expect(float32Config(side('{"hidden_size": 64, "eps": 1.0}'))).toContain('"eps": 1.0');
    expect(JSON.parse(float32Config(side('{}')))).toEqual({ torch_dtype: 'float32' });
  });
});
