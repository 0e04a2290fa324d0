// Resolving paths as the kernel does before deciding whether they are
// allowed, the folders no setting may name, and a guard that every path a
// run's options carry is checked.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

import { defaultSettings, RUN_OPTION_PATHS } from '../../../electron/services/api.js';
import { FileAccess, isInside, resolvePath, sensitiveFolders, sensitiveReason } from '../../../electron/services/access.js';
import { TrainOptions } from '../../../electron/common/contract.js';

describe('resolvePath', () => {
  const work = () => mkdtempSync(join(tmpdir(), 'spw-access-'));

  it('follows symlinks component by component, as the kernel does (`..` after a link leaves its target)', async () => {
    const w = await resolvePath(work());
    mkdirSync(join(w, 'a', 'b'), { recursive: true });
    mkdirSync(join(w, 'far', 'inner'), { recursive: true });
    symlinkSync(join(w, 'far', 'inner'), join(w, 'a', 'link'));
    symlinkSync('../b', join(w, 'a', 'rel'));
    expect(await resolvePath(`${w}/a/link/x.txt`)).toBe(join(w, 'far', 'inner', 'x.txt'));
    expect(await resolvePath(`${w}/a/link/../y`)).toBe(join(w, 'far', 'y'));
    expect(await resolvePath(`${w}/a/rel/z`)).toBe(join(w, 'b', 'z'));
    expect(await resolvePath('a/b', w)).toBe(join(w, 'a', 'b'));
    // What does not exist yet is appended as written (normalised).
    expect(await resolvePath(`${w}/a/new/../new2/f`)).toBe(join(w, 'a', 'new2', 'f'));
  });

  it('follows a dangling link to where a write would land', async () => {
    const w = await resolvePath(work());
    symlinkSync(join(w, 'target-dir', 'planted'), join(w, 'dangling'));
    expect(await resolvePath(join(w, 'dangling'))).toBe(join(w, 'target-dir', 'planted'));
  });

  it('stops on a symlink loop with a clear error', async () => {
    const w = await resolvePath(work());
    symlinkSync(join(w, 'b'), join(w, 'a'));
    symlinkSync(join(w, 'a'), join(w, 'b'));
    await expect(resolvePath(join(w, 'a', 'f'))).rejects.toThrow(/too many levels of symbolic links/);
  });
});

describe('allowed folders', () => {
  it('isInside matches whole components only', () => {
    expect(isInside('/data/models/x', '/data/models')).toBe(true);
    expect(isInside('/data/models', '/data/models')).toBe(true);
    expect(isInside('/data/models-evil/x', '/data/models')).toBe(false);
    expect(isInside('/anything', '/')).toBe(true);
  });

  it('system folders, folders holding them and the home folder\'s secrets are refused; ordinary folders are not', () => {
    const home = '/home/ada';
    const s = sensitiveFolders(home);
    expect(sensitiveReason('/etc/ssl', s)).toMatch(/inside \/etc/);
    expect(sensitiveReason('/', s)).toMatch(/contains \/etc/);
    expect(sensitiveReason('/home', s)).toMatch(/contains \/home\/ada\/\.ssh/);
    expect(sensitiveReason('/home/ada', s)).toMatch(/contains \/home\/ada\/\.ssh/);
    expect(sensitiveReason('/home/ada/.aws/x', s)).toMatch(/inside \/home\/ada\/\.aws/);
    for (const ok of ['/home/ada/models', '/data/datasets', '/mnt/nvme0/spill', '/tmp/x', '/var/tmp/spill']) expect(sensitiveReason(ok, s)).toBeNull();
    // Running as root, the home folder is /root: folders inside it may be used, its secrets may not.
    const root = sensitiveFolders('/root');
    expect(sensitiveReason('/root/models', root)).toBeNull();
    expect(sensitiveReason('/root/.ssh', root)).toMatch(/inside \/root\/\.ssh/);
  });

  it('a pick grants exactly that path, for its kind only', async () => {
    const w = await resolvePath(mkdtempSync(join(tmpdir(), 'spw-grant-')));
    writeFileSync(join(w, 'picked.jsonl'), '');
    writeFileSync(join(w, 'other.jsonl'), '');
    const access = new FileAccess({}, async () => defaultSettings());
    await expect(access.check('datasets', join(w, 'picked.jsonl'), 'the dataset')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await access.grant('datasets', join(w, 'picked.jsonl'));
    expect(await access.check('datasets', join(w, 'picked.jsonl'), 'the dataset')).toBe(join(w, 'picked.jsonl'));
    await expect(access.check('datasets', join(w, 'other.jsonl'), 'the dataset')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(access.check('export', join(w, 'picked.jsonl'), 'the export destination')).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('every path a run\'s options carry is checked against a kind of folder', () => {
    // Every string a run's options hold is a path (the others are numbers, switches, choices and the task),
    // but the run's id: a name whose pattern admits no '/' (RunId).
    const pathFields = Object.entries(TrainOptions.shape)
      .filter(([k]) => k !== 'runId')
      .filter(([, schema]) => {
        let t: z.ZodType = schema as z.ZodType;
        while (t instanceof z.ZodOptional || t instanceof z.ZodNullable || t instanceof z.ZodDefault) t = (t as z.ZodOptional<z.ZodType>).unwrap();
        return t instanceof z.ZodString || (t instanceof z.ZodArray && t.element instanceof z.ZodString);
      })
      .map(([k]) => k);
    expect(pathFields).toEqual(expect.arrayContaining(['model', 'train', 'eval', 'out', 'spillDirs', 'checkpointDir', 'resumeFrom']));
    for (const f of pathFields) expect(RUN_OPTION_PATHS, `TrainOptions.${f} names a path: give it a kind (pathKinds) in electron/common/options.ts`).toHaveProperty(f);
    expect(RUN_OPTION_PATHS.spillDirs).toEqual({ kind: 'spill', what: 'the spill folder' });
  });
});
