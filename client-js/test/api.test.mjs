/*
 * api.test.mjs -- the client API of issue 13 against a real `tandem serve`:
 * undo/redo of this client's own edits under concurrent edits of another,
 * anchors (relative positions) of a remote cursor through 1,000 random
 * concurrent edits, disconnect()/connect() keeping offline edits, and the
 * agent id option.
 *
 * Properties over random edits and random delivery (sleeps, and the peer
 * going offline and back at random), seeded by TD_SEED. Every character
 * inserted is unique, and tells who typed it (A: CJK, B: Hangul; some of
 * each astral), so where a character went can be checked by its content.
 * Each test starts its own server; one that does not start fails the test.
 * The last ones need no server: two replicas exchange batches in random
 * order, with undo/redo and nested values, and the change deltas, lengths
 * and content must agree with the core at every step; and a reconnect's
 * merged batch of 1,000 scattered edits (issue 14) is one change event whose
 * delta rebuilds the text, its runs composed as a per-character model says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createReplica } from '../src/index.js';
import { RunList } from '../src/doc.js';
import { Server, serverMissing, mustRun, prng, sleep, until, applyDelta } from './helpers.mjs';

const NOT_RUN = mustRun(serverMissing());
const SEED = Number(process.env.TD_SEED || 1);

/* Unique characters per author; every fifth one outside the BMP. */
function chars(bmpBase, astralBase) {
  let i = 0;
  return () => { i++; return String.fromCodePoint(i % 5 === 0 ? astralBase + i : bmpBase + i); };
}
const A_BMP = 0x4e00, A_ASTRAL = 0x20000, B_BMP = 0xac00, B_ASTRAL = 0x2a700;
const isA = (c) => { const cp = c.codePointAt(0); return (cp >= A_BMP && cp < A_BMP + 0x5000) || (cp >= A_ASTRAL && cp < A_ASTRAL + 0x5000); };
const cps = (s) => [...s];

/* A random edit on text t: insert 1-3 fresh characters, or delete 1-3
 * (whole code points). Returns the characters deleted. */
function randomTextEdit(rnd, t, next) {
  const list = cps(t.toString());
  if (list.length === 0 || rnd() < 0.6) {
    let s = '';
    for (let n = 1 + rnd.int(3); n > 0; n--) s += next();
    const at = rnd.int(list.length + 1);
    t.insert(list.slice(0, at).join('').length, s);
    return [];
  }
  const at = rnd.int(list.length);
  const n = 1 + rnd.int(Math.min(3, list.length - at));
  const gone = list.slice(at, at + n);
  t.delete(list.slice(0, at).join('').length, gone.join('').length);
  return gone;
}

async function converged(docs) {
  await Promise.all(docs.map((d) => d.synced));
  const json = (d) => JSON.stringify(d.toJSON());
  await until(() => docs.every((d) => json(d) === json(docs[0])), 'the replicas to converge');
}

test('undo reverts only this client\'s edits under concurrent edits; redo restores them; both converge',
  { skip: NOT_RUN, timeout: 120000 }, async () => {
    const server = new Server();
    await server.start();
    const clients = [];
    try {
      for (let i = 0; i < 2; i++) clients.push(await connect(server.url, { backoff: { baseMs: 50, capMs: 200 } }));
      const [a, b] = await Promise.all(clients.map((c) => c.open('undo')));
      await Promise.all([a.synced, b.synced]);
      const ta = a.text('body'), tb = b.text('body');
      const um = a.undoManager({ captureTimeout: 0 });
      const rnd = prng(SEED);
      const nextA = chars(A_BMP, A_ASTRAL), nextB = chars(B_BMP, B_ASTRAL);
      const bInserted = new Set(), bDeleted = new Set();
      tb.on('change', (c) => { if (c.local) for (const op of c.delta) if (op.insert) cps(op.insert).forEach((x) => bInserted.add(x)); });

      /* Concurrent edits: A's in transactions of 1-3 edits (one undo item
       * each), B's one by one; B drops offline and back at random. */
      let aItems = 0;
      for (let round = 0; round < 60; round++) {
        if (rnd() < 0.7) {
          a.transact(() => { for (let k = 1 + rnd.int(3); k > 0; k--) randomTextEdit(rnd, ta, nextA); });
          aItems++;
        }
        for (let k = rnd.int(3); k > 0; k--) randomTextEdit(rnd, tb, nextB).forEach((x) => bDeleted.add(x));
        if (rnd() < 0.1) clients[1].disconnect();
        else if (clients[1].disconnected && rnd() < 0.4) clients[1].connect();
        if (rnd() < 0.5) await sleep(rnd.int(20));
      }
      clients[1].connect();
      await converged([a, b]);
      const before = ta.toString();
      assert.ok(um.undoStack.length <= aItems && um.undoStack.length > 0, 'one stack item per transaction');
      assert.ok(cps(before).some(isA) && cps(before).some((x) => !isA(x)), 'both authors left text');

      /* Undo everything A did. */
      let undone = 0;
      while (um.undo()) undone++;
      assert.ok(undone > 0);
      await converged([a, b]);
      const after = cps(ta.toString());
      assert.deepEqual(after.filter(isA), [], 'none of A\'s characters is left');
      for (const x of bInserted) {
        if (!bDeleted.has(x)) assert.ok(after.includes(x), `B's ${x} (not deleted by B) is there`);
      }
      for (const x of after) assert.ok(bInserted.has(x), `${x} is B's`);
      const keptOrder = cps(before).filter((x) => after.includes(x));
      assert.deepEqual(after.filter((x) => keptOrder.includes(x)), keptOrder, 'B\'s characters keep their order');
      assert.equal(tb.toString(), ta.toString());

      /* Redo everything: exactly the text before the undos. */
      let redone = 0;
      while (um.redo()) redone++;
      assert.equal(redone, undone);
      assert.equal(ta.toString(), before, 'redo restores A\'s edits');
      await converged([a, b]);
      assert.equal(tb.toString(), before);
      assert.equal((await server.docJSON('undo')).body, before, 'the server holds the same text');

      /* Undo while B edits concurrently: still only A's edits go. */
      for (let k = 0; k < 20; k++) {
        if (k % 2) um.undo();
        randomTextEdit(rnd, tb, nextB).forEach((x) => bDeleted.add(x));
        if (rnd() < 0.5) await sleep(rnd.int(10));
      }
      while (um.undo());
      await converged([a, b]);
      const last = cps(ta.toString());
      assert.deepEqual(last.filter(isA), [], 'none of A\'s characters is left');
      for (const x of bInserted) if (!bDeleted.has(x)) assert.ok(last.includes(x), `B's ${x} is there`);
      assert.deepEqual(JSON.stringify(a.toJSON()), JSON.stringify(b.toJSON()));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.dispose();
    }
  });

test('undo groups by time and by transaction; maps and lists; remote writes win',
  { skip: NOT_RUN, timeout: 60000 }, async () => {
    const server = new Server();
    await server.start();
    const clients = [];
    try {
      for (let i = 0; i < 2; i++) clients.push(await connect(server.url));
      const [a, b] = await Promise.all(clients.map((c) => c.open('undo-kinds')));
      await Promise.all([a.synced, b.synced]);
      const um = a.undoManager(); /* captureTimeout 500 ms */
      const t = a.text('t');
      t.insert(0, 'a'); t.insert(1, 'b'); t.insert(2, 'c'); /* typed quickly: one item */
      assert.equal(um.undoStack.length, 1);
      await sleep(550);
      t.insert(3, 'd'); /* after a pause: a new item */
      assert.equal(um.undoStack.length, 2);
      um.stopCapturing();
      a.transact(() => { t.insert(0, 'X'); t.delete(2, 1); }); /* one item */
      assert.equal(um.undoStack.length, 3);
      assert.equal(t.toString(), 'Xacd');
      um.undo();
      assert.equal(t.toString(), 'abcd');
      um.undo();
      assert.equal(t.toString(), 'abc');
      um.undo();
      assert.equal(t.toString(), '');
      assert.equal(um.canUndo(), false);
      um.redo(); um.redo(); um.redo();
      assert.equal(t.toString(), 'Xacd');

      /* Maps: undo restores the previous value, unless a peer wrote since. */
      const m = a.map('m'), mb = b.map('m');
      um.stopCapturing(); m.set('k', 1);
      um.stopCapturing(); m.set('k', 2); m.set('obj', { list: [1, 2], s: 'x' });
      um.stopCapturing(); m.set('other', 'mine');
      await converged([a, b]);
      mb.set('other', 'theirs');
      await until(() => m.get('other') === 'theirs', 'B\'s write');
      um.undo(); /* 'other': B's later write wins, nothing to undo -> next item */
      assert.deepEqual(a.toJSON().m, { k: 1, other: 'theirs' });
      um.undo();
      assert.deepEqual(a.toJSON().m, { other: 'theirs' });
      um.redo(); um.redo();
      assert.deepEqual(a.toJSON().m, { k: 2, obj: { list: [1, 2], s: 'x' }, other: 'theirs' });

      /* Lists: deleted elements (nested ones too) come back where they were. */
      const l = a.list('l');
      um.stopCapturing(); l.push(1, { n: [true] }, 'x');
      um.stopCapturing(); l.delete(0, 2);
      await converged([a, b]);
      b.list('l').insert(1, 'B');
      await until(() => l.length === 2, 'B\'s insert');
      um.undo();
      assert.deepEqual(l.toJSON(), [1, { n: [true] }, 'x', 'B']);
      um.undo();
      assert.deepEqual(l.toJSON(), ['B']);
      await converged([a, b]);
      assert.deepEqual(b.toJSON(), a.toJSON());

      /* Remote edits are never on the stack; a scope limits what is tracked. */
      const only = a.undoManager({ scope: [a.text('scoped')] });
      a.text('scoped').insert(0, 'in');
      a.text('elsewhere').insert(0, 'out');
      b.text('scoped').insert(0, 'remote');
      await until(() => a.text('scoped').toString().includes('remote'), 'B\'s edit');
      assert.equal(only.undoStack.length, 1);
      only.undo();
      assert.equal(a.text('scoped').toString(), 'remote');
      assert.equal(a.text('elsewhere').toString(), 'out');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.dispose();
    }
  });

test('anchors of a remote cursor stay on their characters through 1,000 random concurrent edits',
  { skip: NOT_RUN, timeout: 120000 }, async () => {
    const server = new Server();
    await server.start();
    const clients = [];
    try {
      for (let i = 0; i < 2; i++) clients.push(await connect(server.url, { backoff: { baseMs: 50, capMs: 200 } }));
      const [a, b] = await Promise.all(clients.map((c) => c.open('anchors')));
      await Promise.all([a.synced, b.synced]);
      const ta = a.text('body'), tb = b.text('body');
      const rnd = prng(SEED + 1);
      const nextA = chars(A_BMP, A_ASTRAL), nextB = chars(B_BMP, B_ASTRAL);
      tb.insert(0, Array.from({ length: 20 }, nextB).join(''));
      await converged([a, b]);

      /* B's cursor: anchors to characters (both sides) and to the ends,
       * with the character each one stays next to, sent as presence. */
      const cursor = () => {
        const s = tb.toString();
        const out = [];
        for (let k = 0; k < 4; k++) {
          const list = cps(s);
          const at = rnd.int(list.length + 1);
          const index = list.slice(0, at).join('').length;
          const assoc = rnd() < 0.5 ? 1 : -1;
          out.push({ anchor: tb.anchor(index, assoc), next: assoc > 0 ? list[at] ?? null : list[at - 1] ?? null, assoc });
        }
        return out;
      };
      let checked = 0;
      const check = () => {
        const peer = a.presence.peers[0];
        if (!peer) return;
        const s = ta.toString();
        for (const c of peer.state.cursor) {
          const i = a.resolve(c.anchor);
          if (c.next === null) { assert.equal(i, c.assoc > 0 ? s.length : 0, 'an end stays the end'); continue; }
          if (!s.includes(c.next)) {
            /* not here yet (null), or deleted (somewhere in the text) */
            if (i !== null) assert.ok(i >= 0 && i <= s.length);
            continue;
          }
          assert.notEqual(i, null, 'a character this replica has resolves');
          const at = c.assoc > 0 ? s.slice(i) : s.slice(0, i);
          const ch = c.assoc > 0 ? cps(at)[0] : cps(at).at(-1);
          assert.equal(ch, c.next, `the anchor stays on ${c.next}`);
          checked++;
        }
      };
      b.presence.set({ cursor: cursor() });
      for (let n = 0; n < 1000; n++) {
        const who = rnd() < 0.5 ? ta : tb;
        randomTextEdit(rnd, who, who === ta ? nextA : nextB);
        if (n % 25 === 0) b.presence.set({ cursor: cursor() });
        if (n % 7 === 0) check();
        if (rnd() < 0.2) await sleep(rnd.int(5));
      }
      await converged([a, b]);
      await sleep(150); /* the last presence */
      check();
      assert.ok(checked > 100, `anchors were checked (${checked})`);
      /* The same anchor resolves to the same index on both replicas. */
      for (const c of cursor()) assert.equal(a.resolve(c.anchor), b.resolve(c.anchor));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.dispose();
    }
  });

test('disconnect() keeps edits local until connect() sends them; replicas converge',
  { skip: NOT_RUN, timeout: 120000 }, async () => {
    const server = new Server();
    await server.start();
    const clients = [];
    try {
      for (let i = 0; i < 2; i++) clients.push(await connect(server.url, { backoff: { baseMs: 20, capMs: 50 } }));
      const [a, b] = await Promise.all(clients.map((c) => c.open('offline')));
      await Promise.all([a.synced, b.synced]);
      const rnd = prng(SEED + 2);
      const nextA = chars(A_BMP, A_ASTRAL), nextB = chars(B_BMP, B_ASTRAL);
      for (let round = 0; round < 5; round++) {
        clients[0].disconnect();
        assert.equal(clients[0].status, 'offline');
        assert.equal(clients[0].disconnected, true);
        const had = new Set(cps(a.text('body').toString()));
        for (let k = 0; k < 30; k++) {
          randomTextEdit(rnd, a.text('body'), nextA);
          randomTextEdit(rnd, b.text('body'), nextB);
          if (k % 3 === 0) a.map('m').set(`k${round}`, k);
        }
        await sleep(150); /* several backoff periods: it must stay offline */
        assert.equal(clients[0].status, 'offline', 'no reconnect while disconnected on purpose');
        assert.ok(a.pending.length > 0, 'offline edits are pending');
        const fresh = cps(a.text('body').toString()).filter((x) => isA(x) && !had.has(x));
        assert.ok(fresh.length > 0, 'A typed while offline');
        const onServer = cps((await server.docJSON('offline'))?.body ?? '');
        assert.deepEqual(fresh.filter((x) => onServer.includes(x)), [], 'none of it reached the server');
        assert.equal(a.isSynced, false);
        clients[0].connect();
        await until(() => clients[0].status === 'online', 'A back online');
        await converged([a, b]);
        assert.deepEqual(a.toJSON(), b.toJSON());
        assert.equal(a.toJSON().m[`k${round}`], 27);
        assert.deepEqual(await server.docJSON('offline'), a.toJSON(), 'the server has the offline edits');
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.dispose();
    }
  });

test('the agent id is readable and settable', { skip: NOT_RUN, timeout: 60000 }, async () => {
  const server = new Server();
  await server.start();
  const clients = [];
  try {
    clients.push(await connect(server.url, { agent: 1234n }));
    clients.push(await connect(server.url));
    const a = await clients[0].open('agents');
    const b = await clients[1].open('agents', { agent: '99' });
    assert.equal(clients[0].agent, 1234n);
    assert.equal(a.agent, 1234n);
    assert.equal(b.agent, 99n);
    a.text('t').insert(0, 'a');
    assert.match(a.text('t').anchor(0).item, /^1234:0$/);
    await a.synced;
    await until(() => b.text('t').toString() === 'a', 'B to get the edit');
    await assert.rejects(clients[1].open('x', { agent: 0 }), RangeError);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.dispose();
  }
});

/* Without a server: batches delivered in random order (the core parks
 * what arrives early), undo/redo mixed in, characters outside the BMP. */
for (const seed of [SEED, SEED + 100, SEED + 200]) {
  test(`replicas under random delivery with undo/redo: deltas, lengths and content agree, and converge (seed ${seed})`, async () => {
    const rnd = prng(seed);
    const a = await createReplica({ agent: 11n }), b = await createReplica({ agent: 12n });
    const um = a.undoManager({ captureTimeout: 0 });
    const AL = [...'ab ', 'é', '😀', '🎉'];
    const inbox = new Map([[a, []], [b, []]]);
    const sent = new Map([[a, 0], [b, 0]]);
    const mirror = new Map([[a, ''], [b, '']]);
    for (const d of [a, b]) {
      d.on('change', (e) => { for (const c of e.changes) if (c.target === d.text('t')) mirror.set(d, applyDelta(mirror.get(d), c.delta)); });
    }
    const post = () => {
      for (const [from, to] of [[a, b], [b, a]]) {
        for (const r of from.pending.slice(sent.get(from))) inbox.get(to).push(r.batch);
        sent.set(from, from.pending.length);
      }
    };
    const deliver = (d, all) => {
      const box = inbox.get(d);
      while (box.length && (all || rnd() < 0.5)) d._applyRemote(box.splice(rnd.int(box.length), 1)[0]);
    };
    const edit = (d) => {
      const t = d.text('t');
      const list = cps(t.toString());
      const r = rnd();
      if (r < 0.5 || !list.length) {
        let str = '';
        for (let k = 1 + rnd.int(3); k > 0; k--) str += rnd.pick(AL);
        t.insert(list.slice(0, rnd.int(list.length + 1)).join('').length, str);
      } else if (r < 0.8) {
        const at = rnd.int(list.length), n = 1 + rnd.int(Math.min(3, list.length - at));
        t.delete(list.slice(0, at).join('').length, list.slice(at, at + n).join('').length);
      } else if (r < 0.9) {
        d.map('m').set(`k${rnd.int(3)}`, rnd.int(100));
      } else {
        const l = d.list('l');
        if (l.length && rnd() < 0.4) l.delete(rnd.int(l.length));
        else l.insert(rnd.int(l.length + 1), rnd() < 0.8 ? rnd.int(10) : { n: [rnd.int(9)] });
      }
    };
    const check = (d) => {
      const t = d.text('t'), core = d._core.text(t._h);
      assert.equal(t.toString(), core);
      assert.equal(t.length, core.length);
      assert.equal(mirror.get(d), core, 'the deltas rebuild the text');
    };
    for (let step = 0; step < 1500; step++) {
      const d = rnd() < 0.5 ? a : b;
      if (d === a && rnd() < 0.15) { if (rnd() < 0.6) um.undo(); else um.redo(); } else if (rnd() < 0.3) d.transact(() => { for (let k = 1 + rnd.int(3); k > 0; k--) edit(d); });
      else edit(d);
      post();
      if (rnd() < 0.3) deliver(rnd() < 0.5 ? a : b, false);
      check(d);
    }
    post(); deliver(a, true); deliver(b, true);
    assert.deepEqual(a.toJSON(), b.toJSON(), 'converged');
    check(a); check(b);
    /* Undo all, then redo all, with nothing in between: back to the same. */
    const before = JSON.stringify(a.toJSON());
    let n = 0;
    while (um.undo()) n++;
    for (let k = 0; k < n; k++) assert.ok(um.redo(), 'every undo is redone');
    assert.equal(JSON.stringify(a.toJSON()), before);
    post(); deliver(b, true);
    assert.deepEqual(b.toJSON(), a.toJSON());
    check(a); check(b);
  });
}

/* Composition of many events in one cycle (a reconnect's merged batch):
 * RunList against a model with one entry per code point. */
test('run composition of many scattered edits matches a per-character model', () => {
  const rnd = prng(SEED + 7);
  for (let t = 0; t < 300; t++) {
    const oldLen = rnd.int(t % 3 ? 2000 : 4);
    const model = Array.from({ length: oldLen }, (_, i) => i); /* old position, or -1 */
    const rl = new RunList(oldLen);
    const n = rnd.int(t % 10 ? 300 : 3000);
    for (let e = 0; e < n; e++) {
      if (model.length && rnd() < 0.4) {
        const pos = rnd.int(model.length);
        const count = 1 + rnd.int(Math.min(model.length - pos, rnd() < 0.1 ? 400 : 4));
        rl.delete(pos, count);
        model.splice(pos, count);
      } else {
        const pos = rnd.int(model.length + 1), count = 1 + rnd.int(3);
        rl.insert(pos, count);
        model.splice(pos, 0, ...new Array(count).fill(-1));
      }
    }
    const flat = [];
    for (const r of rl.runs()) for (let i = 0; i < r.len; i++) flat.push(r.old < 0 ? -1 : r.old + i);
    assert.deepEqual(flat, model, `case ${t}`);
  }
});

test('a merged batch of 1,000 scattered edits is one change event whose delta rebuilds the text', async () => {
  const a = await createReplica(), b = await createReplica();
  const rnd = prng(SEED + 8);
  const ta = a.text('t'), tb = b.text('t');
  const send = () => { for (const r of a.pending.splice(0)) b._applyRemote(r.batch); };
  ta.insert(0, 'start text');
  send();
  /* rounds 0 and 1 without astral characters (the inserted content is read
   * in one call), round 2 with (a slice per inserted run) */
  for (let round = 0; round < 3; round++) {
    const before = b._core.vv();
    for (let i = 0; i < 1000; i++) {
      const str = ta.toString();
      const low = (k) => k < str.length && (str.charCodeAt(k) & 0xfc00) === 0xdc00;
      if (ta.length > 4 && rnd() < 0.3) {
        let at = rnd.int(ta.length);
        if (low(at)) at--;
        ta.delete(at, low(at + 1) ? 2 : 1);
      } else {
        let at = rnd.int(ta.length + 1);
        if (low(at)) at--;
        ta.insert(at, round === 2 && rnd() < 0.05 ? '🎉' : String.fromCharCode(97 + rnd.int(26)));
      }
    }
    a.pending.length = 0;
    const [batch, ...more] = a._core.diffMax(before, 1 << 22);
    assert.equal(more.length, 0);
    const events = [];
    const off = tb.on('change', (e) => events.push(e));
    const old = tb.toString();
    b._applyRemote(batch);
    off();
    assert.equal(events.length, 1, 'one change event');
    assert.equal(tb.toString(), ta.toString());
    assert.equal(applyDelta(old, events[0].delta), ta.toString(), `round ${round}: the delta rebuilds the text`);
    assert.equal(tb.length, ta.toString().length);
  }
});
