/*
 * badinput.test.mjs -- issue 12, bar 5: a corpus of malformed y-websocket
 * and Hocuspocus messages and Yjs updates, each sent on its own connection
 * to a document that clients are using. Each gets its close code; the
 * server stays up; the document and the other clients are unchanged and go
 * on working. (The codec's byte-level corpus is test_srv_yproto.c.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, WS, ywsClient, until } from './yhelpers.mjs';

const ROOM = 'bad/room';
const enc = new TextEncoder();
const varuint = (n) => { const o = []; while (n > 127) { o.push((n & 127) | 128); n = Math.floor(n / 128); } o.push(n); return o; };
const str = (s) => { const b = [...enc.encode(s)]; return [...varuint(b.length), ...b]; };
const bytes = (a) => [...varuint(a.length), ...a];
const STEP1 = [0, 0, 1, 0];
const aw = (entries) => {
  const u = [...varuint(entries.length)];
  for (const [c, k, j] of entries) u.push(...varuint(c), ...varuint(k), ...str(j));
  return [1, ...bytes(u)];
};
/* Not Yjs updates, though framed as one. */
const garbage = [[1], [5, 5, 5], [1, 1, 200, 1, 0, 4, 1, 1, 97, 0], [0, 1], [255, 255, 255, 255, 15],
  [1, 1, 7, 0, 9, 7]];

/* [what, message, close code] for y-websocket (sent after a step 1). */
function ywsCorpus() {
  const c = [['empty message', [], 1007]];
  for (let t = 4; t <= 20; t++) c.push([`unknown type ${t}`, [t], 1003]);
  for (let s = 3; s <= 8; s++) c.push([`sync sub-type ${s}`, [0, s, 0], 1007]);
  c.push(['length past the end', [0, 2, 9, 1, 2], 1007],
    ['length past 2^53', [0, 2, 255, 255, 255, 255, 255, 255, 255, 127], 1007],
    ['unterminated varint', [0, 2, 128], 1007],
    ['non-minimal varint', [0, 2, 129, 0, 0], 1007],
    ['trailing bytes', [0, 2, 2, 0, 0, 9], 1007],
    ['awareness, state not JSON', aw([[1, 1, '{x']]), 1007],
    ['awareness, two JSON values', aw([[1, 1, '1 2']]), 1007],
    ['awareness, client id past 32 bits', aw([[2 ** 40, 1, '{}']]), 1007],
    ['awareness, 9 entries', aw([...Array(9)].map((_, i) => [i + 1, 1, '{}'])), 1009],
    ['awareness, state too large', aw([[1, 1, JSON.stringify({ a: 'x'.repeat(5000) })]]), 1009],
    ['awareness, count beyond entries', [1, 2, 1, 1], 1007],
    ['auth reason not UTF-8', [2, 0, 2, 0xc3, 0x28], 1007]);
  for (const g of garbage) c.push([`invalid update ${g}`, [0, 2, ...bytes(g)], 1007]);
  for (const g of garbage) c.push([`invalid step 2 ${g}`, [0, 1, ...bytes(g)], 1007]);
  return c;
}

function hocusCorpus() {
  const a = str(ROOM);
  const c = [['empty message', [], 1007], ['address past the end', [9, 97], 1007],
    ['address not UTF-8', [2, 0xff, 0xfe, 0], 1007], ['no type', [...a], 1007]];
  for (let t = 11; t <= 20; t++) c.push([`unknown type ${t}`, [...a, t], 1003]);
  c.push(['sync status from a client', [...a, 8, 1], 1003],
    ['broadcast stateless from a client', [...a, 6, ...str('x')], 1003],
    ['sync sub-type 5', [...a, 0, 5, 0], 1007],
    ['auth sub-type 7', [...a, 2, 7, ...str('x')], 1007],
    ['stateless past the end', [...a, 5, 9, 1], 1007],
    ['awareness, bad JSON', [...a, ...aw([[1, 1, '[']])], 1007]);
  for (const g of garbage) c.push([`invalid update ${g}`, [...a, 0, 2, ...bytes(g)], 1007]);
  return c;
}

function probe(url, first, msg) {
  return new Promise((resolve, reject) => {
    const ws = new WS(url);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('no close within 5 s')); }, 5000);
    ws.on('error', () => {});
    ws.on('close', (code) => { clearTimeout(timer); resolve(code); });
    ws.on('open', () => {
      for (const f of first) ws.send(Uint8Array.from(f));
      setTimeout(() => ws.send(Uint8Array.from(msg)), 50);
    });
  });
}

test('malformed y-websocket and Hocuspocus input: close codes, nothing changes', { timeout: 180000 }, async () => {
  const server = new Server();
  await server.start();
  const a = ywsClient(server, ROOM), b = ywsClient(server, ROOM);
  try {
    await until(() => a.synced() && b.synced(), 'the clients to sync');
    a.doc.getText('text').insert(0, 'before');
    await until(async () => (await server.json(ROOM)).body?.text === 'before', 'the first edit');
    const before = JSON.stringify((await server.json(ROOM)).body);

    let n = 0;
    for (const [what, msg, want] of ywsCorpus()) {
      const code = await probe(`${server.yws}/${encodeURIComponent(ROOM)}`, [STEP1], msg);
      assert.equal(code, want, `y-websocket, ${what}`);
      n++;
    }
    const auth = [...str(ROOM), 2, 0, ...str('tok')];
    for (const [what, msg, want] of hocusCorpus()) {
      const code = await probe(server.hocus, [auth, [...str(ROOM), 0, ...STEP1.slice(1)]], msg);
      assert.equal(code, want, `Hocuspocus, ${what}`);
      n++;
    }
    /* A text frame is not a message of either protocol. */
    const text = await new Promise((resolve) => {
      const ws = new WS(`${server.yws}/x`);
      ws.on('close', (c) => resolve(c));
      ws.on('open', () => ws.send('hello'));
    });
    assert.equal(text, 1003, 'a text frame');
    n++;
    assert.ok(n >= 60, `only ${n} malformed inputs`);
    console.log(`${n} malformed inputs, each with its close code`);

    /* The server is up, the document unchanged, the clients unaffected. */
    assert.equal((await fetch(`${server.http}/healthz`)).status, 200);
    assert.equal(JSON.stringify((await server.json(ROOM)).body), before);
    assert.ok(a.synced() && b.synced(), 'a client lost its connection');
    b.doc.getText('text').insert(6, ' after');
    await until(() => a.doc.getText('text').toString() === 'before after', 'an edit after the corpus');
  } finally {
    a.destroy(); b.destroy();
    await server.cleanup();
  }
});
