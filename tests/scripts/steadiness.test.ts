// How a benchmark report says whether its machine was steady (bench/common.ts, steadiness): a
// virtual machine's neighbours can halve a product's rate while no process of the guest's own takes
// a core, so a report that read only the guest's accounting called such a machine quiet.
import { describe, expect, it } from 'vitest';

import { steadiness } from '../../bench/common.js';

const WHAT = 'a fixed product';
const idle = { median: 0.01, max: 0.03, cores: 2, maxLoad1: 1.1 };

describe('a report on the machine’s steadiness', () => {
  it('calls a machine quiet only when the probe held within its spread and no process took a core', () => {
    const r = steadiness([251, 262, 258], WHAT, idle);
    expect(r.steady).toBe(true);
    expect(r.text).toMatch(/^The machine was quiet: .*a fixed product, read 3 times between timed steps, ran at 251-262 GFLOP\/s \(median 258\)\.$/);
  });

  it('names a host that slowed the probe although the guest was idle', () => {
    const r = steadiness([280, 140, 210], WHAT, idle);
    expect(r.steady).toBe(false);
    expect(r.text).toMatch(/^\*\*The host was not steady:\*\* a fixed product, read 3 times .* ran at 140-280 GFLOP\/s \(median 210\), its slowest reading 50 % under its fastest, while no other process took more than 0\.1 of a core/);
    expect(r.text).not.toMatch(/machine was quiet/);
  });

  it('takes the spread as given: 14 % passes the default 15 %, fails a 10 % limit', () => {
    expect(steadiness([100, 114], WHAT, idle).steady).toBe(true);
    expect(steadiness([100, 114], WHAT, idle, 1.1).steady).toBe(false);
  });

  it('says a machine was shared from the processes, and still gives the probe', () => {
    const r = steadiness([250, 255], WHAT, { median: 0.4, max: 0.9, cores: 2, maxLoad1: 2.5 });
    expect(r.steady).toBe(false);
    expect(r.text).toMatch(/^\*\*The machine was shared:\*\* other processes took a median 0\.40 and up to 0\.90 of the 2 cores .*load average up to 2\.5\)/);
    expect(r.text).toMatch(/ A fixed product, read 2 times between timed steps, ran at 250-255 GFLOP\/s \(median 253\)\.$/);
  });

  it('leaves out readings that are not rates, and reports without any', () => {
    expect(steadiness([Number.NaN, 0, 200, 205], WHAT, idle).text).toMatch(/read 2 times .* 200-205 GFLOP\/s/);
    const none = steadiness([], WHAT, idle);
    expect(none.steady).toBe(true);
    expect(none.text).toBe('The machine was quiet: other processes took at most 0.1 of a core during any timed step.');
  });
});
