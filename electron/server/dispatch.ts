// The transport-independent half of both transports: validates params, calls
// the service, validates the result, and turns whatever happened into a
// CallOutcome. Events from the services are validated here before any
// transport sends them. Never throws.

import {
  parseEvent,
  parseParams,
  parseResult,
  SpillwayError,
  toWireError,
  type AnyEvent,
  type CallOutcome,
  type MethodName,
} from '../common/contract.js';
import type { CallContext, SpillwayServices } from '../services/api.js';

export interface DispatcherOptions {
  /** Send stacks to the UI (on for the desktop app, where both ends are ours). */
  exposeStacks?: boolean;
  log?: (message: string) => void;
}

export class Dispatcher {
  private readonly exposeStacks: boolean;
  private readonly log: (message: string) => void;

  constructor(
    readonly services: SpillwayServices,
    opts: DispatcherOptions = {},
  ) {
    this.exposeStacks = opts.exposeStacks ?? true;
    this.log = opts.log ?? (() => {});
  }

  async handle(method: unknown, rawParams: unknown, signal: AbortSignal): Promise<CallOutcome> {
    try {
      const params = parseParams(method, rawParams);
      const m = method as MethodName;
      const call = this.services[m] as (p: unknown, ctx: CallContext) => Promise<unknown>;
      const result = await untilAborted(call.call(this.services, params, { signal }), signal, m);
      return { ok: true, result: parseResult(m, result) };
    } catch (e) {
      const error = toWireError(e, this.exposeStacks);
      if (error.code === 'INTERNAL' || error.code === 'BAD_RESULT') this.log(`${String(method)} failed: ${error.message}`);
      return { ok: false, error };
    }
  }

  /** Contract-valid events from the services; invalid ones are logged and dropped. */
  onEvent(listener: (e: AnyEvent) => void): () => void {
    return this.services.onEvent((raw) => {
      const e = parseEvent((raw as { event?: unknown }).event, (raw as { payload?: unknown }).payload);
      if (e) listener(e);
      else this.log(`dropped an event that breaks the contract: ${String((raw as { event?: unknown }).event)}`);
    });
  }
}

function untilAborted<T>(p: Promise<T>, signal: AbortSignal, method: string): Promise<T> {
  const cancelled = () => new SpillwayError('CANCELLED', `${method} was cancelled`);
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
