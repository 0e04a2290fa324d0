import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { resolveDataDir } from '../../../../electron/services/paths.js';

describe('resolveDataDir', () => {
  it('prefers the explicit folder, then SPILLWAY_DATA_DIR, userData, XDG, ~/.local/share', () => {
    const env = { SPILLWAY_DATA_DIR: '/env/dir', XDG_DATA_HOME: '/xdg' };
    expect(resolveDataDir({ explicit: '/flag', userData: '/ud', env })).toBe('/flag');
    expect(resolveDataDir({ userData: '/ud', env })).toBe('/env/dir');
    expect(resolveDataDir({ userData: '/ud', env: { XDG_DATA_HOME: '/xdg' } })).toBe('/ud');
    expect(resolveDataDir({ env: { XDG_DATA_HOME: '/xdg' } })).toBe('/xdg/spillway');
    expect(resolveDataDir({ env: { XDG_DATA_HOME: 'relative' } })).toBe(join(homedir(), '.local', 'share', 'spillway'));
    expect(resolveDataDir({ env: {} })).toBe(join(homedir(), '.local', 'share', 'spillway'));
  });
});
