// Command-line flags derived from the options schema (electron/common/options.ts):
// each field registered with a flag becomes a node:util parseArgs option and a
// help line, and its text is read into the field's value and checked by the
// same schema the API uses. A new run option needs nothing here.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { z } from 'zod';

import { DEFAULT_TASK, flags as registry, TASK_KINDS, TaskTemplate } from '../common/options.js';
import type { FlagMeta, TaskKind } from '../common/options.js';
import { parseBytes, parsePairs } from '../common/format.js';

export type ArgOption = { type: 'string' | 'boolean'; multiple?: boolean };
export type ArgValues = Record<string, string | string[] | boolean | undefined>;

/** A field of a schema that has a flag. */
interface FlagField {
  key: string;
  meta: FlagMeta;
  /** The field's type under optional() and default(). */
  type: z.ZodType;
  defaultValue: unknown;
}

function unwrap(s: z.ZodType): { type: z.ZodType; defaultValue: unknown } {
  let t = s as z.ZodType & { def: { type: string; innerType?: z.ZodType; defaultValue?: unknown } };
  let defaultValue: unknown;
  while (t.def.type === 'optional' || t.def.type === 'default' || t.def.type === 'prefault') {
    if (t.def.type === 'default') defaultValue = t.def.defaultValue;
    t = t.def.innerType as typeof t;
  }
  return { type: t, defaultValue };
}

const kindOf = (t: z.ZodType) => (t as unknown as { def: { type: string } }).def.type;

/** The fields of an object schema that carry a flag, in the schema's order. */
export function flagFields(schema: z.ZodObject): FlagField[] {
  const out: FlagField[] = [];
  for (const [key, s] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
    const meta = registry.get(s);
    if (meta) out.push({ key, meta, ...unwrap(s) });
  }
  return out;
}

/** The flags of every task kind's fields, once each (the same flag on several kinds means the same thing). */
function taskFields(): FlagField[] {
  const byFlag = new Map<string, FlagField>();
  for (const variant of TaskTemplate.options) for (const f of flagFields(variant)) if (!byFlag.has(f.meta.flag)) byFlag.set(f.meta.flag, f);
  return [...byFlag.values()];
}

/** parseArgs options for these fields (and the task flags when `task`). */
export function argOptions(schema: z.ZodObject, o: { task?: boolean } = {}): Record<string, ArgOption> {
  const fields = [...flagFields(schema), ...(o.task ? taskFields() : [])];
  const opts: Record<string, ArgOption> = o.task ? { task: { type: 'string' } } : {};
  for (const f of fields) {
    const isSwitch = kindOf(f.type) === 'boolean';
    const repeatable = f.meta.read === 'folders' || f.meta.read === 'list';
    opts[f.meta.flag] = { type: isSwitch ? 'boolean' : 'string', ...(repeatable ? { multiple: true } : {}) };
  }
  return opts;
}

function wrap(text: string, width: number, indent: number): string {
  const words = text.split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width - indent) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.join('\n' + ' '.repeat(indent));
}

const COLUMN = 24;
const WIDTH = 100;

/** One help line (wrapped) per flag: the flag, its value, what it does and its default; the task flags where the task field is. */
export function helpLines(schema: z.ZodObject, o: { task?: boolean } = {}): string {
  const rows: [string, string][] = [];
  const row = (f: FlagField) => {
    const shown = f.defaultValue === undefined || typeof f.defaultValue === 'boolean' ? '' : ` (default ${String(f.defaultValue)})`;
    rows.push([`--${f.meta.flag}${f.meta.arg ? ` ${f.meta.arg}` : ''}`, f.meta.help + shown]);
  };
  const fields = flagFields(schema);
  for (const key of Object.keys(schema.shape)) {
    if (key === 'task' && o.task) {
      rows.push([`--task T`, `${TASK_KINDS.join(', ')} (default ${DEFAULT_TASK})`]);
      taskFields().forEach(row);
    }
    const f = fields.find((x) => x.key === key);
    if (f) row(f);
  }
  return rows
    .map(([flag, help]) => {
      const head = `  ${flag}`;
      const pad = head.length < COLUMN ? head.padEnd(COLUMN) : `${head}\n${' '.repeat(COLUMN)}`;
      return pad + wrap(help, WIDTH, COLUMN);
    })
    .join('\n');
}

/** A label-words flag: a JSON array of strings, or a comma-separated list. */
function words(flag: string, v: string): string[] {
  const t = v.trim();
  if (!t.startsWith('[')) return v.split(',');
  let parsed: unknown;
  try {
    parsed = JSON.parse(t);
  } catch {
    throw new Error(`--${flag} is not valid JSON: ${t}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`--${flag} must be a JSON array of strings`);
  return parsed as string[];
}

function json(flag: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`--${flag} is not valid JSON: ${text}`);
  }
}

function pairs(flag: string, text: string): Record<string, string> {
  try {
    return parsePairs(text);
  } catch (e) {
    throw new Error(`--${flag}: ${(e as Error).message}`);
  }
}

/** A flag's text as the field's value; throws naming the flag when the text cannot be read. */
function readFlag(f: FlagField, raw: string | string[] | boolean): unknown {
  const flag = f.meta.flag;
  if (f.meta.read === 'off') return false;
  if (typeof raw === 'boolean') return raw;
  if (f.meta.read === 'folders') {
    // A folder that exists is taken whole (its name may hold a comma).
    const list = Array.isArray(raw) ? raw : [raw];
    const split = (x: string) => x.split(',').map((d) => d.trim()).filter(Boolean);
    return list.flatMap((x) => (existsSync(x) ? [x] : split(x))).map((d) => resolve(d));
  }
  if (f.meta.read === 'list') return Array.isArray(raw) ? raw : [raw];
  const text = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  switch (f.meta.read) {
    case 'bytes':
      try {
        return parseBytes(text);
      } catch (e) {
        throw new Error(`--${flag}: ${(e as Error).message}`);
      }
    case 'path':
      return resolve(text);
    case 'words':
      return words(flag, text);
    case 'json':
      return json(flag, text);
    case 'pairs':
      return text.trim().startsWith('{') ? json(flag, text) : pairs(flag, text);
  }
  if (kindOf(f.type) === 'number') {
    const n = text.trim() === '' ? Number.NaN : Number(text);
    if (!Number.isFinite(n)) throw new Error(`--${flag} expects a number, got ${JSON.stringify(text)}`);
    return n;
  }
  return text;
}

/** The values of the flags given, by field key. */
export function fieldsFromFlags(schema: z.ZodObject, values: ArgValues): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of flagFields(schema)) {
    const raw = values[f.meta.flag];
    if (raw !== undefined) out[f.key] = readFlag(f, raw);
  }
  return out;
}

/** Whether any task flag (--task or one of its fields) was given. */
export function taskFlagGiven(values: ArgValues): boolean {
  return values.task !== undefined || taskFields().some((f) => values[f.meta.flag] !== undefined);
}

/** The task template of the flags, over `base` when its kind is kept (the demo's label words, say). */
export function taskFromFlags(values: ArgValues, base?: TaskTemplate): TaskTemplate {
  const kind = (typeof values.task === 'string' ? values.task : (base?.kind ?? DEFAULT_TASK)) as TaskKind;
  const variant = TaskTemplate.options.find((v) => v.shape.kind.value === kind);
  if (!variant) throw new Error(`unknown task ${JSON.stringify(kind)} (${TASK_KINDS.join(', ')})`);
  const own = new Set(flagFields(variant).map((f) => f.meta.flag));
  for (const f of taskFields()) {
    if (values[f.meta.flag] !== undefined && !own.has(f.meta.flag)) throw new Error(`--${f.meta.flag} does not apply to --task ${kind}`);
  }
  const given = { ...(base?.kind === kind ? base : {}), kind, ...fieldsFromFlags(variant, values) };
  const r = variant.safeParse(given);
  if (r.success) return r.data;
  throw new Error(describeIssues(r.error, given, (key) => flagFields(variant).find((f) => f.key === key)?.meta.flag, `--task ${kind}`));
}

/**
 * The schema's issues, each named by its flag: "--threads: expected an integer from 0 to 1024, got 100000".
 * A required field left out of `given` reads "<what> needs --flag".
 */
function describeIssues(err: z.ZodError, given: Record<string, unknown>, flagOf: (key: string) => string | undefined, what: string): string {
  return err.issues
    .map((i) => {
      const key = String(i.path[0] ?? '');
      const flag = flagOf(key);
      const name = flag ? `--${flag}` : key || 'options';
      if (flag && given[key] === undefined) return `${what} needs ${name}`;
      return `${name}: ${i.message}`;
    })
    .join('; ');
}

/**
 * Flags over `base`, checked by `schema`: what the command runs with. Task flags, when the schema has a
 * task, make the task template (over the base's).
 */
export function optionsFromFlags<S extends z.ZodObject>(schema: S, values: ArgValues, base: Record<string, unknown> = {}, what = 'this command'): z.output<S> {
  const given: Record<string, unknown> = { ...base, ...fieldsFromFlags(schema, values) };
  if ('task' in schema.shape && (taskFlagGiven(values) || base.task === undefined)) {
    given.task = taskFromFlags(values, base.task as TaskTemplate | undefined);
  }
  const r = schema.safeParse(given);
  if (r.success) return r.data;
  const fields = flagFields(schema);
  throw new Error(describeIssues(r.error, given, (key) => fields.find((f) => f.key === key)?.meta.flag, what));
}
