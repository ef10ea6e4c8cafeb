/*
 * hocus_awareness.test.mjs -- issue 12, bar 3, through Hocuspocus: the
 * awareness of stock @hocuspocus/provider clients (and of a y-websocket
 * client on the same document: the two protocols see each other) is tandem
 * presence. 100 updates in a second reach each peer in at most 11
 * broadcasts and the last one arrives; a newcomer sees every current
 * state; nobody can change or remove another connection's state (not even
 * with a forged removal through a raw Hocuspocus message); a closed
 * connection's states go at once and only its own; a reconnecting client
 * is visible without making a new change; a silent one expires after the
 * TTL (+0.5 s); documents multiplexed on one socket have separate
 * awareness, and closing one (Close message) removes only its states.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, ywsClient, hocusClient, hocus, rawHocus, WS, until, sleep } from './yhelpers.mjs';

const st = (c, id) => c.awareness.getStates().get(id);
const id = (c) => c.doc.clientID;
/* The remote users a client sees (its own state, and the providers'
 * initial empty states, left out), sorted. */
const users = (c) => [...c.awareness.getStates().entries()]
  .filter(([k, s]) => k !== id(c) && s.user).map(([, s]) => s.user).sort();

/* Counts the awareness broadcasts naming `who` that reach `c`. */
function counter(c, who) {
  const n = { v: 0 };
  c.awareness.on('update', ({ added, updated, removed }, origin) => {
    if (origin !== 'local' && [...added, ...updated, ...removed].includes(who)) n.v++;
  });
  return n;
}

test('hocuspocus awareness: newcomer, coalescing, ownership, reconnect, close',
  { timeout: 90000 }, async () => {
    const server = new Server();
    await server.start();
    const all = [];
    const keep = (c) => { all.push(c); return c; };
    const drop = (c) => { all.splice(all.indexOf(c), 1); c.destroy(); };
    try {
      const doc = 'haw-1';
      const a = keep(hocusClient(server, doc)), b = keep(hocusClient(server, doc));
      const y = keep(ywsClient(server, doc));
      await until(() => a.synced() && b.synced() && y.synced(), 'a, b and y to sync');
      a.awareness.setLocalStateField('user', 'alice');
      b.awareness.setLocalStateField('user', 'bob');
      y.awareness.setLocalStateField('user', 'yan');
      await until(() => users(a).join() === 'bob,yan' && users(b).join() === 'alice,yan' &&
        users(y).join() === 'alice,bob', 'a, b and y (y-websocket) to see each other', 5000);

      /* A newcomer of either protocol gets every current state, nobody changing. */
      const c = keep(hocusClient(server, doc));
      const y2 = keep(ywsClient(server, doc));
      await until(() => users(c).join() === 'alice,bob,yan' && users(y2).join() === 'alice,bob,yan',
        'the newcomers to see alice, bob and yan', 5000);

      /* 100 updates in a second: at most 11 broadcasts reach each peer
       * (Hocuspocus and y-websocket), and the last state arrives. */
      const peers = [b, c, y, y2];
      const seen = peers.map((p) => counter(p, id(a)));
      const start = Date.now();
      for (let i = 1; i <= 100; i++) {
        a.awareness.setLocalStateField('cursor', i);
        await sleep(Math.max(0, start + i * 9 - Date.now()));
      }
      const spent = Date.now() - start;
      await until(() => peers.every((p) => st(p, id(a))?.cursor === 100), 'the last cursor to arrive', 3000);
      await sleep(300);
      /* One per 100 ms interval plus the first (a loaded machine that needed
       * longer to send them gets its intervals). */
      const allowed = Math.max(11, Math.ceil(spent / 100) + 1);
      for (const [i, n] of seen.entries()) {
        assert.ok(n.v <= allowed, `peer ${i}: ${n.v} broadcasts of a for 100 updates in ${spent} ms`);
        assert.ok(n.v >= 2, `peer ${i}: only ${n.v} broadcasts`);
      }

      /* A forger on its own Hocuspocus socket, subscribed to the document,
       * may neither remove nor overwrite b's (Hocuspocus) or y's
       * (y-websocket) state; closing its address or its socket takes
       * nothing of theirs with it. */
      const f = keep(await rawHocus(server));
      f.auth(doc);
      f.step1(doc);
      await until(() => f.got.length >= 3, 'the forger to be answered', 3000);
      const bClock = b.awareness.meta.get(id(b)).clock, yClock = y.awareness.meta.get(id(y)).clock;
      f.awareness(doc, [[id(b), bClock + 5, null], [id(y), yClock + 5, null]]);
      f.awareness(doc, [[id(b), bClock + 6, { user: 'mallory' }], [id(y), yClock + 6, { user: 'mallory' }]]);
      await sleep(500);
      for (const p of [a, c, y2]) {
        assert.equal(st(p, id(b))?.user, 'bob', 'a forged update changed a Hocuspocus client\'s state');
        assert.equal(st(p, id(y))?.user, 'yan', 'a forged update changed a y-websocket client\'s state');
      }
      f.close(doc);
      await sleep(300);
      f.end();
      await sleep(400);
      for (const p of [a, c, y2]) {
        assert.equal(st(p, id(b))?.user, 'bob', 'a leaving connection removed another\'s state');
        assert.equal(st(p, id(y))?.user, 'yan', 'a leaving connection removed another\'s state');
      }

      /* A connection that drops and comes back is visible to its peers
       * again without a new change of its own (its provider resends the
       * same clock, which its peers saw removed). */
      for (const [r, what] of [[b, 'Hocuspocus'], [y, 'y-websocket']]) {
        const clock = r.awareness.meta.get(id(r)).clock;
        const t0 = Date.now();
        if (r === b) r.socket.disconnect(); else r.disconnect();
        await until(() => !st(a, id(r)) && !st(y2, id(r)), `the ${what} client to be removed at once`, 2000);
        assert.ok(Date.now() - t0 < 1500, `removal of the ${what} client took ${Date.now() - t0} ms`);
        if (r === b) r.socket.connect(); else r.connect();
        await until(() => st(a, id(r)) && st(y2, id(r)) && st(c, id(r)),
          `the reconnected ${what} client to be visible again`, 5000);
        assert.equal(r.awareness.meta.get(id(r)).clock >= clock, true);
        assert.equal(st(c, id(r)).user, r === b ? 'bob' : 'yan');
        /* ... and it sees everybody again. */
        await until(() => users(r).join() === (r === b ? 'alice,yan' : 'alice,bob'),
          `the reconnected ${what} client to see the others`, 5000);
      }
      /* Its later changes still reach the peers (the clocks went on). */
      b.awareness.setLocalStateField('cursor', 7);
      y.awareness.setLocalStateField('cursor', 8);
      await until(() => st(a, id(b))?.cursor === 7 && st(a, id(y))?.cursor === 8 &&
        st(y2, id(b))?.cursor === 7, 'changes after the reconnect to arrive', 3000);

      /* A closed connection's state goes at once, and only its own. */
      const t1 = Date.now();
      const aid = id(a);
      drop(a);
      await until(() => !st(c, aid) && !st(y2, aid) && !st(b, aid), 'a to be removed', 2000);
      assert.ok(Date.now() - t1 < 1500, 'removal took too long');
      for (const p of [c, y2]) {
        assert.equal(st(p, id(b))?.user, 'bob');
        assert.equal(st(p, id(y))?.user, 'yan');
      }
    } finally {
      for (const x of all) x.destroy();
      await server.cleanup();
    }
  });

test('hocuspocus awareness: a silent client expires after the TTL', { timeout: 30000 }, async () => {
  const TTL = 1500;
  const server = new Server(['--presence-ttl', String(TTL)]);
  await server.start();
  const all = [];
  let silent;
  try {
    const doc = 'haw-ttl';
    const w = hocusClient(server, doc), wy = ywsClient(server, doc);
    all.push(w, wy);
    await until(() => w.synced() && wy.synced(), 'the watchers to sync');
    /* A raw client: shows a state once, then stays connected and silent. */
    silent = await rawHocus(server);
    silent.auth(doc);
    silent.step1(doc);
    await until(() => silent.got.length >= 3, 'the silent client to be answered', 3000);
    /* And a stock provider (it renews every 15 s only). */
    const quiet = hocusClient(server, doc);
    all.push(quiet);
    await until(() => quiet.synced(), 'the stock provider to sync');
    const t0 = Date.now();
    silent.awareness(doc, [[4242, 1, { user: 'raw' }]]);
    quiet.awareness.setLocalStateField('user', 'stock');
    await until(() => st(w, 4242) && st(wy, 4242) && st(w, id(quiet)) && st(wy, id(quiet)),
      'the states to arrive', 3000);
    await until(() => !st(w, 4242) && !st(wy, 4242) && !st(w, id(quiet)) && !st(wy, id(quiet)),
      'the silent states to expire', TTL + 3000);
    const took = Date.now() - t0;
    assert.ok(took <= TTL + 500 + 150, `expired after ${took} ms (TTL ${TTL})`);
    assert.ok(took >= TTL - 100, `expired early, after ${took} ms`);
  } finally {
    silent?.end();
    for (const x of all) x.destroy();
    await server.cleanup();
  }
});

test('hocuspocus awareness: documents multiplexed on one socket are apart', { timeout: 30000 }, async () => {
  const server = new Server();
  await server.start();
  const all = [];
  let socket;
  try {
    const { HocuspocusProviderWebsocket } = hocus();
    socket = new HocuspocusProviderWebsocket({
      url: server.hocus, WebSocketPolyfill: WS, delay: 100, minDelay: 100, maxDelay: 1000,
    });
    const p1 = hocusClient(server, 'mux-1', { socket }), p2 = hocusClient(server, 'mux-2', { socket });
    const w1 = hocusClient(server, 'mux-1'), w2 = hocusClient(server, 'mux-2');
    const wy1 = ywsClient(server, 'mux-1');
    all.push(p1, p2, w1, w2, wy1);
    await until(() => all.every((x) => x.synced()), 'everybody to sync');
    p1.awareness.setLocalStateField('user', 'one');
    p2.awareness.setLocalStateField('user', 'two');
    w1.awareness.setLocalStateField('user', 'w1');
    w2.awareness.setLocalStateField('user', 'w2');
    await until(() => users(w1).join() === 'one' && users(wy1).join() === 'one,w1' &&
      users(w2).join() === 'two' && users(p1).join() === 'w1' && users(p2).join() === 'w2',
    'each document\'s states to arrive', 5000);
    await sleep(300);
    assert.equal(users(w1).join(), 'one', 'mux-1 saw another document\'s state');
    assert.equal(users(w2).join(), 'two', 'mux-2 saw another document\'s state');

    /* Closing mux-1 on the shared socket (a Close message) removes p1's
     * state there at once and leaves mux-2 alone. */
    const p1id = id(p1), t0 = Date.now();
    p1.disconnect();
    await until(() => !st(w1, p1id) && !st(wy1, p1id), 'p1 to be removed from mux-1', 2000);
    assert.ok(Date.now() - t0 < 1500, 'removal took too long');
    await sleep(400);
    assert.equal(st(w2, id(p2))?.user, 'two', 'closing mux-1 removed a state of mux-2');
    p2.awareness.setLocalStateField('cursor', 3);
    await until(() => st(w2, id(p2))?.cursor === 3, 'mux-2 to go on', 3000);

    /* The same through a raw socket: a client id shown in two documents,
     * one of them closed. */
    const r = await rawHocus(server);
    all.push(r);
    for (const d of ['mux-1', 'mux-2']) { r.auth(d); r.step1(d); }
    await until(() => r.got.length >= 6, 'the raw socket to be answered', 3000);
    r.awareness('mux-1', [[777, 1, { user: 'raw1' }]]);
    r.awareness('mux-2', [[777, 1, { user: 'raw2' }]]);
    await until(() => st(w1, 777)?.user === 'raw1' && st(w2, 777)?.user === 'raw2',
      'the raw states to arrive, each in its document', 3000);
    r.close('mux-1');
    await until(() => !st(w1, 777) && !st(wy1, 777), 'the raw state to leave mux-1', 2000);
    await sleep(400);
    assert.equal(st(w2, 777)?.user, 'raw2', 'closing mux-1 removed the state in mux-2');
    r.end();
    await until(() => !st(w2, 777), 'the raw state to leave mux-2 with its socket', 2000);
  } finally {
    for (const x of all) x.destroy();
    socket?.destroy();
    await server.cleanup();
  }
});

test('hocuspocus awareness: reconnecting across protocols, one client of each', { timeout: 30000 }, async () => {
  /* The only Hocuspocus client of a document and the only y-websocket one:
   * what the server remembers of each must outlive its connection however
   * the other connects. */
  const server = new Server();
  await server.start();
  const all = [];
  try {
    const doc = 'haw-x';
    const h = hocusClient(server, doc), y = ywsClient(server, doc);
    all.push(h, y);
    await until(() => h.synced() && y.synced(), 'h and y to sync');
    h.awareness.setLocalStateField('user', 'hocus');
    y.awareness.setLocalStateField('user', 'yws');
    await until(() => users(h).join() === 'yws' && users(y).join() === 'hocus', 'h and y to see each other', 5000);
    for (let round = 0; round < 2; round++) {
      for (const [r, o] of [[h, y], [y, h]]) {
        if (r === h) r.socket.disconnect(); else r.disconnect();
        await until(() => !st(o, id(r)), 'the removal', 2000);
        if (r === h) r.socket.connect(); else r.connect();
        await until(() => st(o, id(r))?.user &&
          users(r).join() === (r === h ? 'yws' : 'hocus'),
        `round ${round}: the reconnected ${r === h ? 'Hocuspocus' : 'y-websocket'} client and its peer to see each other again`, 5000);
      }
    }
  } finally {
    for (const x of all) x.destroy();
    await server.cleanup();
  }
});

test('hocuspocus awareness: a watcher without a state sees a reconnect; no echo or forger holds a gone id',
  { timeout: 30000 }, async () => {
    /* The watcher shows nothing, so the reconnecting client is sent no
     * states and its clock is all the server has to go by. */
    const server = new Server();
    await server.start();
    const all = [];
    try {
      const doc = 'haw-w';
      const w = hocusClient(server, doc), r = hocusClient(server, doc);
      all.push(w, r);
      w.awareness.setLocalState(null);
      await until(() => w.synced() && r.synced(), 'w and r to sync');
      r.awareness.setLocalStateField('user', 'r');
      await until(() => st(w, id(r))?.user === 'r', 'w to see r', 3000);
      for (let round = 0; round < 2; round++) {
        /* A peer that was shown r: a y-websocket provider sends back every
         * change it applies, so its echo of r's state may come after r left. */
        const e = await rawHocus(server);
        all.push(e);
        e.auth(doc);
        e.step1(doc);
        await until(() => e.got.length >= 4, 'the echoer to be shown r', 3000);
        const clock = r.awareness.meta.get(id(r)).clock;
        r.socket.disconnect();
        await until(() => !st(w, id(r)), 'r to be removed', 2000);
        e.awareness(doc, [[id(r), clock + 1, { user: 'ghost' }]]);
        await sleep(400);
        assert.equal(st(w, id(r)), undefined, 'an echo of a gone client\'s state made a ghost');
        /* A forger, subscribed after r left, removes r's id with a higher clock. */
        const f = await rawHocus(server);
        all.push(f);
        f.auth(doc);
        f.step1(doc);
        await until(() => f.got.length >= 3, 'the forger to be answered', 3000);
        f.awareness(doc, [[id(r), r.awareness.meta.get(id(r)).clock + 100, null]]);
        await sleep(200);
        r.socket.connect();
        await until(() => st(w, id(r))?.user === 'r', `round ${round}: w to see r again`, 5000);
      }
    } finally {
      for (const x of all) x.destroy();
      await server.cleanup();
    }
  });
