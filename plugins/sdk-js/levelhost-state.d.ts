// Types of levelhost-state.js: the plugin's durable state.

/** A key's value parsed as JSON; `undefined` when the key has no value. */
export function getJson<T = unknown>(key: string): T | undefined;
/** Sets a key to `value` as JSON; returns its new version. */
export function setJson(key: string, value: unknown): number;
/** Deletes a key; returns whether it had a value. */
export function deleteKey(key: string): boolean;
/** Adds `delta` (default 1) to the integer a key holds and returns the sum. */
export function increment(key: string, delta?: number): number;
/** Every entry whose key starts with `prefix`. */
export function entries<T = unknown>(prefix?: string): Generator<{ key: string; value: T; version: number }>;
