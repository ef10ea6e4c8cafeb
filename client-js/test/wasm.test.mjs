/*
 * wasm.test.mjs -- the core as WebAssembly, driven from Node.
 *
 * Loads build/wasm/tandem_crdt.wasm (or $TD_WASM) with no imports and drives
 * it through the raw exports of client-js/wasm/td_wasm_exports.c: a seeded
 * random edit history (with multi-byte code points) is mirrored in a JS array
 * of code points and compared as it goes; two replicas edit concurrently and
 * exchange committed batches late, out of order and twice, and must end with
 * the same content and byte-identical snapshots; snapshots round-trip through
 * doc_load; hostile input is rejected without changing the document.
 *
 * Seeds: TD_SEED=<n> replays one seed; a failure message names its seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WASM_PATH = process.env.TD_WASM ||
  path.resolve(HERE, '..', '..', 'build', 'wasm', 'tandem_crdt.wasm');
const SEEDS = process.env.TD_SEED ? [Number(process.env.TD_SEED)] : [1, 2, 3];

const KIND = { TEXT: 1, LIST: 2, MAP: 3 };
const VT = { NONE: 0, NULL: 1, FALSE: 2, TRUE: 3, INT: 4, FLOAT: 5, STR: 6, OBJ: 7 };
const ERR_ARG = 2;
const VALUE_SIZE = 16;

const module = new WebAssembly.Module(readFileSync(WASM_PATH));

/* The module should import nothing. Should wasi-libc ever pull a WASI call in,
 * stubs that fail with ENOSYS keep the other tests running while the
 * "imports nothing" test below reports it. */
function importStubs(mod) {
  const imports = {};
  for (const imp of WebAssembly.Module.imports(mod)) {
    if (imp.kind !== 'function') continue;
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => 52; /* WASI ENOSYS */
  }
  return imports;
}

/* PRNG: mulberry32, so a seed replays the same history everywhere. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (arr) => arr[Math.floor(next() * arr.length)];
  return next;
}

/* 1-, 2-, 3- and 4-byte UTF-8 code points, ASCII most often. */
const ALPHABET = [...'abcdefghijklmnopqrstuvwxyz      \n', 'é', 'ß', 'ñ', 'Ж', '漢', '字',
  '\u3042', '😀', '🎉', '\u{1F9D1}', '\u{10FFFF}'];

function randomCodePoints(rnd, max) {
  const n = 1 + rnd.int(max);
  const out = [];
  for (let i = 0; i < n; i++) out.push(rnd.pick(ALPHABET));
  return out;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/* A minimal binding: just enough to drive the exports from tests. The real
 * JS API (client-js, issue 6) is built the same way. */
class Core {
  constructor() {
    this.ex = new WebAssembly.Instance(module, importStubs(module)).exports;
    this.ex._initialize(); /* a reactor module: its constructors, once */
    this.slot = this.ex.alloc(32); /* out slots, reused by every call */
  }
  get u8() { return new Uint8Array(this.ex.memory.buffer); }
  get dv() { return new DataView(this.ex.memory.buffer); }
  u32(ptr) { return this.dv.getUint32(ptr, true); }
  cstr(ptr) {
    const u8 = this.u8;
    let end = ptr;
    while (u8[end] !== 0) end++;
    return dec.decode(u8.subarray(ptr, end));
  }
  /* Copies bytes into a fresh allocation; the caller frees it. */
  put(bytes) {
    const ptr = this.ex.alloc(bytes.length);
    assert.notEqual(ptr, 0, 'alloc failed');
    this.u8.set(bytes, ptr);
    return ptr;
  }
  /* Calls fn(ptr, len) with bytes copied into the module. */
  withBytes(bytes, fn) {
    const ptr = this.put(bytes);
    try { return fn(ptr, bytes.length); } finally { this.ex.free(ptr); }
  }
  /* Reads the {ptr, len} out slot, copies it out and frees it; null if empty. */
  takeBuf(doc, what) {
    const ptr = this.u32(this.slot), len = this.u32(this.slot + 4);
    if (ptr === 0) {
      assert.equal(len, 0, `${what}: null pointer with length ${len}`);
      return null;
    }
    const out = this.u8.slice(ptr, ptr + len);
    this.ex.buf_free(doc, ptr);
    return out;
  }
}

class Doc {
  constructor(core, agent, handle) {
    this.core = core;
    this.ex = core.ex;
    this.agent = agent;
    if (handle !== undefined) {
      this.h = handle;
    } else {
      this.check(this.ex.doc_new(agent, core.slot), 'doc_new', false);
      this.h = core.u32(core.slot);
      assert.notEqual(this.h, 0);
    }
  }
  static load(core, agent, bytes) {
    const rc = core.withBytes(bytes, (p, n) =>
      core.ex.doc_load(agent, p, n, core.slot, core.slot + 4));
    const h = core.u32(core.slot);
    if (rc !== 0) {
      assert.equal(h, 0, 'doc_load failed but returned a document');
      const msgPtr = core.u32(core.slot + 4);
      return { err: rc, msg: msgPtr ? core.cstr(msgPtr) : '' };
    }
    return new Doc(core, agent, h);
  }
  free() { this.ex.doc_free(this.h); this.h = 0; }
  error() { return this.core.cstr(this.ex.doc_error(this.h)); }
  check(rc, what, withDoc = true) {
    if (rc !== 0) {
      const name = this.core.cstr(this.ex.strerror(rc));
      const msg = withDoc ? this.error() : '';
      assert.fail(`${what} failed: ${name} (${rc}) ${msg}`);
    }
  }
  root(kind, name) {
    const rc = this.core.withBytes(enc.encode(name), (p, n) =>
      this.ex.root(this.h, kind, p, n, this.core.slot));
    this.check(rc, `root ${name}`);
    return this.core.u32(this.core.slot);
  }
  textInsert(obj, pos, str) {
    return this.core.withBytes(enc.encode(str), (p, n) =>
      this.ex.text_insert(this.h, obj, pos, p, n));
  }
  textDelete(obj, pos, count) { return this.ex.text_delete(this.h, obj, pos, count); }
  textLength(obj) { return this.ex.text_length(this.h, obj) >>> 0; }
  text(obj) {
    this.check(this.ex.text_get(this.h, obj, this.core.slot), 'text_get');
    const bytes = this.core.takeBuf(this.h, 'text_get');
    return bytes ? dec.decode(bytes) : '';
  }
  /* Writes scalar values (JS null/boolean/number/bigint/string) as
   * td_crdt_value records; returns [ptr, strings to free]. */
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
      else if (typeof v === 'number') type = VT.FLOAT;
      else { type = VT.STR; str = enc.encode(v); }
      const sp = str ? core.put(str) : 0;
      if (sp) owned.push(sp);
      const dv = core.dv;
      dv.setUint32(at, type, true);
      dv.setUint32(at + 4, 0, true);
      dv.setBigUint64(at + 8, 0n, true);
      if (type === VT.INT) dv.setBigInt64(at + 8, v, true);
      if (type === VT.FLOAT) dv.setFloat64(at + 8, v, true);
      if (type === VT.STR) { dv.setUint32(at + 8, sp, true); dv.setUint32(at + 12, str.length, true); }
    });
    return [ptr, owned];
  }
  readValue(at) {
    const dv = this.core.dv;
    switch (dv.getUint32(at, true)) {
      case VT.NONE: return undefined;
      case VT.NULL: return null;
      case VT.FALSE: return false;
      case VT.TRUE: return true;
      case VT.INT: return dv.getBigInt64(at + 8, true);
      case VT.FLOAT: return dv.getFloat64(at + 8, true);
      case VT.STR: {
        const p = dv.getUint32(at + 8, true), n = dv.getUint32(at + 12, true);
        return dec.decode(this.core.u8.subarray(p, p + n));
      }
      case VT.OBJ: return { kind: dv.getUint32(at + 4, true), obj: dv.getUint32(at + 8, true) };
      default: assert.fail(`bad value type ${dv.getUint32(at, true)}`);
    }
  }
  listInsert(list, pos, values) {
    const [ptr, owned] = this.putValues(values);
    try {
      this.check(this.ex.list_insert(this.h, list, pos, ptr, values.length), 'list_insert');
    } finally {
      owned.forEach((p) => this.ex.free(p));
      this.ex.free(ptr);
    }
  }
  listDelete(list, pos, count) {
    this.check(this.ex.list_delete(this.h, list, pos, count), 'list_delete');
  }
  listLength(list) { return this.ex.list_length(this.h, list) >>> 0; }
  list(list) {
    const out = [];
    for (let i = 0; i < this.listLength(list); i++) {
      this.check(this.ex.list_get(this.h, list, i, this.core.slot), 'list_get');
      out.push(this.readValue(this.core.slot));
    }
    return out;
  }
  mapSet(map, key, value) {
    const [ptr, owned] = this.putValues([value]);
    try {
      const rc = this.core.withBytes(enc.encode(key), (p, n) =>
        this.ex.map_set(this.h, map, p, n, ptr));
      this.check(rc, `map_set ${key}`);
    } finally {
      owned.forEach((p) => this.ex.free(p));
      this.ex.free(ptr);
    }
  }
  mapSetObj(map, key, kind) {
    const rc = this.core.withBytes(enc.encode(key), (p, n) =>
      this.ex.map_set_obj(this.h, map, p, n, kind, this.core.slot));
    this.check(rc, `map_set_obj ${key}`);
    return this.core.u32(this.core.slot);
  }
  mapDelete(map, key) {
    const rc = this.core.withBytes(enc.encode(key), (p, n) =>
      this.ex.map_delete(this.h, map, p, n));
    this.check(rc, `map_delete ${key}`);
  }
  mapGet(map, key) {
    const rc = this.core.withBytes(enc.encode(key), (p, n) =>
      this.ex.map_get(this.h, map, p, n, this.core.slot));
    this.check(rc, `map_get ${key}`);
    return this.readValue(this.core.slot);
  }
  /* Entries in key order, read through map_size/map_entry. */
  mapEntries(map) {
    const out = [];
    const n = this.ex.map_size(this.h, map) >>> 0;
    const keySlot = this.core.slot + 16;
    for (let i = 0; i < n; i++) {
      this.check(this.ex.map_entry(this.h, map, i, keySlot, this.core.slot), 'map_entry');
      const kp = this.core.u32(keySlot), kn = this.core.u32(keySlot + 4);
      const key = dec.decode(this.core.u8.subarray(kp, kp + kn));
      out.push([key, this.readValue(this.core.slot)]);
    }
    return out;
  }
  bufCall(name, ...args) {
    this.check(this.ex[name](this.h, ...args, this.core.slot), name);
    return this.core.takeBuf(this.h, name);
  }
  commit() { return this.bufCall('commit'); }
  snapshot() { return this.bufCall('snapshot_encode'); }
  vv() { return this.bufCall('vv_encode') ?? new Uint8Array(0); }
  json() { return dec.decode(this.bufCall('to_json')); }
  diff(vv) {
    const rc = this.core.withBytes(vv, (p, n) => this.ex.diff(this.h, p, n, this.core.slot));
    this.check(rc, 'diff');
    return this.core.takeBuf(this.h, 'diff');
  }
  /* Returns {rc, applied, duplicate, parked}. */
  apply(batch) {
    const info = this.core.slot + 8;
    const rc = this.core.withBytes(batch, (p, n) => this.ex.apply(this.h, p, n, info));
    return {
      rc,
      applied: this.core.u32(info),
      duplicate: this.core.u32(info + 4),
      parked: this.core.dv.getInt32(info + 8, true),
    };
  }
  pending() { return this.ex.pending_ops(this.h) >>> 0; }
  opCount() { return BigInt.asUintN(64, this.ex.op_count(this.h)); }
}

function bytesEqual(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

test('the module imports nothing and exports the binding', () => {
  assert.deepEqual(WebAssembly.Module.imports(module), [],
    'tandem_crdt.wasm must be instantiable with an empty import object');
  const names = WebAssembly.Module.exports(module).map((e) => e.name);
  for (const want of ['memory', 'abi_version', 'alloc', 'free', 'doc_new', 'doc_load',
    'doc_free', 'root', 'text_insert', 'text_delete', 'text_length', 'text_get',
    'list_insert', 'map_set', 'commit', 'apply', 'vv_encode', 'diff',
    'snapshot_encode', 'to_json', 'doc_error', 'strerror']) {
    assert.ok(names.includes(want), `missing export ${want}`);
  }
  const core = new Core();
  assert.equal(core.ex.abi_version(), 2);
  assert.equal(core.cstr(core.ex.strerror(0)), 'ok');
});

for (const seed of SEEDS) {
  test(`random text history matches a JS mirror (seed ${seed})`, () => {
    const rnd = prng(seed);
    const core = new Core();
    const doc = new Doc(core, 0x1000n + BigInt(seed));
    const text = doc.root(KIND.TEXT, 'body');
    const mirror = []; /* one code point per element */
    const STEPS = 4000, CHECK_EVERY = 50;
    let inserted = 0;

    for (let step = 1; step <= STEPS; step++) {
      const where = `seed ${seed}, step ${step}`;
      if (mirror.length === 0 || rnd() < 0.6) {
        /* Mostly typing at the end or near the last spot, sometimes a paste. */
        const pos = rnd() < 0.3 ? mirror.length : rnd.int(mirror.length + 1);
        const cps = randomCodePoints(rnd, rnd() < 0.05 ? 40 : 6);
        assert.equal(doc.textInsert(text, pos, cps.join('')), 0,
          `${where}: insert failed: ${doc.error()}`);
        mirror.splice(pos, 0, ...cps);
        inserted += cps.length;
      } else {
        const pos = rnd.int(mirror.length);
        const count = 1 + rnd.int(Math.min(8, mirror.length - pos));
        assert.equal(doc.textDelete(text, pos, count), 0,
          `${where}: delete failed: ${doc.error()}`);
        mirror.splice(pos, count);
      }
      if (rnd() < 0.05) {
        assert.ok(doc.commit() !== null, `${where}: commit after edits is empty`);
      }
      if (step % CHECK_EVERY === 0 || step === STEPS) {
        assert.equal(doc.textLength(text), mirror.length, `${where}: length`);
        assert.equal(doc.text(text), mirror.join(''), `${where}: content`);
      }
    }
    assert.ok(inserted > STEPS, 'the history inserted a fair amount of text');
    assert.ok(mirror.length > 0);

    /* Out-of-range and malformed edits fail and change nothing. */
    const before = doc.text(text);
    assert.equal(doc.textDelete(text, mirror.length, 1), ERR_ARG, 'delete past the end');
    assert.equal(doc.textInsert(text, mirror.length + 1, 'x'), ERR_ARG, 'insert past the end');
    assert.ok(doc.error().length > 0, 'an error comes with a message');
    const badUtf8 = core.withBytes(Uint8Array.of(0x61, 0xc3), (p, n) =>
      doc.ex.text_insert(doc.h, text, 0, p, n));
    assert.notEqual(badUtf8, 0, 'truncated UTF-8 is rejected');
    assert.equal(doc.text(text), before, 'failed edits left the text unchanged');

    /* The whole history survives a snapshot. */
    const snap = doc.snapshot();
    const copy = Doc.load(core, 0x2000n + BigInt(seed), snap);
    assert.ok(copy instanceof Doc, `doc_load: ${copy.msg}`);
    assert.equal(copy.text(copy.root(KIND.TEXT, 'body')), mirror.join(''));
    copy.free();
    doc.free();
  });

  test(`two replicas exchanging late, reordered, duplicated batches converge (seed ${seed})`, () => {
    const rnd = prng(seed * 7919);
    const core = new Core();
    const agents = [0xa11ce000n + BigInt(seed), 0xb0b00000n + BigInt(seed)];
    const docs = agents.map((a) => new Doc(core, a));
    const objs = docs.map((d) => ({
      text: d.root(KIND.TEXT, 'body'),
      list: d.root(KIND.LIST, 'items'),
      meta: d.root(KIND.MAP, 'meta'),
    }));
    const inbox = [[], []]; /* batches waiting for delivery to replica i */
    let sent = 0;

    /* A nested text made by replica 0, then edited by both. */
    const notes0 = docs[0].mapSetObj(objs[0].meta, 'notes', KIND.TEXT);
    assert.equal(docs[0].textInsert(notes0, 0, 'nested é'), 0);
    const first = docs[0].commit();
    assert.equal(docs[1].apply(first).rc, 0, docs[1].error());
    const nv = docs[1].mapGet(objs[1].meta, 'notes');
    assert.equal(nv.kind, KIND.TEXT, 'nested object arrived as a text');
    const notes = [notes0, nv.obj];
    assert.equal(docs[1].text(notes[1]), 'nested é');

    const edit = (i) => {
      const d = docs[i], o = objs[i];
      const r = rnd();
      if (r < 0.45) {
        const pos = rnd.int(d.textLength(o.text) + 1);
        assert.equal(d.textInsert(o.text, pos, randomCodePoints(rnd, 5).join('')), 0, d.error());
      } else if (r < 0.6) {
        const len = d.textLength(o.text);
        if (len > 0) {
          const pos = rnd.int(len);
          assert.equal(d.textDelete(o.text, pos, 1 + rnd.int(Math.min(4, len - pos))), 0, d.error());
        }
      } else if (r < 0.7) {
        const pos = rnd.int(d.textLength(notes[i]) + 1);
        assert.equal(d.textInsert(notes[i], pos, rnd.pick(ALPHABET)), 0, d.error());
      } else if (r < 0.8) {
        const vals = [BigInt(rnd.int(1000)) - 500n, rnd.pick(['x', 'ü', '漢字', '']), rnd() * 10,
          rnd() < 0.5, null];
        d.listInsert(o.list, rnd.int(d.listLength(o.list) + 1), [rnd.pick(vals)]);
      } else if (r < 0.85) {
        const len = d.listLength(o.list);
        if (len > 0) d.listDelete(o.list, rnd.int(len), 1);
      } else if (r < 0.97) {
        const key = rnd.pick(['title', 'owner', 'n', 'done', 'ключ']);
        d.mapSet(o.meta, key, rnd.pick([BigInt(rnd.int(100)), `v${rnd.int(100)}`, rnd() < 0.5, null, 1.5]));
      } else {
        const key = rnd.pick(['title', 'owner', 'n', 'done', 'ключ']);
        if (d.mapGet(o.meta, key) !== undefined) d.mapDelete(o.meta, key);
      }
    };
    const deliverOne = (i) => {
      const q = inbox[i];
      if (q.length === 0) return;
      /* Usually the oldest, sometimes any (out of order), sometimes twice. */
      const k = rnd() < 0.7 ? 0 : rnd.int(q.length);
      const batch = rnd() < 0.1 ? q[k] : q.splice(k, 1)[0];
      const res = docs[i].apply(batch);
      assert.equal(res.rc, 0, `seed ${seed}: apply on replica ${i}: ${docs[i].error()}`);
    };

    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < 2; i++) {
        const n = 1 + rnd.int(5);
        for (let k = 0; k < n; k++) edit(i);
        if (rnd() < 0.6) {
          const b = docs[i].commit();
          if (b) { inbox[1 - i].push(b); sent++; }
        }
      }
      for (let i = 0; i < 2; i++) if (rnd() < 0.5) deliverOne(i);
    }
    for (let i = 0; i < 2; i++) {
      const b = docs[i].commit();
      if (b) { inbox[1 - i].push(b); sent++; }
    }
    /* Deliver the rest newest first: dependencies arrive after their users. */
    for (let i = 0; i < 2; i++) {
      while (inbox[i].length) {
        const res = docs[i].apply(inbox[i].pop());
        assert.equal(res.rc, 0, `seed ${seed}: final apply on replica ${i}: ${docs[i].error()}`);
      }
    }
    assert.ok(sent > 100, 'enough batches went across');
    for (let i = 0; i < 2; i++) assert.equal(docs[i].pending(), 0, `replica ${i} has parked ops`);

    const [a, b] = docs;
    assert.equal(a.opCount(), b.opCount(), 'same number of ops');
    assert.equal(a.text(objs[0].text), b.text(objs[1].text), `seed ${seed}: texts differ`);
    assert.equal(a.text(notes[0]), b.text(notes[1]), `seed ${seed}: nested texts differ`);
    assert.deepEqual(a.list(objs[0].list), b.list(objs[1].list), `seed ${seed}: lists differ`);
    /* Handles are local to a replica: compare nested objects by kind. */
    const entries = (d, m) => d.mapEntries(m).map(([k, v]) =>
      [k, v !== null && typeof v === 'object' ? `obj:${v.kind}` : v]);
    assert.deepEqual(entries(a, objs[0].meta), entries(b, objs[1].meta), `seed ${seed}: maps differ`);
    const json = a.json();
    assert.equal(json, b.json(), `seed ${seed}: JSON differs`);
    const parsed = JSON.parse(json);
    assert.equal(typeof parsed.body, 'string');
    assert.ok(Array.isArray(parsed.items));
    assert.ok(bytesEqual(a.snapshot(), b.snapshot()), `seed ${seed}: snapshots differ`);

    /* A third replica catches up from nothing through diff(vv). */
    const c = new Doc(core, 0xc0ffeen);
    const gap = a.diff(c.vv());
    assert.ok(gap, 'a fresh replica lacks everything');
    assert.equal(c.apply(gap).rc, 0, c.error());
    assert.equal(c.json(), json);
    assert.equal(a.diff(c.vv()), null, 'nothing is missing after the catch-up');
    assert.ok(bytesEqual(c.snapshot(), a.snapshot()), 'the caught-up snapshot is identical');
    /* Re-applying what it already has changes nothing. */
    const again = c.apply(gap);
    assert.equal(again.rc, 0);
    assert.equal(again.applied, 0, 'a duplicate batch applies no op');
    assert.equal(c.json(), json);
    for (const d of [a, b, c]) d.free();
  });
}

test('a snapshot round-trips through doc_load and the copy keeps editing', () => {
  const core = new Core();
  const a = new Doc(core, 0x5eedn);
  const text = a.root(KIND.TEXT, 'body');
  const list = a.root(KIND.LIST, 'cards');
  const meta = a.root(KIND.MAP, 'meta');
  assert.equal(a.textInsert(text, 0, 'Hello, wörld 漢字 😀!'), 0);
  assert.equal(a.textDelete(text, 5, 1), 0);
  a.listInsert(list, 0, [1n, 'two', 3.25, true, null]);
  a.mapSet(meta, 'title', 'Plan');
  a.mapSet(meta, 'n', -42n);
  const sub = a.mapSetObj(meta, 'tags', KIND.LIST);
  a.listInsert(sub, 0, ['a', 'b']);
  assert.ok(a.commit());

  const snap = a.snapshot();
  const b = Doc.load(core, 0x5eedbn, snap);
  assert.ok(b instanceof Doc, `doc_load: ${b.msg}`);
  assert.equal(b.json(), a.json());
  assert.ok(bytesEqual(b.snapshot(), snap), 'a loaded replica re-encodes to the same bytes');
  const bt = b.root(KIND.TEXT, 'body');
  assert.equal(b.text(bt), 'Hello wörld 漢字 😀!');
  assert.equal(b.textLength(bt), [...'Hello wörld 漢字 😀!'].length);
  assert.deepEqual(b.list(b.root(KIND.LIST, 'cards')), [1n, 'two', 3.25, true, null]);
  assert.deepEqual(b.mapEntries(b.root(KIND.MAP, 'meta')).map(([k]) => k), ['n', 'tags', 'title']);

  /* The copy edits on, and its batch applies on the original. */
  assert.equal(b.textInsert(bt, b.textLength(bt), ' more'), 0);
  assert.equal(a.apply(b.commit()).rc, 0, a.error());
  assert.equal(a.text(text), 'Hello wörld 漢字 😀! more');
  assert.ok(bytesEqual(a.snapshot(), b.snapshot()));

  /* Truncated or corrupted snapshots are refused with a message. */
  for (const cut of [0, 1, snap.length >> 1, snap.length - 1]) {
    const r = Doc.load(core, 1n, snap.subarray(0, cut));
    assert.ok(!(r instanceof Doc), `a snapshot cut at ${cut} bytes loaded`);
    assert.ok(r.msg.length > 0, 'refusal comes with a message');
  }
  const bad = Uint8Array.from(snap);
  bad[0] ^= 0xff;
  const r = Doc.load(core, 1n, bad);
  if (r instanceof Doc) r.free(); /* a flipped byte may still decode; it must not crash */

  /* A garbage batch is rejected and changes nothing. */
  const before = a.snapshot();
  const garbage = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);
  assert.notEqual(a.apply(garbage).rc, 0, 'garbage applied');
  assert.ok(bytesEqual(a.snapshot(), before), 'a rejected batch left the document unchanged');
  for (const d of [a, b]) d.free();
});
