/*
 * converge.test.mjs -- issue 12, bar 1: stock Yjs providers (y-websocket,
 * and Hocuspocus when the server speaks it) on the same documents make
 * random concurrent edits to Y.Text with formatting, Y.Array, Y.Map and
 * Y.XmlFragment, with disconnects and reconnects. Every client, a fresh
 * client and GET /docs/{id} must agree; and again after a server restart.
 *
 * TD_SEED picks the random run; TD_YJS_HOCUS=0 leaves Hocuspocus out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, Y, ywsClient, hocusClient, until, sleep, rng } from './yhelpers.mjs';

const SEED = Number(process.env.TD_SEED ?? 12);
const ROOMS = ['conv-a', 'conv-b'];
const WITH_HOCUS = process.env.TD_YJS_HOCUS !== '0';

/* What GET /docs/{id} writes for our four roots (docs/YJS.md, "JSON"). */
function expected(doc) {
  const out = {};
  const t = doc.getText('text').toString();
  if (t.length) out.text = t;
  const a = doc.getArray('arr').toJSON();
  if (a.length) out.arr = a;
  const m = doc.getMap('map').toJSON();
  if (Object.keys(m).length) out.map = Object.fromEntries(Object.entries(m).sort());
  const x = doc.getXmlFragment('xml');
  if (x.length) out.xml = x.toString();
  return out;
}

const view = (doc) => JSON.stringify({ j: expected(doc), d: doc.getText('text').toDelta() });

function edit(r, doc) {
  const text = doc.getText('text'), arr = doc.getArray('arr');
  const map = doc.getMap('map'), xml = doc.getXmlFragment('xml');
  const word = () => 'abcdefghij'.slice(0, 1 + r.int(5)) + r.int(100);
  doc.transact(() => {
    switch (r.int(8)) {
      case 0: text.insert(r.int(text.length + 1), word(), r() < 0.3 ? { bold: true } : undefined); break;
      case 1: if (text.length) { const i = r.int(text.length); text.delete(i, Math.min(1 + r.int(4), text.length - i)); } break;
      case 2: if (text.length) { const i = r.int(text.length); text.format(i, Math.min(1 + r.int(6), text.length - i), { italic: r() < 0.5 ? true : null }); } break;
      case 3: arr.insert(r.int(arr.length + 1), [r.int(1000), word()]); break;
      case 4: if (arr.length) arr.delete(r.int(arr.length), 1); break;
      case 5: if (r() < 0.8) map.set(`k${r.int(8)}`, r() < 0.5 ? r.int(1e6) : word()); else map.delete(`k${r.int(8)}`); break;
      case 6: {
        const el = new Y.XmlElement(r() < 0.5 ? 'p' : 'h1');
        el.insert(0, [new Y.XmlText(word())]);
        xml.insert(r.int(xml.length + 1), [el]);
        break;
      }
      default: if (xml.length) xml.delete(r.int(xml.length), 1); break;
    }
  });
}

async function agree(server, clients, room) {
  const mine = clients.filter((c) => c.room === room);
  let last = null;
  await until(async () => {
    last = { views: mine.map((c) => view(c.doc)), server: await server.json(room) };
    const views = new Set(mine.map((c) => view(c.doc)));
    if (views.size !== 1) return false;
    const got = await server.json(room);
    if (got.status !== 200) return false;
    try { assert.deepStrictEqual(got.body, expected(mine[0].doc)); return true; } catch { return false; }
  }, `every client of ${room} and GET /docs/${room} to agree`, 30000).catch((e) => {
    console.error(JSON.stringify(last, null, 1).slice(0, 6000));
    throw e;
  });
  /* A fresh client of the same room sees the same. */
  const fresh = ywsClient(server, room);
  await until(() => fresh.provider.synced, 'a fresh client to sync');
  await until(() => view(fresh.doc) === view(mine[0].doc), 'the fresh client to agree');
  fresh.destroy();
}

test('stock providers converge on concurrent edits, also after a restart', { timeout: 240000 }, async () => {
  const server = new Server();
  await server.start();
  const r = rng(SEED);
  const clients = [];
  try {
    for (const room of ROOMS) {
      for (let i = 0; i < 3; i++) clients.push({ room, ...ywsClient(server, room) });
      if (WITH_HOCUS) for (let i = 0; i < 2; i++) clients.push({ room, ...hocusClient(server, room) });
    }
    await until(() => clients.every((c) => c.synced()), 'every client to sync');
    for (let round = 0; round < 40; round++) {
      for (const c of clients) for (let k = r.int(4); k > 0; k--) edit(r, c.doc);
      /* Some go offline for a while, edit there, and come back. */
      if (round % 5 === 2) for (const c of clients) if (r() < 0.3) c.disconnect();
      if (round % 5 === 4) for (const c of clients) c.connect();
      await sleep(r.int(30));
    }
    for (const c of clients) c.connect();
    for (const room of ROOMS) await agree(server, clients, room);

    /* The server restarts; the providers reconnect on their own. */
    await server.stop();
    for (const c of clients) edit(r, c.doc); /* offline edits meanwhile */
    await server.start();
    for (const room of ROOMS) await agree(server, clients, room);
  } finally {
    for (const c of clients) c.destroy();
    await server.cleanup();
  }
});
