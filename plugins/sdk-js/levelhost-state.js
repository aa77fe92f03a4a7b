// levelhost SDK: the plugin's durable state, for JavaScript and TypeScript
// plugins. `levelhost new` copies it beside levelhost.js; import it only in a
// plugin whose plugin.toml asks for `state:read` (and `state:write` to write),
// since it imports `level:api/state`:
//
//   import { increment, getJson, setJson } from './levelhost-state.js';
//
//   const runs = increment('runs');            // a number
//   const cursor = getJson('cursor');          // undefined when never set
//   setJson('cursor', { at: '2025-03-15T14:30:00.000Z' });
//
// Writes are kept only when the run ends ok; a run reads its own writes.
// Versions and counters are 64-bit in WIT (BigInt in JavaScript): these
// helpers hand out numbers.
import {
  get,
  set,
  delete as remove,
  listEntries,
  increment as add,
} from 'level:api/state@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A key's value parsed as JSON; `undefined` when the key has no value. */
export function getJson(key) {
  const entry = get(key);
  return entry === undefined ? undefined : JSON.parse(decoder.decode(entry.value));
}

/** Sets a key to `value` as JSON; returns its new version. */
export function setJson(key, value) {
  return Number(set(key, encoder.encode(JSON.stringify(value))));
}

/** Deletes a key; returns whether it had a value. */
export function deleteKey(key) {
  return remove(key);
}

/** Adds `delta` (default 1) to the integer a key holds and returns the sum. */
export function increment(key, delta = 1) {
  return Number(add(key, BigInt(delta)));
}

/** Every entry whose key starts with `prefix`: `{ key, value (parsed JSON), version }`. */
export function* entries(prefix = '') {
  let after;
  for (;;) {
    const page = listEntries(prefix, after, 100);
    for (const entry of page.items) {
      yield { key: entry.key, value: JSON.parse(decoder.decode(entry.value)), version: Number(entry.version) };
    }
    if (page.next === undefined) return;
    after = page.next;
  }
}
