/*
 * yjs.test.mjs -- issue 15 with the Yjs front-ends: two `tandem serve
 * --cluster` nodes on one JetStream broker, a stock y-websocket provider on
 * node 1 and a stock Hocuspocus provider on node 2 in the same document,
 * concurrent edits. Both providers, both nodes' GET /docs/{id} and a fresh
 * provider on a third node with an empty data directory agree, and the
 * Hocuspocus provider's changes are all acknowledged (SyncStatus comes only
 * once the node stored the update and JetStream took it).
 *
 * Environment: TD_TANDEM (the server binary), TD_NATS (nats-server). A
 * missing binary is a failure, never a skip.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Server, ywsClient, hocusClient, until, sleep, rng, freePort } from '../yjs_server/yhelpers.mjs';

const NATS = process.env.TD_NATS || '/usr/sbin/nats-server';

async function broker() {
  if (!existsSync(NATS)) throw new Error(`no nats-server at ${NATS}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-nats-'));
  const port = await freePort();
  const proc = spawn(NATS, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir],
    { stdio: 'ignore' });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = `${code ?? sig}`; });
  const url = `nats://127.0.0.1:${port}`;
  /* Listening: a node started against it comes up. */
  return { url, proc, dir, exited: () => exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null)
        await new Promise((r) => { proc.on('exit', r); proc.kill('SIGKILL'); });
      rmSync(dir, { recursive: true, force: true });
    } };
}

async function node(b, name) {
  /* nats-server takes a moment to listen: a node that finds no broker exits. */
  for (let i = 0; ; i++) {
    const s = new Server(['--cluster', b.url, '--cluster-node', name]);
    try {
      return await s.start();
    } catch (e) {
      rmSync(s.data, { recursive: true, force: true });
      if (b.exited()) throw new Error(`nats-server exited: ${b.exited()}`);
      if (i >= 40) throw e;
      await sleep(250);
    }
  }
}

const text = (c) => c.doc.getText('t').toString();

test('Yjs providers on two nodes converge; a third node reads JetStream', async () => {
  const b = await broker();
  const nodes = [];
  const clients = [];
  try {
    nodes.push(await node(b, 'y1'), await node(b, 'y2'));
    const room = 'cl-yjs';
    const a = ywsClient(nodes[0], room);
    const h = hocusClient(nodes[1], room);
    clients.push(a, h);
    await until(() => a.synced() && h.synced(), 'both providers to sync');
    const r = rng(15);
    for (let i = 0; i < 200; i++) {
      const c = r() < 0.5 ? a : h;
      const t = c.doc.getText('t');
      if (t.length && r() < 0.25) t.delete(r.int(t.length), 1);
      else t.insert(r.int(t.length + 1), 'abcdefgh'[r.int(8)] + i);
      c.doc.getMap('m').set(`k${r.int(5)}`, i);
      if (i % 20 === 0) await sleep(5);
    }
    await until(() => text(a) === text(h) && text(a).length > 0, 'the two providers to agree');
    await until(() => h.provider.unsyncedChanges === 0, 'SyncStatus for every Hocuspocus change');
    await until(() => { try { assert.deepStrictEqual(h.doc.getMap('m').toJSON(),
      a.doc.getMap('m').toJSON()); return true; } catch { return false; } },
    'the two providers\' maps to agree');
    for (const n of nodes) {
      await until(async () => {
        const j = await n.json(room);
        return j.status === 200 && j.body.t === text(a);
      }, `GET /docs/${room} on ${n.port} to match the providers`);
    }
    /* A node with an empty data directory serves it from JetStream. */
    nodes.push(await node(b, 'y3'));
    const f = ywsClient(nodes[2], room);
    clients.push(f);
    await until(() => f.synced() && text(f) === text(a), 'a provider on a fresh node to agree');
    const j = await nodes[2].json(room);
    assert.equal(j.status, 200);
    assert.equal(j.body.t, text(a));
  } finally {
    for (const c of clients) c.destroy();
    for (const n of nodes) await n.cleanup();
    await b.stop();
  }
});
