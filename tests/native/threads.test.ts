// Thread counts the engine is given (issue 14, "Bounded inputs"): a count above the cores
// present runs as many threads as there are cores, whatever asked for it (a run's options,
// the settings, a script through the addon); a count that is not a positive integer is
// refused with a message naming the field. Nothing starts 100000 threads.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { loadNative } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';

/** This process's OS threads, as the kernel counts them. */
const osThreads = () => Number(/^Threads:\s+(\d+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);

describe('engine threads', () => {
  it('runs at most the cores present, however many are asked for', async () => {
    const cores = availableParallelism();
    const before = osThreads();
    const e = new (loadNative().Engine)({ threads: 100_000 });
    try {
      await e.load(engineSpec(await loadModelInfo(join(FIXTURE_MODELS, 'gpt2-tiny'))));
      expect(e.info().threads).toBe(cores);
      // The pool is the cores' size: the process gained a handful of threads, not 100000.
      expect(osThreads() - before).toBeLessThanOrEqual(cores + 8);
    } finally {
      e.close();
    }
    const c = await loadNative().calibrate({ threads: 100_000, parts: ['machine'], bytes: 1 << 20 });
    expect(c.hostThreads).toBe(cores);
  });

  it('refuses a count that is not a positive integer, naming the field', () => {
    const E = loadNative().Engine;
    for (const threads of [0, -1, 1.5, Number.NaN, 1e12]) {
      expect(() => new E({ threads }), String(threads)).toThrow(/field 'threads' must be an integer >= 1 \(this machine has \d+ cores\)/);
    }
    expect(() => loadNative().calibrate({ threads: 0 })).toThrow(/field 'threads' must be an integer >= 1/);
  });
});
