#!/usr/bin/env node
// make-updates.mjs -- the Yjs updates of an editing trace, made by the npm
// `yjs` package (client-js/node_modules), for tandem-yjs-bench and the
// yjs_traces test.
//
//   node bench/yjs/make-updates.mjs TRACE.json.gz OUT
//
// TRACE is an editing trace (../shared/traces/README.md), gzipped or plain.
// Sequential: one Y.Doc (clientID 1) with one Y.Text "text"; each txn's
// patches are applied in one doc.transact (code-point positions converted to
// UTF-16 offsets) and the update that transaction emits (doc.on('update'))
// is recorded. A non-empty startContent is one extra first update.
// Concurrent (kind "concurrent"): one Y.Doc per agent (clientID agent + 1);
// before an agent's txn, the updates of every txn in its causal history
// that its doc lacks are applied (in txn order), then the txn is applied
// locally and only the update of that local transaction is recorded.
// Either way record i depends only on records before it, so applying the
// records in order to an empty doc must yield endContent; the script checks
// that Yjs itself gets there before writing anything.
//
// OUT, all integers little-endian:
//   "TDYU1\n"                          magic (6 bytes)
//   one line of JSON, then "\n":       {"trace": file name,
//                                       "kind": "sequential" | "concurrent",
//                                       "endContent": the expected text,
//                                       "updates": N,
//                                       "yjs_bytes": length of OUT.full,
//                                       "yjs_ms": Yjs making the updates
//                                                 (the edits, merges, encoding),
//                                       "yjs_apply_ms": Yjs applying the N
//                                                 records to a fresh doc,
//                                       "yjs_load_ms": Yjs applying OUT.full
//                                                 to a fresh doc (best of 5)}
//   N records:                         uint32 length, then that many bytes
//                                      (one v1 update)
// OUT.full: Y.encodeStateAsUpdate of the final document (v1), raw.
//
// The yjs package is resolved from client-js/ (npm ci there), or from the
// directory in $TD_YJS_NODE_MODULES.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';

function loadYjs() {
  const base = process.env.TD_YJS_NODE_MODULES
    ? join(process.env.TD_YJS_NODE_MODULES, 'package.json')
    : new URL('../../client-js/package.json', import.meta.url).pathname;
  try {
    return createRequire(base)('yjs');
  } catch (e) {
    console.error(`make-updates: cannot load the npm package yjs from ${base} ` +
                  `(run npm ci --no-audit --no-fund in client-js/): ${e.message}`);
    process.exit(2);
  }
}
const Y = loadYjs();

function die(msg) {
  console.error(`make-updates: ${msg}`);
  process.exit(1);
}

// Code-point positions -> UTF-16 offsets: the code-point positions of the
// astral characters (two UTF-16 units each) of the current text, sorted.
class CpMap {
  constructor(text = '') { this.rebuild(text); }
  rebuild(text) {
    this.a = [];
    let cp = 0;
    for (const ch of text) {
      if (ch.length === 2) this.a.push(cp);
      cp++;
    }
  }
  lower(p) { // first index with a[i] >= p
    let lo = 0, hi = this.a.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (this.a[m] < p) lo = m + 1; else hi = m;
    }
    return lo;
  }
  u16(p) { return p + this.lower(p); }
  // Deletes d code points at p; returns the UTF-16 length deleted.
  del(p, d) {
    const i = this.lower(p), j = this.lower(p + d);
    this.a.splice(i, j - i);
    for (let k = i; k < this.a.length; k++) this.a[k] -= d;
    return d + (j - i);
  }
  ins(p, s) {
    const cps = [...s];
    const i = this.lower(p);
    for (let k = i; k < this.a.length; k++) this.a[k] += cps.length;
    const add = [];
    cps.forEach((ch, j) => { if (ch.length === 2) add.push(p + j); });
    if (add.length) this.a.splice(i, 0, ...add);
  }
}

function applyPatches(ytext, patches, map, where) {
  for (const pt of patches) {
    if (!Array.isArray(pt) || pt.length < 2 || !Number.isInteger(pt[0]) || !Number.isInteger(pt[1]) ||
        pt[0] < 0 || pt[1] < 0 || (pt.length > 2 && typeof pt[2] !== 'string'))
      die(`${where}: malformed patch ${JSON.stringify(pt)}`);
    const [pos, del, ins = ''] = pt;
    if (map) {
      if (del) {
        const at = map.u16(pos);
        ytext.delete(at, map.del(pos, del));
      }
      if (ins) {
        ytext.insert(map.u16(pos), ins);
        map.ins(pos, ins);
      }
    } else {
      if (del) ytext.delete(pos, del);
      if (ins) ytext.insert(pos, ins);
    }
  }
}

const EMPTY_UPDATE = new Uint8Array([0, 0]);

function sequential(trace, astral) {
  const doc = new Y.Doc();
  doc.clientID = 1;
  const text = doc.getText('text');
  const updates = [];
  let last = null;
  doc.on('update', (u) => { last = u; });
  const map = astral ? new CpMap(trace.startContent || '') : null;
  const t0 = performance.now();
  if (trace.startContent) {
    doc.transact(() => text.insert(0, trace.startContent));
    updates.push(last);
  }
  trace.txns.forEach((txn, i) => {
    last = null;
    doc.transact(() => applyPatches(text, txn.patches || [], map, `txns[${i}]`));
    updates.push(last || EMPTY_UPDATE);
  });
  const ms = performance.now() - t0;
  return { doc, updates, ms };
}

function concurrent(trace, astral) {
  if (trace.startContent) die('a concurrent trace must start empty');
  const n = trace.txns.length, agents = trace.numAgents;
  if (!Number.isInteger(agents) || agents < 1) die('numAgents is missing');
  const LOCAL = Symbol('local');
  const updates = new Array(n);
  const t0 = performance.now();
  const reps = [];
  for (let a = 0; a < agents; a++) {
    const doc = new Y.Doc();
    doc.clientID = a + 1;
    const rep = { doc, text: doc.getText('text'), applied: new Uint8Array(n), last: null,
                  map: astral ? new CpMap() : null };
    doc.on('update', (u, origin) => { if (origin === LOCAL) rep.last = u; });
    reps.push(rep);
  }
  for (let i = 0; i < n; i++) {
    const txn = trace.txns[i];
    const a = txn.agent;
    if (!Number.isInteger(a) || a < 0 || a >= agents) die(`txns[${i}]: bad agent`);
    const rep = reps[a];
    // The causal history this replica lacks.
    const need = [], stack = [...(txn.parents || [])];
    const seen = new Set();
    while (stack.length) {
      const j = stack.pop();
      if (!Number.isInteger(j) || j < 0 || j >= i) die(`txns[${i}]: parent ${j} is not an earlier txn`);
      if (rep.applied[j] || seen.has(j)) continue;
      seen.add(j);
      need.push(j);
      for (const p of trace.txns[j].parents || []) stack.push(p);
    }
    if (need.length) {
      need.sort((x, y) => x - y);
      for (const j of need) {
        Y.applyUpdate(rep.doc, updates[j]);
        rep.applied[j] = 1;
      }
      if (rep.map) rep.map.rebuild(rep.text.toString());
    }
    rep.last = null;
    rep.doc.transact(() => applyPatches(rep.text, txn.patches || [], rep.map, `txns[${i}]`), LOCAL);
    updates[i] = rep.last || EMPTY_UPDATE;
    rep.applied[i] = 1;
  }
  const ms = performance.now() - t0;
  const doc = new Y.Doc();
  for (const u of updates) Y.applyUpdate(doc, u);
  return { doc, updates, ms };
}

function main() {
  const [tracePath, out] = process.argv.slice(2);
  if (!tracePath || !out) {
    console.error('usage: node make-updates.mjs TRACE.json[.gz] OUT');
    process.exit(2);
  }
  let raw;
  try {
    raw = readFileSync(tracePath);
  } catch (e) {
    die(`${tracePath}: cannot open: ${e.message}`);
  }
  let trace;
  try {
    if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
    trace = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    die(`${tracePath}: not a (gzipped) JSON trace: ${e.message}`);
  }
  if (typeof trace.endContent !== 'string' || !Array.isArray(trace.txns))
    die(`${tracePath}: no endContent or txns`);
  const isConc = trace.kind === 'concurrent';
  // Only a trace with astral characters needs the position mapping.
  const surr = /[\uD800-\uDFFF]/;
  let astral = surr.test(trace.endContent) || surr.test(trace.startContent || '');
  for (const t of trace.txns) {
    if (astral) break;
    for (const p of t.patches || []) if (typeof p[2] === 'string' && surr.test(p[2])) { astral = true; break; }
  }

  const { doc, updates, ms } = isConc ? concurrent(trace, astral) : sequential(trace, astral);
  const got = doc.getText('text').toString();
  if (got !== trace.endContent) {
    let k = 0;
    while (k < got.length && got[k] === trace.endContent[k]) k++;
    die(`${tracePath}: Yjs does not reach endContent (first difference at UTF-16 offset ${k})`);
  }
  const full = Y.encodeStateAsUpdate(doc);

  // What Yjs takes to do what tandem-yjs-bench measures.
  let t0 = performance.now();
  const check = new Y.Doc();
  for (const u of updates) Y.applyUpdate(check, u);
  const applyMs = performance.now() - t0;
  if (check.getText('text').toString() !== trace.endContent)
    die(`${tracePath}: the recorded updates do not replay to endContent in Yjs`);
  let loadMs = Infinity;
  for (let r = 0; r < 5; r++) {
    t0 = performance.now();
    const d = new Y.Doc();
    Y.applyUpdate(d, full);
    loadMs = Math.min(loadMs, performance.now() - t0);
    d.destroy();
  }

  const header = {
    trace: basename(tracePath),
    kind: isConc ? 'concurrent' : 'sequential',
    endContent: trace.endContent,
    updates: updates.length,
    yjs_bytes: full.length,
    yjs_ms: Math.round(ms * 1000) / 1000,
    yjs_apply_ms: Math.round(applyMs * 1000) / 1000,
    yjs_load_ms: Math.round(loadMs * 1000) / 1000,
  };
  let total = 0;
  for (const u of updates) total += 4 + u.length;
  const head = Buffer.from('TDYU1\n' + JSON.stringify(header) + '\n', 'utf8');
  const buf = Buffer.alloc(head.length + total);
  head.copy(buf, 0);
  let off = head.length;
  for (const u of updates) {
    buf.writeUInt32LE(u.length, off);
    off += 4;
    buf.set(u, off);
    off += u.length;
  }
  writeFileSync(out, buf);
  writeFileSync(out + '.full', full);
  console.log(`${header.trace}: ${header.kind}, ${updates.length} updates, ` +
              `${total - 4 * updates.length} update bytes, full ${full.length} bytes, ` +
              `yjs ${header.yjs_ms} ms edit, ${header.yjs_apply_ms} ms apply, ` +
              `${header.yjs_load_ms} ms load`);
}

main();
