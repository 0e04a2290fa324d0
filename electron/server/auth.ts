// Who may talk to `spillway serve`: the token printed in its URL, traded on
// first visit for an HttpOnly session cookie; a password for binds beyond
// loopback (scrypt-hashed in memory, compared in constant time, failures
// rate-limited per address); and, on loopback binds, only requests whose Host
// header names this machine (a page on another name that resolves to
// 127.0.0.1 — DNS rebinding — is refused, as Jupyter does).

import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** A password as the server keeps it: never the text. */
export interface PasswordHash {
  salt: Buffer;
  hash: Buffer;
}

const SCRYPT: ScryptOptions = { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 };
const KEY_BYTES = 32;
/** Shorter passwords are refused: the rate limit slows guessing, it does not make a weak password strong. */
export const MIN_PASSWORD_LENGTH = 8;

function derive(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, KEY_BYTES, SCRYPT, (e, key) => (e ? reject(e) : resolve(key))));
}

export async function hashPassword(password: string): Promise<PasswordHash> {
  if (password.length < MIN_PASSWORD_LENGTH) throw new Error(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  const salt = randomBytes(16);
  return { salt, hash: await derive(password, salt) };
}

export async function passwordMatches(given: string, stored: PasswordHash): Promise<boolean> {
  // Bounded before hashing: a megabyte "password" costs nothing more than a short one.
  const key = await derive(given.slice(0, 1024), stored.salt);
  return timingSafeEqual(key, stored.hash);
}

export function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Whether a Host header names this machine: localhost, 127.0.0.0/8 or [::1],
 * with or without a port. A missing header is refused (every browser sends one).
 */
export function isLocalHostHeader(host: string | undefined): boolean {
  if (!host) return false;
  let name = host.trim().toLowerCase();
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(name);
  if (bracket) return bracket[1] === '::1';
  name = name.replace(/:\d+$/, '');
  return name === 'localhost' || name.endsWith('.localhost') || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** Sessions handed out for a valid token or password; they live as long as the server. */
export class Sessions {
  private readonly ids = new Map<string, number>();
  constructor(private readonly limit = 1000) {}

  create(): string {
    const id = randomBytes(32).toString('hex');
    this.ids.set(id, Date.now());
    // The oldest go first: a client that logs in in a loop cannot grow the map without bound.
    while (this.ids.size > this.limit) this.ids.delete(this.ids.keys().next().value!);
    return id;
  }

  valid(id: string | null): boolean {
    if (!id || id.length !== 64) return false;
    for (const known of this.ids.keys()) if (tokenMatches(id, known)) return true;
    return false;
  }
}

/**
 * Failed logins per client address: the first few are free, then each
 * further failure doubles the wait before the next try (up to 5 minutes).
 * A success clears the address.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, { count: number; until: number }>();
  constructor(
    readonly freeTries = 5,
    readonly maxWaitMs = 300_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds the address must still wait before trying again (0: it may try now). */
  waitMs(address: string): number {
    const f = this.failures.get(address);
    return f ? Math.max(0, f.until - this.now()) : 0;
  }

  fail(address: string): void {
    const f = this.failures.get(address) ?? { count: 0, until: 0 };
    f.count++;
    const over = f.count - this.freeTries;
    f.until = over > 0 ? this.now() + Math.min(this.maxWaitMs, 1000 * 2 ** (over - 1)) : 0;
    this.failures.set(address, f);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }

  succeed(address: string): void {
    this.failures.delete(address);
  }
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The login page: a password (or the token printed by `spillway serve`), posted to /login. */
export function loginPage(opts: { passwordSet: boolean; message?: string; next?: string }): string {
  const what = opts.passwordSet ? 'Password (or the token printed by <code>spillway serve</code>)' : 'Token (printed by <code>spillway serve</code>)';
  const message = opts.message ? `<p role="alert" class="error">${escapeHtml(opts.message)}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Spillway — sign in</title>
</head>
<body>
<h1>Spillway</h1>
${message}
<form method="post" action="/login">
<input type="hidden" name="next" value="${escapeHtml(opts.next ?? '/')}">
<label>${what} <input type="password" name="password" autocomplete="current-password" autofocus required></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
`;
}

/** Where a login may send the browser on: a path of this server, never another site. */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  return next;
}
