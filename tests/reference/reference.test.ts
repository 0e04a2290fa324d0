// Runs the PyTorch reference's own self-checks (Philox known-answer vectors,
// goldens == reference, losses vs F.cross_entropy, every family-specific
// mistake moving the goldens far beyond their tolerances) so CI notices if the
// reference or the fixtures drift.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';
import { debianPythonWith } from '../helpers/python.js';

describe('the PyTorch reference', () => {
  for (const [script, ...args] of [['test_noise.py'], ['test_fixtures.py'], ['mistakes.py', '--check']]) {
    it(`passes ${[script, ...args].join(' ')}`, () => {
      const out = execFileSync(debianPythonWith('torch', 'numpy'), [join(ROOT, 'tests', 'reference', script), ...args], {
        cwd: ROOT,
        env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
        timeout: 300_000,
      }).toString();
      expect(out.length).toBeGreaterThan(0);
    });
  }
});
