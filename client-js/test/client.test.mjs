/*
 * client.test.mjs -- tandem-client against a real `tandem serve`.
 *
 * Each test starts its own server (free port, temporary data directory):
 * three clients converge under random concurrent edits (and the deltas of
 * their change events rebuild the text exactly); edits made while the server
 * is down sync when it is back; 200 clients reconnecting after a restart are
 * spread over time (the spread is printed); presence enter/update/leave with
 * client-side throttling; opening a document twice shares one subscription;
 * a reconnect with many pending batches sends ONE UPDATE (frames counted on
 * the wire), settled by its ACK, and a connection cut during it (the UPDATE
 * lost, or sent with its ACK lost) loses and doubles nothing (issue 14).
 *
 * A missing server binary, or one without a working `serve` verb, fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket as WsWebSocket } from 'ws';
import { connect } from '../src/index.js';
import { Server, serverMissing, mustRun, prng, sleep, until, ALPHABET, applyDelta } from './helpers.mjs';

const NOT_RUN = mustRun(serverMissing());
const SEED = Number(process.env.TD_SEED || 1);

test('three clients converge under random concurrent edits', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const server = new Server();
  await server.start();
  const clients = [];
  try {
    for (let i = 0; i < 3; i++) clients.push(await connect(server.url, { backoff: { baseMs: 100 } }));
    const docs = await Promise.all(clients.map((c) => c.open('converge')));
    await Promise.all(docs.map((d) => d.synced));
    /* Each replica mirrors its text through change-event deltas only. */
    const mirrors = docs.map(() => '');
    docs.forEach((d, i) => d.on('change', (e) => {
      for (const ch of e.changes) {
        if (ch.kind === 'text' && ch.target === d.text('body')) mirrors[i] = applyDelta(mirrors[i], ch.delta);
      }
    }));
    const rnd = prng(SEED);
    const ROUNDS = 40, OPS = 8;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, d] of docs.entries()) {
        d.transact(() => {
          for (let k = 0; k < OPS; k++) randomEdit(rnd, d, i);
        });
      }
      /* Let some rounds cross on the wire, some not. */
      if (rnd() < 0.5) await sleep(rnd.int(15));
    }
    await Promise.all(docs.map((d) => d.synced));
    const want = () => JSON.stringify(docs[0].toJSON());
    await until(() => docs.every((d) => JSON.stringify(d.toJSON()) === want()), 'the replicas to converge');
    const json = docs[0].toJSON();
    assert.ok(json.body.length > 50, 'the history left text behind');
    for (const [i, d] of docs.entries()) {
      assert.deepEqual(d.toJSON(), json, `replica ${i} (seed ${SEED})`);
      assert.equal(mirrors[i], d.text('body').toString(), `replica ${i}: deltas rebuild the text`);
      assert.deepEqual([...d._core.snapshot()], [...docs[0]._core.snapshot()], `replica ${i}: snapshot bytes`);
    }
    assert.deepEqual(await server.docJSON('converge'), JSON.parse(docs[0]._core.json()), 'the server holds the same document');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.dispose();
  }
});

function randomEdit(rnd, d, who) {
  const body = d.text('body');
  const r = rnd();
  if (r < 0.55 || body.length === 0) {
    let s = '';
    for (let n = 1 + rnd.int(5); n > 0; n--) s += rnd.pick(ALPHABET);
    const cps = [...body.toString()];
    const at = rnd.int(cps.length + 1);
    body.insert(cps.slice(0, at).join('').length, s);
  } else if (r < 0.8) {
    const cps = [...body.toString()];
    const at = rnd.int(cps.length);
    const n = 1 + rnd.int(Math.min(4, cps.length - at));
    const from = cps.slice(0, at).join('').length;
    body.delete(from, cps.slice(at, at + n).join('').length);
  } else if (r < 0.9) {
    const items = d.list('items');
    if (items.length && rnd() < 0.4) items.delete(rnd.int(items.length));
    else items.insert(rnd.int(items.length + 1), rnd() < 0.5 ? who : `s${rnd.int(100)}`);
  } else {
    const meta = d.map('meta');
    const key = `k${rnd.int(6)}`;
    if (rnd() < 0.2) meta.delete(key);
    else if (rnd() < 0.2) meta.set(key, { by: who, n: rnd.int(1000), tags: ['x', who] });
    else meta.set(key, rnd() < 0.5 ? rnd.int(1e6) : `v${who}`);
  }
}

test('edits made while the server is down sync after it comes back', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const server = new Server();
  await server.start();
  const a = await connect(server.url, { backoff: { baseMs: 100, capMs: 1000 } });
  const b = await connect(server.url, { backoff: { baseMs: 100, capMs: 1000 } });
  try {
    const da = await a.open('offline'), db = await b.open('offline');
    da.text('t').insert(0, 'before ');
    await da.synced;
    await until(() => db.text('t').toString() === 'before ', 'b to see the first edit');

    await server.stop();
    await until(() => a.status !== 'online' && b.status !== 'online', 'both clients to notice');
    da.text('t').insert(7, 'during-A ');
    db.text('t').insert(0, '[B] ');
    da.list('l').push(1, 2, 3);
    assert.equal(da.isSynced, false, 'an offline edit is not acknowledged');
    assert.equal(da.pending.length, 2);
    await sleep(300);

    await server.start();
    await Promise.all([da.synced, db.synced]);
    await until(() => JSON.stringify(da.toJSON()) === JSON.stringify(db.toJSON()), 'a and b to converge');
    assert.equal(da.text('t').toString(), '[B] before during-A ');
    assert.deepEqual(db.list('l').toArray(), [1, 2, 3]);
    assert.deepEqual(await server.docJSON('offline'), da.toJSON());
  } finally {
    await a.close();
    await b.close();
    await server.dispose();
  }
});

test('200 clients reconnecting after a server restart are spread over time', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const N = 200;
  const server = new Server();
  await server.start();
  const clients = [];
  try {
    for (let i = 0; i < N; i++) clients.push(await connect(server.url));
    await until(() => clients.every((c) => c.status === 'online'), 'every client to be online', 60000);
    const docs = await Promise.all(clients.map((c, i) => c.open(`storm-${i % 10}`)));
    await Promise.all(docs.map((d) => d.synced));

    /* When each client scheduled the connection attempt that brought it back
     * (a server still starting may hold accepted connections in its listen
     * backlog and WELCOME them all at once, and 200 clients in one loaded
     * process fire late timers in bursts: neither is the client's doing). */
    const back = new Array(N).fill(0), attempt = new Array(N).fill(0);
    clients.forEach((c, i) => c.on('status', (s) => {
      if (s === 'connecting') attempt[i] = c.nextAttemptAt ?? Date.now();
      if (s === 'online' && !back[i]) back[i] = attempt[i];
    }));
    const t0 = Date.now();
    await server.stop();
    await until(() => clients.every((c) => c.status !== 'online'), 'every client to notice the restart');
    await server.start();
    await until(() => back.every(Boolean), 'every client to reconnect', 90000);

    const times = back.map((t) => Math.max(0, t - t0)).sort((x, y) => x - y);
    let peak = 0;
    for (let i = 0, j = 0; i < N; i++) {
      while (times[i] - times[j] >= 100) j++;
      peak = Math.max(peak, i - j + 1);
    }
    const spread = times[N - 1] - times[0];
    const pct = (p) => times[Math.min(N - 1, Math.floor((p / 100) * N))];
    console.log(`reconnect of ${N} clients after a restart (attempt times after the stop; ` +
      `the server was back after ${server.startedAt - t0} ms): first ${times[0]} ms, median ${pct(50)} ms, ` +
      `p90 ${pct(90)} ms, last ${times[N - 1]} ms; spread ${spread} ms; busiest 100 ms window: ${peak} clients`);
    assert.ok(peak < N / 2, `at most half the clients in any 100 ms window (saw ${peak})`);
    assert.ok(spread >= 100, `reconnects spread over more than 100 ms (saw ${spread} ms)`);
    await Promise.all(docs.map((d) => d.synced));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.dispose();
  }
});

test('presence: enter, update, leave; throttled to the server interval', { skip: NOT_RUN, timeout: 60000 }, async () => {
  const server = new Server({ args: ['--presence-interval', '200ms'] });
  await server.start();
  const a = await connect(server.url), b = await connect(server.url);
  try {
    const da = await a.open('room'), db = await b.open('room');
    await Promise.all([da.synced, db.synced]);
    const seen = [];
    db.presence.on('change', (peers) => seen.push(peers.map((p) => p.state)));

    da.presence.set({ name: 'Ann', cursor: 0 });
    await until(() => db.presence.peers.length === 1, 'b to see a enter');
    assert.equal(db.presence.peers[0].state.name, 'Ann');
    assert.equal(db.presence.peers[0].session, a.session);

    /* 30 updates in a burst: the last one arrives, not 30 of them. */
    const before = seen.length;
    const sent = [];
    const realSend = a._sendPresence.bind(a);
    a._sendPresence = (doc, bytes) => { sent.push(Date.now()); return realSend(doc, bytes); };
    for (let i = 1; i <= 30; i++) { da.presence.set({ name: 'Ann', cursor: i }); await sleep(10); }
    await until(() => db.presence.peers[0]?.state.cursor === 30, 'the last state to arrive');
    await sleep(300);
    assert.equal(db.presence.peers[0].state.cursor, 30);
    assert.ok(seen.length - before < 10, `updates were coalesced (${seen.length - before} changes seen)`);
    const gaps = sent.slice(1).map((t, i) => t - sent[i]).filter((g) => g < 190);
    assert.deepEqual(gaps, [], 'the client never sent presence faster than the interval');
    /* A late joiner gets the snapshot. */
    const c = await connect(server.url);
    const dc = await c.open('room');
    await until(() => dc.presence.peers.some((p) => p.state.cursor === 30), 'c to get the presence snapshot');
    await c.close();

    await a.close();
    await until(() => db.presence.peers.length === 0, 'b to see a leave');
  } finally {
    await a.close();
    await b.close();
    await server.dispose();
  }
});

test('presence heartbeats keep an entry alive past the ttl', { skip: NOT_RUN, timeout: 60000 }, async () => {
  const server = new Server({ args: ['--presence-ttl', '1500ms'] });
  await server.start();
  const a = await connect(server.url), b = await connect(server.url);
  try {
    const da = await a.open('hb'), db = await b.open('hb');
    await Promise.all([da.synced, db.synced]);
    da.presence.set({ name: 'Ann' });
    await until(() => db.presence.peers.length === 1, 'b to see a');
    let left = false;
    db.presence.on('change', (p) => { if (p.length === 0) left = true; });
    await sleep(3500);
    assert.equal(left, false, 'heartbeats kept the entry past twice the ttl');
  } finally {
    await a.close();
    await b.close();
    await server.dispose();
  }
});

test('opening a document twice shares one subscription', { skip: NOT_RUN, timeout: 60000 }, async () => {
  const server = new Server();
  await server.start();
  const a = await connect(server.url);
  try {
    const [d1, d2] = await Promise.all([a.open('shared'), a.open('shared')]);
    assert.equal(d1, d2);
    const d3 = await a.open('shared');
    assert.equal(d1, d3);
    let subs = 0;
    const realSend = a._send.bind(a);
    a._send = (bytes) => { if (bytes[0] === 0x02) subs++; return realSend(bytes); };
    a.reconnect();
    await until(() => a.status === 'online' && d1.isSynced, 'the reconnect');
    assert.equal(subs, 1, 'one SUBSCRIBE for the document');
    await d1.close();
    await d2.close();
    assert.equal(a.docs.has('shared'), true, 'still open once');
    await d3.close();
    assert.equal(a.docs.has('shared'), false);
  } finally {
    await a.close();
    await server.dispose();
  }
});

/* A WebSocket (the `ws` package's) that counts the frames each way by type
 * (deflated or not: with protocol version 2 large messages travel deflated,
 * their type byte with 0x40 set) and can cut the connection at the next UPDATE: 'swallow' (the server never
 * gets it) or 'after' (sent, then cut at once: the server may or may not
 * have taken it, and its ACK is lost either way). */
function spySocket() {
  const spy = { sent: new Map(), received: new Map(), cut: null, onFrame: null, onUpdate: null };
  spy.count = (dir, type) => spy[dir].get(type) ?? 0;
  spy.reset = () => { spy.sent.clear(); spy.received.clear(); };
  spy.WebSocket = class extends WsWebSocket {
    constructor(...args) {
      super(...args);
      /* registered before the client's onmessage: sees each frame first */
      this.on('message', (data) => {
        const t = new Uint8Array(data)[0] & ~0x40;
        spy.received.set(t, spy.count('received', t) + 1);
        spy.onFrame?.(t);
      });
    }
    send(data, ...rest) {
      const t = data[0] & ~0x40;
      if (t === 0x04 && spy.cut) {
        const how = spy.cut;
        spy.cut = null;
        spy.onCut?.();
        if (how === 'after') super.send(data, ...rest);
        spy.sent.set(t, spy.count('sent', t) + 1);
        this.terminate();
        return;
      }
      spy.sent.set(t, spy.count('sent', t) + 1);
      if (t === 0x04) spy.onUpdate?.();
      super.send(data, ...rest);
    }
  };
  return spy;
}

test('a reconnect with many pending batches sends them as ONE update, before the SYNC; a drop during it loses nothing',
  { skip: NOT_RUN, timeout: 120000 }, async () => {
    const server = new Server();
    await server.start();
    const spy = spySocket();
    const OPTS = { backoff: { baseMs: 20, capMs: 100 } };
    const a = await connect(server.url, { ...OPTS, WebSocket: spy.WebSocket });
    const b = await connect(server.url, OPTS);
    const rnd = prng(SEED + 14);
    try {
      const da = await a.open('merge'), db = await b.open('merge');
      await Promise.all([da.synced, db.synced]);
      let model = '';
      const typeOffline = (n) => {
        for (let i = 0; i < n; i++) {
          const pos = rnd.int(model.length + 1), ch = rnd.pick(BMP);
          da.text('t').insert(pos, ch);
          model = model.slice(0, pos) + ch + model.slice(pos);
        }
      };
      const N = 200;
      const BMP = ALPHABET.filter((c) => c.length === 1); /* any index is a place to insert */
      let remoteEvents = 0;
      db.on('change', (e) => { if (!e.local) remoteEvents++; });

      /* 1. N offline edits, N pending batches -> one UPDATE, one ACK */
      a.disconnect();
      typeOffline(N);
      assert.equal(da.pending.length, N, 'one pending batch per offline edit');
      assert.equal(da.text('t').toString(), model);
      let pendingAtSend = -1, pendingAtAck = -1, syncsAtSend = -1;
      spy.onUpdate = () => { pendingAtSend = da.pending.length; syncsAtSend = spy.count('received', 0x82); };
      spy.onFrame = (t) => { if (t === 0x83) pendingAtAck = da.pending.length; };
      const syncedAtAcks = [];
      const onSynced = (f) => { if (f) syncedAtAcks.push(spy.count('received', 0x83)); };
      da.on('synced', onSynced);
      spy.reset();
      remoteEvents = 0;
      a.connect();
      await da.synced;
      await until(() => db.text('t').toString() === model, 'b to get the offline edits');
      assert.equal(spy.count('sent', 0x04), 1, `one UPDATE for ${N} pending batches`);
      assert.equal(spy.count('received', 0x83), 1, 'one ACK');
      assert.equal(pendingAtSend, 1, 'the pending batches were replaced by the one sent');
      assert.equal(syncsAtSend, 0, 'sent right behind SUBSCRIBE, not after the SYNC');
      assert.equal(pendingAtAck, 1, 'still pending when the ACK arrives');
      assert.deepEqual(syncedAtAcks, [1], 'synced (pending 0) only after the ACK');
      assert.equal(da.pending.length, 0);
      assert.equal(remoteEvents, 1, 'b applied them as one remote batch (one change event)');
      assert.deepEqual(await server.docJSON('merge'), da.toJSON());
      da.off?.('synced', onSynced);

      /* 2. a drop during the merged send, both ways, while b edits too */
      for (const how of ['swallow', 'after']) {
        a.disconnect();
        typeOffline(N);
        db.text('t').insert(0, `<${how}>`);
        assert.equal(da.pending.length, N);
        spy.reset();
        spy.cut = how;
        let atCut = null;
        spy.onCut = () => { atCut = { pending: da.pending.length, synced: da.isSynced }; };
        a.connect();
        await until(() => atCut, 'the cut UPDATE');
        assert.deepEqual(atCut, { pending: 1, synced: false }, `${how}: the merged batch replaced the ${N}, unacknowledged`);
        await until(() => da.isSynced, `${how}: a to be acknowledged after the reconnect`);
        await until(() => db.isSynced && JSON.stringify(da.toJSON()) === JSON.stringify(db.toJSON()), `${how}: a and b to converge`);
        const now = da.text('t').toString();
        assert.equal(now.length, model.length + how.length + 2);
        assert.equal(now.replace(`<${how}>`, ''), model, `${how}: every edit exactly once`);
        model = now;
        assert.ok(spy.count('sent', 0x04) <= 2, `${how}: the cut UPDATE and one resend (${spy.count('sent', 0x04)})`);
        assert.deepEqual(await server.docJSON('merge'), da.toJSON(), `${how}: the server has it all`);
      }
      assert.equal(da.pending.length, 0);

      /* 3. one pending batch goes out as before (pipelined behind SUBSCRIBE) */
      a.disconnect();
      da.transact(() => typeOffline(5));
      assert.equal(da.pending.length, 1);
      spy.reset();
      a.connect();
      await da.synced;
      assert.equal(spy.count('sent', 0x04), 1);
      await until(() => db.text('t').toString() === model, 'b to get the transaction');
    } finally {
      await a.close();
      await b.close();
      await server.dispose();
    }
  });
