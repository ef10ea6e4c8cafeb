/*
 * tandem-client -- real-time collaborative documents over tandem's wire
 * protocol, with the document core compiled to WebAssembly.
 *
 *   import { connect } from 'tandem-client';
 *   const client = await connect('ws://127.0.0.1:8080', { token });
 *   const doc = await client.open('notes');
 *   doc.text('body').insert(0, 'hello');
 *
 * See README.md for the whole API; index.d.ts types it.
 */
import { loadCore } from './core.js';
import { Client } from './client.js';
import { getWebSocket } from './platform.js';

export { Client } from './client.js';
export { Doc } from './doc.js';
export { Text, List, TMap } from './objects.js';
export { Presence } from './presence.js';
export { UndoManager } from './undo.js';
export { MemoryStorage, IdbStorage } from './storage-idb.js';
export { CoreError } from './core.js';

/* Loads the core (once per realm) and starts connecting. Options:
 *   token     string, or async () => string (called on every connect and
 *             when the server says the token expired)
 *   wasm      where tandem_crdt.wasm is: URL, path (Node), bytes or Module
 *   WebSocket a WebSocket class (default: the global one, or `ws` in Node)
 *   storage   persistence for documents (default: IndexedDB in browsers,
 *             none in Node); null disables it
 *   backoff   {baseMs: 500, capMs: 30000} for reconnects */
export async function connect(url, opts = {}) {
  const core = await loadCore(opts.wasm);
  const WS = opts.WebSocket ?? await getWebSocket();
  if (!WS) throw new Error('no WebSocket implementation (install the `ws` package in Node)');
  return new Client(String(url), opts, core, WS);
}

/* The core alone, for tools and tests: a replica with no connection. */
export async function createReplica(opts = {}) {
  const core = await loadCore(opts.wasm);
  const { Doc } = await import('./doc.js');
  const { randomAgent } = await import('./doc.js');
  const stub = {
    limits: null, session: 0,
    _sendPending() {}, _sendPresence() { return false; }, _closeDoc() {},
  };
  const coreDoc = opts.snapshot ? core.loadDoc(opts.agent ?? randomAgent(), opts.snapshot)
    : core.newDoc(opts.agent ?? randomAgent());
  return new Doc(stub, opts.id ?? 'local', core, coreDoc, null, null);
}
