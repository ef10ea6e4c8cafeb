/*
 * rich.test.mjs -- the rich-text demo (demo/rich.*: TipTap + Yjs on the stock
 * @hocuspocus/provider) in headless Chromium against `tandem serve`'s
 * /hocuspocus front-end, end to end.
 *
 * A real `tandem serve --static <built demo>` on 127.0.0.1 with a temporary
 * data directory; Debian's chromium driven by playwright-core, as in
 * browser.test.mjs. Two pages (two browser contexts: two users) open the
 * same document: both type at once and converge; one bolds a word through
 * the toolbar, the other makes a bullet list; both show the same document
 * and each other's caret with the other's name (also after a rename); every
 * change is acknowledged (the provider's unsynced count reaches 0, which
 * tandem gives only after the durable write); GET /docs/{id} holds the same
 * XML as the pages' Y.XmlFragment; a reload keeps the content; a closed
 * page's caret goes away; after a server restart a fresh page gets the
 * document from disk. The first page links to the rich page. A
 * screenshot of both pages is saved (rich-demo-two-pages.png).
 *
 * Environment: TD_DEMO_DIR (the built demo), TD_SCREENSHOT_DIR, TD_CHROMIUM
 * (default /usr/bin/chromium), TD_TANDEM, TD_ALLOW_NO_BROWSER (as in
 * browser.test.mjs: exit 77 when chromium is missing), and TD_RICH_HTTP: the
 * http://127.0.0.1:PORT of a server already running (serving the demo,
 * /hocuspocus and /docs) instead of starting `tandem serve`.
 *
 *   TD_TANDEM=build/server/tandem TD_DEMO_DIR=build/client-js/demo \
 *     node client-js/test/browser/rich.test.mjs
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Server, serverMissing, mustRun, sleep, until, REPO } from '../helpers.mjs';

const CHROMIUM = process.env.TD_CHROMIUM || '/usr/bin/chromium';
const DEMO = process.env.TD_DEMO_DIR || path.join(REPO, 'build', 'client-js', 'demo');
const SHOTS = process.env.TD_SCREENSHOT_DIR || path.join(REPO, 'build');
const EXTERNAL = process.env.TD_RICH_HTTP || '';

let chromium = null;
try { ({ chromium } = await import('playwright-core')); } catch { /* fails below */ }

const noBrowser = !existsSync(CHROMIUM) && `no chromium at ${CHROMIUM}`;
const allowNoBrowser = process.env.TD_ALLOW_NO_BROWSER === '1';
if (noBrowser && allowNoBrowser) {
  console.log(`SKIP: ${noBrowser} (TD_ALLOW_NO_BROWSER=1)`);
  if (!process.env.NODE_TEST_CONTEXT) process.exit(77); /* not under node --test */
}
const NOT_RUN = mustRun(!EXTERNAL && serverMissing(),
  noBrowser && !allowNoBrowser &&
    `${noBrowser} (scripts/lib.sh installs it; TD_ALLOW_NO_BROWSER=1 makes this a skip)`,
  !chromium && 'playwright-core is not installed (npm ci in client-js)',
  !EXTERNAL && !existsSync(path.join(DEMO, 'rich.js')) && `no built rich-text demo in ${DEMO}`) ||
  (noBrowser && `${noBrowser} (TD_ALLOW_NO_BROWSER=1)`);

const DOC = 'rich-e2e';
const html = (page) => page.evaluate(() => window.tandemRich.editor.getHTML());
const plain = (page) => page.evaluate(() => window.tandemRich.editor.getText());
const labels = (page) => page.evaluate(() => [...document.querySelectorAll('.collaboration-carets__label')].map((l) => l.textContent));
const settled = (page) => page.evaluate(() => {
  const p = window.tandemRich.provider;
  return p.isSynced && p.unsyncedChanges === 0 && document.getElementById('synced').dataset.unsynced === '0';
});
const state = (page) => page.evaluate(() => {
  const { provider } = window.tandemRich;
  return { status: document.getElementById('status').textContent, synced: provider.isSynced, unsynced: provider.unsyncedChanges };
});

async function openRich(context, base, name) {
  const page = await context.newPage();
  page.errors = [];
  page.logs = [];
  page.on('pageerror', (e) => { page.errors.push(String(e)); });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') page.logs.push(`${m.type()}: ${m.text()}`); });
  await page.goto(`${base}/rich.html?doc=${DOC}&name=${name}`);
  await page.evaluate(() => window.tandemRichReady);
  await until(async () => (await state(page)).synced, `${name}'s page to sync`)
    .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify({ state: await state(page), errors: page.errors, logs: page.logs })}`); });
  return page;
}

async function typeAt(page, where, str) {
  await page.click('.tiptap');
  await page.keyboard.press(where === 'start' ? 'Control+Home' : 'Control+End');
  await page.keyboard.type(str, { delay: 5 });
}

/* Selects the first occurrence of `word` in the editor (ProseMirror
 * positions, found in the document tree). */
async function selectWord(page, word) {
  const found = await page.evaluate((w) => {
    const { editor } = window.tandemRich;
    let at = null;
    editor.state.doc.descendants((node, pos) => {
      if (at === null && node.isText && node.text.includes(w)) at = pos + node.text.indexOf(w);
      return at === null;
    });
    if (at === null) return false;
    editor.chain().focus().setTextSelection({ from: at, to: at + w.length }).run();
    return true;
  }, word);
  assert.ok(found, `"${word}" is in the editor`);
}

test('two rich-text pages type, bold, make a list, converge, see carets, survive a reload', { skip: NOT_RUN, timeout: 180000 }, async () => {
  const server = EXTERNAL ? null : new Server({ args: ['--static', DEMO] });
  if (server) await server.start();
  const base = EXTERNAL || server.http;
  const docJSON = async (id) => {
    const r = await fetch(`${base}/docs/${encodeURIComponent(id)}`);
    if (!r.ok) throw new Error(`GET /docs/${id}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  let a, b;
  const diag = async () => {
    const out = {};
    for (const [k, p] of [['A', a], ['B', b]]) {
      if (!p || p.isClosed()) continue;
      out[k] = { state: await state(p).catch(String), html: await html(p).catch(String), errors: p.errors, logs: p.logs };
    }
    if (server) out.server = server.log.slice(-3000);
    return JSON.stringify(out, null, 1);
  };
  try {
    /* 0. The first page links to the rich page; the rich page is served. */
    const index = await (await fetch(`${base}/`)).text();
    assert.match(index, /href="rich\.html"/, 'the first page links to rich.html');
    for (const f of ['rich.html', 'rich.js', 'rich.css']) {
      const r = await fetch(`${base}/${f}`);
      assert.equal(r.status, 200, `GET /${f}`);
    }

    const ctxA = await browser.newContext({ viewport: { width: 900, height: 560 } });
    const ctxB = await browser.newContext({ viewport: { width: 900, height: 560 } });
    a = await openRich(ctxA, base, 'Alice');
    b = await openRich(ctxB, base, 'Bob');
    assert.match((await state(a)).status, /^connected/);

    /* 1. Concurrent typing converges (a seed line first, as in browser.test.mjs). */
    await typeAt(a, 'start', 'Hello. ');
    await until(async () => (await plain(b)) === 'Hello. ', 'B to show the seed');
    await Promise.all([typeAt(a, 'start', 'Alice was here. '), typeAt(b, 'end', 'Bob too! ')]);
    await until(async () => {
      const [ta, tb] = await Promise.all([plain(a), plain(b)]);
      return ta === tb && ta.includes('Alice was here. ') && ta.includes('Bob too! ');
    }, 'both pages to show both edits').catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });
    assert.equal((await plain(a)).replace(/\s+$/, ''), 'Alice was here. Hello. Bob too!');

    /* 2. A bolds a word through the toolbar; B makes a bullet list. */
    await selectWord(a, 'here');
    await a.click('#toolbar button[data-cmd="bold"]');
    await until(() => b.evaluate(() => [...document.querySelectorAll('.tiptap strong')].some((s) => s.textContent === 'here')),
      'B to show "here" in bold').catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });
    await b.click('.tiptap');
    await b.keyboard.press('Control+End');
    await b.keyboard.press('Enter');
    await b.click('#toolbar button[data-cmd="bulletList"]');
    await b.keyboard.type('first item', { delay: 5 });
    await b.keyboard.press('Enter');
    await b.keyboard.type('second item', { delay: 5 });
    const LIST = /<ul><li><p>first item<\/p><\/li><li><p>second item<\/p><\/li><\/ul>/;
    await until(async () => LIST.test(await html(a)) && (await a.evaluate(() => document.querySelectorAll('.tiptap ul > li').length)) === 2,
      'A to show the bullet list').catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });
    const final = await until(async () => {
      const [ha, hb] = await Promise.all([html(a), html(b)]);
      return ha === hb && ha;
    }, 'both pages to hold the same document').catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });
    assert.match(final, /<strong>here<\/strong>/);
    assert.match(final, LIST);

    /* 3. Carets with names: each page shows the other's, not its own. */
    await a.click('.tiptap');
    await a.keyboard.press('Control+Home');
    await until(async () => (await labels(b)).includes('Alice'), "B to show Alice's caret")
      .catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await labels(b))} ${await diag()}`); });
    await until(async () => (await labels(a)).includes('Bob'), "A to show Bob's caret");
    assert.ok(!(await labels(a)).includes('Alice'), 'A does not draw its own caret');
    assert.ok(await b.evaluate(() => document.getElementById('people').textContent.includes('Alice')), "Alice is in B's online list");
    /* A rename reaches the other page. */
    await b.fill('#myname', 'Bobby');
    await b.press('#myname', 'Enter');
    await b.click('.tiptap'); /* y-tiptap shows a caret only while its editor has the focus */
    await until(async () => (await labels(a)).includes('Bobby'), "A to show Bob's new name")
      .catch(async (e) => {
        const aw = (p) => p.evaluate(() => JSON.stringify([...window.tandemRich.provider.awareness.getStates()]));
        throw new Error(`${e.message}: labels ${JSON.stringify(await labels(a))} awareness A ${await aw(a)} B ${await aw(b)} ${await diag()}`);
      });

    /* 4. Acknowledged: every change of both is on the server. */
    await until(async () => (await settled(a)) && (await settled(b)), 'both providers to have no unsynced changes')
      .catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });
    const xml = await a.evaluate(() => window.tandemRich.ydoc.getXmlFragment(window.tandemRich.field).toString());
    const json = await docJSON(DOC);
    assert.equal(json.default, xml, 'GET /docs/{id} holds the XmlFragment the pages edit');
    for (const s of ['Alice was', 'Hello.', 'Bob too!', 'first item', 'second item']) assert.ok(json.default.includes(s), `the server has "${s}"`);

    mkdirSync(SHOTS, { recursive: true });
    const shotA = path.join(SHOTS, 'rich-demo-page-a.png'), shotB = path.join(SHOTS, 'rich-demo-page-b.png');
    await a.screenshot({ path: shotA });
    await b.screenshot({ path: shotB });
    const combined = path.join(SHOTS, 'rich-demo-two-pages.png');
    await saveSideBySide(ctxA, shotA, shotB, combined);
    console.log(`screenshots: ${combined} (and ${shotA}, ${shotB})`);

    /* 5. A reload keeps the content (it comes back from the server). */
    await b.reload();
    await b.evaluate(() => window.tandemRichReady);
    await until(async () => (await state(b)).synced && (await html(b)) === final, 'B to show the document again after a reload')
      .catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });
    assert.equal(await b.evaluate(() => window.tandemRich.name), 'Bob', 'the name comes from the URL again');

    /* 6. A closed page's caret goes away. */
    await until(async () => (await labels(b)).includes('Alice'), "the reloaded B to show Alice's caret");
    await a.close();
    await until(async () => !(await labels(b)).includes('Alice'), "Alice's caret to disappear from B", 5000)
      .catch(async (e) => { throw new Error(`${e.message}: ${await diag()}`); });

    const yjsTwice = [...a.logs, ...b.logs].filter((l) => /already imported/i.test(l));
    assert.deepEqual(yjsTwice, [], 'one copy of Yjs in the bundle');
    assert.deepEqual([...a.errors, ...b.errors], [], 'no page errors');

    /* 7. After a server restart, with no page left that could send the
     * document back, a fresh page gets it from the server's disk. */
    if (server) {
      await b.close();
      await server.stop();
      await server.start();
      const c = await openRich(await browser.newContext(), base, 'Carol');
      await until(async () => (await html(c)) === final, 'a fresh page after a restart to show the document')
        .catch(async (e) => { throw new Error(`${e.message}: ${await html(c)} vs ${final}; server ${server.log.slice(-2000)}`); });
      assert.equal((await docJSON(DOC)).default, xml);
      assert.deepEqual(c.errors, [], 'no page errors');
    }
  } finally {
    await browser.close();
    if (server) await server.dispose();
  }
});

/* One PNG holding both pages side by side (drawn in a page canvas). */
async function saveSideBySide(ctx, left, right, out) {
  const page = await ctx.newPage();
  const [l, r] = [left, right].map((f) => `data:image/png;base64,${readFileSync(f).toString('base64')}`);
  const data = await page.evaluate(async ([l, r]) => {
    const load = (src) => new Promise((res) => { const i = new Image(); i.onload = () => res(i); i.src = src; });
    const [x, y] = await Promise.all([load(l), load(r)]);
    const c = document.createElement('canvas');
    c.width = x.width + y.width + 10; c.height = Math.max(x.height, y.height);
    const g = c.getContext('2d');
    g.fillStyle = '#444'; g.fillRect(0, 0, c.width, c.height);
    g.drawImage(x, 0, 0); g.drawImage(y, x.width + 10, 0);
    return c.toDataURL('image/png').split(',')[1];
  }, [l, r]);
  writeFileSync(out, Buffer.from(data, 'base64'));
  await page.close();
}
