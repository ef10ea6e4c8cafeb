/*
 * failover.test.mjs -- issue 15's client side: several server URLs (the
 * nodes of a cluster), moving to the next one when a connection fails or
 * drops, without losing an edit.
 *
 * Without a server: connect() takes a string, a comma-separated string, a
 * URL or an array; against a fake WebSocket that fails every attempt, the
 * attempts go round-robin from `firstUrl` (from a random URL without it),
 * each after the jittered backoff (Math.random pinned near 1 makes every
 * delay its ceiling: base, 2·base, ... up to cap).
 *
 * Against two independent `tandem serve` (separate data directories, no
 * cluster: they share nothing), for several rounds: the server in use is
 * frozen (SIGSTOP) while the client edits, so those edits are sent and not
 * acknowledged, then SIGKILLed; the client edits while offline, moves to
 * the other server, and sends it everything it lacks: the unacknowledged
 * and offline edits, and everything the dead server had acknowledged (from
 * this client and from a peer), including in a document with no pending
 * edit at the switch. The surviving server's GET /docs/{id}, a fresh client
 * of it and the client agree, and every edit is in there exactly once. The
 * killed server is restarted on its old data for the next round, so the
 * client moves back to a server that lacks what the other acknowledged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../src/index.js';
import { Server, serverMissing, mustRun, prng, sleep, until } from './helpers.mjs';

const SEED = Number(process.env.TD_SEED || 1);

/* A WebSocket that never opens: each instance is an attempt, recorded with
 * what the client scheduled after it failed (fail: close it at once). */
function fakeSocket({ fail }) {
  const attempts = [];
  const state = { client: null };
  class FakeWS {
    constructor(url) {
      this.url = String(url);
      this.readyState = 0;
      const rec = { url: this.url };
      attempts.push(rec);
      if (fail) {
        setTimeout(() => {
          this.readyState = 3;
          const failedAt = Date.now();
          this.onclose?.({ code: 1006, reason: '' });
          /* _retry ran synchronously inside onclose */
          const c = state.client;
          rec.delay = c.nextAttemptAt - failedAt;
          /* the client read the clock somewhere inside onclose: on a busy
           * machine that can be a few ms after failedAt */
          rec.slack = Date.now() - failedAt;
          rec.next = c.url;
        }, 0);
      }
    }
    send() { throw new Error('not open'); }
    close() { this.readyState = 3; }
  }
  return { FakeWS, attempts, state };
}

test('connect() takes one URL, a comma-separated list, a URL object or an array', async () => {
  const { FakeWS } = fakeSocket({ fail: false });
  const a = 'ws://127.0.0.1:1/', b = 'ws://127.0.0.1:2/', c = 'ws://127.0.0.1:3/';
  const cases = [
    [a, [a]],
    [` ${a} , ${b},,${c} `, [a, b, c]],
    [new URL(a), [a]],
    [[a, new URL(b), ` ${c}`, a], [a, b, c]],
  ];
  for (const [input, urls] of cases) {
    const client = await connect(input, { WebSocket: FakeWS });
    try {
      assert.deepEqual([...client.urls], urls);
      assert.ok(urls.includes(client.url), `url ${client.url} is one of the list`);
      assert.ok(Object.isFrozen(client.urls));
    } finally { await client.close(); }
  }
  const pinned = await connect([a, b, c], { WebSocket: FakeWS, firstUrl: c });
  assert.equal(pinned.url, c);
  await pinned.close();
  const byIndex = await connect(`${a},${b}`, { WebSocket: FakeWS, firstUrl: 1 });
  assert.equal(byIndex.url, b);
  await byIndex.close();
  await assert.rejects(connect('', { WebSocket: FakeWS }), TypeError);
  await assert.rejects(connect([' ', ''], { WebSocket: FakeWS }), TypeError);
  await assert.rejects(connect([a, b], { WebSocket: FakeWS, firstUrl: 2 }), RangeError);
  await assert.rejects(connect([a, b], { WebSocket: FakeWS, firstUrl: c }), RangeError);
});

test('without firstUrl, clients start at a random URL (they spread over the nodes)', async () => {
  const { FakeWS, attempts } = fakeSocket({ fail: false });
  const urls = ['ws://n1:1/', 'ws://n2:2/', 'ws://n3:3/'];
  const clients = [];
  try {
    for (let i = 0; i < 60; i++) clients.push(await connect(urls, { WebSocket: FakeWS }));
    await until(() => attempts.length === 60, 'every client to make its first attempt');
    const counts = urls.map((u) => attempts.filter((x) => x.url === u).length);
    /* each count is Binomial(60, 1/3): below 5 with probability ~1e-7 */
    assert.ok(counts.every((n) => n >= 5), `first attempts per URL: ${counts.join(', ')}`);
    assert.deepEqual(clients.map((c) => c.url), attempts.map((x) => x.url));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

test('failed attempts go round-robin over the URLs, each after the backoff ceiling (jitter pinned)', async () => {
  const { FakeWS, attempts, state } = fakeSocket({ fail: true });
  const urls = ['ws://n1:1/', 'ws://n2:2/', 'ws://n3:3/'];
  const base = 20, cap = 160, N = 9;
  const random = Math.random;
  Math.random = () => 0.999999; /* every delay at its ceiling */
  let client;
  const statuses = [], drops = [];
  try {
    client = await connect(urls, { WebSocket: FakeWS, firstUrl: 1, backoff: { baseMs: base, capMs: cap } });
    state.client = client;
    client.on('status', (s) => statuses.push(s));
    client.on('disconnect', (e) => drops.push(e.url));
    await until(() => attempts.length >= N && attempts[N - 1].delay !== undefined, `${N} failed attempts`, 20000);
  } finally {
    Math.random = random;
    await client?.close();
  }
  const seen = attempts.slice(0, N);
  seen.forEach((a, k) => {
    assert.equal(a.url, urls[(1 + k) % 3], `attempt ${k} goes to the next URL`);
    assert.equal(a.next, urls[(2 + k) % 3], `after attempt ${k} fails, the next URL is in use`);
    const ceiling = Math.min(cap, base * 2 ** k);
    assert.ok(a.delay >= ceiling - 2 && a.delay <= ceiling + a.slack + 2,
      `attempt ${k}: delay ${a.delay} ms, ceiling ${ceiling} ms (clock read up to ${a.slack} ms late)`);
  });
  assert.deepEqual(drops.slice(0, N), seen.map((a) => a.url), 'each disconnect event names its URL');
  assert.ok(statuses.includes('connecting') && statuses.includes('offline'));
});

test('with real jitter, each delay is in [0, ceiling) and they differ', async () => {
  const { FakeWS, attempts, state } = fakeSocket({ fail: true });
  const urls = 'ws://n1:1/,ws://n2:2/';
  const base = 10, cap = 40, N = 12;
  const client = await connect(urls, { WebSocket: FakeWS, firstUrl: 0, backoff: { baseMs: base, capMs: cap } });
  state.client = client;
  try {
    await until(() => attempts.length >= N && attempts[N - 1].delay !== undefined, `${N} failed attempts`, 20000);
  } finally { await client.close(); }
  const seen = attempts.slice(0, N);
  seen.forEach((a, k) => {
    assert.equal(a.url, client.urls[k % 2]);
    const ceiling = Math.min(cap, base * 2 ** k);
    assert.ok(a.delay >= 0 && a.delay < ceiling + a.slack + 2, `attempt ${k}: delay ${a.delay} ms, ceiling ${ceiling} ms`);
  });
  assert.ok(new Set(seen.map((a) => Math.round(a.delay * 1000))).size > N / 2, 'the delays are jittered');
});

/* ---- against two independent servers ---------------------------------------- */

const NOT_RUN = mustRun(serverMissing());

async function sigkill(server) {
  const p = server.proc;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await gone;
  server.proc = null;
}

/* Each token once in the text, once in the list, once as a map key. */
function assertHolds(json, tokens, where) {
  const text = json.body ?? '';
  for (const t of tokens) {
    const n = text.split(t).length - 1;
    assert.equal(n, 1, `${where}: ${t} is in the text ${n} times`);
  }
  const list = json.items ?? [];
  assert.equal(list.length, tokens.length, `${where}: the list holds every token once`);
  assert.deepEqual([...list].sort(), [...tokens].sort(), `${where}: the list's tokens`);
  assert.deepEqual(Object.keys(json.meta ?? {}).sort(), [...tokens].sort(), `${where}: the map's keys`);
}

test('a server dies with edits unacknowledged: the client moves to the other, which then holds every edit once',
  { skip: NOT_RUN, timeout: 240000 }, async () => {
    const servers = [new Server(), new Server()];
    await Promise.all(servers.map((s) => s.start()));
    const rnd = prng(SEED);
    const clients = [];
    try {
      const client = await connect(servers.map((s) => s.url), { firstUrl: 0, backoff: { baseMs: 50, capMs: 400 } });
      clients.push(client);
      const statuses = [], drops = [];
      client.on('status', (s) => statuses.push(s));
      client.on('disconnect', (e) => drops.push(e.url));
      const doc = await client.open('failover');
      const quiet = await client.open('failover-quiet');
      await until(() => client.status === 'online', 'the client to be online');
      await Promise.all([doc.synced, quiet.synced]);
      assert.equal(client.url, servers[0].url);

      const tokens = [];
      let n = 0;
      /* One edit of each object: a unique token at the start or end of the
       * text, pushed to the list, as a map key. */
      const edit = (d, who) => {
        const t = `<${who}${n++}>`;
        tokens.push(t);
        d.transact(() => {
          const body = d.text('body');
          body.insert(rnd() < 0.5 ? 0 : body.length, t);
          d.list('items').push(t);
          d.map('meta').set(t, n);
        });
      };
      const quietTokens = [];
      const quietEdit = () => {
        const t = `[q${quietTokens.length}]`;
        quietTokens.push(t);
        quiet.text('t').insert(quiet.text('t').length, t);
      };

      /* A peer on the first server only: its acknowledged edits exist on
       * the second only through the client. */
      const peer = await connect(servers[0].url, { backoff: { baseMs: 50, capMs: 400 } });
      clients.push(peer);
      const pdoc = await peer.open('failover');
      await pdoc.synced;
      for (let i = 0; i < 5; i++) { edit(pdoc, 'p'); edit(doc, 'c'); }
      await Promise.all([pdoc.synced, doc.synced]);
      await until(() => JSON.stringify(doc.toJSON()) === JSON.stringify(pdoc.toJSON()), 'the client to have the peer\'s edits');
      await peer.close();
      clients.splice(clients.indexOf(peer), 1);

      const ROUNDS = 4;
      let offlineEdits = 0;
      client.on('disconnect', () => {
        /* while offline for sure: this runs before the retry is scheduled */
        for (let k = 0; k < 3; k++) edit(doc, 'o');
        offlineEdits += 3;
      });
      for (let round = 0; round < ROUNDS; round++) {
        const cur = servers.find((s) => s.url === client.url);
        const other = servers.find((s) => s !== cur);
        if (!other.proc) await other.start(); /* restarted on its old data */

        /* acknowledged by cur */
        for (let i = 0; i < 5; i++) edit(doc, 'a');
        quietEdit();
        await Promise.all([doc.synced, quiet.synced]);
        const ackedByCur = await cur.docJSON('failover');
        assertHolds(ackedByCur, tokens, `round ${round}: acknowledged by the server in use`);

        /* sent, never acknowledged: cur is frozen, then killed */
        cur.proc.kill('SIGSTOP');
        for (let i = 0; i < 5; i++) edit(doc, 'u');
        await sleep(100);
        assert.ok(doc.pending.length >= 5, `round ${round}: edits unacknowledged (${doc.pending.length})`);
        assert.equal(quiet.pending.length, 0, 'nothing pending in the quiet document');
        const dropsBefore = drops.length, offlineBefore = offlineEdits;
        await sigkill(cur);

        await until(() => client.status === 'online' && client.url === other.url, `round ${round}: the client on the other server`, 30000);
        assert.equal(drops[dropsBefore], cur.url, 'the disconnect event names the dead server');
        assert.ok(offlineEdits > offlineBefore, 'edits were made offline');
        await Promise.all([doc.synced, quiet.synced]);

        const mine = doc.toJSON();
        assertHolds(mine, tokens, `round ${round}: the client`);
        assert.deepEqual(await other.docJSON('failover'), mine, `round ${round}: the surviving server holds the client's state`);
        /* The quiet document was synced all along (everything acknowledged,
         * by the dead server): what the new one lacks goes at its SYNC. */
        assert.equal(quiet.toJSON().t, quietTokens.join(''));
        const want = JSON.stringify(quiet.toJSON());
        await until(async () => JSON.stringify(await other.docJSON('failover-quiet')) === want,
          `round ${round}: the quiet document (nothing pending at the switch) on the surviving server`, 30000);

        /* a fresh client of the surviving server reads the same */
        const fresh = await connect(other.url);
        try {
          const fdoc = await fresh.open('failover');
          await fdoc.synced;
          assert.deepEqual(fdoc.toJSON(), mine, `round ${round}: a fresh client of the surviving server`);
        } finally { await fresh.close(); }
      }
      assert.ok(statuses.filter((s) => s === 'online').length >= ROUNDS + 1, `status events: ${statuses.join(' ')}`);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      for (const s of servers) {
        if (s.proc) { try { s.proc.kill('SIGCONT'); } catch { /* gone */ } }
        await s.dispose();
      }
    }
  });
