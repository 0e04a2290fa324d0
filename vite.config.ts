// Builds the GUI (renderer/) into dist/renderer: what Electron loads and what
// `spillway serve` hands out over HTTP. Relative base so both file:// and any
// mount point work.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  root: 'renderer',
  base: './',
  plugins: [svelte()],
  build: {
    outDir: '../dist/renderer',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
  },
});
