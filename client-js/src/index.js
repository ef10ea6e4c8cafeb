/*
 * tandem-client -- real-time collaborative documents over tandem's wire
 * protocol, with the document core compiled to WebAssembly.
 *
 *   import { connect } from 'tandem-client';
 *   const client = await connect('ws://127.0.0.1:8080', { token });
 *   const doc = await client.open('notes');
 *   doc.text('body').insert(0, 'hello');
 *
 * See README.md for the whole API; index.d.ts types it. This is the entry of
 * Node (package.json "exports", condition `node`); browsers and bundlers get
 * browser.js, which is this plus the core's bytes.
 */
import { loadCore } from './core.js';
import { Client, parseUrls } from './client.js';
import { Doc, randomAgent } from './doc.js';
import { getWebSocket } from '#platform';

export { Client } from './client.js';
export { Doc } from './doc.js';
export { Text, List, TMap } from './objects.js';
export { Presence } from './presence.js';
export { UndoManager } from './undo.js';
export { MemoryStorage, IdbStorage } from './storage-idb.js';
export { CoreError } from './core.js';

/* Loads the core (once per realm) and starts connecting. urls: one server
 * URL, several separated by commas, or an array of them (nodes of one
 * cluster: the client starts at a random one and moves to the next when a
 * connection fails or drops). Options:
 *   token     string, or async () => string (called on every connect and
 *             when the server says the token expired)
 *   wasm      the core, when not the package's own: a URL or string (a
 *             path in Node), bytes, a Response (or its promise) or a
 *             WebAssembly.Module
 *   WebSocket a WebSocket class (default: the global one, or `ws` in Node)
 *   storage   persistence for documents (default: IndexedDB in browsers,
 *             none in Node); null disables it
 *   backoff   {baseMs: 500, capMs: 30000} for reconnects
 *   firstUrl  the URL (or its index) to try first; default a random one */
export async function connect(urls, opts = {}) {
  parseUrls(urls); /* a bad argument throws before anything loads */
  const core = await loadCore(opts.wasm);
  const WS = opts.WebSocket ?? await getWebSocket();
  if (!WS) throw new Error('no WebSocket implementation (install the `ws` package in Node)');
  return new Client(urls, opts, core, WS);
}

/* The core alone, for tools and tests: a replica with no connection. */
export async function createReplica(opts = {}) {
  const core = await loadCore(opts.wasm);
  const stub = {
    limits: null, session: 0,
    _sendPending() {}, _sendPresence() { return false; }, _closeDoc() {},
  };
  const coreDoc = opts.snapshot ? core.loadDoc(opts.agent ?? randomAgent(), opts.snapshot)
    : core.newDoc(opts.agent ?? randomAgent());
  return new Doc(stub, opts.id ?? 'local', core, coreDoc, null, null);
}
