/*
 * auth.test.mjs -- issue 12, bar 4, and the document kinds: on both Yjs
 * front-ends missing, forged, expired and wrong-document tokens are
 * refused; read-only clients see edits and can make none; a tandem
 * document opened through /yjs is refused (wrong_kind); `tandem export`
 * writes a Yjs document as JSON and as a Yjs update, `tandem import --yjs`
 * reads one back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Server, TANDEM, WS, Y, ywsClient, hocusClient, rawHocus, until, sleep } from './yhelpers.mjs';

const keys = mkdtempSync(path.join(tmpdir(), 'tandem-yjs-keys-'));
const SK = path.join(keys, 'k');
function token(doc, rights, ttl = 600) {
  return execFileSync(TANDEM, ['token', '--key', SK, '--user', `u-${rights}`, '--doc', doc,
    '--rights', rights, '--ttl', String(ttl)]).toString().trim();
}

/* What a raw y-websocket connection with this token gets: the auth
 * reason (if any) and the close code. */
function ywsRaw(server, room, tok) {
  return new Promise((resolve) => {
    const q = tok === undefined ? '' : `?token=${encodeURIComponent(tok)}`;
    const ws = new WS(`${server.yws}/${room}${q}`);
    ws.binaryType = 'arraybuffer';
    let reason = '';
    ws.on('message', (d) => {
      const b = new Uint8Array(d);
      if (b[0] === 2) reason = Buffer.from(b.subarray(3)).toString();
    });
    ws.on('close', (code) => resolve({ code, reason }));
    ws.on('open', () => ws.send(Uint8Array.of(0, 0, 1, 0)));
  });
}

/* What a Hocuspocus provider with this token hears: 'authenticated:SCOPE'
 * or 'denied:REASON'. */
async function hocusAuth(server, name, tok) {
  const c = hocusClient(server, name, { token: tok });
  const got = await new Promise((resolve) => {
    c.provider.on('authenticated', ({ scope }) => resolve(`authenticated:${scope}`));
    c.provider.on('authenticationFailed', ({ reason }) => resolve(`denied:${reason}`));
  });
  c.destroy();
  return got;
}

test('tokens on y-websocket and Hocuspocus; read-only; document kinds; export/import', { timeout: 120000 }, async () => {
  execFileSync(TANDEM, ['keygen', '--out', SK], { stdio: 'ignore' });
  const server = new Server(['--public-key', `${SK}.pub`]);
  await server.start();
  const all = [];
  try {
    const rw = token('team/*', 'rw'), ro = token('team/*', 'r'), other = token('else/*', 'rw');
    const expired = token('team/*', 'rw', 1);
    const forged = rw.slice(0, -4) + (rw.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await sleep(2100); /* the short token expires */

    /* y-websocket: refused with an auth message and 1008. */
    for (const [what, tok, want] of [['missing', undefined, 'auth_required'],
      ['forged', forged, 'token_invalid'], ['expired', expired, 'token_expired'],
      ['wrong document', other, 'forbidden']]) {
      const r = await ywsRaw(server, 'team/doc', tok);
      assert.equal(r.code, 1008, `y-websocket, ${what} token: close code`);
      assert.match(r.reason, new RegExp(want), `y-websocket, ${what} token: ${r.reason}`);
    }
    /* Hocuspocus: PermissionDenied with the reason. */
    for (const [what, tok, want] of [['missing', '', 'auth_required'],
      ['forged', forged, 'token_invalid'], ['expired', expired, 'token_expired'],
      ['wrong document', other, 'forbidden']]) {
      const got = await hocusAuth(server, 'team/doc', tok);
      assert.match(got, new RegExp(`^denied:${want}`), `Hocuspocus, ${what} token: ${got}`);
    }
    assert.equal(await hocusAuth(server, 'team/doc', ro), 'authenticated:readonly');
    assert.equal(await hocusAuth(server, 'team/doc', rw), 'authenticated:read-write');

    /* Read-only clients of both protocols see edits and make none. */
    const writer = ywsClient(server, 'team/doc', { token: rw });
    const ry = ywsClient(server, 'team/doc', { token: ro });
    const rh = hocusClient(server, 'team/doc', { token: ro });
    all.push(writer, ry, rh);
    await until(() => writer.synced() && ry.synced() && rh.synced(), 'the clients to sync');
    writer.doc.getText('t').insert(0, 'hello');
    await until(() => ry.doc.getText('t').toString() === 'hello' &&
      rh.doc.getText('t').toString() === 'hello', 'read-only clients to see the edit');
    ry.doc.getText('t').insert(0, 'RO-Y ');
    rh.doc.getText('t').insert(0, 'RO-H ');
    await sleep(800);
    assert.equal(writer.doc.getText('t').toString(), 'hello', 'a read-only edit reached a writer');
    const fresh = ywsClient(server, 'team/doc', { token: rw });
    all.push(fresh);
    await until(() => fresh.synced(), 'a fresh client to sync');
    assert.equal(fresh.doc.getText('t').toString(), 'hello', 'a read-only edit was stored');
    assert.equal(rh.provider.unsyncedChanges > 0, true, 'a refused edit counted as saved');
  } finally {
    for (const c of all) c.destroy();
    await server.cleanup();
  }

  /* Document kinds, export and import (open server). */
  const open = new Server();
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-yjs-io-'));
  try {
    writeFileSync(path.join(dir, 'n.json'), JSON.stringify({ body: 'native' }));
    execFileSync(TANDEM, ['import', '--data', open.data, 'plain', path.join(dir, 'n.json')], { stdio: 'ignore' });
    await open.start();
    const r = await ywsRaw(open, 'plain');
    assert.equal(r.code, 1008);
    assert.match(r.reason, /wrong_kind/, `a tandem document through /yjs: ${r.reason}`);
    assert.match(await hocusAuth(open, 'plain', 'x'), /^authenticated/);
    /* A Hocuspocus address refused as of the other kind stays refused: its
     * further messages are dropped, not each one loading the document to be
     * refused again; a new Auth tries again. */
    const wrongKinds = async () => Number((await (await fetch(`${open.http}/metrics`)).text())
      .match(/tandem_errors_total\{code="wrong_kind"\} (\d+)/)?.[1] ?? 0);
    const text = (m) => new TextDecoder().decode(m);
    const h = await rawHocus(open);
    try {
      h.auth('plain');
      h.step1('plain');
      await until(() => h.got.some((m) => text(m).includes('wrong_kind')), 'wrong_kind for Hocuspocus', 3000);
      /* (The refusal of hocusAuth's provider above may still be counting.) */
      await sleep(300);
      const e0 = await wrongKinds();
      const n0 = h.got.length;
      for (let i = 1; i <= 5; i++) {
        h.step1('plain');
        h.awareness('plain', [[99, i, { i }]]);
      }
      await sleep(400);
      assert.equal(await wrongKinds(), e0, 'each further message was refused again');
      assert.equal(h.got.length, n0, 'messages after wrong_kind were answered');
      h.auth('plain');
      h.step1('plain');
      await until(() => h.got.filter((m) => text(m).includes('wrong_kind')).length === 2,
        'a new Auth to try again', 3000);
      assert.equal(await wrongKinds(), e0 + 1);
      assert.equal(h.ws.readyState, WS.OPEN, 'the socket was closed');
    } finally {
      h.end();
    }
    const c = ywsClient(open, 'ydoc');
    await until(() => c.synced(), 'sync');
    c.doc.getText('text').insert(0, 'yjs here');
    c.doc.getMap('m').set('k', 7);
    await until(async () => (await open.json('ydoc')).body?.text === 'yjs here', 'GET /docs');
    c.destroy();
    await open.stop();
    const json = JSON.parse(execFileSync(TANDEM, ['export', '--data', open.data, 'ydoc']).toString());
    assert.deepEqual(json, { m: { k: 7 }, text: 'yjs here' });
    const upd = execFileSync(TANDEM, ['export', '--data', open.data, '--format', 'update', 'ydoc']);
    const d = new Y.Doc();
    Y.applyUpdate(d, new Uint8Array(upd));
    assert.equal(d.getText('text').toString(), 'yjs here');
    writeFileSync(path.join(dir, 'u.bin'), upd);
    execFileSync(TANDEM, ['import', '--data', open.data, '--yjs', 'copy', path.join(dir, 'u.bin')], { stdio: 'ignore' });
    const back = JSON.parse(execFileSync(TANDEM, ['export', '--data', open.data, 'copy']).toString());
    /* `tandem check` loads documents of both kinds. */
    const checked = execFileSync(TANDEM, ['check', '--data', open.data]).toString();
    assert.match(checked, /ok +copy: Yjs/);
    assert.match(checked, /ok +plain:/);
    assert.deepEqual(back, json);
    await open.start();
    const c2 = ywsClient(open, 'copy');
    await until(() => c2.synced() && c2.doc.getMap('m').get('k') === 7, 'the imported document to serve');
    /* Metrics per protocol. */
    const h2 = hocusClient(open, 'copy');
    await until(() => h2.synced() && h2.doc.getMap('m').get('k') === 7, 'a Hocuspocus client of the import');
    const metrics = await (await fetch(`${open.http}/metrics`)).text();
    const val = (name, proto) => Number((metrics.match(new RegExp(`^${name}\\{protocol="${proto}"\\} (\\d+)$`, 'm')) ?? [])[1]);
    assert.equal(val('tandem_protocol_connections', 'y-websocket'), 1, 'open y-websocket connections');
    assert.ok(val('tandem_protocol_connections_total', 'hocuspocus') >= 1, 'Hocuspocus connections counted');
    assert.ok(val('tandem_protocol_messages_total', 'y-websocket') >= 1, 'y-websocket messages counted');
    assert.equal(val('tandem_protocol_connections', 'native'), 0);
    h2.destroy();
    c2.destroy();
  } finally {
    await open.cleanup();
    rmSync(dir, { recursive: true, force: true });
    rmSync(keys, { recursive: true, force: true });
  }
});
