/*
 * platform.js -- what differs between Node and the browser, Node side.
 * package.json's "browser" field swaps in platform-browser.js for bundlers.
 *
 * Node: the WebSocket is the `ws` package (Node 20 has no global one), the
 * wasm module is read from a file, and documents persist in memory only
 * (a Node process that wants more passes its own `storage`).
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const isBrowser = false;

/* Where the build leaves the module, in order: $TD_WASM, next to the
 * package (a packed release), the repository's build/ directory. */
function defaultWasmPath() {
  const candidates = [
    process.env.TD_WASM,
    fileURLToPath(new URL('../tandem_crdt.wasm', import.meta.url)),
    fileURLToPath(new URL('../../build/wasm/tandem_crdt.wasm', import.meta.url)),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`tandem_crdt.wasm not found (looked in ${candidates.join(', ')}); ` +
      'build it (cmake --build build) or set TD_WASM or the `wasm` option');
  }
  return found;
}

export async function loadWasmBytes(source) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return source;
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
