// `spillway serve`: the headless backend with the default services, for a
// browser on this machine (or, with --host, deliberately on the network).

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { packageRoot } from '../engine/native.js';
import { createServices, type SpillwayServices } from '../services/api.js';
import { resolveDataDir } from '../services/paths.js';
import { supervisorOperations, telemetrySource } from '../services/runs/operations.js';
import { RunSupervisor } from '../services/runs/supervisor.js';
import { isLoopback, startServer, type RunningServer } from './server.js';

export const SERVE_USAGE = `Usage: spillway serve [--host H] [--port N] [--static DIR] [--data-dir DIR]
  --host H      address to bind (default 127.0.0.1; anything else exposes Spillway to the network)
  --port N      port (default 0: a free one)
  --static DIR  the built renderer to serve (default dist/renderer when built, else a placeholder page)
  --data-dir D  the run store's folder (default $SPILLWAY_DATA_DIR or ~/.local/share/spillway)
`;

export interface ServeOptions {
  host: string;
  port: number;
  staticDir: string | null;
  dataDir?: string;
}

/** The full backend: catalog services, the run supervisor over the store in dataDir, telemetry. */
export function defaultServices(dataDir: string): SpillwayServices {
  const sup = RunSupervisor.open(dataDir);
  sup.recover();
  const telemetry = telemetrySource(sup);
  const runs = supervisorOperations(sup);
  const shutdown = runs.shutdown;
  runs.shutdown = async () => {
    telemetry.stop();
    await shutdown();
  };
  return createServices({ runs, eventSources: [telemetry] });
}

export function serveOptionsFromArgs(argv: string[]): ServeOptions {
  const { values } = parseArgs({
    args: argv,
    options: { host: { type: 'string' }, port: { type: 'string' }, static: { type: 'string' }, 'data-dir': { type: 'string' } },
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
  return { host: values.host ?? '127.0.0.1', port, staticDir, dataDir: resolveDataDir({ explicit: values['data-dir'] }) };
}

export function exposureWarning(host: string): string | null {
  if (isLoopback(host)) return null;
  return (
    `warning: listening on ${host}: anyone who can reach this address and has the URL below can read your files ` +
    'through the model and dataset browsers and start training runs. The token is the only protection; there is no TLS.'
  );
}

/** Starts the server; resolves with it and a stop function that also shuts the services down. */
export async function startServe(
  opts: ServeOptions,
  services: SpillwayServices = createServices(),
  out: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Promise<{ server: RunningServer; stop: () => Promise<void> }> {
  const warning = exposureWarning(opts.host);
  if (warning) out(warning);
  const server = await startServer({ services, host: opts.host, port: opts.port, staticDir: opts.staticDir, log: out });
  out(`spillway: serving on ${server.url}`);
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
  try {
    opts = serveOptionsFromArgs(argv);
  } catch (e) {
    process.stderr.write(`spillway: ${(e as Error).message}\n\n${SERVE_USAGE}`);
    return 1;
  }
  const { stop } = await startServe(opts, defaultServices(opts.dataDir ?? resolveDataDir()));
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
