// What each step moved per link (host → device, device → host, SSD read and
// write, deltas of the engine's tier counters) and how long the compute path
// waited for streamed units; and the plan a run was placed by, to set its
// predictions beside those figures. All nullable: steps recorded before this
// version, and engines without tier counters, have none.
import type { Migration } from './types.js';

export const migration003: Migration = {
  version: 3,
  name: 'step I/O, run plan',
  up(db) {
    db.exec(`
      ALTER TABLE step_metrics ADD COLUMN h2d_bytes INTEGER;
      ALTER TABLE step_metrics ADD COLUMN d2h_bytes INTEGER;
      ALTER TABLE step_metrics ADD COLUMN ssd_read_bytes INTEGER;
      ALTER TABLE step_metrics ADD COLUMN ssd_write_bytes INTEGER;
      ALTER TABLE step_metrics ADD COLUMN io_wait_ms REAL;

      ALTER TABLE runs ADD COLUMN plan TEXT;
    `);
  },
};
