// Errors raised while reading a checkpoint. Every message names the file
// (and the tensor or config field where there is one), so that it can be
// shown to the user as is.

export type ModelErrorKind =
  /** The files are malformed, inconsistent or missing. */
  | 'invalid'
  /** The files are fine but describe something the engine cannot train. */
  | 'unsupported';

export interface ModelErrorOptions {
  kind?: ModelErrorKind;
  file?: string;
  tensor?: string;
  field?: string;
  cause?: unknown;
}

export class ModelError extends Error {
  override name = 'ModelError';
  readonly kind: ModelErrorKind;
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  readonly field: string | undefined;

  constructor(message: string, opts: ModelErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.kind = opts.kind ?? 'invalid';
    this.file = opts.file;
    this.tensor = opts.tensor;
    this.field = opts.field;
  }
}

export function isModelError(e: unknown): e is ModelError {
  return e instanceof ModelError;
}

/** Short description of a non-ModelError failure (I/O and the like). */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
