#!/usr/bin/env node
// yjs_diff.mjs -- differential test of crdt/yjs/ (tandem_yjs.h) against the
// npm `yjs` package (client-js/node_modules/yjs).
//
// For each seed, several Y.Docs (random clientIDs, gc on) make random
// concurrent edits on roots of every kind (Y.Text with formats and embeds,
// Y.Array, Y.Map, Y.XmlFragment with elements and XmlText, nested types,
// deletes of types others are editing) and sync random subsets of each
// other's updates. Every update a doc emits is captured and fed to ONE
// yjs_driver process (yjs_driver.c) in a shuffled order with duplicates,
// Y.mergeUpdates of random groups, and held-back updates delivered later. A
// mirror Y.Doc receives the same sequence. Checked:
//   - every apply succeeds;
//   - every few hundred deliveries: C's state vector equals the mirror's, and
//     C has nothing pending when the mirror has nothing pending;
//   - at the end: C's state vector equals the reference's (a Y.Doc that
//     applied all updates as they were emitted); a fresh Y.Doc applying C's
//     encodeStateAsUpdate has the reference's content (toJSON of each root
//     read with its accessor, XML toString, text deltas with attributes, and
//     a deep dump of every nested type); older states (snapshots of the
//     reference) brought up to date with C's encodeStateAsUpdate(their state
//     vector) reach the reference's content; C's to_json parses and has one
//     member per root.
//   - with --bytes: C's encodings are byte-identical to the mirror's.
//
// Usage:
//   node tests/yjs/yjs_diff.mjs --driver PATH (--seed N | --seeds a,b,c)
//        [--ops N] [--docs N] [--check-every N] [--bytes] [--reduce]
//        [--reduce-time S] [--case-out FILE] [-v]
//   node tests/yjs/yjs_diff.mjs --driver PATH --replay CASE.json
// --ops is per seed. On a mismatch the seed, the first difference and the
// command that replays it are printed; --reduce then shrinks the delivered
// updates to a minimal failing sequence and writes it to --case-out (JSON:
// base64 updates, replayable with --replay). Exit status: 0 all agree,
// 1 mismatch, 2 usage error or the driver / yjs missing or not starting.

import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { accessSync, constants, readFileSync, writeFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual, inspect } from 'node:util'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT_DIR = path.resolve(HERE, '../..')

function usageError (msg) {
  console.error(`yjs_diff: ${msg}`)
  process.exit(2)
}

// ---------------------------------------------------------------- arguments

function parseArgs (argv) {
  const o = {
    driver: null, seeds: null, ops: 20000, docs: 4, checkEvery: 250, bytes: false,
    reduce: false, reduceTime: 300, caseOut: null, replay: null, verbose: false, yjs: null
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) usageError(`${a} needs a value`)
      return argv[++i]
    }
    const num = () => {
      const s = val()
      if (!/^\d+$/.test(s)) usageError(`${a}: not a non-negative integer: ${s}`)
      return Number(s)
    }
    switch (a) {
      case '--driver': o.driver = val(); break
      case '--seed': o.seeds = [num()]; break
      case '--seeds': o.seeds = val().split(',').filter(s => s !== '').map(s => {
        if (!/^\d+$/.test(s)) usageError(`--seeds: not an integer: ${s}`)
        return Number(s)
      }); break
      case '--ops': o.ops = num(); break
      case '--docs': o.docs = num(); break
      case '--check-every': o.checkEvery = Math.max(1, num()); break
      case '--bytes': o.bytes = true; break
      case '--reduce': o.reduce = true; break
      case '--reduce-time': o.reduceTime = num(); break
      case '--case-out': o.caseOut = val(); break
      case '--replay': o.replay = val(); break
      case '--yjs': o.yjs = val(); break
      case '-v': case '--verbose': o.verbose = true; break
      case '-h': case '--help':
        console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n')
          .filter(l => l.startsWith('//')).map(l => l.slice(3)).join('\n'))
        process.exit(0)
        break
      default: usageError(`unknown argument ${a} (see --help)`)
    }
  }
  if (!o.driver) usageError('--driver PATH is required')
  if (!o.replay && (!o.seeds || o.seeds.length === 0)) usageError('--seed N or --seeds a,b,c is required')
  if (o.docs < 2 || o.docs > 16) usageError('--docs must be 2..16')
  return o
}

const opts = parseArgs(process.argv.slice(2))

// ---------------------------------------------------------------- yjs

const yjsBase = opts.yjs ? path.resolve(opts.yjs) : path.join(ROOT_DIR, 'client-js')
let Y
try {
  Y = createRequire(path.join(yjsBase, 'package.json'))('yjs')
} catch (e) {
  usageError(`cannot load the npm package yjs from ${yjsBase}/node_modules ` +
             `(run: cd client-js && npm ci): ${e.message}`)
}

// ---------------------------------------------------------------- PRNG

// mulberry32 over a 32-bit state derived from (seed, stream) by splitmix-like
// mixing; every random choice comes from here (never Math.random).
function mix32 (x) {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}
class Rng {
  constructor (seed, stream) {
    const lo = seed % 0x100000000
    const hi = Math.floor(seed / 0x100000000)
    this.a = mix32(mix32(lo ^ 0x9e3779b9) ^ mix32(hi + 0x7f4a7c15) ^ mix32(stream * 0x632be5ab + 1))
  }
  next () {
    let t = (this.a = (this.a + 0x6d2b79f5) | 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int (lo, hi) { return lo + Math.floor(this.next() * (hi - lo + 1)) } // inclusive
  bool (p) { return this.next() < p }
  pick (arr) { return arr[Math.floor(this.next() * arr.length)] }
  u32 () { return Math.floor(this.next() * 4294967296) >>> 0 }
  shuffle (arr) {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      const t = arr[i]; arr[i] = arr[j]; arr[j] = t
    }
    return arr
  }
}

// ---------------------------------------------------------------- roots

// Yjs does not encode a root's kind: the harness knows it by name.
const ROOTS = [
  ['text', 'text'], ['notes', 'text'], ['list', 'array'], ['stack', 'array'],
  ['map', 'map'], ['cfg 🌍', 'map'], ['prose', 'xml'], ['outline', 'xml']
]
const ROOT_KIND = new Map(ROOTS)

function getRoot (doc, name) {
  switch (ROOT_KIND.get(name)) {
    case 'text': return doc.getText(name)
    case 'array': return doc.getArray(name)
    case 'map': return doc.getMap(name)
    case 'xml': return doc.getXmlFragment(name)
    default: throw new Error(`root ${JSON.stringify(name)} of unknown kind`)
  }
}

// ---------------------------------------------------------------- values

const CHARS = ['a', 'b', 'c', 'd', 'e', 'x', 'y', 'z', ' ', ' ', '\n', 'é', 'ß', '中', '文',
  '😀', '𝄞', '👩‍👩‍👧', '🇫🇷', '\u0000', '"', '\\', '<', '&', '\t', '\u2028']
function randStr (r, maxLen = 8) {
  const n = r.int(1, maxLen)
  let s = ''
  for (let i = 0; i < n; i++) s += r.pick(CHARS)
  return s
}

const SPECIAL_NUMBERS = [0, 1, -1, 127, 128, -64, -65, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1,
  2 ** 32, 2 ** 32 + 5, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 1e21, -1e300, Number.MAX_VALUE,
  Number.MIN_VALUE, 0.5, -0.25, 1.1, Math.fround(3.3), 123456.789, -0, Infinity, -Infinity, NaN]

function randBytes (r) {
  const b = new Uint8Array(r.int(0, 9))
  for (let i = 0; i < b.length; i++) b[i] = r.int(0, 255)
  return b
}

// A JSON-ish (lib0 Any) value. inArray: Y.Array refuses BigInt and
// undefined at top level; top-level Uint8Array becomes ContentBinary.
function randAny (r, depth, where) {
  const k = r.int(0, 19)
  switch (k) {
    case 0: case 1: case 2: return r.int(-1000, 1000)
    case 3: return r.pick(SPECIAL_NUMBERS)
    case 4: return (r.next() - 0.5) * 10 ** r.int(0, 12)
    case 5: case 6: case 7: return randStr(r, 10)
    case 8: return ''
    case 9: return r.bool(0.5)
    case 10: return null
    case 11: return randBytes(r)
    case 12: case 13: {
      if (depth >= 3) return r.int(0, 9)
      const o = {}
      const n = r.int(0, 4)
      for (let i = 0; i < n; i++) o[r.pick(['a', 'b', 'k', 'é', '😀', '', 'long key ' + i])] = randAny(r, depth + 1, 'nested')
      return o
    }
    case 14: {
      if (depth >= 3) return 'leaf'
      const n = r.int(0, 4)
      const a = []
      for (let i = 0; i < n; i++) a.push(randAny(r, depth + 1, 'nested'))
      return a
    }
    case 15: return randStr(r, 1).repeat(r.int(20, 200))
    case 16:
      if (where === 'map' || where === 'nested') return r.pick([0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 123456789012345678n])
      return r.int(0, 5)
    case 17:
      if (where === 'map') return undefined
      return null
    default: return r.int(0, 100000000)
  }
}

const TEXT_ATTRS = [
  { bold: true }, { italic: true }, { bold: null }, { italic: null },
  null, // a link with an object value, built in randAttrs
  { link: null }, { color: '#f00' }, { color: null }, { header: 1 }, { header: null },
  { bold: true, italic: true }, { code: true }, { code: null }
]
function randAttrs (r) {
  const k = r.int(0, TEXT_ATTRS.length - 1)
  if (k === 4) return { link: { href: 'https://ex.com/' + r.int(0, 20), title: r.bool(0.5) ? 'T' : null } }
  return { ...TEXT_ATTRS[k] }
}
function randEmbed (r) {
  switch (r.int(0, 3)) {
    case 0: return { image: 'https://img.example/' + r.int(0, 99) + '.png' }
    case 1: return { formula: 'e=mc^' + r.int(2, 9) }
    case 2: return { mention: { id: r.int(0, 1000), name: randStr(r, 4) } }
    default: return { video: { src: 'v' + r.int(0, 9), size: [r.int(1, 99), r.int(1, 99)] } }
  }
}

const MAP_KEYS = ['a', 'b', 'c', 'd', 'title', 'ключ', '🔑', '']
const TAGS = ['p', 'h1', 'li', 'ul', 'span', 'blockquote']
const ATTR_KEYS = ['class', 'id', 'data-x', 'style', 'href']

// ---------------------------------------------------------------- editing

const isType = v => v instanceof Y.AbstractType

// Walks from a random root into nested types; returns [type, depth].
function pickTarget (r, doc) {
  const [name] = r.pick(ROOTS)
  let t = getRoot(doc, name)
  let depth = 1
  while (depth < 10 && r.bool(0.55)) {
    let child = null
    if (t instanceof Y.Array || t instanceof Y.XmlFragment) {
      const n = t.length
      if (n === 0) break
      const v = t.get(r.int(0, n - 1))
      if (isType(v)) child = v
    } else if (t instanceof Y.Map) {
      const keys = Array.from(t.keys())
      if (keys.length === 0) break
      const v = t.get(r.pick(keys))
      if (isType(v)) child = v
    }
    if (!child) break
    t = child
    depth++
  }
  return [t, depth]
}

// A new nested type for an Array/Map value, filled after integration by
// the returned function (sometimes prelim content instead).
function newNested (r) {
  switch (r.int(0, 2)) {
    case 0: {
      const m = new Y.Map()
      if (r.bool(0.3)) m.set('pre', randAny(r, 1, 'map')) // prelim
      return [m, () => { const n = r.int(0, 3); for (let i = 0; i < n; i++) m.set(r.pick(MAP_KEYS), randAny(r, 1, 'map')) }]
    }
    case 1: {
      const a = new Y.Array()
      if (r.bool(0.3)) a.insert(0, [randAny(r, 1, 'array')]) // prelim
      return [a, () => { if (r.bool(0.7)) a.insert(0, [randAny(r, 1, 'array'), randAny(r, 1, 'array')]) }]
    }
    default: {
      const t = r.bool(0.3) ? new Y.Text(randStr(r, 6)) : new Y.Text()
      return [t, () => { if (r.bool(0.7)) t.insert(0, randStr(r, 6), r.bool(0.3) ? randAttrs(r) : undefined) }]
    }
  }
}

function textOp (r, t) {
  const len = t.length
  const k = r.next()
  const pDel = len > 300 ? 0.6 : 0.25
  if (len > 0 && k < pDel) {
    const i = r.int(0, len - 1)
    t.delete(i, r.int(1, Math.min(len - i, len > 300 ? 40 : 6)))
  } else if (len > 0 && k < pDel + 0.17) {
    const i = r.int(0, len - 1)
    t.format(i, r.int(1, Math.min(len - i, 12)), randAttrs(r))
  } else if (k < pDel + 0.22) {
    t.insertEmbed(r.int(0, len), randEmbed(r), r.bool(0.3) ? randAttrs(r) : undefined)
  } else {
    const attrs = r.bool(0.3) ? randAttrs(r) : undefined
    t.insert(r.int(0, len), randStr(r, 8), attrs)
  }
}

function arrayOp (r, a, depth) {
  const len = a.length
  const k = r.next()
  const pDel = len > 40 ? 0.6 : 0.3
  if (len > 0 && k < pDel) {
    const i = r.int(0, len - 1)
    a.delete(i, r.int(1, Math.min(len - i, 4)))
  } else {
    const vals = []
    const fills = []
    const n = r.int(1, 4)
    for (let i = 0; i < n; i++) {
      if (depth < 8 && r.bool(0.15)) {
        const [t, fill] = newNested(r)
        vals.push(t); fills.push(fill)
      } else {
        vals.push(randAny(r, 0, 'array'))
      }
    }
    a.insert(r.int(0, len), vals)
    for (const f of fills) f()
  }
}

function mapOp (r, m, depth) {
  const k = r.next()
  if (k < 0.25) {
    m.delete(r.pick(MAP_KEYS))
  } else if (depth < 8 && k < 0.45) {
    const [t, fill] = newNested(r)
    m.set(r.pick(MAP_KEYS), t)
    fill()
  } else if (k < 0.55) {
    m.set(r.pick(MAP_KEYS), randBytes(r)) // ContentBinary
  } else {
    m.set(r.pick(MAP_KEYS), randAny(r, 0, 'map'))
  }
}

function xmlOp (r, x) {
  const len = x.length
  const k = r.next()
  const isEl = x instanceof Y.XmlElement
  const pDel = len > 12 ? 0.5 : 0.2
  if (len > 0 && k < pDel) {
    const i = r.int(0, len - 1)
    x.delete(i, r.int(1, Math.min(len - i, 3)))
  } else if (isEl && k < pDel + 0.25) {
    if (r.bool(0.25)) x.removeAttribute(r.pick(ATTR_KEYS))
    else x.setAttribute(r.pick(ATTR_KEYS), randStr(r, 6))
  } else if (k < pDel + 0.55) {
    const el = new Y.XmlElement(r.pick(TAGS))
    x.insert(r.int(0, len), [el])
    if (r.bool(0.5)) el.setAttribute(r.pick(ATTR_KEYS), randStr(r, 5))
    if (r.bool(0.5)) {
      const xt = new Y.XmlText()
      el.insert(0, [xt])
      xt.insert(0, randStr(r, 6), r.bool(0.4) ? randAttrs(r) : undefined)
    }
    if (r.bool(0.2)) el.insert(el.length, [new Y.XmlElement(r.pick(TAGS))])
  } else {
    const xt = new Y.XmlText()
    x.insert(r.int(0, len), [xt])
    xt.insert(0, randStr(r, 8), r.bool(0.4) ? randAttrs(r) : undefined)
  }
}

function randomOp (r, doc) {
  const [t, depth] = pickTarget(r, doc)
  if (t instanceof Y.Text) textOp(r, t) // Y.XmlText too
  else if (t instanceof Y.Array) arrayOp(r, t, depth)
  else if (t instanceof Y.Map) mapOp(r, t, depth)
  else if (t instanceof Y.XmlFragment) xmlOp(r, t) // Y.XmlElement too
  else throw new Error('unexpected target ' + t.constructor.name)
}

// ---------------------------------------------------------------- scenario

// Random concurrent editing: returns the captured updates in emission order,
// the reference doc (all of them applied in that order) and snapshots of the
// reference at earlier points (encoded updates).
function generate (seed, nops, ndocs) {
  const r = new Rng(seed, 1)
  const docs = []
  const used = new Set()
  for (let i = 0; i < ndocs; i++) {
    let id
    do {
      // Mostly uint32 like Yjs; some past 2^32 to exercise wide varints.
      id = r.bool(0.2) ? r.int(1, 2 ** 21 - 1) * 2 ** 32 + r.u32() : r.u32()
    } while (used.has(id))
    used.add(id)
    const d = new Y.Doc()
    d.clientID = id
    docs.push(d)
  }
  const captured = []
  const emitted = docs.map(() => [])
  const ref = new Y.Doc()
  const snapshots = []
  docs.forEach((d, i) => d.on('update', u => {
    emitted[i].push(captured.length)
    captured.push(u)
    Y.applyUpdate(ref, u)
  }))
  const cursor = docs.map(() => docs.map(() => 0))
  const skipped = docs.map(() => [])
  const snapAt = new Set([0.1, 0.3, 0.55, 0.8].map(f => Math.floor(f * nops)))
  let ops = 0
  let lastSnapCheck = 0
  while (ops < nops) {
    const i = r.int(0, ndocs - 1)
    const d = docs[i]
    const n = r.int(1, 5)
    d.transact(() => { for (let k = 0; k < n; k++) randomOp(r, d) })
    ops += n
    for (const s of snapAt) {
      if (s > lastSnapCheck && s <= ops) snapshots.push(Y.encodeStateAsUpdate(ref))
    }
    lastSnapCheck = ops
    // Sync a random subset of another doc's updates into d.
    if (r.bool(0.35)) {
      let j = r.int(0, ndocs - 2)
      if (j >= i) j++
      const fresh = emitted[j].slice(cursor[i][j])
      cursor[i][j] = emitted[j].length
      for (const g of fresh) {
        if (r.bool(0.85)) Y.applyUpdate(d, captured[g])
        else skipped[i].push(g)
      }
    }
    if (skipped[i].length > 0 && r.bool(0.15)) {
      r.shuffle(skipped[i])
      const m = r.int(1, skipped[i].length)
      for (const g of skipped[i].splice(0, m)) Y.applyUpdate(d, captured[g])
    }
    if (r.bool(0.01)) {
      let j = r.int(0, ndocs - 2)
      if (j >= i) j++
      Y.applyUpdate(d, Y.encodeStateAsUpdate(docs[j], Y.encodeStateVector(d)))
    }
  }
  return { captured, ref, snapshots, docs }
}

// The order the C document receives them: mostly forward in shuffled
// windows, with held-back updates (gaps) released later, duplicates, and
// Y.mergeUpdates of consecutive or random groups.
function planDeliveries (seed, captured) {
  const r = new Rng(seed, 2)
  const out = []
  const held = []
  const release = () => {
    for (let h = held.length - 1; h >= 0; h--) {
      if (held[h].at <= out.length) { out.push(held[h].u); held.splice(h, 1) }
    }
  }
  let pos = 0
  while (pos < captured.length) {
    const k = Math.min(r.int(1, 12), captured.length - pos)
    const chunk = r.shuffle(captured.slice(pos, pos + k))
    pos += k
    for (let c = 0; c < chunk.length; c++) {
      const u = chunk[c]
      const x = r.next()
      if (x < 0.03) {
        held.push({ u, at: out.length + r.int(3, 400) })
      } else if (x < 0.08 && c + 1 < chunk.length) {
        const m = Math.min(r.int(2, 5), chunk.length - c)
        const group = chunk.slice(c, c + m)
        out.push(Y.mergeUpdates(group))
        if (r.bool(0.3)) for (const g of group) held.push({ u: g, at: out.length + r.int(0, 50) })
        c += m - 1
      } else {
        out.push(u)
      }
      if (r.bool(0.04)) out.push(r.pick(out)) // duplicate of anything seen
      if (r.bool(0.01) && pos > 2) {
        const group = []
        const m = r.int(2, 6)
        for (let g = 0; g < m; g++) group.push(captured[r.int(0, pos - 1)])
        out.push(Y.mergeUpdates(group))
      }
      release()
    }
  }
  r.shuffle(held)
  for (const h of held) out.push(h.u)
  return out
}

// ---------------------------------------------------------------- driver I/O

const ERR_NAMES = ['ok', 'nomem', 'arg', 'decode', 'invalid', 'limit']

function frame (cmd, payload) {
  const p = payload || new Uint8Array(0)
  const b = Buffer.allocUnsafe(5 + p.length)
  b[0] = cmd.charCodeAt(0)
  b.writeUInt32LE(p.length, 1)
  b.set(p, 5)
  return b
}

class Failure extends Error {
  constructor (kind, msg) { super(msg); this.kind = kind }
}

// Runs one driver process over the requests; each request has a check
// (status, payload, index) that throws Failure on a mismatch. Returns the
// list of failures (first ones; at most `limit`).
function runDriver (reqs, limit = 5) {
  const input = Buffer.concat(reqs.map(q => q.frame))
  const res = spawnSync(opts.driver, [], {
    input, maxBuffer: 2 ** 31 - 1, timeout: 900_000, stdio: ['pipe', 'pipe', 'pipe']
  })
  const failures = []
  if (res.error && res.error.code !== 'ETIMEDOUT' && !res.stdout) {
    throw new Failure('driver', `cannot run ${opts.driver}: ${res.error.message}`)
  }
  const out = res.stdout || Buffer.alloc(0)
  let off = 0
  let i = 0
  for (; i < reqs.length; i++) {
    if (off + 5 > out.length) break
    const status = out[off]
    const n = out.readUInt32LE(off + 1)
    if (off + 5 + n > out.length) break
    const payload = out.subarray(off + 5, off + 5 + n)
    off += 5 + n
    try {
      reqs[i].check(status, payload, i)
    } catch (e) {
      if (!(e instanceof Failure)) throw e
      e.at = i
      failures.push(e)
      if (failures.length >= limit) return failures
    }
  }
  if (i < reqs.length) {
    const how = res.error ? res.error.message
      : res.signal ? `killed by ${res.signal}` : `exit status ${res.status}`
    const stderr = (res.stderr || '').toString().trim().split('\n').slice(-25).join('\n')
    const f = new Failure('crash', `driver stopped at request ${i} of ${reqs.length} ` +
      `(${reqs[i].what}): ${how}${stderr ? '\n--- driver stderr (tail) ---\n' + stderr : ''}`)
    f.at = i
    failures.push(f)
  } else if (off !== out.length) {
    failures.push(new Failure('protocol', `driver wrote ${out.length - off} bytes past the last reply`))
  } else if (res.status !== 0) {
    failures.push(new Failure('crash', `driver exited with ${res.signal || res.status} after all replies: ` +
      (res.stderr || '').toString().trim().slice(-2000)))
  }
  return failures
}

function statusText (status, payload) {
  return `${ERR_NAMES[status] || status}: ${Buffer.from(payload).toString('utf8')}`
}
function expectOk (status, payload, what) {
  if (status !== 0) throw new Failure(what === 'apply' ? 'apply-error' : 'error', `${what} failed: ${statusText(status, payload)}`)
}

// ---------------------------------------------------------------- comparison

function short (v, n = 160) {
  const s = inspect(v, { depth: 4, compact: true, breakLength: Infinity, maxArrayLength: 8, maxStringLength: 60 })
  return s.length > n ? s.slice(0, n) + '…' : s
}

// First path where a and b differ (SameValue semantics, key order ignored).
function firstDiff (a, b, p = '') {
  if (isDeepStrictEqual(a, b)) return null
  if (a && b && typeof a === 'object' && typeof b === 'object' &&
      Array.isArray(a) === Array.isArray(b) && !(a instanceof Uint8Array) && !(b instanceof Uint8Array)) {
    if (Array.isArray(a)) {
      for (let i = 0; i < Math.min(a.length, b.length); i++) {
        const d = firstDiff(a[i], b[i], `${p}[${i}]`)
        if (d) return d
      }
      return `${p}: length ${a.length} vs ${b.length}` +
        (a.length > b.length ? `; extra ${short(a[b.length])}` : `; missing ${short(b[a.length])}`)
    }
    const keys = new Set([...Object.keys(a), ...Object.keys(b)])
    for (const k of [...keys].sort()) {
      if (!(k in a)) return `${p}.${JSON.stringify(k)}: missing on the C side (expected ${short(b[k])})`
      if (!(k in b)) return `${p}.${JSON.stringify(k)}: unexpected on the C side: ${short(a[k])}`
      const d = firstDiff(a[k], b[k], `${p}.${JSON.stringify(k)}`)
      if (d) return d
    }
  }
  return `${p || '(top)'}: C-derived ${short(a)} vs yjs ${short(b)}`
}

function dumpVal (v) { return isType(v) ? dumpType(v) : v }
function dumpDelta (delta) {
  return delta.map(op => {
    const o = { ...op }
    if (isType(o.insert)) o.insert = dumpType(o.insert)
    return o
  })
}
// Everything observable of a type, recursively (deltas keep attributes).
function dumpType (t) {
  if (t instanceof Y.XmlText) return { xmltext: dumpDelta(t.toDelta()) }
  if (t instanceof Y.Text) return { text: dumpDelta(t.toDelta()) }
  if (t instanceof Y.XmlElement) return { el: t.nodeName, attrs: t.getAttributes(), children: t.toArray().map(dumpType) }
  if (t instanceof Y.XmlFragment) return { frag: t.toArray().map(dumpType) }
  if (t instanceof Y.Array) return { array: t.toArray().map(dumpVal) }
  if (t instanceof Y.Map) {
    const o = {}
    for (const [k, v] of t.entries()) o[k] = dumpVal(v)
    return { map: o }
  }
  return { other: t.constructor.name }
}

function rootView (doc, name) {
  const t = getRoot(doc, name)
  const v = { json: t.toJSON(), dump: dumpType(t) }
  if (t instanceof Y.Text) v.delta = dumpDelta(t.toDelta())
  if (t instanceof Y.XmlFragment) v.xml = t.toString()
  return v
}

// Compares docA (built from C's output) with docB (yjs): null if equal,
// else the first difference.
function compareDocs (docA, docB) {
  const namesA = [...docA.share.keys()].sort()
  const namesB = [...docB.share.keys()].sort()
  if (!isDeepStrictEqual(namesA, namesB)) return `roots differ: C-derived ${short(namesA)} vs yjs ${short(namesB)}`
  for (const name of namesB) {
    if (!ROOT_KIND.has(name)) return `unexpected root ${JSON.stringify(name)}`
    const a = rootView(docA, name)
    const b = rootView(docB, name)
    for (const aspect of ['json', 'xml', 'delta', 'dump']) {
      const d = firstDiff(a[aspect], b[aspect], `${name}.${aspect}`)
      if (d) return d
    }
  }
  return null
}

const svMap = bytes => Y.decodeStateVector(bytes)
function svDiff (cBytes, expected) {
  let got
  try { got = svMap(cBytes) } catch (e) { return `C state vector does not decode: ${e.message}` }
  const keys = [...new Set([...got.keys(), ...expected.keys()])].sort((x, y) => x - y)
  for (const k of keys) {
    if (got.get(k) !== expected.get(k)) {
      return `client ${k}: C ${got.get(k) ?? '(absent)'} vs yjs ${expected.get(k) ?? '(absent)'}` +
        ` (C has ${got.size} clients, yjs ${expected.size})`
    }
  }
  return null
}
function encodeSv (m) {
  const out = []
  const varuint = n => {
    while (n > 127) { out.push(128 | (n % 128)); n = Math.floor(n / 128) }
    out.push(n)
  }
  varuint(m.size)
  for (const [client, clock] of m) { varuint(client); varuint(clock) }
  return Uint8Array.from(out)
}
function hasPending (doc) { return doc.store.pendingStructs !== null || doc.store.pendingDs !== null }
function parseStats (payload) {
  const s = Buffer.from(payload).toString('utf8')
  const m = /^structs=(\d+) pending=(\d+) bytes=(\d+)$/.exec(s)
  if (!m) throw new Failure('protocol', `bad stats reply ${JSON.stringify(s)}`)
  return { structs: Number(m[1]), pending: Number(m[2]), bytes: Number(m[3]), text: s }
}
function bytesDiff (c, y) {
  if (Buffer.compare(Buffer.from(c), Buffer.from(y)) === 0) return null
  let i = 0
  while (i < c.length && i < y.length && c[i] === y[i]) i++
  return `encodings differ at byte ${i} (C ${c.length} bytes, yjs ${y.length})`
}
function freshFrom (update) {
  const d = new Y.Doc()
  Y.applyUpdate(d, update)
  return d
}

// ---------------------------------------------------------------- sessions

// Requests feeding `deliveries`, with the mirror checks every checkEvery
// deliveries. Returns { reqs, mirror }.
function feedRequests (deliveries, checkEvery) {
  const mirror = new Y.Doc()
  const reqs = []
  let checkpoints = 0
  deliveries.forEach((u, k) => {
    reqs.push({ frame: frame('A', u), what: `apply delivery ${k}`, delivery: k, check: (st, p) => expectOk(st, p, 'apply') })
    Y.applyUpdate(mirror, u)
    if ((k + 1) % checkEvery === 0 && k + 1 < deliveries.length) {
      const sv = svMap(Y.encodeStateVector(mirror))
      const pending = hasPending(mirror)
      const what = `checkpoint after delivery ${k}`
      reqs.push({
        frame: frame('V'), what, delivery: k,
        check: (st, p) => {
          expectOk(st, p, 'state vector')
          const d = svDiff(p, sv)
          if (d) throw new Failure('sv', `${what}: state vector differs from the mirror's: ${d}`)
        }
      })
      reqs.push({
        frame: frame('S'), what, delivery: k,
        check: (st, p) => {
          expectOk(st, p, 'stats')
          const s = parseStats(p)
          if (!pending && s.pending !== 0) {
            throw new Failure('pending', `${what}: C has pending (${s.text}) but the mirror has none`)
          }
        }
      })
      checkpoints++
      if (opts.bytes && !pending && checkpoints % 4 === 0) {
        const y = Y.encodeStateAsUpdate(mirror)
        reqs.push({
          frame: frame('E'), what, delivery: k,
          check: (st, p) => {
            expectOk(st, p, 'encode')
            const d = bytesDiff(p, y)
            if (d) throw new Failure('bytes', `${what}: full state ${d}`)
          }
        })
      }
    }
  })
  return { reqs, mirror }
}

// Final checks shared by the full run and the reducer: against `expect`
// (the reference, or the mirror in reductions) and the mirror.
function finalRequests (reqs, mirror, ref, snapshots) {
  const mirrorSv = svMap(Y.encodeStateVector(mirror))
  const refSv = ref ? svMap(Y.encodeStateVector(ref)) : null
  const expect = ref || mirror
  const mirrorPending = hasPending(mirror)
  reqs.push({
    frame: frame('V'), what: 'final state vector',
    check: (st, p) => {
      expectOk(st, p, 'state vector')
      let d = svDiff(p, mirrorSv)
      if (d) throw new Failure('sv', `final state vector differs from the mirror's: ${d}`)
      if (refSv) {
        d = svDiff(p, refSv)
        if (d) throw new Failure('sv', `final state vector differs from the reference's: ${d}`)
      }
    }
  })
  reqs.push({
    frame: frame('S'), what: 'final stats',
    check: (st, p) => {
      expectOk(st, p, 'stats')
      const s = parseStats(p)
      if (!mirrorPending && s.pending !== 0) throw new Failure('pending', `at the end C has pending (${s.text}), the mirror none`)
    }
  })
  const yFull = Y.encodeStateAsUpdate(mirror)
  reqs.push({
    frame: frame('E'), what: 'final encodeStateAsUpdate',
    check: (st, p) => {
      expectOk(st, p, 'encode')
      let doc
      try { doc = freshFrom(p) } catch (e) { throw new Failure('content', `yjs cannot apply C's full state: ${e.message}`) }
      if (!mirrorPending && hasPending(doc)) throw new Failure('content', 'C\'s full state leaves structs pending in a fresh Y.Doc')
      const d = compareDocs(doc, expect)
      if (d) throw new Failure('content', `fresh doc from C's full state differs: ${d}`)
      if (ref) {
        const d2 = compareDocs(doc, mirror)
        if (d2) throw new Failure('content', `fresh doc from C's full state differs from the mirror: ${d2}`)
      }
      if (opts.bytes) {
        const b = bytesDiff(p, yFull)
        if (b) throw new Failure('bytes', `full state: ${b}`)
      }
    }
  })
  // Older states brought up to date with C's diff against their vector:
  // the reference's snapshots must reach the reference; every old state
  // (the editing docs' own ones too: their in-memory copies of split
  // surrogate pairs make yjs itself not converge on them) must end where
  // the same state plus yjs's own diff ends.
  const olds = (snapshots || []).map(x => x.update ? x : { update: x, label: 'snapshot', vsRef: true })
  olds.forEach(({ update, label, vsRef }, s) => {
    const old = freshFrom(update)
    const sv = Y.encodeStateVector(old)
    const yDiff = Y.encodeStateAsUpdate(mirror, sv)
    const yOld = freshFrom(update)
    Y.applyUpdate(yOld, yDiff)
    const name = `${label} ${s}`
    reqs.push({
      frame: frame('E', sv), what: `encodeStateAsUpdate(${name} sv)`,
      check: (st, p) => {
        expectOk(st, p, 'encode (sv)')
        try { Y.applyUpdate(old, p) } catch (e) { throw new Failure('snapshot', `${name}: yjs cannot apply C's diff: ${e.message}`) }
        let d = compareDocs(old, yOld)
        if (d) throw new Failure('snapshot', `${name} + C's diff differs from ${name} + yjs's diff: ${d}`)
        if (vsRef && (d = compareDocs(old, expect))) throw new Failure('snapshot', `${name} + C's diff differs from the reference: ${d}`)
        if (opts.bytes) {
          const b = bytesDiff(p, yDiff)
          if (b) throw new Failure('bytes', `diff against ${name}: ${b}`)
        }
      }
    })
  })
  // A state vector with an unknown client and one ahead of the document.
  {
    const m = new Map(mirrorSv)
    m.set(7777777, 12)
    const first = [...mirrorSv.keys()][0]
    if (first !== undefined) m.set(first, mirrorSv.get(first) + 100)
    const sv = encodeSv(m)
    const yDiff = Y.encodeStateAsUpdate(mirror, sv)
    reqs.push({
      frame: frame('E', sv), what: 'encodeStateAsUpdate(sv ahead)',
      check: (st, p) => {
        expectOk(st, p, 'encode (sv ahead)')
        const a = new Y.Doc(); const b = new Y.Doc()
        try { Y.applyUpdate(a, p); Y.applyUpdate(b, yDiff) } catch (e) { throw new Failure('snapshot', `sv-ahead diff does not apply: ${e.message}`) }
        const d = svDiff(Y.encodeStateVector(a), svMap(Y.encodeStateVector(b)))
        if (d) throw new Failure('snapshot', `diff against a state vector ahead of the doc: ${d}`)
        if (opts.bytes) {
          const bd = bytesDiff(p, yDiff)
          if (bd) throw new Failure('bytes', `diff against a state vector ahead: ${bd}`)
        }
      }
    })
  }
  const names = [...mirror.share.keys()].sort()
  for (const flags of [0, 1]) {
    reqs.push({
      frame: frame('J', Uint8Array.of(flags)), what: `to_json(${flags})`,
      check: (st, p) => {
        expectOk(st, p, `to_json(${flags})`)
        const s = Buffer.from(p).toString('utf8')
        let j
        try { j = JSON.parse(s) } catch (e) {
          throw new Failure('json', `to_json(${flags}) is not JSON (${e.message}): ${s.slice(0, 200)}`)
        }
        if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Failure('json', `to_json(${flags}) is not an object`)
        // A root with nothing visible is left out (its kind cannot be told);
        // every other root is there, and texts and XML read as yjs's.
        const keys = Object.keys(j).sort()
        const visible = names.filter((n) => {
          const t = getRoot(mirror, n)
          return t instanceof Y.Map ? t.size > 0 : t.length > 0
        })
        const stray = keys.filter((k) => !names.includes(k))
        const lost = visible.filter((k) => !keys.includes(k))
        if (stray.length || lost.length) {
          throw new Failure('json', `to_json(${flags}) members ${short(keys)} vs roots ${short(visible)}`)
        }
        for (const n of keys) {
          const kind = ROOT_KIND.get(n)
          const t = getRoot(mirror, n)
          let want
          if (kind === 'xml') want = t.toString()
          else if (kind === 'text') want = flags ? t.toDelta() : t.toString()
          else continue
          if (!isDeepStrictEqual(j[n], JSON.parse(JSON.stringify(want)))) {
            throw new Failure('json', `to_json(${flags}) root ${JSON.stringify(n)}: ${short(j[n])} vs yjs ${short(want)}`)
          }
        }
      }
    })
  }
}

// Runs deliveries through a fresh driver with mirror checks and the final
// checks; returns the failures.
function runCase (deliveries, ref, snapshots, checkEvery) {
  const { reqs, mirror } = feedRequests(deliveries, checkEvery)
  finalRequests(reqs, mirror, ref, snapshots)
  return { failures: runDriver(reqs), nreqs: reqs.length }
}

// ---------------------------------------------------------------- reducer

function reduce (deliveries, kind, seconds) {
  const t0 = Date.now()
  const deadline = t0 + seconds * 1000
  let runs = 0
  const fails = list => {
    runs++
    try {
      const { failures } = runCase(list, null, [], Math.max(1, list.length))
      return failures.some(f => f.kind === kind)
    } catch (e) {
      if (e instanceof Failure) return e.kind === kind
      throw e
    }
  }
  let cur = deliveries
  // A prefix first (failures are mostly monotone in the prefix).
  let lo = 1; let hi = cur.length
  while (lo < hi && Date.now() < deadline) {
    const mid = (lo + hi) >> 1
    if (fails(cur.slice(0, mid))) hi = mid; else lo = mid + 1
  }
  if (fails(cur.slice(0, hi))) cur = cur.slice(0, hi)
  // ddmin: remove chunks while it still fails.
  let n = 2
  while (cur.length >= 2 && Date.now() < deadline) {
    const size = Math.ceil(cur.length / n)
    let removed = false
    for (let start = 0; start < cur.length && Date.now() < deadline; start += size) {
      const cand = cur.slice(0, start).concat(cur.slice(start + size))
      if (cand.length > 0 && fails(cand)) {
        cur = cand
        n = Math.max(n - 1, 2)
        removed = true
        break
      }
    }
    if (!removed) {
      if (size === 1) break
      n = Math.min(cur.length, n * 2)
    }
  }
  return { list: cur, runs, secs: (Date.now() - t0) / 1000, complete: Date.now() < deadline }
}

function reportCase (list, kind, label) {
  const { failures } = runCase(list, null, [], Math.max(1, list.length))
  const f = failures.find(x => x.kind === kind) || failures[0]
  console.error(`minimal case: ${list.length} update(s); failure: [${f ? f.kind : 'none'}] ${f ? f.message : ''}`)
  list.forEach((u, i) => console.error(`  update ${i} (${u.length} bytes) hex: ${Buffer.from(u).toString('hex')}`))
  const file = opts.caseOut || path.resolve(`yjs_diff_case_${label}.json`)
  writeFileSync(file, JSON.stringify({
    label, kind, message: f ? f.message : null, updates: list.map(u => Buffer.from(u).toString('base64'))
  }, null, 1) + '\n')
  console.error(`  written to ${file}; replay: node ${path.relative(process.cwd(), fileURLToPath(import.meta.url))} ` +
    `--driver ${opts.driver} --replay ${file}`)
}

// ---------------------------------------------------------------- main

function checkDriver () {
  try {
    if (!statSync(opts.driver).isFile()) throw new Error('not a file')
    accessSync(opts.driver, constants.X_OK)
  } catch (e) {
    usageError(`driver ${opts.driver} is missing or not executable (${e.message}); build the target yjs_driver`)
  }
  const res = spawnSync(opts.driver, [], { input: Buffer.concat([frame('S'), frame('Q')]), timeout: 30_000 })
  const out = res.stdout || Buffer.alloc(0)
  if (res.error || res.status !== 0 || out.length < 5 || out[0] !== 0) {
    usageError(`driver ${opts.driver} does not start or answer: ` +
      `${res.error ? res.error.message : `status ${res.signal || res.status}`} ${(res.stderr || '').toString().trim()}`)
  }
}

function replayCmd (seed) {
  const rel = path.relative(process.cwd(), fileURLToPath(import.meta.url)) || fileURLToPath(import.meta.url)
  return `node ${rel} --driver ${opts.driver} --seed ${seed} --ops ${opts.ops} --docs ${opts.docs}` +
    (opts.checkEvery !== 250 ? ` --check-every ${opts.checkEvery}` : '') + (opts.bytes ? ' --bytes' : '')
}

function main () {
  checkDriver()
  if (opts.replay) {
    const c = JSON.parse(readFileSync(opts.replay, 'utf8'))
    const list = c.updates.map(s => new Uint8Array(Buffer.from(s, 'base64')))
    const { failures } = runCase(list, null, [], 1)
    if (failures.length === 0) { console.log(`replay ${opts.replay}: ${list.length} updates, all checks pass`); return 0 }
    for (const f of failures) console.error(`replay ${opts.replay}: [${f.kind}] ${f.message}`)
    return 1
  }
  let bad = 0
  let totalOps = 0
  const t0 = Date.now()
  for (const seed of opts.seeds) {
    const ts = Date.now()
    const { captured, ref, snapshots, docs } = generate(seed, opts.ops, opts.docs)
    // The editing docs' own states (not prefixes of any delivery order, and
    // possibly with pending structs) are older states too.
    for (const d of docs) snapshots.push({ update: Y.encodeStateAsUpdate(d), label: 'editing doc state', vsRef: false })
    if (hasPending(ref)) throw new Error(`harness: reference has pending structs (seed ${seed})`)
    const deliveries = planDeliveries(seed, captured)
    const tg = Date.now()
    const { failures, nreqs } = runCase(deliveries, ref, snapshots, opts.checkEvery)
    totalOps += opts.ops
    const info = `seed ${seed}: ${opts.ops} ops, ${opts.docs} docs, ${captured.length} updates, ` +
      `${deliveries.length} deliveries, ${nreqs} requests (${tg - ts} ms generating, ${Date.now() - tg} ms checking)`
    if (failures.length === 0) {
      console.log(`ok   ${info}`)
      continue
    }
    bad++
    console.error(`FAIL ${info}`)
    for (const f of failures) console.error(`  [${f.kind}] ${f.message}`)
    console.error(`  replay: ${replayCmd(seed)}${opts.reduce ? '' : ' --reduce'}`)
    if (opts.reduce) {
      const first = failures[0]
      let upto = deliveries.length
      if (first.at !== undefined && first.kind !== 'content' && first.kind !== 'snapshot' && first.kind !== 'json') {
        // Mid-run failures: only the deliveries up to that point matter.
        const { reqs } = feedRequests(deliveries, opts.checkEvery)
        const q = reqs[Math.min(first.at, reqs.length - 1)]
        if (q && q.delivery !== undefined) upto = q.delivery + 1
      }
      console.error(`  reducing ${upto} deliveries (kind ${first.kind}, up to ${opts.reduceTime} s)…`)
      const red = reduce(deliveries.slice(0, upto), first.kind, opts.reduceTime)
      console.error(`  reduced to ${red.list.length} in ${red.runs} runs, ${red.secs.toFixed(1)} s${red.complete ? '' : ' (time budget hit)'}`)
      reportCase(red.list, first.kind, `seed${seed}`)
    }
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  if (bad) {
    console.error(`yjs_diff: ${bad} of ${opts.seeds.length} seeds FAILED (${secs} s)`)
    return 1
  }
  console.log(`yjs_diff: ${opts.seeds.length} seeds, ${totalOps} ops: C and yjs agree (${secs} s)`)
  return 0
}

try {
  process.exitCode = main()
} catch (e) {
  if (e instanceof Failure) {
    console.error(`yjs_diff: [${e.kind}] ${e.message}`)
    process.exitCode = 2
  } else {
    console.error(e)
    process.exitCode = 2
  }
}
