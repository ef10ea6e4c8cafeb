/*
 * wasm-inline.js -- the core (tandem_crdt.wasm) as base64, for browser.js.
 * This is the repository's stub: no bytes. scripts/pack.mjs replaces it in
 * the packed package with the module of the build it packs.
 */
export const wasmBase64 = null;
