// Runs the PyTorch reference's own self-checks (Philox known-answer vectors,
// goldens == reference, losses vs F.cross_entropy) so CI notices if the
// reference or the fixtures drift. Skips where torch is not installed.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';

const PY = '/usr/bin/python3';
const torchAvailable = (() => {
  if (!existsSync(PY)) return false;
  try {
    execFileSync(PY, ['-c', 'import torch, numpy'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!torchAvailable)('the PyTorch reference', () => {
  for (const script of ['test_noise.py', 'test_fixtures.py']) {
    it(`passes ${script}`, () => {
      const out = execFileSync(PY, [join(ROOT, 'tests', 'reference', script)], {
        cwd: ROOT,
        env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
        timeout: 300_000,
      }).toString();
      expect(out.length).toBeGreaterThan(0);
    });
  }
});
