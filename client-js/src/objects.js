/*
 * objects.js -- Text, List and TMap: the JS faces of the core's objects.
 *
 * A wrapper holds the core's handle of its object and forwards every call to
 * the document, which applies it at once and commits it (or, inside
 * doc.transact, at the end of the transaction). Text positions and lengths
 * are UTF-16 code units, like JS strings and editors; the core counts code
 * points. To convert without a copy of the content (rebuilding one on every
 * edit costs time in proportion to the document), each Text keeps only the
 * positions of its characters outside the BMP (`_astral`, sorted code point
 * positions; empty for most texts, and then the two counts agree), which
 * doc.js updates from the core's change events. toString() reads the text
 * from the core and keeps it until the next change.
 *
 * Values: null, booleans, numbers (safe integers are stored as 64-bit
 * integers, others as floats), bigints and strings are scalars; a plain
 * array or object given to set/insert/push becomes a nested list or map
 * (recursively), and setText/insertText create nested texts. Reading a
 * nested object gives its wrapper.
 */
import { Emitter } from './emitter.js';
import { KIND } from './core.js';

const EMPTY = Object.freeze([]);
const HAS_ASTRAL = /[\uD800-\uDBFF]/;

/* Code point positions (from base) of the characters of str outside the
 * BMP; EMPTY when there are none. */
export function astralOf(str, base = 0) {
  if (!HAS_ASTRAL.test(str)) return EMPTY;
  const out = [];
  for (let i = 0, cp = base; i < str.length; cp++) {
    const c = str.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < str.length) { out.push(cp); i += 2; } else i++;
  }
  return out;
}

/* Number of entries of the sorted array a below x. */
function below(a, x) {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
  return lo;
}

/* Code point position -> UTF-16 offset, given a text's astral positions. */
export function u16Of(astral, cp) { return astral.length ? cp + below(astral, cp) : cp; }

/* Code points in str (its length less its surrogate pairs). */
export function cpCount(str) {
  if (!HAS_ASTRAL.test(str)) return str.length;
  return str.length - astralOf(str).length;
}

/* Astral positions after n code points with astral positions `ins` (from
 * 0) were inserted at pos / n were deleted at pos. New arrays: the old one
 * stays the state before, which change events need. */
export function astralInsert(a, pos, n, ins) {
  if (!a.length && !ins.length) return EMPTY;
  const k = below(a, pos);
  const out = a.slice(0, k);
  for (const x of ins) out.push(pos + x);
  for (let i = k; i < a.length; i++) out.push(a[i] + n);
  return out;
}
export function astralDelete(a, pos, n) {
  if (!a.length) return a;
  const k = below(a, pos), j = below(a, pos + n);
  if (k === j && j === a.length) return a;
  const out = a.slice(0, k);
  for (let i = j; i < a.length; i++) out.push(a[i] - n);
  return out.length ? out : EMPTY;
}

function isScalar(v) {
  return v === null || typeof v === 'boolean' || typeof v === 'number' ||
    typeof v === 'bigint' || typeof v === 'string';
}

function checkIndex(i, max, what) {
  if (!Number.isInteger(i) || i < 0 || i > max) {
    throw new RangeError(`${what} ${i} is out of range (0..${max})`);
  }
}

class TObject extends Emitter {
  constructor(doc, h, root) {
    super();
    this.doc = doc;
    this._h = h;
    this._root = root; /* {kind, name} for roots, re-resolved after a rebuild */
    this._detached = false;
  }
  get _core() {
    if (this._detached) throw new Error('this object belonged to a replica that was rebuilt');
    return this.doc._core;
  }
  /* How an anchor names this object on every replica: roots by kind and
   * name, nested objects by the op that created them. */
  _ref() {
    if (this._root) return { kind: this.kind, root: this._root.name };
    const id = this._core.objId(this._h);
    return { kind: this.kind, obj: `${id.agent}:${id.seq}` };
  }
  /* Index (UTF-16 for texts) <-> core position (code points for texts). */
  _cp(index) { return index; }
  _u16(cp) { return cp; }
  _coreLength() { return this.length; }
  /* A position tied to the item at index (assoc >= 0: the position stays
   * before that item; assoc < 0: after the item before index), which
   * doc.resolve() maps back to an index after any concurrent edits. A plain
   * JSON-serializable object, so it can travel in presence. */
  anchor(index, assoc = 0) {
    checkIndex(index, this.length, `${this.kind}.anchor index`);
    const cp = this._cp(index, 'index');
    const at = assoc < 0 ? cp - 1 : cp;
    let item = null;
    if (at >= 0 && at < this._coreLength()) {
      const id = this._core.idAt(this._h, at);
      item = `${id.agent}:${id.seq}`;
    }
    return { ...this._ref(), item, assoc: assoc < 0 ? -1 : 1 };
  }
  /* The current index of an anchor of this object (see Doc.resolve). */
  _resolve(a) {
    if (a.item == null) return a.assoc < 0 ? 0 : this.length;
    const id = parseId(a.item);
    if (!id) return null;
    const [sp] = this._core.spans(this._h, id.agent, id.seq, 1);
    if (!sp || sp.missing) return null;
    return this._u16(sp.vis + (a.assoc < 0 && !sp.deleted ? 1 : 0));
  }
}

/* "agent:seq" -> {agent: bigint, seq} (null if malformed). */
export function parseId(s) {
  const m = /^(\d{1,20}):(\d{1,10})$/.exec(String(s));
  if (!m) return null;
  const agent = BigInt(m[1]), seq = Number(m[2]);
  if (agent >= 1n << 64n || seq > 0x7fffffff) return null;
  return { agent, seq };
}

export class Text extends TObject {
  constructor(doc, h, root) {
    super(doc, h, root);
    this.kind = 'text';
    this._hint = null; /* the string of the last local insert, at _hintPos, for doc.js */
    this._hintPos = 0;
    this._reload();
  }
  /* Re-reads everything (a new wrapper, a rebuilt replica). */
  _reload() {
    const s = this._core.text(this._h);
    this._cache = s;
    this._astral = astralOf(s);
  }
  get length() { return this._core.textLength(this._h) + this._astral.length; }
  _coreLength() { return this._core.textLength(this._h); }
  /* UTF-16 offset -> code point position (checked). */
  _cp(index, what = 'index') {
    const a = this._astral, cps = this._core.textLength(this._h);
    if (!Number.isInteger(index) || index < 0 || index > cps + a.length) {
      throw new RangeError(`${what} ${index} is outside the text (length ${cps + a.length})`);
    }
    if (!a.length) return index;
    /* the k-th astral character starts at UTF-16 offset a[k] + k */
    let lo = 0, hi = a.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] + mid < index) lo = mid + 1; else hi = mid; }
    if (lo > 0 && a[lo - 1] + lo === index) throw new RangeError(`${what} ${index} splits a surrogate pair`);
    return index - lo;
  }
  _u16(cp) { return u16Of(this._astral, cp); }
  toString() { return (this._cache ??= this._core.text(this._h)); }
  toJSON() { return this.toString(); }
  insert(index, str) {
    if (typeof str !== 'string') throw new TypeError('text.insert needs a string');
    const cp = this._cp(index);
    if (str.length === 0) return;
    if (!str.isWellFormed()) throw new TypeError('text.insert: string has a lone surrogate');
    const doc = this.doc;
    doc._begin();
    try { this._insertCp(cp, str); } finally { doc._end(); }
  }
  delete(index, length = 1) {
    const from = this._cp(index);
    const to = this._cp(index + length, 'end');
    if (to <= from) return;
    const doc = this.doc;
    doc._begin();
    try { this._deleteCp(from, to - from); } finally { doc._end(); }
  }
  /* The edits in core positions (code points), inside an _edit; also used
   * by the undo manager. */
  _insertCp(cp, str) {
    const rec = this.doc._recordStart();
    this._core.textInsert(this._h, cp, str);
    /* kept current at once: the next edit of a transaction converts with it */
    const ins = astralOf(str);
    this._astral = astralInsert(this._astral, cp, str.length - ins.length, ins);
    this._cache = null;
    this._hint = str;
    this._hintPos = cp;
    if (rec) this.doc._recordInsert(this, rec);
  }
  _deleteCp(cp, n) {
    const rec = this.doc._recordStart() && this.doc._captureDelete(this, cp, n);
    this._core.textDelete(this._h, cp, n);
    this._astral = astralDelete(this._astral, cp, n);
    this._cache = null;
    if (rec) this.doc._record(rec);
  }
  /* Undo: content captured by _captureDelete, put back right after item
   * `after` (a tombstone), which is visible position cp. */
  _restoreCp(cp, content, after) {
    this._core.placeAfter(this._h, after);
    try { this._insertCp(cp, content); } finally { this._core.placeAfter(0, null); }
  }
  /* Replaces the range [index, index + length) with str, as one batch. */
  replace(index, length, str) {
    this.doc.transact(() => { this.delete(index, length); this.insert(index, str); });
  }
}

export class List extends TObject {
  constructor(doc, h, root) {
    super(doc, h, root);
    this.kind = 'list';
  }
  get length() { return this._core.listLength(this._h); }
  get(index) {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined;
    return this.doc._value(this._core.listGet(this._h, index));
  }
  toArray() {
    const n = this.length, out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.doc._value(this._core.listGet(this._h, i));
    return out;
  }
  toJSON() { return this.toArray().map(toJSONValue); }
  insert(index, ...values) {
    checkIndex(index, this.length, 'list index');
    this.doc._edit(() => this._insertAt(index, values));
  }
  _insertAt(index, values) {
    const rec = this.doc._recordStart();
    {
      let at = index, run = [];
      const flush = () => {
        if (run.length) { this._core.listInsert(this._h, at, run); at += run.length; run = []; }
      };
      for (const v of values) {
        if (isScalar(v)) { run.push(v); continue; }
        flush();
        if (Array.isArray(v)) fillList(this.doc, this._core.listInsertObj(this._h, at, KIND.list), v);
        else if (isPlainObject(v)) fillMap(this.doc, this._core.listInsertObj(this._h, at, KIND.map), v);
        else throw new TypeError(`list.insert: unsupported value ${String(v)}`);
        at++;
      }
      flush();
    }
    if (rec) this.doc._recordInsert(this, rec);
  }
  _insertCp(cp, values) { this._insertAt(cp, values); }
  _deleteCp(cp, n) {
    const rec = this.doc._recordStart() && this.doc._captureDelete(this, cp, n);
    this._core.listDelete(this._h, cp, n);
    if (rec) this.doc._record(rec);
  }
  /* Undo: values captured by _captureDelete (snapValue), put back at cp. */
  _restoreCp(cp, snaps, after) {
    const rec = this.doc._recordStart();
    const agent = this.doc.agent;
    try {
      snaps.forEach((sv, i) => {
        /* each element after the one before it */
        const seq = this._core.vvGet(agent);
        this._core.placeAfter(this._h, after);
        putListValue(this.doc, this._h, cp + i, sv);
        after = { agent, seq };
      });
    } finally { this._core.placeAfter(0, null); }
    if (rec) this.doc._recordInsert(this, rec);
  }
  push(...values) { this.insert(this.length, ...values); }
  delete(index, count = 1) {
    checkIndex(index, this.length, 'list index');
    checkIndex(index + count, this.length, 'list end');
    if (count === 0) return;
    this.doc._edit(() => this._deleteCp(index, count));
  }
  /* Nested objects created in place; each returns its wrapper. */
  insertText(index, str = '') { return this._insertObj(index, 'text', str); }
  insertList(index, items = []) { return this._insertObj(index, 'list', items); }
  insertMap(index, entries = {}) { return this._insertObj(index, 'map', entries); }
  _insertObj(index, kind, init) {
    checkIndex(index, this.length, 'list index');
    let h;
    this.doc._edit(() => {
      const rec = this.doc._recordStart();
      h = this._core.listInsertObj(this._h, index, KIND[kind]);
      fillObj(this.doc, h, kind, init);
      if (rec) this.doc._recordInsert(this, rec);
    });
    return this.doc._wrap(h, KIND[kind]);
  }
}

export class TMap extends TObject {
  constructor(doc, h, root) {
    super(doc, h, root);
    this.kind = 'map';
  }
  get size() { return this._core.mapEntries(this._h).length; }
  get(key) { return this.doc._value(this._core.mapGet(this._h, checkKey(key))); }
  has(key) { return this._core.mapGet(this._h, checkKey(key)) !== undefined; }
  keys() { return this._core.mapEntries(this._h).map(([k]) => k); }
  entries() { return this._core.mapEntries(this._h).map(([k, v]) => [k, this.doc._value(v)]); }
  toJSON() {
    const out = {};
    for (const [k, v] of this.entries()) out[k] = toJSONValue(v);
    return out;
  }
  set(key, value) {
    checkKey(key);
    if (value === undefined) throw new TypeError('map.set: undefined is not a value (use delete)');
    if (isScalar(value)) {
      this.doc._edit(() => this._write(key, () => this._core.mapSet(this._h, key, value)));
      return;
    }
    if (Array.isArray(value)) { this.setList(key, value); return; }
    if (isPlainObject(value)) { this.setMap(key, value); return; }
    throw new TypeError(`map.set: unsupported value ${String(value)}`);
  }
  delete(key) {
    checkKey(key);
    this.doc._edit(() => this._write(key, () => this._core.mapDelete(this._h, key)));
  }
  setText(key, str = '') { return this._setObj(key, 'text', str); }
  setList(key, items = []) { return this._setObj(key, 'list', items); }
  setMap(key, entries = {}) { return this._setObj(key, 'map', entries); }
  _setObj(key, kind, init) {
    checkKey(key);
    let h;
    this.doc._edit(() => this._write(key, () => {
      h = this._core.mapSetObj(this._h, key, KIND[kind]);
      fillObj(this.doc, h, kind, init);
    }));
    return this.doc._wrap(h, KIND[kind]);
  }
  /* One write of key (fn), recorded for undo with the value it replaced. */
  _write(key, fn) {
    const rec = this.doc._recordStart();
    const prev = rec ? snapValue(this.get(key)) : undefined;
    const prevId = rec ? this._core.mapKeyId(this._h, key) : null;
    const seq = rec ? this._core.vvGet(this.doc.agent) : 0;
    fn();
    if (rec) this.doc._record({ t: 'map', w: this, key, prev, prevId, id: { agent: this.doc.agent, seq } });
  }
  /* Undo: writes a value captured by snapValue (undefined: deletes). */
  _restore(key, snap) {
    this._write(key, () => {
      if (snap === undefined) this._core.mapDelete(this._h, key);
      else putMapValue(this.doc, this._h, key, snap);
    });
  }
}

/* A value as it was, to be written again by undo: {v: scalar}, or the
 * content of a nested object ({text}, {list: [...]}, {map: {...}}); a
 * restored nested object is a new object with that content. */
export function snapValue(v) {
  if (v === undefined) return undefined;
  if (v instanceof Text) return { text: v.toString() };
  if (v instanceof List) return { list: v.toArray().map(snapValue) };
  if (v instanceof TMap) {
    const map = {};
    for (const [k, x] of v.entries()) map[k] = snapValue(x);
    return { map };
  }
  return { v };
}

function fillSnap(doc, h, sv) {
  if (sv.text !== undefined) { if (sv.text) doc._core.textInsert(h, 0, sv.text); } else if (sv.list) sv.list.forEach((x, i) => putListValue(doc, h, i, x));
  else for (const [k, x] of Object.entries(sv.map)) putMapValue(doc, h, k, x);
}
function snapKind(sv) { return sv.text !== undefined ? KIND.text : sv.list ? KIND.list : KIND.map; }
function putListValue(doc, h, at, sv) {
  if ('v' in sv) { doc._core.listInsert(h, at, [sv.v]); return; }
  fillSnap(doc, doc._core.listInsertObj(h, at, snapKind(sv)), sv);
}
function putMapValue(doc, h, key, sv) {
  if ('v' in sv) { doc._core.mapSet(h, key, sv.v); return; }
  fillSnap(doc, doc._core.mapSetObj(h, key, snapKind(sv)), sv);
}

function checkKey(key) {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('map keys are non-empty strings');
  return key;
}

function isPlainObject(v) {
  if (typeof v !== 'object' || v === null) return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/* Fills a freshly created nested object, inside the caller's _edit. */
function fillObj(doc, h, kind, init) {
  if (kind === 'text') { if (init) doc._core.textInsert(h, 0, String(init)); } else if (kind === 'list') fillList(doc, h, init);
  else fillMap(doc, h, init);
}

function fillList(doc, h, items) {
  let at = 0;
  for (const v of items) {
    if (isScalar(v)) doc._core.listInsert(h, at, [v]);
    else if (Array.isArray(v)) fillList(doc, doc._core.listInsertObj(h, at, KIND.list), v);
    else if (isPlainObject(v)) fillMap(doc, doc._core.listInsertObj(h, at, KIND.map), v);
    else throw new TypeError(`unsupported value ${String(v)}`);
    at++;
  }
}

function fillMap(doc, h, entries) {
  for (const [k, v] of Object.entries(entries)) {
    if (v === undefined) continue;
    if (isScalar(v)) doc._core.mapSet(h, k, v);
    else if (Array.isArray(v)) fillList(doc, doc._core.mapSetObj(h, k, KIND.list), v);
    else if (isPlainObject(v)) fillMap(doc, doc._core.mapSetObj(h, k, KIND.map), v);
    else throw new TypeError(`unsupported value ${String(v)}`);
  }
}

function toJSONValue(v) {
  if (v instanceof TObject) return v.toJSON();
  return v;
}
