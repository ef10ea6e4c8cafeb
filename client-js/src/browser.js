/*
 * browser.js -- the package's entry for browsers and bundlers (package.json
 * "exports", conditions `browser` and `default`): index.js, plus the core
 * (tandem_crdt.wasm) inlined as base64 in wasm-inline.js, registered as the
 * default module. So Vite (dev server and build), esbuild, webpack and a
 * plain <script type="module"> load it with no configuration and no .wasm
 * file to serve; the `wasm` option still overrides it (then the inlined
 * bytes are never decoded).
 *
 * In this repository wasm-inline.js is a stub holding null (the demo passes
 * `wasm` itself); scripts/pack.mjs writes the real one into the package.
 */
import { setDefaultWasm } from './core.js';
import { wasmBase64 } from './wasm-inline.js';

function decodeBase64(b64) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(b64);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

if (wasmBase64) setDefaultWasm(() => decodeBase64(wasmBase64));

export * from './index.js';
