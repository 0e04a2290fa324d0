// Where the Models list looks for the Hugging Face cache: the order huggingface_hub itself uses
// (HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME/huggingface/hub, then ~/.cache/huggingface/hub).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { hfHubCacheDir } from '../../../electron/services/api.js';

describe('hfHubCacheDir', () => {
  const home = '/home/someone';
  it('takes the first variable set, in huggingface_hub order', () => {
    const all = { HF_HUB_CACHE: '/a/hub', HF_HOME: '/b', XDG_CACHE_HOME: '/c' };
    expect(hfHubCacheDir(all, home)).toBe('/a/hub');
    expect(hfHubCacheDir({ ...all, HF_HUB_CACHE: undefined }, home)).toBe(join('/b', 'hub'));
    expect(hfHubCacheDir({ XDG_CACHE_HOME: '/c' }, home)).toBe(join('/c', 'huggingface', 'hub'));
  });
  it('falls back to ~/.cache/huggingface/hub', () => {
    expect(hfHubCacheDir({}, home)).toBe(join(home, '.cache', 'huggingface', 'hub'));
  });
});
