// levelhost SDK for JavaScript and TypeScript plugins (jco componentize).
//
// `levelhost new --lang js|ts` copies this file into the project; the plugin
// imports it next to the `level:api` interfaces it calls:
//
//   import { listDevices } from 'level:api/devices@0.1.0';
//   import { plugin, pages, log } from './levelhost.js';
//
//   export const handler = plugin((input) => {
//     let total = 0;
//     for (const device of pages((page) => listDevices({}, {}, page))) total += 1;
//     log.info('counted devices', { devices: total });
//     return { devices: total };
//   });
//
// What it does for the plugin:
// - `plugin(run)` parses the input (a JSON document), calls `run(input,
//   invocation)`, and returns what `run` returns as JSON. Whatever `run`
//   throws ends the run as the matching `run-error`: a `PluginError` as its
//   kind, a Level call's error as `level`, and anything else (a TypeError, a
//   `throw new Error(...)`) as `failed` with the error's name, message and
//   stack.
// - `pages(list)` walks every page of a Level list, yielding its items; a
//   generator, so `for ... of` and `for await ... of` both work.
// - `log.info(message, fields)` (and trace, debug, warn, error) writes a
//   structured log line with the fields as an object.
// - `run` may be `async`: the host runs the plugin's event loop until its
//   promise settles. Other systems (connections) are called with `fetch`,
//   naming the connection as the URL's host; `call(...)` is the one-line form:
//
//     export const handler = plugin(async (input) => {
//       const ticket = await call('POST', 'https://ticketing/api/Tickets', { summary: 'Disk full' });
//       return { ticket: ticket.id };
//     });
//
//   A request the host refuses (no route for it in the grant, a budget spent)
//   makes `fetch` reject with a TypeError; the audit names the reason.
//
// It imports only `level:api/log`, which every plugin world has, so it fits a
// world narrowed to the plugin's capabilities.
import { log as hostLog } from 'level:api/log@0.1.0';

/** A failure the plugin reports on purpose: `kind` is `invalid-input` or `failed`. */
export class PluginError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'PluginError';
    this.kind = kind;
  }
}

/** The input is not what the plugin accepts; `message` says what is wrong. */
export function invalidInput(message) {
  return new PluginError('invalid-input', message);
}

/** The plugin gave up; `message` says why. */
export function failed(message) {
  return new PluginError('failed', message);
}

/** A Level call's error, as jco throws it: the WIT `error` variant is its `payload`. */
export function levelError(e) {
  const payload = e && typeof e === 'object' ? e.payload : undefined;
  return payload && typeof payload === 'object' && typeof payload.tag === 'string' ? payload : undefined;
}

/** The plugin's `handler` export: `run(input, invocation)` returns the output document. */
export function plugin(run) {
  return {
    run(invocation) {
      let input;
      try {
        input = invocation.input ? JSON.parse(invocation.input) : {};
      } catch (e) {
        throw { tag: 'invalid-input', val: `the input is not JSON: ${e.message}` };
      }
      let output;
      try {
        output = run(input, invocation);
      } catch (e) {
        throw runError(e);
      }
      if (output && typeof output.then === 'function') {
        // A rejected promise ends the run as a `run-error` only as an Error
        // carrying it as its payload (what jco's glue reads for a result).
        return output.then(encode, (e) => {
          const error = new Error('the run failed');
          error.payload = runError(e);
          throw error;
        });
      }
      return encode(output);
    },
  };
}

function encode(output) {
  return JSON.stringify(output === undefined ? null : output);
}

/**
 * Calls a connection and returns its answer, parsed when it is JSON:
 * `await call('POST', 'https://ticketing/api/Tickets', { summary })`. A body
 * that is not a string is sent as JSON. An answer of 400 or more throws a
 * `failed` error naming the status.
 */
export async function call(method, url, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    if (typeof body === 'string') {
      init.body = body;
    } else {
      init.body = JSON.stringify(body);
      init.headers['content-type'] ??= 'application/json';
    }
  }
  const response = await fetch(url, init);
  const text = await response.text();
  if (response.status >= 400) {
    throw failed(`${method} ${url} answered ${response.status}: ${text.slice(0, 200)}`);
  }
  const type = response.headers.get('content-type') || '';
  return type.includes('json') && text ? JSON.parse(text) : text;
}

function runError(e) {
  if (e instanceof PluginError) return { tag: e.kind, val: e.message };
  const level = levelError(e);
  if (level) return { tag: 'level', val: level };
  const text =
    e instanceof Error
      ? `uncaught ${e.name}: ${e.message}\n${e.stack ?? ''}`.trimEnd()
      : `uncaught exception: ${String(e)}`;
  return { tag: 'failed', val: text };
}

/** Every item of a cursor-paged Level list: `list(pageRequest)` returns one page. */
export function* pages(list, { limit = 100 } = {}) {
  let after;
  for (;;) {
    const page = list({ limit, startingAfter: after, endingBefore: undefined });
    yield* page.items;
    if (!page.hasMore || page.items.length === 0) return;
    after = page.items[page.items.length - 1].id;
  }
}

function write(level) {
  return (message, fields = {}) =>
    hostLog(
      level,
      String(message),
      Object.entries(fields).map(([key, value]) => [key, String(value)]),
    );
}

/** Structured logs: `log.info('tagged', { device: id })`. */
export const log = {
  trace: write('trace'),
  debug: write('debug'),
  info: write('info'),
  warn: write('warn'),
  error: write('error'),
};
