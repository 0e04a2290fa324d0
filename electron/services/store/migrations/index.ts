// Every schema step in order. Append only: a released migration never changes.
import { migration001 } from './001-initial.js';
import { migration002 } from './002-owner-telemetry-artifacts.js';
import { migration003 } from './003-step-io-run-plan.js';
import { migration004 } from './004-one-spelling.js';
import { migration005 } from './005-eval-answers.js';
import type { Migration } from './types.js';

export type { Migration } from './types.js';

export const MIGRATIONS: readonly Migration[] = [migration001, migration002, migration003, migration004, migration005];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
