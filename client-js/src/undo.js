/*
 * undo.js -- per-user undo/redo (doc.undoManager()), after the model of
 * Yjs's UndoManager.
 *
 * Only this client's own edits are undone, never a peer's: a stack item
 * names what an edit did by op ids, not by positions -- the ids of the items
 * it inserted, the ids and content of the items it deleted, and for each map
 * key it wrote the id of its write and the value it replaced. Ids keep
 * naming the same items through any concurrent edit, so undo finds them
 * wherever remote edits have moved them:
 *
 * - undoing an insertion deletes those of its items still visible (one a
 *   previous undo/redo re-created is followed to its copy, `_redone`);
 * - undoing a deletion re-inserts the content where its tombstones now are
 *   (items inserted and deleted within the same stack item stay gone; an
 *   item re-created before is not re-created twice);
 * - undoing a map write restores the previous value, unless a later write
 *   (a peer's) holds the key now: that edit wins, as in Yjs.
 *
 * Grouping: the edits of one doc.transact() are one stack item, and edits
 * closer than captureTimeout (500 ms) to the previous one join its item,
 * until stopCapturing(). undo() runs as one transaction whose origin is the
 * manager; what it did becomes a redo item (and redo's an undo item). A new
 * tracked edit clears the redo stack.
 */
import { Emitter } from './emitter.js';

export class UndoManager extends Emitter {
  /* opts: scope (objects whose edits, and their nested objects' edits, are
   * tracked; default the whole document), captureTimeout (ms, 500),
   * trackedOrigins (origins of doc.transact tracked besides none). */
  constructor(doc, opts = {}) {
    super();
    this.doc = doc;
    this.captureTimeout = opts.captureTimeout ?? 500;
    this.scope = opts.scope ? [...opts.scope] : null;
    this.trackedOrigins = new Set(opts.trackedOrigins ?? []);
    this.undoStack = [];
    this.redoStack = [];
    this._lastChange = 0;
    this._doing = null; /* 'undo' | 'redo' while one runs */
    /* "agent:seq" of a deleted item -> {agent, seq} of its re-created copy */
    this._redone = new Map();
    doc._undoers.add(this);
  }

  canUndo() { return this.undoStack.length > 0; }
  canRedo() { return this.redoStack.length > 0; }
  /* The next edit starts a new stack item, however soon it comes. */
  stopCapturing() { this._lastChange = 0; }
  clear() { this.undoStack = []; this.redoStack = []; this._redone.clear(); }
  destroy() { this.clear(); this.doc._undoers.delete(this); }

  /* Reverts the latest stack item that still changes something; returns
   * it, or null when there was none. */
  undo() { return this._pop(this.undoStack, 'undo'); }
  redo() { return this._pop(this.redoStack, 'redo'); }

  _pop(stack, kind) {
    while (stack.length) {
      const item = stack.pop();
      let changed = false;
      this._doing = kind;
      try {
        this.doc.transact(() => { changed = this._revert(item); }, this);
      } finally {
        this._doing = null;
      }
      this.stopCapturing();
      if (changed) {
        this.emit('stack-item-popped', { stackItem: item, type: kind });
        return item;
      }
    }
    return null;
  }

  /* ---- recording (Doc._endLocal) ---------------------------------------- */

  _afterLocal(ops, origin) {
    const mine = origin === this;
    if (!mine && origin !== undefined && origin !== null && !this.trackedOrigins.has(origin)) return;
    ops = ops.filter((op) => this._inScope(op.w));
    if (!ops.length) return;
    if (mine) {
      /* what an undo did is what redo reverts, and the other way round */
      const item = newItem(ops);
      (this._doing === 'undo' ? this.redoStack : this.undoStack).push(item);
      this.emit('stack-item-added', { stackItem: item, type: this._doing === 'undo' ? 'redo' : 'undo' });
      return;
    }
    const now = Date.now();
    const last = this.undoStack[this.undoStack.length - 1];
    if (last && this._lastChange && now - this._lastChange < this.captureTimeout) {
      addOps(last, ops);
    } else {
      const item = newItem(ops);
      this.undoStack.push(item);
      this.emit('stack-item-added', { stackItem: item, type: 'undo' });
    }
    this._lastChange = now;
    this.redoStack = [];
  }

  _inScope(w) {
    if (w._detached) return false;
    if (!this.scope) return true;
    const core = this.doc._core;
    const handles = new Set(this.scope.filter((s) => !s._detached).map((s) => s._h));
    for (let h = w._h; h; h = core.objParent(h)) if (handles.has(h)) return true;
    return false;
  }

  /* ---- reverting ---------------------------------------------------------- */

  /* Inside a transaction: the inverse of item. Returns whether anything
   * changed. */
  _revert(item) {
    const core = this.doc._core;
    let changed = false;

    /* 1. Delete what the item inserted (or the copies of it), from the end
     * of each object so that earlier positions stay valid. */
    const dels = [];
    for (const op of item.ins) {
      if (op.w._detached) continue;
      this._visibleSpans(op.w, op.agent, op.seq, op.n, dels);
    }
    changed = applyDescending(dels, (d) => d.w._deleteCp(d.vis, d.n)) || changed;

    /* 2. Re-insert what it deleted, where the tombstones are now. */
    const puts = [];
    for (const op of item.del) {
      if (op.w._detached) continue;
      for (const run of op.runs) {
        for (const sp of core.spans(op.w._h, run.agent, run.seq, run.n)) {
          if (sp.missing || !sp.deleted) continue;
          /* split where items were created by this same item, or re-created before */
          let from = sp.off;
          const end = sp.off + sp.n;
          const flush = (to) => {
            if (to > from) {
              puts.push({ w: op.w, vis: sp.vis, tot: sp.tot + (from - sp.off), n: to - from,
                agent: run.agent, seq: run.seq + from, content: sliceContent(op.w, run.content, from, to),
                after: { agent: run.agent, seq: run.seq + to - 1 } });
            }
          };
          for (let k = from; k < end; k++) {
            if (this._skipRedo(item, op.w, run.agent, run.seq + k)) { flush(k); from = k + 1; }
          }
          flush(end);
        }
      }
    }
    changed = applyDescending(puts, (p) => {
      const agent = this.doc.agent;
      const start = core.vvGet(agent);
      p.w._restoreCp(p.vis, p.content, p.after);
      /* text: one seq per item; list: per element, plus its nested content */
      if (p.w.kind === 'text') {
        for (let i = 0; i < p.n; i++) this._redone.set(`${p.agent}:${p.seq + i}`, { agent, seq: start + i });
      } else {
        const ids = core.ids(p.w._h, p.vis, p.n);
        let k = 0;
        for (const r of ids) for (let i = 0; i < r.n; i++, k++) this._redone.set(`${p.agent}:${p.seq + k}`, { agent: r.agent, seq: r.seq + i });
      }
    }) || changed;

    /* 3. Map keys: the oldest previous value, if our last write still holds. */
    const keys = new Map();
    for (const op of item.map) {
      if (op.w._detached) continue;
      const k = `${op.w._h}\u0000${op.key}`;
      const had = keys.get(k);
      if (had) had.id = op.id;
      else keys.set(k, { w: op.w, key: op.key, prev: op.prev, prevId: op.prevId, id: op.id });
    }
    for (const m of keys.values()) {
      const now = core.mapKeyId(m.w._h, m.key);
      if (!now || !this._holds(m.id, now)) continue;
      const agent = this.doc.agent, seq = core.vvGet(agent);
      m.w._restore(m.key, m.prev);
      /* the write that held prev is re-created: older items find it */
      if (m.prevId) this._redone.set(`${m.prevId.agent}:${m.prevId.seq}`, { agent, seq });
      changed = true;
    }
    return changed;
  }

  /* Visible pieces of items (agent, seq..seq+n-1) of w, following items
   * deleted and re-created by an undo/redo to their copies. */
  _visibleSpans(w, agent, seq, n, out, depth = 0) {
    for (const sp of this.doc._core.spans(w._h, agent, seq, n)) {
      if (sp.missing) continue;
      if (!sp.deleted) { out.push({ w, vis: sp.vis, tot: sp.tot, n: sp.n }); continue; }
      if (depth > 64) continue;
      for (let k = 0; k < sp.n; k++) {
        const copy = this._redone.get(`${agent}:${seq + sp.off + k}`);
        if (copy) this._visibleSpans(w, copy.agent, copy.seq, 1, out, depth + 1);
      }
    }
  }

  /* Whether write `id`, or the copy an undo/redo made of it, is `now`. */
  _holds(id, now) {
    for (let i = 0; id && i < 64; i++) {
      if (id.agent === now.agent && id.seq === now.seq) return true;
      id = this._redone.get(`${id.agent}:${id.seq}`);
    }
    return false;
  }

  /* Not re-created: items the same stack item inserted, and items an
   * undo/redo re-created already. */
  _skipRedo(item, w, agent, seq) {
    if (this._redone.has(`${agent}:${seq}`)) return true;
    for (const op of item.ins) {
      if (op.w === w && op.agent === agent && seq >= op.seq && seq < op.seq + op.n) return true;
    }
    return false;
  }
}

function newItem(ops) {
  const item = { ins: [], del: [], map: [], meta: new Map() };
  addOps(item, ops);
  return item;
}

function addOps(item, ops) {
  for (const op of ops) {
    if (op.t === 'ins') item.ins.push(op);
    else if (op.t === 'del') item.del.push(op);
    else item.map.push(op);
  }
}

/* Content of deleted items [from, to) of a run (text: a string of code
 * points; list: an array of captured values). */
function sliceContent(w, content, from, to) {
  if (w.kind === 'list') return content.slice(from, to);
  return Array.from(content).slice(from, to).join('');
}

/* Applies position-based edits per object from the last document position
 * to the first, so each one's position is still right when it runs. */
function applyDescending(edits, fn) {
  if (!edits.length) return false;
  edits.sort((a, b) => (a.w._h - b.w._h) || (b.tot - a.tot));
  for (const e of edits) fn(e);
  return true;
}
