// Serving the built renderer: path resolution that cannot leave the root,
// content types, the Content-Security-Policy, and the placeholder page shown
// until the GUI is built. Shared by the headless server and the Electron
// app:// protocol.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** No remote anything: scripts, styles, images and connections come from the app itself. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

export const PLACEHOLDER_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">
<title>Spillway</title>
</head>
<body>
<h1>Spillway</h1>
<p>The backend is running. The graphical interface has not been built yet.</p>
</body>
</html>
`;

export interface StaticFile {
  body: Buffer;
  contentType: string;
}

/**
 * The file under `root` for a URL path ("/" → index.html), or null when it
 * does not exist, is not a file, or would leave the root. With no root, "/"
 * is the placeholder page.
 */
export async function readStaticFile(root: string | null, urlPath: string): Promise<StaticFile | null> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const rel = decoded === '/' || decoded === '' ? 'index.html' : decoded.replace(/^\/+/, '');
  if (root === null) {
    return rel === 'index.html' ? { body: Buffer.from(PLACEHOLDER_HTML), contentType: contentTypeOf('index.html') } : null;
  }
  const base = path.resolve(root);
  const file = path.resolve(base, rel);
  if (file !== base && !file.startsWith(base + path.sep)) return null;
  try {
    const real = await fsp.realpath(file);
    const realBase = await fsp.realpath(base);
    if (!real.startsWith(realBase + path.sep)) return null;
    const st = await fsp.stat(real);
    if (!st.isFile()) return null;
    return { body: await fsp.readFile(real), contentType: contentTypeOf(real) };
  } catch {
    return null;
  }
}
