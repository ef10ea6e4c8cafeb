/*
 * badinput.test.mjs -- what the client does with a hostile or broken server,
 * and with tokens.
 *
 * A fake server (the `ws` package) answers HELLO with a valid WELCOME and
 * then sends malformed frames: each must surface as an 'error' event and a
 * reconnect, never as an exception in application code, and the document
 * must be unchanged. Against a real `tandem serve --public-key`: a forged
 * token is an error event carrying the server's reason and the client stops
 * retrying until setToken(); a token function is called on every connect.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import { connect } from '../src/index.js';
import { Server, serverMissing, mustRun, TANDEM, sleep, until } from './helpers.mjs';

/* The fake-server tests need no server; a missing one still fails the run. */
const NOT_RUN = mustRun(serverMissing());

function varint(n) {
  const out = [];
  let x = BigInt(n);
  do { let b = Number(x & 0x7fn); x >>= 7n; if (x) b |= 0x80; out.push(b); } while (x);
  return out;
}
const str = (s) => { const b = [...Buffer.from(s)]; return [...varint(b.length), ...b]; };
const WELCOME = Uint8Array.from([0x81, 1, 7, ...str(''), 7, 0, ...varint(8 << 20), ...varint(4 << 20),
  ...varint(4096), ...varint(100), ...varint(30000)]);
const SYNC_EMPTY = Uint8Array.from([0x82, ...str('d'), 0, 2, 1, 0]);

const BAD_FRAMES = {
  'empty message': [],
  'truncated WELCOME': [0x81, 1],
  'non-minimal varint': [0x83, ...str('d'), 0x81, 0x00],
  'ACK with batch_id 0': [0x83, ...str('d'), 0],
  'trailing bytes': [0x86, ...str('d'), 5, 0xff],
  'length past the end': [0x82, ...str('d'), 0x7f, 1, 2],
  'bad UTF-8 doc id': [0x86, 2, 0xc3, 0x28, 5],
  'control character in doc id': [0x86, ...str('a\u0001'), 5],
  'REMOTE with count 0': [0x84, ...str('d'), 0],
  'REMOTE holding garbage': [0x84, ...str('d'), 1, 4, 1, 2, 3, 4],
  'SYNC holding garbage': [0x82, ...str('d'), 3, 9, 9, 9, 0],
  'varint over 10 bytes': [0x86, ...str('d'), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
  'PRESENCE with empty state': [0x85, ...str('d'), 1, 3, 1, ...str('u'), 0],
  'text frame': 'hello',
};

test('malformed frames are error events and reconnects, never exceptions', { timeout: 60000 }, async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const url = `ws://127.0.0.1:${wss.address().port}/`;
  const frames = Object.entries(BAD_FRAMES);
  let conns = 0;
  wss.on('connection', (ws) => {
    const n = conns++;
    ws.once('message', () => {
      ws.send(WELCOME);
      ws.once('message', () => { /* the SUBSCRIBE */
        ws.send(SYNC_EMPTY);
        if (n < frames.length) {
          const f = frames[n][1];
          setTimeout(() => ws.send(typeof f === 'string' ? f : Uint8Array.from(f)), 20);
        }
      });
    });
  });
  const uncaught = [];
  const onUncaught = (e) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const client = await connect(url, { backoff: { baseMs: 10, capMs: 20 } });
  try {
    const errors = [];
    client.on('error', (e) => errors.push(e));
    const doc = await client.open('d');
    doc.text('t').insert(0, 'kept');
    await until(() => conns > frames.length, 'the client to go through every bad frame');
    const bad = errors.filter((e) => e.code === 'bad_message');
    assert.equal(bad.length, frames.length, `one error per bad frame: ${JSON.stringify(errors)}`);
    for (const e of bad) assert.match(e.message, /\S/);
    assert.equal(doc.text('t').toString(), 'kept', 'the document is untouched');
    assert.deepEqual(uncaught, []);
  } finally {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    await client.close();
    wss.close();
  }
});

test('a refused token is a clear error, and no retry until a new token', { skip: NOT_RUN, timeout: 60000 }, async () => {
  const key = path.join((await import('node:os')).tmpdir(), `tandem-js-key-${process.pid}`);
  execFileSync(TANDEM, ['keygen', '--out', key], { stdio: 'ignore' });
  const token = (user, ttl = 3600) => execFileSync(TANDEM, ['token', '--key', key, '--user', user,
    '--doc', '*', '--rights', 'rw', '--ttl', String(ttl)]).toString().trim();
  const server = new Server({ args: ['--public-key', `${key}.pub`] });
  await server.start();
  const good = token('ann');
  const forged = `${good.slice(0, -4)}${good.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  const client = await connect(server.url, { token: forged, backoff: { baseMs: 10, capMs: 50 } });
  try {
    const errors = [], statuses = [];
    client.on('error', (e) => errors.push(e));
    client.on('status', (s) => statuses.push(s));
    await until(() => errors.some((e) => e.fatal), 'the refusal');
    const e = errors.find((x) => x.fatal);
    assert.equal(e.code, 'token_invalid');
    assert.ok(e.message.length > 0, 'the server\'s reason is passed on');
    await sleep(500);
    assert.equal(client.status, 'offline');
    assert.ok(!statuses.includes('connecting'), `no retry without a new token (${statuses})`);

    let calls = 0;
    client.setToken(async () => { calls++; return good; });
    await until(() => client.status === 'online', 'online with the new token');
    assert.equal(client.user, 'ann');
    assert.equal(calls, 1);
    const doc = await client.open('secure');
    doc.text('t').insert(0, 'ok');
    await doc.synced;
    client.reconnect();
    await until(() => client.status === 'online' && calls === 2, 'the token function to be called again on reconnect');
    assert.deepEqual(await server.docJSON('secure', good), { t: 'ok' });
  } finally {
    await client.close();
    await server.dispose();
    const { rmSync } = await import('node:fs');
    rmSync(key, { force: true });
    rmSync(`${key}.pub`, { force: true });
  }
});
