// `spillway serve`: the headless backend with the default services, for a
// browser on this machine (or, with --host and a password, deliberately on
// the network), reading and writing only inside the folders it is allowed
// (--allow DIR, the settings', the demo's and the data folder).

import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { packageRoot } from '../engine/native.js';
import { deviceSourceFromEnv } from '../engine/device.js';
import { createServices, type ServicesOptions, type SpillwayServices } from '../services/api.js';
import { resolveDataDir } from '../services/paths.js';
import { supervisorOperations, telemetrySource } from '../services/runs/operations.js';
import { RunSupervisor } from '../services/runs/supervisor.js';
import { hashPassword, MIN_PASSWORD_LENGTH, type PasswordHash } from './auth.js';
import { isLoopback, startServer, type RunningServer } from './server.js';

export const SERVE_USAGE = `Usage: spillway serve [--host H] [--port N] [--static DIR] [--data-dir DIR] [--allow DIR ...]
  --host H             address to bind (default 127.0.0.1; anything else exposes Spillway to the
                       network and needs a password: --password-stdin or SPILLWAY_PASSWORD)
  --port N             port (default 0: a free one)
  --static DIR         the built renderer to serve (default dist/renderer when built, else a placeholder page)
  --data-dir D         the run store's folder (default $SPILLWAY_DATA_DIR or ~/.local/share/spillway)
  --allow DIR          a folder the GUI may read models and datasets from, spill to and export to
                       (repeatable; the embedded demo and the data folder are always allowed,
                       and so are the folders set in Settings)
  --allow-models DIR, --allow-datasets DIR, --allow-spill DIR, --allow-export DIR
                       the same for one use only
  --password-stdin     read the password from the first line of standard input
                       (or set SPILLWAY_PASSWORD; at least ${MIN_PASSWORD_LENGTH} characters)
`;

export interface ServeOptions {
  host: string;
  port: number;
  staticDir: string | null;
  dataDir?: string;
  access?: NonNullable<ServicesOptions['access']>;
  /** Read the password from standard input. */
  passwordStdin?: boolean;
}

/** The full backend: catalog services, the run supervisor over the store in dataDir, telemetry. */
export function defaultServices(dataDir: string, access: ServicesOptions['access'] = {}): SpillwayServices {
  const sup = RunSupervisor.open(dataDir);
  sup.recover();
  const telemetry = telemetrySource(sup);
  const runs = supervisorOperations(sup);
  const shutdown = runs.shutdown;
  runs.shutdown = async () => {
    telemetry.stop();
    await shutdown();
  };
  const openedAt = Date.now();
  const notices = sup.store.notices.map((message) => ({ level: 'warn' as const, message, at: openedAt }));
  return createServices({ runs, eventSources: [telemetry], access, notices: () => notices, devices: deviceSourceFromEnv() });
}

export function serveOptionsFromArgs(argv: string[]): ServeOptions {
  const folders = { type: 'string', multiple: true } as const;
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      static: { type: 'string' },
      'data-dir': { type: 'string' },
      allow: folders,
      'allow-models': folders,
      'allow-datasets': folders,
      'allow-spill': folders,
      'allow-export': folders,
      'password-stdin': { type: 'boolean' },
    },
    allowPositionals: false,
  });
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port expects 0..65535, got "${values.port}"`);
  let staticDir: string | null = null;
  if (values.static !== undefined) {
    staticDir = resolve(values.static);
    if (!existsSync(join(staticDir, 'index.html'))) throw new Error(`--static ${staticDir} has no index.html`);
  } else {
    const built = join(packageRoot(), 'dist', 'renderer');
    if (existsSync(join(built, 'index.html'))) staticDir = built;
  }
  const folderFlag = (flag: string, list: string[] | undefined) =>
    (list ?? []).map((d) => {
      const st = statSync(d, { throwIfNoEntry: false });
      if (!st?.isDirectory()) throw new Error(`--${flag} ${d}: ${st ? 'not a folder' : 'no such folder'}`);
      return resolve(d);
    });
  return {
    host: values.host ?? '127.0.0.1',
    port,
    staticDir,
    dataDir: resolveDataDir({ explicit: values['data-dir'] }),
    access: {
      allow: folderFlag('allow', values.allow),
      perKind: {
        models: folderFlag('allow-models', values['allow-models']),
        datasets: folderFlag('allow-datasets', values['allow-datasets']),
        spill: folderFlag('allow-spill', values['allow-spill']),
        export: folderFlag('allow-export', values['allow-export']),
      },
    },
    passwordStdin: values['password-stdin'] ?? false,
  };
}

/** The password from the first line of `input` (--password-stdin) or from $SPILLWAY_PASSWORD; null when neither gives one. */
export async function readPassword(opts: Pick<ServeOptions, 'passwordStdin'>, env: NodeJS.ProcessEnv = process.env, input: NodeJS.ReadableStream = process.stdin): Promise<PasswordHash | null> {
  let text: string | null = null;
  if (opts.passwordStdin) {
    const rl = createInterface({ input, terminal: false });
    text = await new Promise<string | null>((res) => {
      rl.once('line', (l) => res(l));
      rl.once('close', () => res(null));
    });
    rl.close();
    if (text === null) throw new Error('--password-stdin: standard input ended before a password line');
  } else if (env.SPILLWAY_PASSWORD !== undefined) {
    text = env.SPILLWAY_PASSWORD;
  }
  return text === null ? null : hashPassword(text.replace(/\r$/, ''));
}

export function exposureWarning(host: string): string | null {
  if (isLoopback(host)) return null;
  return (
    `warning: listening on ${host}: anyone who can reach this address and has the password (or the URL below) can read ` +
    'the allowed folders and start training runs. There is no TLS: prefer `ssh -L` to a loopback bind on untrusted networks.'
  );
}

/** Starts the server; resolves with it and a stop function that also shuts the services down. */
export async function startServe(
  opts: ServeOptions,
  services: SpillwayServices = createServices(),
  out: (line: string) => void = (l) => process.stderr.write(l + '\n'),
  password: PasswordHash | null = null,
): Promise<{ server: RunningServer; stop: () => Promise<void> }> {
  const warning = exposureWarning(opts.host);
  if (warning) out(warning);
  const server = await startServer({ services, host: opts.host, port: opts.port, staticDir: opts.staticDir, password, log: out });
  out(`spillway: serving on ${server.url}`);
  if (password) out(`spillway: other machines sign in at http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${server.port}/login with the password`);
  for (const n of (await services.getNotices({}, { signal: new AbortController().signal })).notices) out(`spillway: ${n.message}`);
  if (!opts.staticDir) out('spillway: the GUI is not built; serving a placeholder page (the contract is live at /ws)');
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      await server.close();
      await services.shutdown();
    })());
  return { server, stop };
}

export async function cmdServe(argv: string[]): Promise<number> {
  let opts: ServeOptions;
  let password: PasswordHash | null;
  try {
    opts = serveOptionsFromArgs(argv);
    password = await readPassword(opts);
    if (!isLoopback(opts.host) && !password) {
      throw new Error(`--host ${opts.host} exposes Spillway to the network: give a password with --password-stdin or SPILLWAY_PASSWORD`);
    }
  } catch (e) {
    process.stderr.write(`spillway: ${(e as Error).message}\n\n${SERVE_USAGE}`);
    return 1;
  }
  const { stop } = await startServe(opts, defaultServices(opts.dataDir ?? resolveDataDir(), opts.access), undefined, password);
  await new Promise<void>((resolve) => {
    const onSignal = () => {
      process.stderr.write('spillway: stopping (runs are checkpointed)…\n');
      void stop().finally(resolve);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  return 0;
}
