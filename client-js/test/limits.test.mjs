/*
 * limits.test.mjs -- big edits and refused batches (issue 10, item 2),
 * against a real `tandem serve` started per test.
 *
 * - A 10 MB paste and a 100,000-op transaction, under the server's default
 *   max_batch: the client splits them into batches the server takes (none
 *   is refused), and every client and GET /docs/{id} end with the same
 *   document.
 * - A refused batch: a client edits before it ever reached the server, so
 *   it splits for the protocol's default 4 MiB, and (merged resend off)
 *   sends each pending batch as it is; the server runs with
 *   --max-batch 64K and refuses the big batch (too_large) and, since
 *   nothing of it was applied, every later one of that client (missing_ops:
 *   a gap in its seqs). The client resubscribes and sends what the server
 *   lacks in batches that fit; 100 more edits follow. Another client sees
 *   all of it, and so does a third one after a server restart.
 * - The same offline edits with the reconnect's merged resend (the
 *   default): what the server lacks goes out split for its limit, and
 *   nothing is refused.
 * - agent_taken: a client's connection freezes (a proxy stops forwarding but
 *   keeps it open, as a vanished network does), so the server keeps it and
 *   the agent it owns; on its new connection the client's resent batch is
 *   refused. It moves to a new agent and retries until the old connection
 *   is gone; everything arrives.
 *
 * Sizes are fixed (not scaled down under a sanitizer build): the point is
 * that these sizes go through. Each phase's time is printed.
 */
import { test } from 'node:test';
import net from 'node:net';
import assert from 'node:assert/strict';
import { connect, MemoryStorage } from '../src/index.js';
import { maxBatchFor } from '../src/wire.js';
import { Server, serverMissing, mustRun, prng, until, freePort, bigText } from './helpers.mjs';

const NOT_RUN = mustRun(serverMissing());
const SEED = Number(process.env.TD_SEED || 1);
const OPTS = { backoff: { baseMs: 50, capMs: 500 } };

function timer() {
  const t0 = Date.now();
  let last = t0;
  return (what) => {
    const now = Date.now();
    console.log(`# ${what}: ${now - last} ms (${now - t0} ms in all)`);
    last = now;
  };
}

/* Every error event of an emitter, for the assertions at the end. */
function errorsOf(emitter) {
  const seen = [];
  emitter.on('error', (e) => seen.push(e));
  return seen;
}

/* The same document everywhere: replicas and the server. The replicas'
 * JSON texts come from the same core, so they are compared as text (parsing
 * a 10 MB document on every poll would dominate the test's time). */
async function assertConverged(server, id, docs, what) {
  const json = (d) => d._core.json();
  await until(() => { const want = json(docs[0]); return docs.every((d) => json(d) === want); },
    `${what}: the replicas to converge`, 60000);
  assert.deepEqual(await server.docJSON(id), JSON.parse(json(docs[0])), `${what}: GET /docs/${id}`);
}

test('a 10 MB paste and a 100,000-op transaction go through and converge', { skip: NOT_RUN, timeout: 240000 }, async () => {
  const server = new Server();
  await server.start();
  const clients = [];
  const lap = timer();
  try {
    for (let i = 0; i < 3; i++) clients.push(await connect(server.url, OPTS));
    const errors = clients.map(errorsOf);
    const [a, b, c] = await Promise.all(clients.map((cl) => cl.open('big')));
    await Promise.all([a, b, c].map((d) => d.synced));
    const limit = maxBatchFor('big', clients[0].limits);
    assert.equal(clients[0].limits.maxBatch, 4 << 20, 'the server runs with its default max_batch');

    const rnd = prng(SEED);
    const paste = bigText(rnd, 10 << 20);
    lap('setup');
    a.text('body').insert(0, paste);
    lap('10 MB paste applied and committed');
    const sizes = a.pending.map((r) => r.batch.length);
    assert.ok(sizes.length >= 3, `the paste is split (${sizes.length} batches: ${sizes})`);
    assert.ok(sizes.every((n) => n <= limit), `every batch fits ${limit} bytes: ${sizes}`);
    await a.synced;
    lap('paste acknowledged');
    await until(() => b.text('body').length === paste.length && c.text('body').length === paste.length,
      'the paste to reach the other clients', 60000);
    lap('paste received by both other clients');
    assert.equal(b.text('body').toString(), paste);

    const N = 100000;
    a.transact(() => {
      const m = a.map('many');
      for (let i = 0; i < N; i++) m.set(`k${i}`, `value ${i} ${'x'.repeat(40)}`);
    });
    lap('100,000-op transaction applied and committed');
    const tsizes = a.pending.map((r) => r.batch.length);
    assert.ok(tsizes.length >= 2, `the transaction is split (${tsizes.length} batches: ${tsizes})`);
    assert.ok(tsizes.every((n) => n <= limit), `every batch fits ${limit} bytes: ${tsizes}`);
    /* b edits meanwhile: its small batch interleaves with a's big ones */
    b.text('body').insert(0, 'b was here: ');
    await Promise.all([a.synced, b.synced]);
    lap('transaction acknowledged');
    await until(() => c.map('many').size === N && b.map('many').size === N, 'the transaction to reach the others', 60000);
    await assertConverged(server, 'big', [a, b, c], 'after the paste and the transaction');
    lap('converged (replicas and GET /docs)');
    assert.equal(a.map('many').get('k99999'), `value 99999 ${'x'.repeat(40)}`);
    assert.ok(a.text('body').toString().startsWith('b was here: '), 'b\'s edit before the paste');
    errors.forEach((errs, i) => assert.deepEqual(errs, [], `client ${i}: no error events`));
  } finally {
    await Promise.all(clients.map((cl) => cl.close()));
    await server.dispose();
  }
});

test('after a refused batch, 100 more edits reach the others and survive a restart', { skip: NOT_RUN, timeout: 240000 }, async () => {
  const MAX = 64 << 10;
  const server = new Server({ args: ['--max-batch', String(MAX)] });
  server.port = await freePort();
  const storage = new MemoryStorage();
  const clients = [];
  const lap = timer();
  try {
    /* a edits before it ever reaches the server: it knows no limit but the
     * protocol's default 4 MiB */
    const ca = await connect(server.url, { ...OPTS, storage });
    /* each pending batch sent as it is, as on a live connection (merged, a
     * reconnect's batches are split for the server's limit: next test) */
    ca._mergeResend = false;
    clients.push(ca);
    const errorsA = errorsOf(ca);
    const a = await ca.open('refused');
    const body = a.text('body');
    const paste = bigText(prng(SEED), 300000);
    body.insert(0, paste);
    assert.equal(a.pending.length, 1, 'one batch of the default limit');
    assert.ok(a.pending[0].batch.length > MAX, 'larger than the server will take');
    for (let i = 0; i < 20; i++) body.insert(body.length, ` offline${i}`);
    lap('offline edits');

    await server.start();
    await until(() => errorsA.some((e) => e.code === 'too_large'), 'the server to refuse the big batch');
    lap('big batch refused');
    /* the 100 more edits, while the repair is under way and after */
    for (let i = 0; i < 100; i++) {
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
      body.insert(i % 2 ? 0 : body.length, ` after${i}`);
    }
    await a.synced;
    lap('repaired and acknowledged');
    assert.ok(errorsA.every((e) => e.recovering && !e.fatal), `only repaired refusals: ${JSON.stringify(errorsA)}`);

    const cb = await connect(server.url, OPTS);
    clients.push(cb);
    const b = await cb.open('refused');
    await b.synced;
    await assertConverged(server, 'refused', [a, b], 'another client');
    const text = b.text('body').toString();
    assert.ok(text.includes(paste), 'the refused paste arrived');
    for (let i = 0; i < 20; i++) assert.ok(text.includes(` offline${i}`), `offline edit ${i}`);
    for (let i = 0; i < 100; i++) assert.ok(text.includes(` after${i}`), `edit ${i} after the refusal`);
    lap('the other client has everything');

    /* nothing is left pending in the storage once it is saved */
    await a.save();
    assert.equal(storage.pendingRecs.get(`${server.url}#refused`)?.size ?? 0, 0, 'no pending batch left in storage');

    await server.stop();
    await server.start();
    lap('server restarted');
    const cc = await connect(server.url, OPTS);
    clients.push(cc);
    const c = await cc.open('refused');
    await c.synced;
    await assertConverged(server, 'refused', [a, b, c], 'after a restart');
    lap('converged after the restart');
  } finally {
    await Promise.all(clients.map((cl) => cl.close()));
    await server.dispose();
  }
});

test('offline edits over the server\'s limit, resent merged: split for it, nothing refused', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const MAX = 64 << 10;
  const server = new Server({ args: ['--max-batch', String(MAX)] });
  server.port = await freePort();
  const clients = [];
  try {
    const ca = await connect(server.url, OPTS);
    clients.push(ca);
    const errorsA = errorsOf(ca);
    const updates = [];
    const realSend = ca._send.bind(ca);
    ca._send = (bytes) => {
      if (bytes[0] === 0x04) updates.push(bytes.length);
      return realSend(bytes);
    };
    const a = await ca.open('merged-split');
    const body = a.text('body');
    const paste = bigText(prng(SEED + 1), 300000);
    body.insert(0, paste);
    for (let i = 0; i < 20; i++) body.insert(body.length, ` offline${i}`);
    assert.equal(a.pending.length, 21);
    assert.ok(a.pending[0].batch.length > MAX, 'the paste was split for the default 4 MiB');

    await server.start();
    await a.synced;
    assert.deepEqual(errorsA, [], 'nothing refused');
    assert.ok(updates.length >= 5 && updates.length < 21, `what the server lacked, in a few batches (${updates})`);
    assert.ok(updates.every((n) => n <= MAX + 300), `UPDATEs that fit ${MAX} bytes: ${updates}`);
    const cb = await connect(server.url, OPTS);
    clients.push(cb);
    const b = await cb.open('merged-split');
    await b.synced;
    await assertConverged(server, 'merged-split', [a, b], 'another client');
    assert.ok(b.text('body').toString().startsWith(paste));
  } finally {
    await Promise.all(clients.map((cl) => cl.close()));
    await server.dispose();
  }
});

/* A TCP proxy in front of the server whose connections can be frozen: the
 * server keeps a frozen connection open while nothing passes, as it would a
 * client whose network vanished without a close. */
class FreezingProxy {
  constructor(target) { this.target = target; this.pairs = []; }
  async start() {
    this.server = net.createServer((down) => {
      const up = net.connect(this.target, '127.0.0.1');
      const pair = { down, up, frozen: false };
      this.pairs.push(pair);
      const pipe = (from, to) => from.on('data', (d) => { if (!pair.frozen) to.write(d); });
      pipe(down, up);
      pipe(up, down);
      const end = () => { if (!pair.frozen) { down.destroy(); up.destroy(); } };
      down.on('close', end);
      up.on('close', end);
      down.on('error', () => {});
      up.on('error', () => {});
    });
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `ws://127.0.0.1:${this.server.address().port}/`;
  }
  /* Stops every current connection without closing it. */
  freeze() { for (const p of this.pairs) p.frozen = true; }
  /* Closes the frozen connections: the server sees them go. */
  releaseFrozen() {
    for (const p of this.pairs.filter((q) => q.frozen)) { p.down.destroy(); p.up.destroy(); }
    this.pairs = this.pairs.filter((q) => !q.frozen);
  }
  close() {
    for (const p of this.pairs) { p.down.destroy(); p.up.destroy(); }
    return new Promise((r) => this.server.close(r));
  }
}

test('agent_taken: a connection the server still holds owns the agent; edits go through after it', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const server = new Server();
  await server.start();
  const proxy = new FreezingProxy(server.port);
  await proxy.start();
  const clients = [];
  try {
    const ca = await connect(proxy.url, OPTS);
    const cb = await connect(server.url, OPTS);
    clients.push(ca, cb);
    const errorsA = errorsOf(ca);
    const [a, b] = await Promise.all([ca.open('taken'), cb.open('taken')]);
    const body = a.text('body');
    body.insert(0, 'before ');
    await a.synced;
    const oldAgent = a._core.agent();

    /* a's network vanishes: what it sends now never arrives, and the server
     * keeps the old connection (and the agent it bound) */
    proxy.freeze();
    body.insert(body.length, 'lost-on-the-wire ');
    ca.reconnect();
    /* on the new connection the resent batch holds new ops of the old
     * agent: refused until the old connection is gone */
    await until(() => errorsA.some((e) => e.code === 'agent_taken'), 'agent_taken');
    assert.notEqual(a._core.agent(), oldAgent, 'future ops get a new agent');
    for (let i = 0; i < 10; i++) body.insert(body.length, `new${i} `);
    await new Promise((r) => setTimeout(r, 300));
    proxy.releaseFrozen();
    await a.synced;
    await assertConverged(server, 'taken', [a, b], 'after agent_taken');
    const text = b.text('body').toString();
    assert.ok(text.startsWith('before lost-on-the-wire '), text);
    for (let i = 0; i < 10; i++) assert.ok(text.includes(`new${i} `), `edit ${i} after the refusal`);
    assert.ok(errorsA.every((e) => e.recovering && !e.fatal), `only repaired refusals: ${JSON.stringify(errorsA)}`);
  } finally {
    await Promise.all(clients.map((cl) => cl.close()));
    await proxy.close();
    await server.dispose();
  }
});
