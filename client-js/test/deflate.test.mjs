/*
 * deflate.test.mjs -- deflated messages, protocol version 2 (issue 14,
 * docs/PROTOCOL.md section 3.9), with real clients and a real server.
 *
 * - A client writes a large document (its UPDATEs go out deflated), a
 *   second one loads it: the SYNC arrives deflated (seen on the socket, and
 *   in the server's /metrics), and both end with identical text; so does a
 *   client with `compression: false`, which speaks version 1 and receives
 *   nothing deflated.
 * - Fallback: behind a proxy that answers a HELLO of version 2 as an old
 *   (version 1 only) server does -- ERROR bad_version, close 1002 -- the
 *   client reconnects at once with version 1 and loads the document.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { connect } from '../src/index.js';
import { Server, serverMissing, mustRun, prng, until, freePort, bigText } from './helpers.mjs';

const NOT_RUN = mustRun(serverMissing());
const SEED = Number(process.env.TD_SEED || 1);
const OPTS = { backoff: { baseMs: 50, capMs: 500 } };

/* Words of the big texts: compressible, some multi-byte in UTF-8. */
const WORDS = ['tandem ', 'deflate ', 'wire ', 'é ', 'Ж ', '漢字 ', 'line\n', 'of text ', 'and more '];

/* A WebSocket class that records every frame it receives: [type, bytes]. */
function spyingWebSocket(log) {
  return class extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      this.addEventListener('message', (ev) => {
        const u8 = new Uint8Array(ev.data);
        log.push([u8[0], u8.length]);
      });
    }
  };
}

async function metrics(server) {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const get = (name) => Number((text.match(new RegExp(`^${name} (\\d+)`, 'm')) ?? [])[1] ?? NaN);
  return {
    out: get('tandem_deflated_messages_out_total'),
    saved: get('tandem_deflate_saved_bytes_total'),
    in: get('tandem_deflated_messages_in_total'),
  };
}

test('a large document loads deflated and ends identical; v1 clients unchanged', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const server = new Server();
  await server.start();
  const clients = [];
  try {
    const writer = await connect(server.url, OPTS);
    clients.push(writer);
    const w = await writer.open('big');
    await w.synced;
    assert.equal(writer.protocol, 2, 'the writer speaks version 2');
    const text = bigText(prng(SEED), 300000, WORDS);
    /* in pieces, so that the UPDATEs are both small and large */
    for (let at = 0; at < text.length; at += 50000) w.text('body').insert(at, text.slice(at, at + 50000));
    w.text('body').insert(0, 'x');
    await w.synced;
    const m0 = await metrics(server);
    assert.ok(m0.in >= 1, `the writer's large UPDATEs went out deflated (${JSON.stringify(m0)})`);

    const log = [];
    const reader = await connect(server.url, { ...OPTS, WebSocket: spyingWebSocket(log) });
    clients.push(reader);
    const r = await reader.open('big');
    await r.synced;
    assert.equal(reader.protocol, 2);
    assert.equal(r.text('body').toString(), 'x' + text, 'the reader has the same text');
    const sync = log.find(([t]) => (t & 0xbf) === 0x82);
    assert.ok(sync, 'a SYNC arrived');
    assert.equal(sync[0], 0x82 | 0x40, 'the SYNC arrived deflated');
    const plainSize = text.length; /* at least: the text is in it, in UTF-8 */
    assert.ok(sync[1] < plainSize / 3, `the deflated SYNC (${sync[1]} bytes) is far smaller than the text`);
    const m1 = await metrics(server);
    assert.ok(m1.out > m0.out && m1.saved > m0.saved, `the server counted it (${JSON.stringify(m1)})`);

    const log1 = [];
    const old = await connect(server.url, { ...OPTS, compression: false, WebSocket: spyingWebSocket(log1) });
    clients.push(old);
    const o = await old.open('big');
    await o.synced;
    assert.equal(old.protocol, 1, 'compression: false speaks version 1');
    assert.equal(o.text('body').toString(), 'x' + text);
    assert.ok(log1.length > 0 && log1.every(([t]) => !(t & 0x40)), 'nothing deflated reached the version 1 client');

    /* a large edit now reaches both, deflated for the version 2 one only */
    const more = bigText(prng(SEED + 1), 20000, WORDS);
    log.length = 0;
    log1.length = 0;
    w.text('body').insert(1, more);
    await until(() => r.text('body').length === 1 + text.length + more.length &&
      o.text('body').length === 1 + text.length + more.length, 'the edit to reach both');
    assert.equal(r.text('body').toString(), w.text('body').toString());
    assert.equal(o.text('body').toString(), w.text('body').toString());
    assert.ok(log.some(([t]) => t === (0x84 | 0x40)), 'REMOTE deflated for version 2');
    assert.ok(log1.some(([t]) => t === 0x84) && log1.every(([t]) => !(t & 0x40)), 'REMOTE plain for version 1');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.dispose();
  }
});

/* A proxy in front of the server that plays an old server: a HELLO asking
 * for version 2 is refused as a version 1 server refuses it. */
async function oldServerProxy(target) {
  const port = await freePort();
  const hellos = [];
  const wss = new WebSocketServer({ host: '127.0.0.1', port });
  wss.on('connection', (down) => {
    let up = null;
    const early = [];
    down.on('message', (data, isBinary) => {
      const u8 = new Uint8Array(data);
      if (!up && u8[0] === 0x01) {
        hellos.push(u8[1]);
        if (u8[1] !== 1) {
          /* ERROR bad_version, as tandem 1.x words it, then close 1002 */
          const msg = new TextEncoder().encode(`protocol version ${u8[1]} not supported (server speaks 1)`);
          down.send(Uint8Array.from([0x87, 3, 0, 0, msg.length, ...msg]));
          down.close(1002);
          return;
        }
        up = new WebSocket(target);
        up.binaryType = 'nodebuffer';
        up.on('open', () => { for (const [d, b] of early) up.send(d, { binary: b }); early.length = 0; });
        up.on('message', (d, b) => down.send(d, { binary: b }));
        up.on('close', () => down.close());
        up.on('error', () => down.close());
      }
      if (up && up.readyState === WebSocket.OPEN) up.send(data, { binary: isBinary });
      else if (up) early.push([data, isBinary]);
    });
    down.on('close', () => up?.close());
  });
  await new Promise((r) => wss.once('listening', r));
  return { url: `ws://127.0.0.1:${port}/`, hellos, close: () => new Promise((r) => wss.close(r)) };
}

test('against a version 1 server the client falls back to version 1', { skip: NOT_RUN, timeout: 60000 }, async () => {
  const server = new Server();
  await server.start();
  const proxy = await oldServerProxy(server.url);
  const clients = [];
  try {
    const writer = await connect(server.url, OPTS);
    clients.push(writer);
    const w = await writer.open('old');
    const text = bigText(prng(SEED + 2), 50000, WORDS);
    w.text('body').insert(0, text);
    await w.synced;

    const log = [];
    const c = await connect(proxy.url, { ...OPTS, WebSocket: spyingWebSocket(log) });
    clients.push(c);
    const errors = [];
    c.on('error', (e) => errors.push(e));
    const d = await c.open('old');
    await until(() => c.status === 'online', 'the client to be online through the proxy');
    await d.synced;
    assert.deepEqual(proxy.hellos, [2, 1], 'HELLO asked for 2, then for 1');
    assert.equal(c.protocol, 1);
    assert.equal(d.text('body').toString(), text);
    assert.ok(log.filter(([t]) => t !== 0x87).every(([t]) => !(t & 0x40)), 'nothing deflated');
    assert.deepEqual(errors, [], 'the fallback is no error event');
    /* it edits as a version 1 client: plain UPDATEs the server takes */
    d.text('body').insert(0, 'via v1 ');
    await d.synced;
    await until(() => w.text('body').toString() === d.text('body').toString(), 'the edit to reach the writer');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await proxy.close();
    await server.dispose();
  }
});
