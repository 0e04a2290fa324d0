// Runs the PyTorch reference's own self-checks (Philox known-answer vectors,
// goldens == reference, losses vs F.cross_entropy) so CI notices if the
// reference or the fixtures drift.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';
import { debianPythonWith } from '../helpers/python.js';

describe('the PyTorch reference', () => {
  for (const script of ['test_noise.py', 'test_fixtures.py']) {
    it(`passes ${script}`, () => {
      const out = execFileSync(debianPythonWith('torch', 'numpy'), [join(ROOT, 'tests', 'reference', script)], {
        cwd: ROOT,
        env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
        timeout: 300_000,
      }).toString();
      expect(out.length).toBeGreaterThan(0);
    });
  }
});
