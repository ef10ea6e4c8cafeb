#!/usr/bin/env node
// gen_corpus.mjs -- writes the corpus of valid Yjs v1 updates that
// test_yjs_robust mutates: random edits by the npm yjs package
// (client-js/node_modules) on a few seeded documents.
//
//   node tests/yjs/gen_corpus.mjs OUTDIR [SCENARIOS]
//
// Each scenario has three peers (Y.Doc, one with a client id past 2^32),
// each editing its own replica of the roots "text" (Y.Text: inserts with
// astral and combining characters, deletes, formats, embeds), "array"
// (Y.Array: lib0 Any values of every kind, Uint8Array, nested Y.Map /
// Y.Array / Y.Text, deletes), "map" (Y.Map: sets, deletes, nested types,
// a subdocument) and "xml" (Y.XmlFragment: elements with attributes,
// XmlText, XmlHook), and syncing with each other at random. Scenario 1 is
// gc: false. Files per scenario s (all raw v1 updates unless said):
//
//   s<s>-u-<i>.bin   the updates of the peers' local transactions, in the
//                    order they were made (each depends only on earlier ones),
//   s<s>-d-<i>.bin   sync diffs Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)),
//   s<s>-m-<i>.bin   Y.mergeUpdates of runs of consecutive and of random sets
//                    of u updates (the latter may have gaps, i.e. Skip structs),
//   s<s>-f-<i>.bin   whole-document updates Y.encodeStateAsUpdate(peer) at
//                    checkpoints; the last one (f-99999) is the final synced doc,
//   s<s>-sv.bin      Y.encodeStateVector of that final doc (not an update).
//
// Same OUTDIR contents for the same script and yjs version (fixed client
// ids, subdocument guids and PRNG seeds).
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function loadYjs() {
  const base = process.env.TD_YJS_NODE_MODULES
    ? join(process.env.TD_YJS_NODE_MODULES, 'package.json')
    : new URL('../../client-js/package.json', import.meta.url).pathname;
  try {
    return createRequire(base)('yjs');
  } catch (e) {
    console.error(`gen_corpus: cannot load the npm package yjs from ${base} ` +
                  `(run npm ci --no-audit --no-fund in client-js/): ${e.message}`);
    process.exit(2);
  }
}
const Y = loadYjs();

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = ['a', 'bc', 'hello ', 'ß', 'é', 'e\u0301', '日本', '😀', '🎉x', '\n', '\t', 'word ',
                'Ω', '→', '"q"', '\\', '<b>', '\u0000', '\u2028'];

function scenario(s, steps, out) {
  const rnd = mulberry32(0x9e3779b9 ^ (s * 7919));
  const ri = (n) => Math.floor(rnd() * n);
  const pick = (arr) => arr[ri(arr.length)];
  const gc = s !== 1;
  const ids = [s * 10 + 1, s * 10 + 2, 4294967296 + s];
  const peers = ids.map((id) => {
    const doc = new Y.Doc({ gc });
    doc.clientID = id;
    return doc;
  });
  const REMOTE = 'remote';
  const u = [], d = [], m = [], f = [];
  for (const doc of peers)
    doc.on('update', (upd, origin) => { if (origin !== REMOTE) u.push(upd); });
  let subdocs = 0;

  const str = () => {
    let t = '';
    const n = 1 + ri(4);
    for (let k = 0; k < n; k++) t += pick(PIECES);
    return t;
  };
  const anyVal = (depth = 0) => {
    switch (ri(depth > 2 ? 8 : 11)) {
      case 0: return ri(1000) - 500;
      case 1: return rnd() * 1e6;
      case 2: return str();
      case 3: return rnd() < 0.5;
      case 4: return null;
      case 5: return 2 ** 40 + ri(1000);
      case 6: return new Uint8Array([ri(256), 0, 255, ri(256)]);
      case 7: return -0.5;
      case 8: { const o = {}; const n = ri(4); for (let k = 0; k < n; k++) o['k' + k + str().slice(0, 2)] = anyVal(depth + 1); return o; }
      case 9: { const a = []; const n = ri(4); for (let k = 0; k < n; k++) a.push(anyVal(depth + 1)); return a; }
      // Yjs takes a bigint only inside an object or array.
      default: return depth ? BigInt(ri(1 << 30)) * 12345n : -7;
    }
  };
  const newType = () => {
    switch (ri(3)) {
      case 0: { const t = new Y.Map(); t.set('x', anyVal()); return t; }
      case 1: { const t = new Y.Array(); t.insert(0, [anyVal(), anyVal()]); return t; }
      default: { const t = new Y.Text(); t.insert(0, str()); return t; }
    }
  };
  // Every shared type reachable from doc's roots (for nested edits).
  const types = (doc) => {
    const outT = [];
    const walk = (t, depth) => {
      if (depth > 6) return;
      outT.push(t);
      if (t instanceof Y.Array || t instanceof Y.XmlFragment || t instanceof Y.XmlElement) {
        for (const c of t.toArray()) if (c instanceof Y.AbstractType) walk(c, depth + 1);
      }
      if (t instanceof Y.Map || t instanceof Y.XmlElement) {
        for (const [, c] of t._map) {
          if (!c.deleted && c.content instanceof Y.ContentType) walk(c.content.type, depth + 1);
        }
      }
    };
    walk(doc.getText('text'), 0);
    walk(doc.getArray('array'), 0);
    walk(doc.getMap('map'), 0);
    walk(doc.getXmlFragment('xml'), 0);
    return outT;
  };
  const editText = (t) => {
    const len = t.length;
    const r = ri(10);
    if (r < 5 || len === 0) {
      const attrs = ri(4) === 0 ? { bold: true } : undefined;
      t.insert(ri(len + 1), str(), attrs);
    } else if (r < 8) {
      const at = ri(len);
      t.delete(at, 1 + ri(Math.min(5, len - at)));
    } else if (r < 9) {
      const at = ri(len);
      t.format(at, 1 + ri(Math.min(4, len - at)), pick([{ bold: true }, { italic: true }, { bold: null }, { color: '#f00' }]));
    } else {
      t.insertEmbed(ri(len + 1), { image: 'x.png', w: ri(100) });
    }
  };
  const editArray = (a) => {
    const len = a.length;
    const r = ri(10);
    if (r < 5 || len === 0) {
      const vals = [];
      const n = 1 + ri(3);
      for (let k = 0; k < n; k++) vals.push(anyVal());
      a.insert(ri(len + 1), vals);
    } else if (r < 7) {
      a.insert(ri(len + 1), [newType()]);
    } else {
      const at = ri(len);
      a.delete(at, 1 + ri(Math.min(3, len - at)));
    }
  };
  const editMap = (mp) => {
    const r = ri(10);
    const key = pick(['a', 'b', 'c', 'key', 'ключ', '😀', '']);
    if (r < 5) mp.set(key, anyVal());
    else if (r < 7) mp.set(key, newType());
    else if (r < 8 && subdocs < 2 && mp.doc && mp === mp.doc.getMap('map')) {
      mp.set('sub' + subdocs, new Y.Doc({ guid: `s${s}-subdoc-${subdocs}` }));
      subdocs++;
    } else mp.delete(key);
  };
  const editXml = (x) => {
    const len = x.length;
    const r = ri(10);
    if (r < 4 || len === 0) {
      const e = new Y.XmlElement(pick(['p', 'h1', 'li', 'span']));
      e.setAttribute('class', pick(['a', 'b']));
      const t = new Y.XmlText();
      t.insert(0, str());
      e.insert(0, [t]);
      x.insert(ri(len + 1), [e]);
    } else if (r < 6) {
      const t = new Y.XmlText();
      t.insert(0, str(), ri(2) ? { bold: true } : undefined);
      x.insert(ri(len + 1), [t]);
    } else if (r < 7) {
      x.insert(ri(len + 1), [new Y.XmlHook('hook')]);
    } else {
      x.delete(ri(len), 1);
    }
  };
  const edit = (doc) => {
    const ts = types(doc);
    const t = ri(3) === 0 ? pick(ts) : pick(ts.slice(0, 4));
    if (t instanceof Y.XmlText || t instanceof Y.Text) editText(t);
    else if (t instanceof Y.Array) editArray(t);
    else if (t instanceof Y.Map) editMap(t);
    else if (t instanceof Y.XmlElement) (ri(2) ? editXml(t) : t.setAttribute(pick(['id', 'class']), str()));
    else if (t instanceof Y.XmlFragment) editXml(t);
  };
  const sync = (a, b) => {
    const diff = Y.encodeStateAsUpdate(a, Y.encodeStateVector(b));
    d.push(diff);
    Y.applyUpdate(b, diff, REMOTE);
  };

  for (let step = 0; step < steps; step++) {
    const p = pick(peers);
    const r = ri(20);
    if (r < 14) {
      const n = 1 + (ri(4) === 0 ? ri(4) : 0);
      p.transact(() => { for (let k = 0; k < n; k++) edit(p); });
    } else if (r < 18) {
      const q = pick(peers);
      if (q !== p) sync(p, q);
    } else {
      f.push(Y.encodeStateAsUpdate(p));
    }
  }
  for (const a of peers) for (const b of peers) if (a !== b) sync(a, b);
  const sv0 = Y.encodeStateVector(peers[0]);
  for (const p of peers) {
    if (Buffer.compare(Buffer.from(Y.encodeStateVector(p)), Buffer.from(sv0)) !== 0)
      throw new Error(`scenario ${s}: peers did not converge`);
  }
  // Merged runs of consecutive updates, then random sets (gaps: Skip structs).
  for (let i = 0; i < u.length;) {
    const n = 2 + ri(7);
    m.push(Y.mergeUpdates(u.slice(i, i + n)));
    i += n;
  }
  for (let k = 0; k < 12; k++) {
    const set = u.filter(() => rnd() < 0.3);
    if (set.length) m.push(Y.mergeUpdates(set));
  }
  const write = (kind, list) => list.forEach((b, i) =>
    writeFileSync(join(out, `s${s}-${kind}-${String(i).padStart(5, '0')}.bin`), b));
  write('u', u);
  write('d', d);
  write('m', m);
  write('f', f);
  writeFileSync(join(out, `s${s}-f-99999.bin`), Y.encodeStateAsUpdate(peers[0]));
  writeFileSync(join(out, `s${s}-sv.bin`), sv0);
  return u.length + d.length + m.length + f.length + 1;
}

function main() {
  const out = process.argv[2];
  const count = Number(process.argv[3] || 6);
  if (!out || !Number.isInteger(count) || count < 1) {
    console.error('usage: node gen_corpus.mjs OUTDIR [SCENARIOS]');
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
  let files = 0;
  for (let s = 0; s < count; s++) files += scenario(s, 120 + 20 * s, out);
  console.log(`gen_corpus: ${files} updates of ${count} scenarios in ${out}`);
}

main();
