/*
 * browser.test.mjs -- the demo editor in headless Chromium, end to end.
 *
 * A real `tandem serve --static <built demo>` on 127.0.0.1 (Chromium's
 * local-network checks block pages from elsewhere opening a WebSocket to
 * localhost); Debian's chromium driven by playwright-core (no browser
 * download). Two pages type into the editor concurrently and end with the
 * same text; page B goes offline, types, reloads while still offline and its
 * edits are still there (service worker + IndexedDB), comes back online and
 * both converge; B sees A's cursor and name, and A's cursor goes away when A
 * closes; a peer's caret past the end of B's text (a PRESENCE that overtook
 * the peer's edits) does not break B's editor. A screenshot of both pages
 * is saved for a person to look at.
 *
 * Environment: TD_DEMO_DIR (the built demo), TD_SCREENSHOT_DIR (where the
 * PNG goes), TD_CHROMIUM (default /usr/bin/chromium), TD_TANDEM,
 * TD_ALLOW_NO_BROWSER.
 *
 * A missing server, demo or playwright-core FAILS (they are built or
 * installed by scripts/test). So does a missing chromium (scripts/lib.sh
 * installs it), unless TD_ALLOW_NO_BROWSER=1: then it prints
 * `SKIP: <reason>` and exits 77, which ctest reports as skipped
 * (SKIP_RETURN_CODE 77; ctest runs this file with plain `node`, not
 * `node --test`, so that the exit status is its own). Under `node --test`
 * the test is skipped instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Server, serverMissing, mustRun, sleep, until, REPO } from '../helpers.mjs';

const CHROMIUM = process.env.TD_CHROMIUM || '/usr/bin/chromium';
const DEMO = process.env.TD_DEMO_DIR || path.join(REPO, 'build', 'client-js', 'demo');
const SHOTS = process.env.TD_SCREENSHOT_DIR || path.join(REPO, 'build');

let chromium = null;
try { ({ chromium } = await import('playwright-core')); } catch { /* fails below */ }

const noBrowser = !existsSync(CHROMIUM) && `no chromium at ${CHROMIUM}`;
const allowNoBrowser = process.env.TD_ALLOW_NO_BROWSER === '1';
if (noBrowser && allowNoBrowser) {
  console.log(`SKIP: ${noBrowser} (TD_ALLOW_NO_BROWSER=1)`);
  if (!process.env.NODE_TEST_CONTEXT) process.exit(77); /* not under node --test */
}
const NOT_RUN = mustRun(serverMissing(),
  noBrowser && !allowNoBrowser &&
    `${noBrowser} (scripts/lib.sh installs it; TD_ALLOW_NO_BROWSER=1 makes this a skip)`,
  !chromium && 'playwright-core is not installed (npm ci in client-js)',
  !existsSync(path.join(DEMO, 'app.js')) && `no built demo in ${DEMO}`) ||
  (noBrowser && `${noBrowser} (TD_ALLOW_NO_BROWSER=1)`);

const editorText = (page) => page.evaluate(() => window.tandemDemo.text());

async function openDemo(context, server, name, doc) {
  const page = await context.newPage();
  page.on('pageerror', (e) => { page.errors ??= []; page.errors.push(String(e)); });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') { page.logs ??= []; page.logs.push(`${m.type()}: ${m.text()}`); } });
  await page.goto(`${server.http}/?doc=${doc}&name=${name}`);
  await page.evaluate(() => window.tandemDemoReady);
  return page;
}

async function typeAt(page, where, str) {
  await page.click('.cm-content');
  await page.keyboard.press(where === 'start' ? 'Control+Home' : 'Control+End');
  await page.keyboard.type(str, { delay: 5 });
}

test('two pages edit, go offline, reload offline, converge, see cursors', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const server = new Server({ args: ['--static', DEMO] });
  await server.start();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const ctxA = await browser.newContext({ viewport: { width: 800, height: 500 } });
    const ctxB = await browser.newContext({ viewport: { width: 800, height: 500 } });
    const a = await openDemo(ctxA, server, 'Alice', 'e2e');
    const b = await openDemo(ctxB, server, 'Bob', 'e2e');
    await until(() => b.evaluate(() => window.tandemDemo.client.status === 'online'), 'B online');

    /* 1. Concurrent typing converges. A seed line first, so that "start"
     * and "end" are different places: typed into an empty text, B's
     * Control+End could land inside A's words as they arrive, and B's words
     * would then rightly end up among them. */
    await typeAt(a, 'start', 'Hello. ');
    await until(async () => (await editorText(b)) === 'Hello. ', 'B to show the seed');
    await Promise.all([typeAt(a, 'start', 'Alice was here. '), typeAt(b, 'end', 'Bob too! ')]);
    let last;
    await until(async () => {
      const [ta, tb] = await Promise.all([editorText(a), editorText(b)]);
      last = { a: ta, b: tb, coreA: await a.evaluate(() => window.tandemDemo.doc.text('body').toString()),
        coreB: await b.evaluate(() => window.tandemDemo.doc.text('body').toString()) };
      return ta === tb && ta.includes('Alice was here. ') && ta.includes('Bob too! ') ? ta : null;
    }, 'both pages to show both edits').catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(last)} errors A ${JSON.stringify([a.errors, a.logs])} B ${JSON.stringify([b.errors, b.logs])}`);
    });
    const first = await editorText(a);
    assert.equal(first, 'Alice was here. Hello. Bob too! ');

    /* 2. B sees A's cursor with A's name. */
    await a.click('.cm-content');
    await a.keyboard.press('Control+End');
    await until(() => b.evaluate(() => [...document.querySelectorAll('.td-cursor-label')].some((l) => l.textContent === 'Alice')),
      "B to show Alice's cursor");
    assert.ok(await b.evaluate(() => document.getElementById('people').textContent.includes('Alice')),
      'Alice is in B\'s online list');
    mkdirSync(SHOTS, { recursive: true });
    const shotA = path.join(SHOTS, 'demo-page-a.png'), shotB = path.join(SHOTS, 'demo-page-b.png');
    await a.screenshot({ path: shotA });
    await b.screenshot({ path: shotB });

    /* 3. B offline: types, reloads offline, its edits are still there. */
    await b.evaluate(() => navigator.serviceWorker.ready);
    await ctxB.setOffline(true);
    await until(() => b.evaluate(() => window.tandemDemo.client.status === 'offline'), 'B to go offline');
    await typeAt(b, 'end', 'offline words ');
    await typeAt(a, 'start', '[A online] ');
    await sleep(400); /* the snapshot save is debounced; the pending batch is already stored */
    await b.reload();
    await b.evaluate(() => window.tandemDemoReady);
    const afterReload = await editorText(b);
    assert.ok(afterReload.includes('offline words '), `B's offline edit survived the reload: ${JSON.stringify(afterReload)}`);
    assert.ok(!afterReload.includes('[A online]'), 'B really was offline');
    assert.equal(await b.evaluate(() => window.tandemDemo.client.status), 'offline');

    /* 4. Back online: both converge. */
    await ctxB.setOffline(false);
    const final = await until(async () => {
      const [ta, tb] = await Promise.all([editorText(a), editorText(b)]);
      return ta === tb && ta.includes('offline words ') && ta.includes('[A online] ') ? ta : null;
    }, 'both pages to converge after B is back');
    assert.equal(final.length, first.length + 'offline words '.length + '[A online] '.length);
    await until(() => b.evaluate(() => window.tandemDemo.doc.isSynced), "B's edits to be acknowledged");
    assert.equal((await server.docJSON('e2e')).body, final, 'the server holds the same text');

    /* 5. A's cursor leaves B when A closes. */
    await a.click('.cm-content');
    await a.keyboard.press('Control+Home');
    await until(() => b.evaluate(() => window.tandemDemo.doc.presence.peers.some((p) => p.state.name === 'Alice' && p.state.head === 0)),
      "B to see Alice's cursor move to the start");
    await sleep(100);
    const combined = path.join(SHOTS, 'demo-two-pages.png');
    await a.screenshot({ path: shotA });
    await b.screenshot({ path: shotB });
    await saveSideBySide(ctxA, shotA, shotB, combined);
    console.log(`screenshots: ${combined} (and ${shotA}, ${shotB})`);
    await a.close();
    await until(() => b.evaluate(() => document.querySelectorAll('.td-cursor-label').length === 0),
      "Alice's cursor to disappear from B");
    assert.ok(!(await b.evaluate(() => document.getElementById('people').textContent.includes('Alice'))));

    /* 6. A peer's caret past the end of B's text (its PRESENCE overtook the
     * REMOTE with its edits, which the protocol allows) must not stop B's
     * editor from taking edits. */
    await b.evaluate(() => {
      const { doc, view } = window.tandemDemo;
      const end = view.state.doc.length + 5;
      doc.presence.emit('change', [{ session: 999999, agent: 1n, user: '', state: { name: 'Early', color: '#000', anchor: end, head: end } }]);
    });
    assert.ok(await b.evaluate(() => [...document.querySelectorAll('.td-cursor-label')].some((l) => l.textContent === 'Early')));
    await typeAt(b, 'end', 'still typing');
    const afterEarly = await until(async () => { const t = await editorText(b); return t.endsWith('typing') && t; },
      'B\'s editor to take the edit').catch((e) => { throw new Error(`${e.message}: ${JSON.stringify([b.errors, b.logs])}`); });
    assert.equal(afterEarly, `${final}still typing`);
    assert.equal(await b.evaluate(() => window.tandemDemo.doc.text('body').toString()), afterEarly, 'and so did the document');
    assert.deepEqual(b.errors ?? [], [], 'no page errors');
  } finally {
    await browser.close();
    await server.dispose();
  }
});

/* One PNG holding both pages side by side (drawn in a page canvas). */
async function saveSideBySide(ctx, left, right, out) {
  const { readFileSync, writeFileSync } = await import('node:fs');
  const page = await ctx.newPage();
  const [l, r] = [left, right].map((f) => `data:image/png;base64,${readFileSync(f).toString('base64')}`);
  const data = await page.evaluate(async ([l, r]) => {
    const load = (src) => new Promise((res) => { const i = new Image(); i.onload = () => res(i); i.src = src; });
    const [a, b] = await Promise.all([load(l), load(r)]);
    const c = document.createElement('canvas');
    c.width = a.width + b.width + 10; c.height = Math.max(a.height, b.height);
    const g = c.getContext('2d');
    g.fillStyle = '#444'; g.fillRect(0, 0, c.width, c.height);
    g.drawImage(a, 0, 0); g.drawImage(b, a.width + 10, 0);
    return c.toDataURL('image/png').split(',')[1];
  }, [l, r]);
  writeFileSync(out, Buffer.from(data, 'base64'));
  await page.close();
}
