#!/usr/bin/env node
// Entry point of the `spillway` command; the code lives in dist/ (built by `npm ci`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'electron', 'cli', 'main.js');
if (!existsSync(entry)) {
  process.stderr.write(`spillway: ${entry} is missing; run \`npm run build\` in ${root}\n`);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv.slice(2));
