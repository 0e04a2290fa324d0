// Bundles the Electron preload (electron/preload.ts + electron/common/channels.ts)
// into one CommonJS file, dist/electron/preload.cjs: a sandboxed preload can
// neither load ES modules nor other local files. Uses rolldown (Vite's bundler).
import { build } from 'rolldown';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await build({
  input: join(root, 'electron', 'preload.ts'),
  external: ['electron'],
  platform: 'node',
  output: { file: join(root, 'dist', 'electron', 'preload.cjs'), format: 'cjs' },
  logLevel: 'warn',
});
