/*
 * objects.js -- Text, List and TMap: the JS faces of the core's objects.
 *
 * A wrapper holds the core's handle of its object and forwards every call to
 * the document, which applies it at once and commits it (or, inside
 * doc.transact, at the end of the transaction). Text positions and lengths
 * are UTF-16 code units, like JS strings and editors; the core counts code
 * points, so each Text keeps a mirror of its content (`_str`) to convert.
 * The mirror is also what toString() returns, so reading is free.
 *
 * Values: null, booleans, numbers (safe integers are stored as 64-bit
 * integers, others as floats), bigints and strings are scalars; a plain
 * array or object given to set/insert/push becomes a nested list or map
 * (recursively), and setText/insertText create nested texts. Reading a
 * nested object gives its wrapper.
 */
import { Emitter } from './emitter.js';
import { KIND } from './core.js';

const SURROGATE = /[\uD800-\uDFFF]/;

/* cp -> UTF-16 offset converter for one string (identity without astral
 * characters, the common case). */
export function cpToU16(str) {
  if (!SURROGATE.test(str)) return (cp) => cp;
  const map = [0];
  for (let i = 0; i < str.length;) {
    const c = str.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < str.length ? 2 : 1;
    map.push(i);
  }
  return (cp) => map[cp] ?? str.length;
}

function u16ToCp(str, index, what) {
  if (!Number.isInteger(index) || index < 0 || index > str.length) {
    throw new RangeError(`${what} ${index} is outside the text (length ${str.length})`);
  }
  if (!SURROGATE.test(str)) return index;
  const c = str.charCodeAt(index - 1);
  if (index > 0 && index < str.length && c >= 0xd800 && c <= 0xdbff) {
    throw new RangeError(`${what} ${index} splits a surrogate pair`);
  }
  let cp = 0;
  for (let i = 0; i < index; i++) {
    const d = str.charCodeAt(i);
    if (!(d >= 0xdc00 && d <= 0xdfff && i > 0 && str.charCodeAt(i - 1) >= 0xd800 &&
          str.charCodeAt(i - 1) <= 0xdbff)) cp++;
  }
  return cp;
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
}

export class Text extends TObject {
  constructor(doc, h, root) {
    super(doc, h, root);
    this.kind = 'text';
    this._str = this._core.text(h);
  }
  get length() { return this._str.length; }
  toString() { return this._str; }
  toJSON() { return this._str; }
  insert(index, str) {
    if (typeof str !== 'string') throw new TypeError('text.insert needs a string');
    const cp = u16ToCp(this._str, index, 'index');
    if (str.length === 0) return;
    if (!str.isWellFormed()) throw new TypeError('text.insert: string has a lone surrogate');
    this.doc._edit(() => {
      this._core.textInsert(this._h, cp, str);
      this._str = this._str.slice(0, index) + str + this._str.slice(index);
    });
  }
  delete(index, length = 1) {
    const from = u16ToCp(this._str, index, 'index');
    const to = u16ToCp(this._str, index + length, 'end');
    if (to <= from) return;
    this.doc._edit(() => {
      this._core.textDelete(this._h, from, to - from);
      this._str = this._str.slice(0, index) + this._str.slice(index + length);
    });
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
    this.doc._edit(() => {
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
    });
  }
  push(...values) { this.insert(this.length, ...values); }
  delete(index, count = 1) {
    checkIndex(index, this.length, 'list index');
    checkIndex(index + count, this.length, 'list end');
    if (count === 0) return;
    this.doc._edit(() => this._core.listDelete(this._h, index, count));
  }
  /* Nested objects created in place; each returns its wrapper. */
  insertText(index, str = '') { return this._insertObj(index, 'text', str); }
  insertList(index, items = []) { return this._insertObj(index, 'list', items); }
  insertMap(index, entries = {}) { return this._insertObj(index, 'map', entries); }
  _insertObj(index, kind, init) {
    checkIndex(index, this.length, 'list index');
    let h;
    this.doc._edit(() => {
      h = this._core.listInsertObj(this._h, index, KIND[kind]);
      fillObj(this.doc, h, kind, init);
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
      this.doc._edit(() => this._core.mapSet(this._h, key, value));
      return;
    }
    if (Array.isArray(value)) { this.setList(key, value); return; }
    if (isPlainObject(value)) { this.setMap(key, value); return; }
    throw new TypeError(`map.set: unsupported value ${String(value)}`);
  }
  delete(key) {
    checkKey(key);
    this.doc._edit(() => this._core.mapDelete(this._h, key));
  }
  setText(key, str = '') { return this._setObj(key, 'text', str); }
  setList(key, items = []) { return this._setObj(key, 'list', items); }
  setMap(key, entries = {}) { return this._setObj(key, 'map', entries); }
  _setObj(key, kind, init) {
    checkKey(key);
    let h;
    this.doc._edit(() => {
      h = this._core.mapSetObj(this._h, key, KIND[kind]);
      fillObj(this.doc, h, kind, init);
    });
    return this.doc._wrap(h, KIND[kind]);
  }
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
