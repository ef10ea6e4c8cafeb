/*
 * kill.test.mjs -- issue 12, bar 2: SIGKILL during writes from stock
 * Hocuspocus providers, 20 rounds. Every update the server acknowledged
 * with SyncStatus is there after the restart, exactly once.
 *
 * An item counts as acknowledged when the provider's unsynced-changes
 * count reaches 0 after it was inserted: SyncStatus(1) answers the
 * updates in order, so then every earlier update is durable. The writers
 * are destroyed before the restart, so only the disk can bring them back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, hocusClient, ywsClient, until, sleep, rng } from './yhelpers.mjs';

const ROUNDS = Number(process.env.TD_KILL_ROUNDS ?? 20);

function writer(server, name, tag) {
  const c = hocusClient(server, name);
  const arr = c.doc.getArray('log');
  c.sent = [];
  c.acked = new Set();
  c.provider.on('unsyncedChanges', ({ number }) => {
    if (number === 0) for (const x of c.sent) c.acked.add(x);
  });
  let n = 0;
  c.write = () => {
    const item = `${tag}-${n++}`;
    arr.push([item]);
    c.sent.push(item);
  };
  return c;
}

test('SIGKILL during Hocuspocus writes loses no acknowledged update', { timeout: 280000 }, async () => {
  const server = new Server();
  const r = rng(Number(process.env.TD_SEED ?? 2));
  const acked = new Map(); /* doc -> items acknowledged over all rounds */
  const docs = ['kill-a', 'kill-b'];
  for (const d of docs) acked.set(d, new Set());
  let total = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      await server.start();
      const ws = [];
      for (let i = 0; i < 3; i++) ws.push(Object.assign(writer(server, docs[i % 2], `r${round}w${i}`), { name: docs[i % 2] }));
      await until(() => ws.every((w) => w.synced()), 'the writers to sync');
      const stopAt = Date.now() + 100 + r.int(400);
      while (Date.now() < stopAt) {
        for (const w of ws) w.write();
        await sleep(r.int(4));
      }
      await server.kill();
      for (const w of ws) {
        for (const x of w.acked) acked.get(w.name).add(x);
        total += w.acked.size;
        w.destroy();
      }
      await server.start();
      for (const d of docs) {
        const reader = ywsClient(server, d);
        await until(() => reader.synced(), `a reader of ${d} to sync`);
        const items = reader.doc.getArray('log').toArray();
        const count = new Map();
        for (const x of items) count.set(x, (count.get(x) ?? 0) + 1);
        for (const x of acked.get(d))
          assert.equal(count.get(x), 1, `round ${round}: acknowledged ${x} of ${d} is there ${count.get(x) ?? 0} times`);
        for (const [x, k] of count) assert.equal(k, 1, `${x} appears ${k} times`);
        reader.destroy();
      }
      await server.stop();
    }
    assert.ok(total > ROUNDS * 10, `only ${total} acknowledged updates over ${ROUNDS} rounds`);
    console.log(`${total} acknowledged updates over ${ROUNDS} rounds, all present after SIGKILL`);
  } finally {
    await server.cleanup();
  }
});
