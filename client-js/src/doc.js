/*
 * doc.js -- one open document: its replica (a CoreDoc), its change events,
 * its unacknowledged batches and its persistence.
 *
 * Edits apply to the replica at once. Outside doc.transact each edit is
 * committed on its own; inside, the whole transaction at its end. A commit is
 * one batch, or several in order when it exceeds the server's max_batch (a
 * big paste). A committed batch joins `pending` (and, with a storage, is
 * written there before anything else), goes to the server when a connection
 * is up, and leaves `pending` only on its ACK. After a reconnect the client
 * resends the pending batches right behind SUBSCRIBE (docs/PROTOCOL.md
 * section 5): one as it is, several as one batch, made while the socket
 * opens (_mergePending: the diff against what the server is known to have);
 * when that is not known, the diff against the SYNC's version vector
 * replaces them (_resendLacking; client.js).
 * A batch the server refused in a way a resend repairs (missing_ops,
 * agent_taken, too_large after the limit shrank) is replaced, with every
 * batch behind it, by what the server lacks (_recover).
 *
 * Change events. The core reports every visible change in code points, in
 * order (insert/delete at a position, key changed). For each change cycle (a
 * local edit, a transaction, or a batch from the server) this file composes
 * one object's events into a delta against the state before the cycle, the
 * way Quill and Yjs express them: [{retain}, {delete}, {insert}], plus the
 * inserted ranges (positions after) and deleted ranges (positions before) in
 * UTF-16 units for texts. Maps report the keys that changed. The same pass
 * keeps each Text's astral positions (objects.js) up to date, reading from
 * the core only the content the cycle inserted: the cost of a cycle follows
 * its events, not the size of the document. A cycle of one event (a
 * keystroke, most remote batches of one run) takes a short path, and no
 * delta is built for an object nobody listens to. A batch of many edits at
 * scattered places (a reconnect's merged batch) composes in chunks (RunList)
 * and reads its inserted content in one call when that is cheaper.
 *
 * Persistence (browsers: IndexedDB). The snapshot of the replica is saved a
 * moment after changes (and before the page goes away); every pending batch
 * is saved as its own record the moment it is committed, and removed with
 * the next snapshot after its ACK. Opening a document loads the snapshot and
 * re-applies every saved pending batch, so an edit made offline survives a
 * reload and is sent when the network returns. Each page load picks a fresh
 * agent id: two tabs sharing one IndexedDB must never share one.
 */
import { Emitter } from './emitter.js';
import { KIND, KIND_NAME } from './core.js';
import { maxBatchFor, vvWithCount } from './wire.js';
import { Text, List, TMap, parseId, snapValue, u16Of, astralOf, astralInsert, astralDelete, cpCount } from './objects.js';
import { UndoManager } from './undo.js';
import { Presence } from './presence.js';

const CLASSES = { 1: Text, 2: List, 3: TMap };
/* Beyond this many events for one object in one cycle, the delta is
 * "replace everything" rather than a composition (keeps big syncs linear). */
const MAX_COMPOSE = 4000;
const SAVE_DELAY_MS = 300;
/* See _compose: code points read per inserted run, at most, to read a whole text at once. */
const BULK_READ = 64;
const EMPTY_A = Object.freeze([]);

function lowerBound(a, x) {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
  return lo;
}

export function randomAgent() {
  const b = new Uint32Array(2);
  globalThis.crypto.getRandomValues(b);
  const a = (BigInt(b[0]) << 32n) | BigInt(b[1]);
  return a === 0n ? 1n : a;
}

/* Ids of stored pending batches: they sort in commit order (time, then a
 * counter), and a random part per page load keeps tabs apart. Only made
 * when there is a storage: the random source is slow for a keystroke. */
let recordSeq = 0;
let recordSalt = null;
function recordId() {
  if (!recordSalt) {
    const b = new Uint32Array(2);
    globalThis.crypto.getRandomValues(b);
    recordSalt = `${b[0].toString(36)}${b[1].toString(36)}`;
  }
  return `${Date.now().toString(36)}-${(recordSeq++).toString(36).padStart(7, '0')}-${recordSalt}`;
}

export class Doc extends Emitter {
  constructor(client, id, core, coreDoc, storage, storageKey) {
    super();
    this.client = client;
    this.id = id;
    this._coreMod = core;
    this._core = coreDoc;
    this._storage = storage;
    this._storageKey = storageKey;
    this._objs = new Map(); /* handle -> wrapper */
    this._roots = new Map(); /* "kind:name" -> wrapper */
    this._depth = 0; /* transact nesting */
    this._cycle = null;
    /* {rid, batch, id, limit} in commit order: id is the batch_id on this
     * connection (0: not sent on it), limit the size it was split for */
    this.pending = [];
    /* null; 'wait' or 'sync' while a refused batch is being repaired (see
     * _recover); 'halted' after a refusal that no resend can repair */
    this._recovering = null;
    this._recoverTimer = null;
    this._takenCount = 0; /* agent_taken refusals since the last ACK */
    /* This agent's op count when `pending` was last empty, and the limit
     * `pending` was merged for since (see _mergePending; 0: not merged). */
    this._seq0 = null;
    this._merged = 0;
    this._byId = new Map(); /* batch id on this connection -> record */
    this._everSynced = false;
    this._subscribed = false; /* SYNC received on this connection */
    this._syncWaiters = [];
    this._saveTimer = null;
    this._removed = [];
    this._refs = 1;
    this._closed = false;
    this._undoers = new Set(); /* UndoManagers of this document */
    this._ops = null; /* the current cycle's edit records, for them */
    this._origin = undefined; /* of the current transaction */
    this.presence = new Presence(this);
    coreDoc.onEvents = (evs, lost) => this._onEvents(evs, lost);
  }

  /* ---- objects ------------------------------------------------------------ */

  text(name) { return this._root('text', name); }
  list(name) { return this._root('list', name); }
  map(name) { return this._root('map', name); }
  _root(kind, name) {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('root names are non-empty strings');
    const key = `${kind}:${name}`;
    let w = this._roots.get(key);
    if (!w) {
      const h = this._core.root(KIND[kind], name);
      w = this._wrap(h, KIND[kind], { kind, name });
      this._roots.set(key, w);
    }
    return w;
  }
  _wrap(h, kind, root) {
    let w = this._objs.get(h);
    if (!w) {
      w = new CLASSES[kind](this, h, root);
      this._objs.set(h, w);
    }
    return w;
  }
  /* Core value -> JS value (wrappers for nested objects). */
  _value(v) {
    if (v !== null && typeof v === 'object' && 'obj' in v) return this._wrap(v.obj, v.kind);
    return v;
  }
  toJSON() { return JSON.parse(this._core.json()); }

  /* This replica's agent id (a new one after a rebuild or agent_taken). */
  get agent() { return this._core.agent(); }

  /* The current index of an anchor made by text.anchor() / list.anchor()
   * (here or on another replica), in that object; null when this replica
   * does not know the object or the item yet. */
  resolve(anchor) {
    const w = this._anchorTarget(anchor);
    return w ? w._resolve(anchor) : null;
  }
  _anchorTarget(a) {
    if (!a || typeof a !== 'object' || (a.kind !== 'text' && a.kind !== 'list')) return null;
    if (typeof a.root === 'string' && a.root) return this._root(a.kind, a.root);
    const id = parseId(a.obj);
    if (!id) return null;
    const h = this._core.objFind(id.agent, id.seq);
    if (!h || KIND_NAME[this._core.kind(h)] !== a.kind) return null;
    return this._wrap(h, KIND[a.kind]);
  }

  /* ---- editing -------------------------------------------------------------- */

  /* Runs fn; everything it edits is one batch and one change event.
   * origin (any value) is passed on in the change event as e.origin; an
   * undo manager tracks edits without one (or in its trackedOrigins). */
  transact(fn, origin) {
    this._checkOpen();
    if (this._depth === 0) this._origin = origin;
    this._depth++;
    try {
      return fn(this);
    } finally {
      if (--this._depth === 0) this._endLocal();
    }
  }

  /* A per-user undo/redo history of this client's own edits (undo.js). */
  undoManager(opts) { return new UndoManager(this, opts); }

  /* ---- what local edits did, for undo managers --------------------------------
   * Only while an undo manager exists: edits then note the ids they made
   * (inserted items are this agent's seqs from _recordStart on) and what
   * they removed (ids and content of deleted items, a map key's previous
   * value), and _endLocal hands the cycle's records to each manager. */
  _recordStart() {
    if (!this._undoers.size) return null;
    this._ops ??= [];
    return { seq: this._core.vvGet(this.agent) };
  }
  _recordInsert(w, rec) {
    const agent = this.agent, n = this._core.vvGet(agent) - rec.seq;
    if (n > 0) this._ops.push({ t: 'ins', w, agent, seq: rec.seq, n });
  }
  _record(r) { this._ops.push(r); }
  /* The ids and content of visible items [cp, cp+n) of w, before a delete. */
  _captureDelete(w, cp, n) {
    const runs = this._core.ids(w._h, cp, n);
    if (w.kind === 'text') {
      const cps = Array.from(this._core.textSlice(w._h, cp, n));
      let at = 0;
      for (const r of runs) { r.content = cps.slice(at, at + r.n).join(''); at += r.n; }
    } else {
      let at = cp;
      for (const r of runs) {
        r.content = [];
        for (let i = 0; i < r.n; i++) r.content.push(snapValue(this._value(this._core.listGet(w._h, at + i))));
        at += r.n;
      }
    }
    return { t: 'del', w, runs };
  }
  _edit(fn) {
    this._checkOpen();
    this._depth++;
    try { fn(); } finally { if (--this._depth === 0) this._endLocal(); }
  }
  /* _edit without a closure, for the hottest edits: _begin(); try {...}
   * finally { _end(); } */
  _begin() {
    if (this._closed) this._checkOpen();
    this._depth++;
  }
  _end() { if (--this._depth === 0) this._endLocal(); }
  _checkOpen() { if (this._closed) throw new Error(`document ${this.id} is closed`); }
  _endLocal() {
    const limit = this._batchLimit();
    const origin = this._origin;
    this._origin = undefined;
    const batches = this._core.commitMax(limit);
    this._emitCycle(true, origin);
    this._queue(batches, limit);
    const ops = this._ops;
    this._ops = null;
    if (ops && ops.length) for (const um of [...this._undoers]) um._afterLocal(ops, origin);
  }

  /* The largest batch the server takes (its WELCOME's limits; before the
   * first WELCOME, the protocol's defaults). A paste or transaction above it
   * is committed as several batches, each applying on its own after the
   * ones before it. */
  _batchLimit() {
    const limits = this.client.limits;
    if (this._limitFor !== limits || this._limit === undefined) {
      this._limitFor = limits;
      this._limit = maxBatchFor(this.id, limits);
    }
    return this._limit;
  }

  /* batches: made for a server limit of `limit` bytes. */
  _queue(batches, limit) {
    if (!batches.length) return;
    this._merged = 0;
    for (const batch of batches) {
      const rec = { rid: this._storage ? recordId() : null, batch, id: 0, limit };
      this.pending.push(rec);
      if (this._storage) {
        this._storage.addPending(this._storageKey, rec.rid, batch).catch((e) => this._storageError(e));
      }
    }
    this._setSynced(false);
    this._scheduleSave();
    this.client._sendPending(this);
  }

  /* ---- change events -------------------------------------------------------- */

  /* The cycle: per object touched (usually one), its events and its state
   * before the cycle (a text's astral positions: those arrays are replaced,
   * never changed in place). */
  _onEvents(evs, lost) {
    const c = this._cycle ??= { objs: [], events: [], old: [], lost: false };
    if (lost) c.lost = true;
    for (const ev of evs) {
      let i = c.objs.length - 1;
      while (i >= 0 && c.objs[i] !== ev.obj) i--;
      if (i < 0) {
        i = c.objs.push(ev.obj) - 1;
        c.events.push([]);
        const w = this._objs.get(ev.obj);
        c.old.push(w ? (w.kind === 'text' ? w._astral : true) : null);
      }
      c.events[i].push(ev);
    }
  }

  /* Turns the cycle's events into one change event. */
  _emitCycle(local, origin) {
    const c = this._cycle;
    this._cycle = null;
    if (!c) return;
    const changes = [];
    const docWants = this.listenerCount('change') > 0;
    if (c.lost) {
      for (const w of this._objs.values()) {
        if (w.kind === 'text') w._reload();
        changes.push({ target: w, kind: w.kind, reset: true });
      }
    } else {
      for (let i = 0; i < c.objs.length; i++) {
        const h = c.objs[i];
        const kind = this._core.kind(h);
        if (!kind) continue;
        const w = this._wrap(h, kind);
        const ch = this._compose(w, KIND_NAME[kind], c.events[i], c.old[i], docWants || w.listenerCount('change') > 0, local);
        if (ch) changes.push(ch);
      }
    }
    if (!changes.length) return;
    const e = { local, changes };
    if (origin !== undefined) e.origin = origin;
    for (const ch of changes) ch.target.emit('change', origin !== undefined ? { ...ch, local, origin } : { ...ch, local });
    this.emit('change', e);
  }

  /* old: for texts the astral positions before the cycle; null when the
   * wrapper was made during it (it read the current state: positions
   * before the cycle are then taken as code points). wants: build the
   * change (someone listens); the text's bookkeeping happens regardless.
   * local: a text's astral positions are already current (Text keeps them
   * so at each edit); remote batches update them here. */
  _compose(w, kind, evs, old, wants, local) {
    if (kind === 'map') {
      if (!wants) return null;
      const keys = [...new Set(evs.filter((e) => e.kind === 'key').map((e) => e.key))];
      return { target: w, kind, keys };
    }
    const text = kind === 'text';
    let oldA = [];
    if (text) {
      w._cache = null;
      oldA = old ?? w._astral;
      const hint = w._hint;
      w._hint = null;
      if (evs.length === 1 && old) return this._composeOne(w, evs[0], oldA, hint, w._hintPos, wants, local);
    }
    const core = this._core;
    const newLen = text ? core.textLength(w._h) : core.listLength(w._h);
    let oldLen = newLen;
    for (const e of evs) oldLen += e.kind === 'delete' ? e.count : e.kind === 'insert' ? -e.count : 0;

    /* Runs of the new state: {old: start in the old state} or {old: -1}. */
    let runs;
    if (evs.length > MAX_COMPOSE) {
      runs = [{ old: -1, len: newLen }];
    } else {
      const rl = new RunList(oldLen);
      for (const e of evs) {
        if (e.kind === 'insert') rl.insert(e.pos, e.count);
        else if (e.kind === 'delete') rl.delete(e.pos, e.count);
      }
      runs = rl.runs();
    }
    runs = runs.filter((r) => r.len > 0);

    /* Inserted content, and the text's new astral positions: the old ones
     * carried along the kept runs, plus those of what was inserted. */
    const content = [];
    let newA = oldA;
    if (text) {
      newA = [];
      /* Many inserted runs in a short text (a merged batch of scattered
       * edits): one read of the whole text, when it is at most BULK_READ
       * code points per run and has no astral characters (then code points
       * are UTF-16 units), costs less than a slice per run. */
      let full = null, insRuns = 0;
      for (const r of runs) if (r.old < 0) insRuns++;
      if (insRuns >= 16 && newLen <= insRuns * BULK_READ) {
        full = core.text(w._h);
        if (astralOf(full).length) full = null;
        else w._cache = full;
      }
      let at = 0;
      for (const r of runs) {
        if (r.old >= 0) {
          for (let i = lowerBound(oldA, r.old); i < oldA.length && oldA[i] < r.old + r.len; i++) newA.push(oldA[i] - r.old + at);
          content.push(null);
        } else {
          const str = full !== null ? full.slice(at, at + r.len) : core.textSlice(w._h, at, r.len);
          content.push(str);
          for (const x of astralOf(str)) newA.push(at + x);
        }
        at += r.len;
      }
      if (old && !local) w._astral = newA.length ? newA : EMPTY_A;
    }
    if (!wants) return null;

    /* Positions: code points, converted to UTF-16 for texts. */
    const oldU = (x) => u16Of(oldA, x);
    const newU = (x) => u16Of(newA, x);
    const delta = [], inserted = [], deleted = [];
    let oldAt = 0, newAt = 0;
    const pushOp = (op) => {
      const last = delta[delta.length - 1];
      const k = Object.keys(op)[0];
      if (last && k in last && k !== 'insert') last[k] += op[k];
      else if (last && k === 'insert' && 'insert' in last && typeof op.insert === 'string') last.insert += op.insert;
      else if (last && k === 'insert' && 'insert' in last) last.insert.push(...op.insert);
      else delta.push(op);
    };
    const delUpTo = (oldPos) => {
      if (oldPos > oldAt) {
        const from = oldU(oldAt), to = oldU(oldPos);
        pushOp({ delete: to - from });
        deleted.push({ index: from, length: to - from });
        oldAt = oldPos;
      }
    };
    runs.forEach((r, ri) => {
      if (r.old >= 0) {
        delUpTo(r.old);
        pushOp({ retain: newU(newAt + r.len) - newU(newAt) });
        oldAt = r.old + r.len;
      } else {
        const from = newU(newAt), to = newU(newAt + r.len);
        let ins;
        if (text) ins = content[ri];
        else {
          ins = [];
          for (let i = newAt; i < newAt + r.len; i++) ins.push(this._value(core.listGet(w._h, i)));
        }
        pushOp({ insert: ins });
        const last = inserted[inserted.length - 1];
        if (last && last.index + last.length === from) last.length += to - from;
        else inserted.push({ index: from, length: to - from });
      }
      newAt += r.len;
    });
    delUpTo(oldLen);
    while (delta.length && 'retain' in delta[delta.length - 1]) delta.pop();
    /* Deleted ranges in old positions, as an app applying them in order
     * from the end would need them; coalesced. */
    return { target: w, kind, delta, inserted, deleted };
  }

  /* A text's cycle of one event: a keystroke, a backspace, a paste, or a
   * remote batch of one run. hint: the string of the last local insert. */
  _composeOne(w, e, oldA, hint, hintPos, wants, local) {
    if (e.kind === 'insert') {
      const str = hint !== null && hintPos === e.pos && cpCount(hint) === e.count ? hint
        : this._core.textSlice(w._h, e.pos, e.count);
      if (!local) w._astral = astralInsert(oldA, e.pos, e.count, astralOf(str));
      if (!wants) return null;
      const at = u16Of(oldA, e.pos);
      return { target: w, kind: 'text', delta: at ? [{ retain: at }, { insert: str }] : [{ insert: str }],
        inserted: [{ index: at, length: str.length }], deleted: [] };
    }
    if (!local) w._astral = astralDelete(oldA, e.pos, e.count);
    if (!wants) return null;
    const from = u16Of(oldA, e.pos), to = u16Of(oldA, e.pos + e.count);
    return { target: w, kind: 'text', delta: from ? [{ retain: from }, { delete: to - from }] : [{ delete: to - from }],
      inserted: [], deleted: [{ index: from, length: to - from }] };
  }

  /* ---- from the server ------------------------------------------------------ */

  /* Applies a batch from the server; throws CoreError if the core refuses it
   * (the replica is then unchanged). */
  _applyRemote(batch) {
    try {
      this._core.apply(batch);
    } finally {
      this._emitCycle(false);
    }
    this._scheduleSave();
  }

  /* vv: the server's version vector when it built the SYNC. */
  _onSync(batch, vv) {
    if (batch.length) this._applyRemote(batch);
    this._subscribed = true;
    this._everSynced = true;
    if (this._recovering === 'sync') this._resendLacking(vv);
    this._checkSynced();
  }

  _onAck(batchId) {
    const rec = this._byId.get(batchId);
    if (!rec) return;
    this._byId.delete(batchId);
    this._takenCount = 0;
    this._forget(rec);
    this._checkSynced();
  }

  /* ---- repairing refused batches ------------------------------------------ */

  /* The server refused `rec` in a way that sending what it lacks repairs
   * (missing_ops: a gap in this replica's ops, e.g. behind a batch it
   * refused; agent_taken; too_large for a batch split for a larger limit).
   * Every batch sent after rec on this connection is refused the same way
   * (each depends on the ones before), so none of them, and none not sent
   * yet, is sent again as it is: the document resubscribes (after delayMs),
   * and at the SYNC the server's version vector says exactly what it lacks,
   * which replaces them (_resendLacking). Batches sent before rec stay: the
   * server took them, their ACKs are on the way. */
  _recover(rec, delayMs) {
    for (const r of this.pending) {
      if (r.id === 0 || r.id < rec.id) continue;
      this._byId.delete(r.id);
      r.id = 0;
    }
    clearTimeout(this._recoverTimer);
    this._recoverTimer = null;
    if (delayMs > 0) {
      this._recovering = 'wait';
      this._recoverTimer = setTimeout(() => { this._recoverTimer = null; this._resync(); }, delayMs);
    } else {
      this._resync();
    }
  }
  _resync() {
    this._recovering = 'sync';
    this.client._resubscribe(this);
  }

  /* The SYNC after _recover: the batches not in flight on this connection are
   * replaced by what the server lacks against its vv (which includes every
   * edit made meanwhile), split for the current limit; the new batches are
   * stored before the old ones are forgotten, like any pending batch. A diff
   * against a vv that the server has since passed only repeats ops, which is
   * harmless. */
  _resendLacking(serverVv) {
    const limit = this._batchLimit();
    const batches = this._core.diffMax(serverVv, limit);
    const stale = this.pending.filter((r) => r.id === 0);
    this.pending = this.pending.filter((r) => r.id !== 0);
    this._recovering = null;
    if (this._storage) this._removed.push(...stale.map((r) => r.rid));
    this._seq0 = null; /* the diff may hold ops of earlier agents */
    this._queue(batches, limit);
    this._notePendingEmpty();
    this._scheduleSave();
  }

  /* A reconnect's pending batches as one (or as few as the limit allows),
   * made without waiting for the server's version vector, so they go out
   * right behind SUBSCRIBE: one round trip less than _resendLacking, and
   * the diff can be made while the socket opens. Every op of this replica
   * except this agent's from _seq0 on came from the server (SYNC, REMOTE)
   * or was acknowledged by it, so the diff against the replica's version
   * vector with this agent's count set back to _seq0 holds what the server
   * may lack, and at worst ops it has (harmless repeats). _seq0 is null when
   * that is not known (batches restored from storage or made by an earlier
   * agent, a repair): then this returns false and the SYNC decides. */
  _mergePending() {
    const limit = this._batchLimit();
    if (this._merged === limit) return true;
    if (this._seq0 === null || this._recovering !== null) return false;
    const known = vvWithCount(this._core.vv(), this.agent, this._seq0);
    const batches = this._core.diffMax(known, limit);
    const stale = this.pending;
    this.pending = [];
    this._byId.clear();
    if (this._storage) this._removed.push(...stale.map((r) => r.rid));
    this._queue(batches, limit);
    this._merged = limit; /* made again if WELCOME brings another limit */
    this._scheduleSave();
    return true;
  }

  /* pending is empty: every op of the replica is on the server. */
  _notePendingEmpty() {
    if (!this.pending.length && this._recovering === null) this._seq0 = this._core.vvGet(this.agent);
  }

  /* A refusal nothing here can repair (too_large for a batch already split
   * for the server's current limit). The document keeps its edits, locally
   * and in storage, but sends nothing more until it is opened again. */
  _halt() {
    clearTimeout(this._recoverTimer);
    this._recoverTimer = null;
    this._recovering = 'halted';
  }

  /* Ops of this replica's agent are refused (agent_taken): another author
   * (another user, or a connection of ours the server still thinks alive)
   * owns the agent id in this document. Future ops get a fresh random one.
   * The core cannot change the agent of a replica, so the replica is
   * reloaded from its own snapshot under the new agent; nested objects are
   * re-read ('reset' change events), roots keep their wrappers. */
  _changeAgent() {
    const fresh = this._coreMod.loadDoc(randomAgent(), this._core.snapshot());
    fresh.onEvents = (evs, lost) => this._onEvents(evs, lost);
    this._replaceCore(fresh);
    this._scheduleSave();
  }

  _forget(rec) {
    const i = this.pending.indexOf(rec);
    if (i >= 0) this.pending.splice(i, 1);
    this._notePendingEmpty();
    if (this._storage) { this._removed.push(rec.rid); this._scheduleSave(); }
  }

  _checkSynced() {
    if (this._everSynced && this.pending.length === 0) this._setSynced(true);
  }

  _setSynced(flag) {
    if (this._synced === flag) return;
    this._synced = flag;
    if (flag) {
      const ws = this._syncWaiters;
      this._syncWaiters = [];
      ws.forEach((r) => r());
    }
    this.emit('synced', flag);
  }

  /* True once the first SYNC arrived and every local edit is acknowledged. */
  get isSynced() { return !!this._synced; }
  /* Resolves when isSynced becomes (or is) true. */
  get synced() {
    if (this._synced) return Promise.resolve();
    return new Promise((r) => this._syncWaiters.push(r));
  }

  /* A drop error (read_only, invalid_batch, too_large): the server will never
   * take that batch, so the replica holding it is rebuilt from the server's
   * state plus the other pending batches (docs/PROTOCOL.md section 5). */
  _rebuild() {
    const fresh = this._coreMod.newDoc(randomAgent());
    fresh.onEvents = (evs, lost) => this._onEvents(evs, lost);
    for (const rec of this.pending) {
      try { fresh.apply(rec.batch); } catch { /* depends on what was dropped */ }
    }
    this._replaceCore(fresh);
    this._everSynced = false;
    this._setSynced(false);
    this._scheduleSave();
  }

  /* Swaps in another replica: roots keep their wrappers (re-resolved),
   * nested ones are detached, and every root gets a 'reset' change event. */
  _replaceCore(fresh) {
    this._seq0 = null; /* pending holds the old agent's ops */
    this._merged = 0;
    const old = this._core;
    this._cycle = null;
    this._core = fresh;
    old.free();
    const roots = [...this._roots.values()];
    for (const w of this._objs.values()) if (!w._root) w._detached = true;
    this._objs.clear();
    for (const w of roots) {
      w._h = fresh.root(KIND[w._root.kind], w._root.name);
      this._objs.set(w._h, w);
      if (w.kind === 'text') w._reload();
    }
    const changes = roots.map((w) => ({ target: w, kind: w.kind, reset: true }));
    for (const ch of changes) ch.target.emit('change', { ...ch, local: false });
    if (changes.length) this.emit('change', { local: false, changes });
  }

  /* ---- persistence ------------------------------------------------------------ */

  _scheduleSave() {
    if (!this._storage || this._saveTimer) return;
    this._saveTimer = setTimeout(() => { this._saveTimer = null; this.save(); }, SAVE_DELAY_MS);
  }
  /* Writes the snapshot (and forgets acknowledged batches) now. */
  async save() {
    if (!this._storage || this._closed) return;
    if (this._saveTimer) { clearTimeout(this._saveTimer); this._saveTimer = null; }
    const removed = this._removed;
    this._removed = [];
    try {
      await this._storage.save(this._storageKey, this._core.snapshot(), removed);
    } catch (e) { this._storageError(e); }
  }
  _storageError(e) {
    this.emit('error', { code: 'storage', message: `local storage: ${e?.message ?? e}` });
  }

  /* ---- lifetime ------------------------------------------------------------- */

  /* Releases this handle; the last one unsubscribes and frees the replica. */
  async close() {
    if (this._closed) return;
    if (--this._refs > 0) return;
    await this.save();
    this._closed = true;
    clearTimeout(this._recoverTimer);
    this.presence._stop();
    this.client._closeDoc(this);
    this._core.free();
  }
}

/* ---- run composition (code points) ------------------------------------------ */

/* The runs of a cycle's new state, {old: start in the old state, len} or
 * {old: -1, len} for inserted content, as the cycle's events are applied one
 * by one. They are kept in chunks of at most 2 * CHUNK runs, each with its
 * length, so that finding a position costs (number of chunks) + CHUNK steps
 * rather than one step per run: a remote batch of k edits at scattered
 * places (a reconnect's merged batch) composes in about k * sqrt(k), not
 * k^2. A cursor (the chunk of the last edit) makes the next edit near it,
 * the common case of one person typing, about constant time. */
const CHUNK = 32;
export class RunList {
  constructor(len) {
    this.chunks = [[{ old: 0, len }]];
    this.lens = [len];
    this.cc = 0; /* cursor: a chunk index and the position it starts at */
    this.cat = 0;
  }

  /* The chunk holding pos (the first whose end is at or after it) and the
   * position it starts at. */
  _chunk(pos) {
    let c = 0, at = 0;
    if (this.cc < this.chunks.length && this.cat <= pos) { c = this.cc; at = this.cat; }
    const last = this.chunks.length - 1;
    while (c < last && at + this.lens[c] < pos) { at += this.lens[c]; c++; }
    this.cc = c;
    this.cat = at;
    return c;
  }

  /* Index in chunk c of the first run starting at pos (chunk c starts at
   * `at`), splitting a run there if needed; may be the chunk's length. */
  _split(c, at, pos) {
    const ch = this.chunks[c];
    let i = 0;
    for (; i < ch.length; i++) {
      if (at === pos) return i;
      const r = ch[i];
      if (pos < at + r.len) {
        const k = pos - at;
        ch.splice(i, 1, { old: r.old, len: k }, { old: r.old < 0 ? -1 : r.old + k, len: r.len - k });
        return i + 1;
      }
      at += r.len;
    }
    return i;
  }

  _balance(c) {
    const ch = this.chunks[c];
    if (ch.length <= 2 * CHUNK) return;
    const tail = ch.splice(CHUNK);
    let len = 0;
    for (const r of tail) len += r.len;
    this.chunks.splice(c + 1, 0, tail);
    this.lens.splice(c + 1, 0, len);
    this.lens[c] -= len;
  }

  insert(pos, count) {
    const c = this._chunk(pos);
    const i = this._split(c, this.cat, pos);
    this.chunks[c].splice(i, 0, { old: -1, len: count });
    this.lens[c] += count;
    this._balance(c);
  }

  delete(pos, count) {
    const c0 = this._chunk(pos);
    let c = c0, i = this._split(c0, this.cat, pos), rem = count;
    while (rem > 0 && c < this.chunks.length) {
      const ch = this.chunks[c];
      if (i >= ch.length) { c++; i = 0; continue; }
      const r = ch[i];
      if (r.len <= rem) {
        ch.splice(i, 1);
        this.lens[c] -= r.len;
        rem -= r.len;
      } else {
        ch[i] = { old: r.old < 0 ? -1 : r.old + rem, len: r.len - rem };
        this.lens[c] -= rem;
        rem = 0;
      }
    }
    /* drop the chunks it emptied (one always stays) */
    for (let k = Math.min(c, this.chunks.length - 1); k >= c0 && this.chunks.length > 1; k--) {
      if (this.chunks[k].length === 0) {
        this.chunks.splice(k, 1);
        this.lens.splice(k, 1);
        this.cc = 0;
        this.cat = 0;
      }
    }
  }

  runs() { return this.chunks.length === 1 ? this.chunks[0] : [].concat(...this.chunks); }
}
