// Specs of the renderer's Svelte state classes and components: they need the
// Svelte compiler (runes), which the root vitest config does not load.
import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { resolve } from 'node:path';

export default defineConfig({
  root: resolve(import.meta.dirname, '..'),
  plugins: [svelte()],
  resolve: { conditions: ['browser'] },
  test: {
    include: ['tests/renderer/**/*.spec.ts'],
    environment: 'jsdom',
  },
});
