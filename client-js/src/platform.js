/*
 * platform.js -- what differs between Node and the browser, Node side.
 * The package's subpath import `#platform` (package.json "imports") picks
 * this file under the `node` condition and platform-browser.js otherwise, so
 * that Node, Vite, esbuild and webpack each get the right one with no
 * configuration (the legacy "browser" field says the same for old bundlers).
 *
 * Node: the WebSocket is the `ws` package (Node 20 has no global one), the
 * wasm module is read from a file, and documents persist in memory only
 * (a Node process that wants more passes its own `storage`).
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inflateRawSync, deflateRawSync as zDeflateRawSync, constants as zc } from 'node:zlib';

export const isBrowser = false;

/* Where the module is, in order: next to the package (an installed
 * tarball: tandem_crdt.wasm beside package.json, the module this JS was
 * packed with), $TD_WASM, this repository's build/ directory. */
function defaultWasmPath() {
  const candidates = [
    fileURLToPath(new URL('../tandem_crdt.wasm', import.meta.url)),
    process.env.TD_WASM,
    fileURLToPath(new URL('../../build/wasm/tandem_crdt.wasm', import.meta.url)),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`tandem_crdt.wasm not found (looked in ${candidates.join(', ')}); ` +
      'build it (cmake --build build) or set TD_WASM or the `wasm` option');
  }
  return found;
}

/* `source`: undefined (the default file), a path, or a URL or URL string
 * (file: is read, http: and https: fetched). */
export async function loadWasmBytes(source) {
  if (typeof source === 'string' && /^(https?|file|data):/i.test(source)) source = new URL(source);
  if (source instanceof URL && source.protocol !== 'file:') {
    const r = await fetch(source);
    if (!r.ok) throw new Error(`fetching ${source}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }
  return readFile(source ?? defaultWasmPath());
}

let wsClass = null;
export async function getWebSocket() {
  if (wsClass) return wsClass;
  if (typeof globalThis.WebSocket === 'function') { wsClass = globalThis.WebSocket; return wsClass; }
  const mod = await import('ws');
  wsClass = mod.WebSocket ?? mod.default;
  return wsClass;
}

/* Browser-only hooks: no network events and no IndexedDB in Node. */
export function onNetworkChange() { return () => {}; }
export function networkUp() { return true; }
export function defaultStorage() { return null; }

/* Deflated messages (protocol version 2, wire.js): Node's zlib, in step
 * with the socket (no reordering). The output is bounded to size + 1
 * bytes, whatever the stream holds. */
export function inflateRaw(stream, size) {
  try {
    return new Uint8Array(inflateRawSync(stream, { maxOutputLength: Math.max(1, size + 1) }));
  } catch (e) {
    if (e?.code === 'ERR_BUFFER_TOO_LARGE') return new Uint8Array(size + 1);
    throw e;
  }
}
export function deflateRawSync(body) {
  return new Uint8Array(zDeflateRawSync(body, { level: 1, strategy: zc.Z_DEFAULT_STRATEGY }));
}
