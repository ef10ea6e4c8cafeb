/*
 * core.js -- the document core (crdt/, compiled to tandem_crdt.wasm) behind a
 * small JS class.
 *
 * There is no second implementation of the merge rules in JS: every edit,
 * merge, diff and snapshot goes through the wasm exports of
 * wasm/td_wasm_exports.c. One module instance per JS realm serves every
 * document (they are independent inside it); the module imports nothing.
 *
 * CoreDoc methods throw CoreError on a failing call; the document is then
 * exactly as it was (the core is all-or-nothing). Change events are drained
 * from the module after every call that can change the document and handed to
 * the owner through `onEvents`.
 */
import { loadWasmBytes } from '#platform';

export const KIND = { text: 1, list: 2, map: 3 };
export const KIND_NAME = { 1: 'text', 2: 'list', 3: 'map' };
const VT = { NONE: 0, NULL: 1, FALSE: 2, TRUE: 3, INT: 4, FLOAT: 5, STR: 6, OBJ: 7 };
const VALUE_SIZE = 16;
/* Out slots inside Core.slot (64 bytes): a buffer result at +0, apply()'s
 * info at +8, map_entry's key at +16, diff_max's next vv at +24, the
 * more/done flag of commit_max and diff_max at +32, events at +48. */
const SLOT_VV = 24;
const SLOT_FLAG = 32;
const ABI = 2;
const SCRATCH = 768; /* bytes of the module-side buffer for short strings */

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8');

/* Small results (a keystroke's batch is ~30 bytes) are copied into views of
 * a shared 64 KiB slab instead of an ArrayBuffer each: allocating and
 * collecting those was most of a keystroke's cost. A slab lives as long as
 * any view of it (an unacknowledged batch). */
const SLAB = 65536, SMALL = 1024;
let slab = null, slabAt = SLAB;
function copyOut(u8, ptr, len) {
  if (len > SMALL) return u8.slice(ptr, ptr + len);
  if (SLAB - slabAt < len) { slab = new ArrayBuffer(SLAB); slabAt = 0; }
  const out = new Uint8Array(slab, slabAt, len);
  /* a loop, not set(subarray): a keystroke's batch would pay for one more
   * view object than bytes it copies */
  for (let i = 0; i < len; i++) out[i] = u8[ptr + i];
  slabAt += (len + 7) & ~7;
  return out;
}

export class CoreError extends Error {
  constructor(op, code, name, detail) {
    super(`${op}: ${name}${detail ? `: ${detail}` : ''}`);
    this.code = code;
    this.codeName = name;
  }
}

let modulePromise = null;
let moduleSource = null;
let defaultSource = null;

/* The module used when the `wasm` option is not given: the browser entry
 * (browser.js) registers the bytes inlined into the package, so that no
 * bundler or dev server has to find and serve a .wasm file. `get` is called
 * at most once per load. */
export function setDefaultWasm(get) { defaultSource = get; }

const isBytes = (s) => s instanceof ArrayBuffer || ArrayBuffer.isView(s);
const isResponse = (s) => typeof Response === 'function' && s instanceof Response;

/* Bytes or a compiled module from what the `wasm` option may be: a
 * WebAssembly.Module, bytes (ArrayBuffer or any view), a Response (or a
 * promise of one, e.g. fetch(url)), a URL or a string (in Node a path or a
 * file:/http(s): URL, in browsers a URL relative to the page), or undefined
 * for the default. */
async function compileFrom(source) {
  source = await source;
  if (source === undefined && defaultSource) source = await defaultSource();
  if (source instanceof WebAssembly.Module) return source;
  if (isResponse(source)) {
    if (!source.ok) throw new Error(`fetching ${source.url || 'tandem_crdt.wasm'}: HTTP ${source.status}`);
    return WebAssembly.compile(await source.arrayBuffer());
  }
  if (isBytes(source)) return WebAssembly.compile(source);
  return WebAssembly.compile(await loadWasmBytes(source));
}

/* Compiles the module once per realm. `source`: see compileFrom;
 * undefined picks the default. */
export function loadCore(source) {
  if (modulePromise && (source === undefined || source === moduleSource)) return modulePromise;
  moduleSource = source;
  modulePromise = (async () => new Core(await compileFrom(source)))();
  modulePromise.catch(() => { modulePromise = null; });
  return modulePromise;
}

export class Core {
  constructor(mod) {
    this.ex = new WebAssembly.Instance(mod, {}).exports;
    /* A reactor module runs its constructors once, here, instead of around
     * every exported call as a command module's wrappers do. */
    if (typeof this.ex._initialize === 'function') this.ex._initialize();
    if (this.ex.abi_version() !== ABI) {
      throw new Error(`tandem_crdt.wasm has ABI ${this.ex.abi_version()}, this client needs ${ABI}`);
    }
    /* Added within ABI 2; a module built before them fails here, not at the
     * first commit. */
    const missing = ['commit_max', 'diff_max'].filter((f) => typeof this.ex[f] !== 'function');
    if (missing.length) throw new Error(`tandem_crdt.wasm lacks ${missing.join(', ')}: rebuild it`);
    this.slot = this.ex.alloc(64);
    this.scratch = this.ex.alloc(SCRATCH);
    this._mem = null;
  }
  /* Views of the module's memory, re-made after it grew (growing detaches
   * the old buffer: its views read length 0). */
  get u8() {
    if (!this._mem || this._mem.length === 0) {
      this._mem = new Uint8Array(this.ex.memory.buffer);
      this._dv = new DataView(this.ex.memory.buffer);
    }
    return this._mem;
  }
  get dv() { void this.u8; return this._dv; }
  u32(ptr) { return this.dv.getUint32(ptr, true); }
  cstr(ptr) {
    const u8 = this.u8;
    let end = ptr;
    while (u8[end] !== 0) end++;
    return dec.decode(u8.subarray(ptr, end));
  }
  put(bytes) {
    const ptr = this.ex.alloc(bytes.length);
    if (!ptr) throw new CoreError('alloc', 1, 'nomem');
    this.u8.set(bytes, ptr);
    return ptr;
  }
  withBytes(bytes, fn) {
    const ptr = this.put(bytes);
    try { return fn(ptr, bytes.length); } finally { this.ex.free(ptr); }
  }
  errName(rc) { return this.cstr(this.ex.strerror(rc)); }

  newDoc(agent) {
    const rc = this.ex.doc_new(BigInt.asIntN(64, agent), this.slot);
    if (rc !== 0) throw new CoreError('doc_new', rc, this.errName(rc));
    return new CoreDoc(this, this.u32(this.slot));
  }
  /* Builds a replica from a snapshot. */
  loadDoc(agent, snapshot) {
    const rc = this.withBytes(snapshot, (p, n) =>
      this.ex.doc_load(BigInt.asIntN(64, agent), p, n, this.slot, this.slot + 4));
    if (rc !== 0) {
      const msg = this.u32(this.slot + 4);
      throw new CoreError('doc_load', rc, this.errName(rc), msg ? this.cstr(msg) : '');
    }
    return new CoreDoc(this, this.u32(this.slot));
  }
}

export class CoreDoc {
  constructor(core, h) {
    this.core = core;
    this.ex = core.ex;
    this.h = h;
    this.onEvents = null;
    this.observe(true);
  }
  /* Whether the core records change events (an app without listeners, a
   * benchmark, may turn them off: then no call drains any). */
  observe(on) {
    this.observing = !!on;
    this.ex.observe(this.h, on ? 1 : 0);
  }
  free() { if (this.h) { this.ex.doc_free(this.h); this.h = 0; } }
  check(rc, op) {
    if (rc !== 0) {
      const err = new CoreError(op, rc, this.core.errName(rc), this.core.cstr(this.ex.doc_error(this.h)));
      this.ex.events_take(this.core.slot + 48); /* a failed call changed nothing */
      throw err;
    }
  }
  /* Hands the events of the last call to onEvents: an array of
   * {kind: 'insert'|'delete'|'key', obj, pos, count, key, local}, and a flag
   * set when some were lost (the owner then re-reads everything). */
  drain() {
    if (!this.observing) return;
    const { core } = this;
    const lost = this.ex.events_take(core.slot + 48);
    const ptr = core.u32(core.slot + 48), len = core.u32(core.slot + 52);
    if (len === 0 && !lost) return;
    const dv = core.dv, u8 = core.u8;
    const evs = [];
    for (let at = ptr, end = ptr + len; at < end;) {
      const kind = dv.getUint32(at, true), keyLen = dv.getUint32(at + 20, true);
      evs.push({
        kind: kind === 1 ? 'insert' : kind === 2 ? 'delete' : 'key',
        obj: dv.getUint32(at + 4, true),
        pos: dv.getUint32(at + 8, true),
        count: dv.getUint32(at + 12, true),
        local: dv.getUint32(at + 16, true) === 1,
        key: kind === 3 ? dec.decode(u8.subarray(at + 24, at + 24 + keyLen)) : undefined,
      });
      at += 24 + ((keyLen + 3) & ~3);
    }
    if (this.onEvents) this.onEvents(evs, lost !== 0);
  }
  /* The buffer result in the out slot at core.slot + at (copied, then freed). */
  takeBuf(at = 0) {
    const { core } = this;
    const ptr = core.u32(core.slot + at), len = core.u32(core.slot + at + 4);
    if (ptr === 0) return null;
    const out = copyOut(core.u8, ptr, len);
    this.ex.buf_free(this.h, ptr);
    return out;
  }
  bufCall(name) {
    this.check(this.ex[name](this.h, this.core.slot), name);
    return this.takeBuf();
  }

  agent() { return BigInt.asUintN(64, this.ex.doc_agent(this.h)); }
  root(kind, name) {
    const rc = this.core.withBytes(enc.encode(name), (p, n) =>
      this.ex.root(this.h, kind, p, n, this.core.slot));
    this.check(rc, 'root');
    return this.core.u32(this.core.slot);
  }
  kind(obj) { return this.ex.obj_kind(this.h, obj); }

  textInsert(obj, pos, str) {
    const { core } = this;
    let rc;
    if (str.length <= SCRATCH / 3) {
      /* typing: through a buffer kept in the module, no allocation */
      let n;
      if (str.length === 1 && str.charCodeAt(0) < 0x80) {
        core.u8[core.scratch] = str.charCodeAt(0);
        n = 1;
      } else {
        n = enc.encodeInto(str, core.u8.subarray(core.scratch, core.scratch + SCRATCH)).written;
      }
      rc = this.ex.text_insert(this.h, obj, pos, core.scratch, n);
    } else {
      rc = core.withBytes(enc.encode(str), (p, n) => this.ex.text_insert(this.h, obj, pos, p, n));
    }
    this.check(rc, 'text.insert');
    this.drain();
  }
  textDelete(obj, pos, count) {
    this.check(this.ex.text_delete(this.h, obj, pos, count), 'text.delete');
    this.drain();
  }
  textLength(obj) { return this.ex.text_length(this.h, obj) >>> 0; }
  text(obj) {
    this.check(this.ex.text_get(this.h, obj, this.core.slot), 'text.get');
    /* decoded where it lies: no copy */
    const { core } = this;
    const ptr = core.u32(core.slot), len = core.u32(core.slot + 4);
    if (ptr === 0) return '';
    const s = dec.decode(core.u8.subarray(ptr, ptr + len));
    this.ex.buf_free(this.h, ptr);
    return s;
  }

  /* Scalars only: null, booleans, numbers, bigints, strings. */
  putValues(values) {
    const { core } = this;
    const ptr = core.ex.alloc(values.length * VALUE_SIZE);
    const owned = [];
    values.forEach((v, i) => {
      const at = ptr + i * VALUE_SIZE;
      let type, str = null;
      if (v === null) type = VT.NULL;
      else if (v === false) type = VT.FALSE;
      else if (v === true) type = VT.TRUE;
      else if (typeof v === 'bigint') type = VT.INT;
      else if (typeof v === 'number') type = Number.isSafeInteger(v) && !Object.is(v, -0) ? VT.INT : VT.FLOAT;
      else { type = VT.STR; str = enc.encode(v); }
      const sp = str ? core.put(str) : 0;
      if (sp) owned.push(sp);
      const dv = core.dv;
      dv.setUint32(at, type, true);
      dv.setUint32(at + 4, 0, true);
      dv.setBigUint64(at + 8, 0n, true);
      if (type === VT.INT) dv.setBigInt64(at + 8, BigInt.asIntN(64, BigInt(v)), true);
      if (type === VT.FLOAT) dv.setFloat64(at + 8, v, true);
      if (type === VT.STR) { dv.setUint32(at + 8, sp, true); dv.setUint32(at + 12, str.length, true); }
    });
    return [ptr, owned];
  }
  freeValues([ptr, owned]) {
    owned.forEach((p) => this.ex.free(p));
    this.ex.free(ptr);
  }
  /* A scalar, or {obj, kind} for a nested object, or undefined (absent). */
  readValue(at) {
    const dv = this.core.dv;
    switch (dv.getUint32(at, true)) {
      case VT.NONE: return undefined;
      case VT.NULL: return null;
      case VT.FALSE: return false;
      case VT.TRUE: return true;
      case VT.INT: {
        const i = dv.getBigInt64(at + 8, true);
        return i >= BigInt(Number.MIN_SAFE_INTEGER) && i <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(i) : i;
      }
      case VT.FLOAT: return dv.getFloat64(at + 8, true);
      case VT.STR: {
        const p = dv.getUint32(at + 8, true), n = dv.getUint32(at + 12, true);
        return dec.decode(this.core.u8.subarray(p, p + n));
      }
      case VT.OBJ: return { obj: dv.getUint32(at + 8, true), kind: dv.getUint32(at + 4, true) };
      default: throw new CoreError('value', 0, 'bad value type');
    }
  }

  listInsert(obj, pos, values) {
    const vals = this.putValues(values);
    try {
      this.check(this.ex.list_insert(this.h, obj, pos, vals[0], values.length), 'list.insert');
    } finally { this.freeValues(vals); }
    this.drain();
  }
  listInsertObj(obj, pos, kind) {
    this.check(this.ex.list_insert_obj(this.h, obj, pos, kind, this.core.slot), 'list.insert');
    const h = this.core.u32(this.core.slot);
    this.drain();
    return h;
  }
  listDelete(obj, pos, count) {
    this.check(this.ex.list_delete(this.h, obj, pos, count), 'list.delete');
    this.drain();
  }
  listLength(obj) { return this.ex.list_length(this.h, obj) >>> 0; }
  listGet(obj, pos) {
    this.check(this.ex.list_get(this.h, obj, pos, this.core.slot), 'list.get');
    return this.readValue(this.core.slot);
  }

  withKey(key, fn) { return this.core.withBytes(enc.encode(key), fn); }
  mapSet(obj, key, value) {
    const vals = this.putValues([value]);
    try {
      this.check(this.withKey(key, (p, n) => this.ex.map_set(this.h, obj, p, n, vals[0])), 'map.set');
    } finally { this.freeValues(vals); }
    this.drain();
  }
  mapSetObj(obj, key, kind) {
    this.check(this.withKey(key, (p, n) =>
      this.ex.map_set_obj(this.h, obj, p, n, kind, this.core.slot)), 'map.set');
    const h = this.core.u32(this.core.slot);
    this.drain();
    return h;
  }
  mapDelete(obj, key) {
    this.check(this.withKey(key, (p, n) => this.ex.map_delete(this.h, obj, p, n)), 'map.delete');
    this.drain();
  }
  mapGet(obj, key) {
    this.check(this.withKey(key, (p, n) => this.ex.map_get(this.h, obj, p, n, this.core.slot)), 'map.get');
    return this.readValue(this.core.slot);
  }
  /* [[key, value], ...] in byte order of the keys. */
  mapEntries(obj) {
    const out = [];
    const n = this.ex.map_size(this.h, obj) >>> 0;
    const keySlot = this.core.slot + 16;
    for (let i = 0; i < n; i++) {
      this.check(this.ex.map_entry(this.h, obj, i, keySlot, this.core.slot), 'map.entry');
      const kp = this.core.u32(keySlot), kn = this.core.u32(keySlot + 4);
      const key = dec.decode(this.core.u8.subarray(kp, kp + kn));
      out.push([key, this.readValue(this.core.slot)]);
    }
    return out;
  }

  /* The local ops since the last commit as batches of at most maxBytes each
   * (one op that alone is larger -- a big map value -- is one batch), in
   * order; [] when there are none. If the core fails after the first batch,
   * what was committed is returned and the rest stays for the next call. */
  commitMax(maxBytes) {
    const { core, ex, h } = this;
    const slot = core.slot;
    let out = null;
    for (;;) {
      const rc = ex.commit_max(h, maxBytes, slot, slot + SLOT_FLAG);
      if (rc !== 0) {
        try {
          this.check(rc, 'commit');
        } catch (e) {
          if (out) return out;
          throw e;
        }
      }
      const more = core.u32(slot + SLOT_FLAG);
      const b = this.takeBuf();
      if (b) {
        if (out) out.push(b);
        else out = [b];
      }
      if (!more) return out ?? [];
    }
  }
  snapshot() { return this.bufCall('snapshot_encode'); }
  vv() { return this.bufCall('vv_encode') ?? new Uint8Array(0); }
  json() { return dec.decode(this.bufCall('to_json')); }
  /* What a peer whose version vector is vv lacks, as batches of at most
   * maxBytes each (the rule of commitMax) that apply in order. */
  diffMax(vv, maxBytes) {
    const { core } = this;
    const out = [];
    for (let done = 0; !done;) {
      const rc = core.withBytes(vv, (p, n) => this.ex.diff_max(this.h, p, n, maxBytes,
        core.slot, core.slot + SLOT_VV, core.slot + SLOT_FLAG));
      this.check(rc, 'diff');
      done = core.u32(core.slot + SLOT_FLAG);
      const b = this.takeBuf();
      vv = this.takeBuf(SLOT_VV) ?? new Uint8Array(0);
      if (b) out.push(b);
    }
    return out;
  }
  /* Integrates a batch; its change events go to onEvents. */
  apply(batch) {
    const info = this.core.slot + 8;
    const rc = this.core.withBytes(batch, (p, n) => this.ex.apply(this.h, p, n, info));
    this.check(rc, 'apply');
    const r = { applied: this.core.u32(info), duplicate: this.core.u32(info + 4),
      parked: this.core.dv.getInt32(info + 8, true) === 1 };
    this.drain();
    return r;
  }
  pending() { return this.ex.pending_ops(this.h) >>> 0; }
  /* Ops of `agent` integrated: the next seq when agent is this replica's. */
  vvGet(agent) { return Number(BigInt.asUintN(64, this.ex.vv_get(this.h, BigInt.asIntN(64, agent)))); }

  /* ---- item ids (anchors, undo): see "item ids" in td_wasm_exports.c ---- */

  needIds() {
    if (typeof this.ex.seq_spans !== 'function') {
      throw new Error('tandem_crdt.wasm lacks the item-id exports (seq_spans, ...): rebuild it');
    }
  }
  /* {agent, seq} of an id written at core.slot + at (u64, u32). */
  readId(at = 0) {
    const dv = this.core.dv, p = this.core.slot + at;
    return { agent: dv.getBigUint64(p, true), seq: dv.getUint32(p + 8, true) };
  }
  /* A module buffer result (malloc'd) copied out and freed. */
  takeOwned() {
    const { core } = this;
    const ptr = core.u32(core.slot), len = core.u32(core.slot + 4);
    if (!ptr) return new Uint8Array(0);
    const out = core.u8.slice(ptr, ptr + len);
    this.ex.free(ptr);
    return out;
  }
  /* Id of the visible item at pos. */
  idAt(obj, pos) {
    this.needIds();
    this.check(this.ex.seq_id_at(this.h, obj, pos, this.core.slot), 'id_at');
    return this.readId();
  }
  /* Ids of the visible items [pos, pos+count): [{agent, seq, n}]. */
  ids(obj, pos, count) {
    this.needIds();
    this.check(this.ex.seq_ids(this.h, obj, pos, count, this.core.slot), 'ids');
    const b = this.takeOwned(), dv = new DataView(b.buffer);
    const out = [];
    for (let at = 0; at < b.length; at += 16) {
      out.push({ agent: dv.getBigUint64(at, true), seq: dv.getUint32(at + 8, true), n: dv.getUint32(at + 12, true) });
    }
    return out;
  }
  /* Where items (agent, seq..seq+len-1) are now: [{off, n, vis, tot,
   * deleted, missing}] in id order. */
  spans(obj, agent, seq, len) {
    this.needIds();
    this.check(this.ex.seq_spans(this.h, obj, BigInt.asIntN(64, agent), seq, len, this.core.slot), 'spans');
    const b = this.takeOwned(), dv = new DataView(b.buffer);
    const out = [];
    for (let at = 0; at < b.length; at += 20) {
      const f = dv.getUint32(at + 16, true);
      out.push({ off: dv.getUint32(at, true), n: dv.getUint32(at + 4, true), vis: dv.getUint32(at + 8, true),
        tot: dv.getUint32(at + 12, true), deleted: (f & 1) !== 0, missing: (f & 2) !== 0 });
    }
    return out;
  }
  /* The visible text [pos, pos+count) (code points). */
  textSlice(obj, pos, count) {
    this.needIds();
    this.check(this.ex.text_slice(this.h, obj, pos, count, this.core.slot), 'text.slice');
    /* decoded where it lies: a remote batch may ask for many slices */
    const { core } = this;
    const ptr = core.u32(core.slot), len = core.u32(core.slot + 4);
    if (!ptr) return '';
    const s = dec.decode(core.u8.subarray(ptr, ptr + len));
    this.ex.free(ptr);
    return s;
  }
  /* Id of the write holding key, or null if it was never written. */
  mapKeyId(obj, key) {
    this.needIds();
    const rc = this.withKey(key, (p, n) => this.ex.map_key_id(this.h, obj, p, n, this.core.slot));
    return rc === 0 ? this.readId() : null;
  }
  /* Creating op of a nested object (null for a root). */
  objId(obj) {
    this.needIds();
    return this.ex.obj_id(this.h, obj, this.core.slot) === 0 ? this.readId() : null;
  }
  /* Local inserts into obj go right after item `after` ({agent, seq}; null:
   * at the very start) until placeAfter(0). */
  placeAfter(obj, after) {
    this.needIds();
    const rc = this.ex.place_after(this.h, obj, after ? 1 : 0, BigInt.asIntN(64, after ? after.agent : 0n), after ? after.seq : 0);
    this.check(rc, 'place_after');
  }
  objFind(agent, seq) { this.needIds(); return this.ex.obj_find(this.h, BigInt.asIntN(64, agent), seq) >>> 0; }
  objParent(obj) { this.needIds(); return this.ex.obj_parent(this.h, obj) >>> 0; }
  opCount() { return BigInt.asUintN(64, this.ex.op_count(this.h)); }
}
