export { DatabaseTooNewError, migrate, openDatabase, schemaVersion } from './database.js';
export type { OpenOptions, OpenedDatabase } from './database.js';
export { MIGRATIONS, SCHEMA_VERSION } from './migrations/index.js';
export type { Migration } from './migrations/index.js';
export { MetricWriter } from './metric-writer.js';
export type { MetricWriterOptions } from './metric-writer.js';
export { LOG_LINES_KEPT, RunStore } from './run-store.js';
export type * from './types.js';
