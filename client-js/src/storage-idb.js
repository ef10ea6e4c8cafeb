/*
 * storage-idb.js -- documents in IndexedDB (browsers).
 *
 * Database "tandem-client", two object stores:
 *   snapshots  key = storage key (server URL + "#" + doc id), value = bytes
 *   pending    key = storage key + "\0" + record id, value = batch bytes
 * A pending batch is one record so that two tabs of the same document never
 * overwrite each other's unacknowledged edits; a snapshot may be overwritten
 * by any tab, since whatever it lacks is either on the server or pending.
 *
 * The same interface, in memory, is MemoryStorage (Node tests; a Node app
 * wanting durability passes its own object with these four methods).
 */
const DB = 'tandem-client';

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

export class IdbStorage {
  constructor(name = DB) { this.name = name; this._db = null; }
  db() {
    this._db ??= new Promise((resolve, reject) => {
      const r = indexedDB.open(this.name, 1);
      r.onupgradeneeded = () => {
        r.result.createObjectStore('snapshots');
        r.result.createObjectStore('pending');
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    return this._db;
  }
  /* -> {snapshot: Uint8Array|null, pending: [{rid, batch}]} (commit order) */
  async load(key) {
    const db = await this.db();
    const tx = db.transaction(['snapshots', 'pending'], 'readonly');
    const range = IDBKeyRange.bound(`${key}\u0000`, `${key}\u0001`, false, true);
    const [snap, keys, vals] = await Promise.all([
      req(tx.objectStore('snapshots').get(key)),
      req(tx.objectStore('pending').getAllKeys(range)),
      req(tx.objectStore('pending').getAll(range)),
    ]);
    const pending = keys.map((k, i) => ({ rid: k.slice(key.length + 1), batch: new Uint8Array(vals[i]) }));
    return { snapshot: snap ? new Uint8Array(snap) : null, pending };
  }
  async addPending(key, rid, batch) {
    const db = await this.db();
    const tx = db.transaction('pending', 'readwrite');
    tx.objectStore('pending').put(own(batch), `${key}\u0000${rid}`);
    await done(tx);
  }
  /* Writes the snapshot and removes acknowledged records, atomically. */
  async save(key, snapshot, removedRids) {
    const db = await this.db();
    const tx = db.transaction(['snapshots', 'pending'], 'readwrite');
    tx.objectStore('snapshots').put(own(snapshot), key);
    for (const rid of removedRids) tx.objectStore('pending').delete(`${key}\u0000${rid}`);
    await done(tx);
  }
}

export class MemoryStorage {
  constructor() { this.snapshots = new Map(); this.pendingRecs = new Map(); }
  async load(key) {
    const recs = this.pendingRecs.get(key) ?? new Map();
    return { snapshot: this.snapshots.get(key) ?? null,
      pending: [...recs].map(([rid, batch]) => ({ rid, batch })) };
  }
  async addPending(key, rid, batch) {
    if (!this.pendingRecs.has(key)) this.pendingRecs.set(key, new Map());
    this.pendingRecs.get(key).set(rid, batch.slice());
  }
  async save(key, snapshot, removedRids) {
    this.snapshots.set(key, snapshot.slice());
    for (const rid of removedRids) this.pendingRecs.get(key)?.delete(rid);
  }
}

/* Structured clone stores a view's whole buffer, and small results of the
 * core are views of a shared slab (core.js): store a copy of just the view. */
function own(u8) {
  return u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8 : u8.slice();
}
