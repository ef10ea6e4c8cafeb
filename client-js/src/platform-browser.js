/*
 * platform-browser.js -- the browser side of platform.js (the `#platform`
 * import under any condition but `node`): the WebSocket is the page's, the
 * page's online/offline events short-cut the reconnect backoff, and
 * documents persist in IndexedDB. The wasm module comes from the `wasm`
 * option or, by default, from the bytes the package's browser entry
 * (browser.js) inlines; there is no URL guessing here (a `new URL(...,
 * import.meta.url)` breaks under bundlers' dev servers and makes webpack
 * look for the file at build time).
 */
import { IdbStorage } from './storage-idb.js';

export const isBrowser = true;

/* `source`: a URL or URL string (relative to the page), fetched. */
export async function loadWasmBytes(source) {
  if (source === undefined || source === null) {
    throw new Error('tandem-client: no WebAssembly core: import the package as ' +
      "'tandem-client' (its browser entry holds the module) or pass the `wasm` option " +
      '(URL, bytes, Response or WebAssembly.Module)');
  }
  const r = await fetch(source);
  if (!r.ok) throw new Error(`fetching ${source}: HTTP ${r.status}`);
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

/* Deflated messages (protocol version 2, wire.js): the platform's
 * DecompressionStream('deflate-raw'), which is asynchronous (the client
 * keeps the messages in order behind it). Reading stops past size + 1
 * bytes. Sending stays plain (no synchronous deflate here): the server
 * takes both. */
export function inflateRaw(stream, size) {
  if (typeof DecompressionStream !== 'function') throw new Error('no DecompressionStream');
  const ds = new DecompressionStream('deflate-raw');
  const writer = ds.writable.getWriter();
  writer.write(stream).catch(() => {});
  writer.close().catch(() => {});
  return (async () => {
    const reader = ds.readable.getReader();
    const out = new Uint8Array(size + 1);
    let n = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (n + value.length > size) { reader.cancel().catch(() => {}); return out; }
      out.set(value, n);
      n += value.length;
    }
    return out.subarray(0, n);
  })();
}
export const deflateRawSync = null;
