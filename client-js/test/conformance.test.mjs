/*
 * conformance.test.mjs -- the JS client's core (wasm) and the server's core
 * (native) agree byte for byte.
 *
 * JS -> C: tandem-client makes a seeded history through its public API
 * (texts with astral characters, lists, maps, nested objects, transactions);
 * its committed batches, written to files, are applied by the native core
 * (td-conform apply), whose snapshot must be byte-identical to the client's
 * and whose JSON must equal it. C -> JS: the native core makes its own
 * history (td-conform edit); tandem-client applies those batches and must
 * produce the native snapshot byte for byte. The same batches also go through
 * a real server when one is built (its GET /docs must agree).
 *
 * Environment: TD_CONFORM (path of td-conform, built by CMake), TD_TANDEM.
 * A missing td-conform or server fails the test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createReplica, connect } from '../src/index.js';
import { prng, ALPHABET, Server, serverMissing, mustRun, REPO } from './helpers.mjs';

const CONFORM = process.env.TD_CONFORM || path.join(REPO, 'build', 'client-js', 'td-conform');
const NOT_RUN = mustRun(!existsSync(CONFORM) && `no td-conform at ${CONFORM}`);
const SEEDS = process.env.TD_SEED ? [Number(process.env.TD_SEED)] : [1, 2, 3];

function jsHistory(doc, seed) {
  const rnd = prng(seed);
  const body = doc.text('body'), items = doc.list('items'), meta = doc.map('meta');
  for (let b = 0; b < 80; b++) {
    doc.transact(() => {
      for (let k = 1 + rnd.int(6); k > 0; k--) {
        const r = rnd();
        if (r < 0.45 || body.length === 0) {
          const cps = [...body.toString()];
          const at = cps.slice(0, rnd.int(cps.length + 1)).join('').length;
          body.insert(at, rnd.pick(ALPHABET) + rnd.pick(ALPHABET));
        } else if (r < 0.6) {
          const cps = [...body.toString()];
          const at = rnd.int(cps.length);
          body.delete(cps.slice(0, at).join('').length, cps[at].length);
        } else if (r < 0.72) {
          items.insert(rnd.int(items.length + 1), rnd.pick([null, true, false, 42, -7n, 2.5, 'é😀', 2 ** 40]));
        } else if (r < 0.78 && items.length) {
          items.delete(rnd.int(items.length));
        } else if (r < 0.85) {
          meta.set(`k${rnd.int(5)}`, { n: rnd.int(100), list: [1, 'two', { three: [3] }] });
        } else if (r < 0.9) {
          meta.setText('caption', 'cap').insert(3, '😀');
        } else if (r < 0.95) {
          items.insertMap(0, { x: rnd.int(9) }).setList('inner', [1, 2]).push(3);
        } else {
          meta.delete(`k${rnd.int(5)}`);
        }
      }
    });
  }
}

for (const seed of SEEDS) {
  test(`JS batches decode natively, with identical snapshots (seed ${seed})`, { skip: NOT_RUN }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-conform-'));
    try {
      const doc = await createReplica({ agent: 0x1000n + BigInt(seed) });
      jsHistory(doc, seed);
      const files = doc.pending.map((p, i) => {
        const f = path.join(dir, `${String(i).padStart(4, '0')}.bin`);
        writeFileSync(f, p.batch);
        return f;
      });
      assert.ok(files.length >= 50);
      /* Reversed order: the native core must park and release them. */
      const out = execFileSync(CONFORM, ['apply', path.join(dir, 'snap.bin'), ...files.reverse()]).toString();
      assert.deepEqual(JSON.parse(out), doc.toJSON(), 'same content');
      const native = readFileSync(path.join(dir, 'snap.bin'));
      assert.deepEqual(Buffer.from(doc._core.snapshot()), native, 'byte-identical snapshots');
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  test(`native batches decode in the JS client, with identical snapshots (seed ${seed})`, { skip: NOT_RUN }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-conform-'));
    try {
      const out = execFileSync(CONFORM, ['edit', String(seed), dir]).toString();
      const doc = await createReplica({ agent: 0x2000n + BigInt(seed) });
      const batches = readdirSync(dir).filter((f) => /^\d+\.bin$/.test(f)).sort();
      assert.ok(batches.length > 10);
      for (const f of batches) doc._applyRemote(readFileSync(path.join(dir, f)));
      assert.deepEqual(doc.toJSON(), JSON.parse(out), 'same content');
      assert.ok(doc.text('body').toString().length > 0);
      assert.deepEqual(Buffer.from(doc._core.snapshot()), readFileSync(path.join(dir, 'snap.bin')),
        'byte-identical snapshots');
      /* And back: the client's snapshot loads natively-built state in wasm. */
      const copy = await createReplica({ snapshot: doc._core.snapshot() });
      assert.deepEqual(copy.toJSON(), doc.toJSON());
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
}

test('the server decodes what the client encodes (GET /docs agrees)', { skip: mustRun(serverMissing()), timeout: 60000 }, async () => {
  const server = new Server();
  await server.start();
  const client = await connect(server.url);
  try {
    const doc = await client.open('conform');
    jsHistory(doc, 99);
    await doc.synced;
    assert.deepEqual(await server.docJSON('conform'), doc.toJSON());
    /* And a fresh client rebuilds the same bytes from the server's SYNC. */
    const other = await connect(server.url);
    const d2 = await other.open('conform');
    await d2.synced;
    assert.deepEqual(Buffer.from(d2._core.snapshot()), Buffer.from(doc._core.snapshot()));
    await other.close();
  } finally {
    await client.close();
    await server.dispose();
  }
});
