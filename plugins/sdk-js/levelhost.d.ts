// Types of the levelhost SDK for TypeScript plugins; see levelhost.js.

/** What the host passes to a run. */
export interface Invocation {
  /** The run's input, a JSON document. */
  input: string;
  /** What started the run. */
  trigger: { tag: 'manual' } | { tag: 'schedule'; val: string } | { tag: 'event'; val: string };
  /** The run's id, as in `levelhost runs`. */
  runId: string;
}

/** Which page of a list to return. */
export interface PageRequest {
  limit?: number;
  startingAfter?: string;
  endingBefore?: string;
}

/** One page of a Level list. */
export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

/** A Level call's error: the WIT `error` variant (`denied`, `not-found`, `rate-limited`, ...). */
export interface LevelError {
  tag: string;
  val?: unknown;
}

/** A failure the plugin reports on purpose. */
export declare class PluginError extends Error {
  constructor(kind: 'invalid-input' | 'failed', message: string);
  kind: 'invalid-input' | 'failed';
}

/** The input is not what the plugin accepts. */
export declare function invalidInput(message: string): PluginError;
/** The plugin gave up. */
export declare function failed(message: string): PluginError;
/** The Level error a failed call threw, or undefined for any other exception. */
export declare function levelError(e: unknown): LevelError | undefined;

/** The plugin's `handler` export. */
export declare function plugin<I = any, O = unknown>(
  run: (input: I, invocation: Invocation) => O | Promise<O>,
): { run(invocation: Invocation): string };

/** Calls a connection (`https://NAME/path`); the answer, parsed when it is JSON. */
export declare function call<T = any>(
  method: string,
  url: string,
  body?: unknown,
  headers?: Record<string, string>,
): Promise<T>;

/** Every item of a cursor-paged Level list. */
export declare function pages<T extends { id: string }>(
  list: (page: PageRequest) => Page<T>,
  options?: { limit?: number },
): Generator<T, void, undefined>;

type Fields = Record<string, string | number | boolean>;

/** Structured logs. */
export declare const log: {
  trace(message: string, fields?: Fields): void;
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
};
