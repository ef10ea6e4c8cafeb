/*
 * awareness.test.mjs -- issue 12, bar 3, for the y-websocket front-end:
 * awareness is tandem presence. A newcomer gets every current state; 100
 * updates in a second reach a peer in at most 11 broadcasts and the last
 * one arrives; nobody can set or remove another connection's state; a
 * closed connection's state goes at once and only its own; a silent one
 * expires after the TTL (+0.5 s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Server, WS, ywsClient, until, sleep, REPO } from './yhelpers.mjs';

const require = createRequire(path.join(REPO, 'client-js', 'package.json'));
const encoding = require('lib0/encoding');

/* A y-websocket awareness message with the given entries, by hand. */
function awarenessMsg(entries) {
  const u = encoding.createEncoder();
  encoding.writeVarUint(u, entries.length);
  for (const [client, clock, state] of entries) {
    encoding.writeVarUint(u, client);
    encoding.writeVarUint(u, clock);
    encoding.writeVarString(u, JSON.stringify(state));
  }
  const m = encoding.createEncoder();
  encoding.writeVarUint(m, 1);
  encoding.writeVarUint8Array(m, encoding.toUint8Array(u));
  return encoding.toUint8Array(m);
}

function syncStep1Empty() {
  const m = encoding.createEncoder();
  encoding.writeVarUint(m, 0);
  encoding.writeVarUint(m, 0);
  encoding.writeVarUint8Array(m, new Uint8Array([0]));
  return encoding.toUint8Array(m);
}

/* Remote states a client sees (its own left out). */
const others = (c) => [...c.awareness.getStates().entries()]
  .filter(([id]) => id !== c.doc.clientID).map(([id, s]) => [id, s]);

test('awareness: newcomer, coalescing, ownership, close', { timeout: 60000 }, async () => {
  const server = new Server();
  await server.start();
  const all = [];
  try {
    const room = 'aw-1';
    const a = ywsClient(server, room), b = ywsClient(server, room);
    all.push(a, b);
    await until(() => a.synced() && b.synced(), 'a and b to sync');
    a.awareness.setLocalStateField('user', 'alice');
    b.awareness.setLocalStateField('user', 'bob');
    await until(() => others(a).some(([, s]) => s.user === 'bob') &&
      others(b).some(([, s]) => s.user === 'alice'), 'a and b to see each other');

    /* A newcomer gets every current state at once, without anyone changing. */
    const c = ywsClient(server, room);
    all.push(c);
    await until(() => {
      const u = others(c).map(([, s]) => s.user).sort();
      return u.length === 2 && u[0] === 'alice' && u[1] === 'bob';
    }, 'the newcomer to see alice and bob', 5000);

    /* 100 updates in a second: at most 11 broadcasts reach c, the last state arrives. */
    let seen = 0;
    c.awareness.on('change', ({ updated, added }) => {
      if ([...updated, ...added].includes(a.doc.clientID)) seen++;
    });
    const start = Date.now();
    for (let i = 1; i <= 100; i++) {
      a.awareness.setLocalStateField('cursor', i);
      await sleep(Math.max(0, start + i * 9 - Date.now()));
    }
    const spent = Date.now() - start;
    await until(() => c.awareness.getStates().get(a.doc.clientID)?.cursor === 100,
      'the last cursor to arrive', 3000);
    await sleep(300);
    /* One broadcast per 100 ms interval plus the first: 11 in a second (a
     * loaded machine that needed longer to send them gets its intervals). */
    const allowed = Math.max(11, Math.ceil(spent / 100) + 1);
    assert.ok(seen <= allowed, `${seen} awareness broadcasts of a for 100 updates in ${spent} ms`);
    assert.ok(seen >= 2, `only ${seen} broadcasts`);

    /* A forger on its own socket may neither remove nor overwrite b's state. */
    const forger = new WS(`${server.yws}/${room}`);
    forger.binaryType = 'arraybuffer';
    await new Promise((r, j) => { forger.on('open', r); forger.on('error', j); });
    forger.send(syncStep1Empty());
    await sleep(200);
    const bClock = b.awareness.meta.get(b.doc.clientID).clock;
    forger.send(awarenessMsg([[b.doc.clientID, bClock + 5, null]]));
    forger.send(awarenessMsg([[b.doc.clientID, bClock + 6, { user: 'mallory' }]]));
    await sleep(500);
    assert.equal(c.awareness.getStates().get(b.doc.clientID)?.user, 'bob',
      'a forged update changed another connection\'s state');
    /* The forger leaving takes nothing of b's with it. */
    forger.close();
    await sleep(400);
    assert.equal(c.awareness.getStates().get(b.doc.clientID)?.user, 'bob',
      'a leaving connection removed another\'s state');

    /* A closed connection's state goes at once (well before any TTL), and only its own. */
    const t0 = Date.now();
    a.destroy();
    all.splice(all.indexOf(a), 1);
    await until(() => !c.awareness.getStates().has(a.doc.clientID), 'a to be removed at c', 2000);
    assert.ok(Date.now() - t0 < 1500, 'removal took too long');
    assert.equal(c.awareness.getStates().get(b.doc.clientID)?.user, 'bob');
  } finally {
    for (const x of all) x.destroy();
    await server.cleanup();
  }
});

test('awareness: a silent client expires after the TTL', { timeout: 30000 }, async () => {
  const TTL = 1500;
  const server = new Server(['--presence-ttl', String(TTL)]);
  await server.start();
  const all = [];
  try {
    const room = 'aw-ttl';
    const watcher = ywsClient(server, room);
    all.push(watcher);
    await until(() => watcher.synced(), 'the watcher to sync');
    /* A raw client: says who it is once, then stays connected and silent. */
    const silent = new WS(`${server.yws}/${room}`);
    await new Promise((r, j) => { silent.on('open', r); silent.on('error', j); });
    silent.send(syncStep1Empty());
    await sleep(100);
    const t0 = Date.now();
    silent.send(awarenessMsg([[4242, 1, { user: 'quiet' }]]));
    await until(() => watcher.awareness.getStates().get(4242)?.user === 'quiet', 'the state to arrive', 3000);
    await until(() => !watcher.awareness.getStates().has(4242), 'the silent state to expire', TTL + 3000);
    const took = Date.now() - t0;
    assert.ok(took <= TTL + 500 + 150, `expired after ${took} ms (TTL ${TTL})`);
    assert.ok(took >= TTL - 100, `expired early, after ${took} ms`);
    silent.close();
  } finally {
    for (const x of all) x.destroy();
    await server.cleanup();
  }
});
