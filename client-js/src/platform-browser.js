/*
 * platform-browser.js -- the browser side of platform.js (chosen through
 * package.json's "browser" field): the wasm module is fetched from next to
 * the bundle (or from the `wasm` option), the WebSocket is the page's, the
 * page's online/offline events short-cut the reconnect backoff, and
 * documents persist in IndexedDB.
 */
import { IdbStorage } from './storage-idb.js';

export const isBrowser = true;

export async function loadWasmBytes(source) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return source;
  const url = source ?? new URL('./tandem_crdt.wasm', import.meta.url);
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetching ${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

export async function getWebSocket() { return globalThis.WebSocket; }

/* Calls fn(true|false) when the browser goes online/offline; returns an
 * unsubscribe function. */
export function onNetworkChange(fn) {
  if (typeof window === 'undefined') return () => {};
  const on = () => fn(true), off = () => fn(false);
  window.addEventListener('online', on);
  window.addEventListener('offline', off);
  return () => { window.removeEventListener('online', on); window.removeEventListener('offline', off); };
}

/* The browser's own idea of the network at start (a page loaded offline
 * does not try to connect until the 'online' event). */
export function networkUp() {
  return typeof navigator === 'undefined' || navigator.onLine !== false;
}

export function defaultStorage() {
  return typeof indexedDB !== 'undefined' ? new IdbStorage() : null;
}
