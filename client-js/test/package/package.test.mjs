/*
 * package.test.mjs -- the packed npm tarball, installed as a user would
 * (issue 13, bar 1).
 *
 * Packs tandem-client with scripts/pack.mjs (into $TD_PKG_OUT, a build
 * directory), then for each of: a Node 20 ESM script, a Vite app (production
 * build served by `vite preview`, and the Vite dev server), an esbuild bundle
 * and a webpack 5 bundle (webpack-cli, no config file) -- creates a fresh
 * project in a temporary directory, `npm install`s the tarball into it
 * (--offline, from the cache `npm ci` filled; --prefer-offline if the cache
 * lacks the registry's document of `ws`, the tarball's only dependency),
 * and has it connect to a real `tandem serve` and converge with a second
 * client (this repository's source tree, in this process): that client
 * writes, the package's client sees it and writes back, both end with the
 * same text. Pages run in headless Chromium (playwright-core, Debian's
 * chromium); no page may fetch a .wasm file or log an error: the wasm comes
 * inlined with the package's browser entry, with no configuration. Also:
 * the tarball's contents and package.json; the `wasm` option (Vite's
 * `tandem-client/tandem_crdt.wasm?url` passed as `fetch(url)`, and bytes in
 * the Node script); TypeScript (NodeNext) finding index.d.ts through
 * `exports`.
 *
 * Vite, webpack, webpack-cli and esbuild come from client-js/node_modules
 * (devDependencies). Anything missing -- server, chromium, a tool, npm --
 * FAILS the test; nothing is skipped.
 *
 * Environment: TD_TANDEM, TD_WASM (the build's module, packed), TD_PKG_OUT
 * (where the tarball and its staging go; default build/client-js),
 * TD_CHROMIUM (default /usr/bin/chromium), TD_KEEP=1 keeps the projects.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Server, serverMissing, mustRun, until, freePort, REPO } from '../helpers.mjs';
import { connect } from '../../src/index.js';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(HERE, '..', '..');
const MODULES = path.join(PKG, 'node_modules');
const CHROMIUM = process.env.TD_CHROMIUM || '/usr/bin/chromium';
const OUT = process.env.TD_PKG_OUT || path.join(REPO, 'build', 'client-js');
const WASM = process.env.TD_WASM;
const KEEP = process.env.TD_KEEP === '1';

let chromium = null, vite = null, esbuild = null;
try { ({ chromium } = await import('playwright-core')); } catch { /* fails below */ }
try { vite = await import('vite'); } catch { /* fails below */ }
try { esbuild = await import('esbuild'); } catch { /* fails below */ }
const WEBPACK_CLI = path.join(MODULES, 'webpack-cli', 'bin', 'cli.js');

const NOT_RUN = mustRun(serverMissing(),
  !existsSync(CHROMIUM) && `no chromium at ${CHROMIUM} (scripts/lib.sh installs it)`,
  !chromium && 'playwright-core is not installed (npm ci in client-js)',
  !vite && 'vite is not installed (npm ci in client-js)',
  !esbuild && 'esbuild is not installed (npm ci in client-js)',
  (!existsSync(WEBPACK_CLI) || !existsSync(path.join(MODULES, 'webpack'))) &&
    'webpack and webpack-cli are not installed (npm ci in client-js)',
  !existsSync(WASM ?? '') && `no built wasm module (TD_WASM=${WASM ?? ''})`);

let server = null, browser = null, tarball = null;
const projects = [];
const statics = [];

/* Packs the tarball with scripts/pack.mjs (as the CMake target does). */
async function pack() {
  const { stdout } = await run(process.execPath, [path.join(PKG, 'scripts', 'pack.mjs'), '--wasm', WASM, '--out', OUT],
    { maxBuffer: 16 << 20 });
  const tgz = stdout.trim().split('\n').pop();
  assert.ok(existsSync(tgz), `pack.mjs made ${tgz}`);
  return tgz;
}

/* A fresh project in a temporary directory with the tarball installed. */
async function project(name, files) {
  const dir = mkdtempSync(path.join(tmpdir(), `tandem-pkg-${name}-`));
  projects.push(dir);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `try-${name}`, private: true, type: 'module' }, null, 2));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), text);
  }
  const npmArgs = ['install', '--no-audit', '--no-fund', '--no-save', tarball];
  try {
    await run('npm', [...npmArgs, '--offline'], { cwd: dir });
  } catch (e) {
    if (!/ENOTCACHED/.test(`${e.stdout}${e.stderr}`)) throw new Error(`npm install in ${dir} failed:\n${e.stderr}`);
    await run('npm', [...npmArgs, '--prefer-offline'], { cwd: dir });
  }
  const installed = JSON.parse(readFileSync(path.join(dir, 'node_modules', 'tandem-client', 'package.json'), 'utf8'));
  assert.equal(installed.private, undefined, 'the installed package.json is not private');
  return dir;
}

/* A static file server for a built bundle. */
async function serveDir(dir) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
  const srv = createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(dir, p.endsWith('/') ? `${p}index.html` : p);
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  statics.push(srv);
  return `http://127.0.0.1:${srv.address().port}`;
}

/* The page's code, the same for every bundler: the package's public API
 * with no options but the server's URL. */
const pageMain = (head = '', opts = '') => `import { connect } from 'tandem-client';
${head}
const q = new URLSearchParams(location.search);
window.pkgReady = (async () => {
  const client = await connect(q.get('ws'), { backoff: { baseMs: 100, capMs: 1000 }${opts} });
  const doc = await client.open(q.get('doc'));
  const body = doc.text('body');
  window.pkg = {
    text: () => body.toString(),
    append: (s) => body.insert(body.length, s),
    synced: () => doc.synced.then(() => true),
  };
  return true;
})();
`;
const PAGE_MAIN = pageMain();
const pageHtml = (script, module = true) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>tandem-client</title></head>` +
  `<body><script ${module ? 'type="module" ' : ''}src="${script}"></script></body></html>\n`;

/* A second client from the source tree: writes, waits for the other side's
 * text, and both end equal. `other` reads and appends on the other side. */
async function converge(docId, other) {
  const client = await connect(server.url, { backoff: { baseMs: 100 } });
  try {
    const doc = await client.open(docId);
    const body = doc.text('body');
    body.insert(0, 'from-repo|');
    await until(async () => (await other.text()).includes('from-repo|'), `the package's client to see the repo's edit (${docId})`, 30000);
    await other.append('from-package|');
    await until(() => body.toString().includes('from-package|'), `the repo's client to see the package's edit (${docId})`, 30000);
    await doc.synced;
    await until(async () => (await other.text()) === body.toString(), `both texts to be equal (${docId})`, 30000);
    assert.equal(body.toString(), 'from-repo|from-package|');
    assert.deepEqual((await server.docJSON(docId)).body, body.toString(), 'the server holds the same text');
  } finally {
    await client.close();
  }
}

/* Opens url in Chromium and converges its client with the repo's. */
async function checkPage(label, base, { pagePath = '/', wasmFetched = false } = {}) {
  const page = await browser.newPage();
  const errors = [], wasmFetches = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  /* A browser asks for /favicon.ico by itself; any other failed load is an error. */
  page.on('response', (r) => {
    if (r.status() >= 400 && new URL(r.url()).pathname !== '/favicon.ico') errors.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.on('request', (r) => { if (/\.wasm(\?|$)/.test(r.url())) wasmFetches.push(r.url()); });
  try {
    const docId = `pkg-${label}`;
    await page.goto(`${base}${pagePath}?ws=${encodeURIComponent(server.url)}&doc=${docId}`);
    await until(() => page.evaluate(() => typeof window.pkgReady === 'object'), `${label}: the page's script to run`, 30000)
      .catch((e) => { throw new Error(`${e.message}; page errors: ${errors.join('; ')}`); });
    await page.evaluate(() => window.pkgReady).catch((e) => { throw new Error(`${label}: connect failed: ${e.message}; ${errors.join('; ')}`); });
    await converge(docId, {
      text: () => page.evaluate(() => window.pkg.text()),
      append: (s) => page.evaluate((x) => window.pkg.append(x), s),
    });
    assert.ok(await page.evaluate(() => window.pkg.synced()));
    assert.deepEqual(errors, [], `${label}: no page errors`);
    if (wasmFetched) assert.equal(wasmFetches.length, 1, `${label}: the \`wasm\` option's URL is fetched once`);
    else assert.deepEqual(wasmFetches, [], `${label}: the wasm is inlined, not fetched`);
  } finally {
    await page.close();
  }
}

/* Fails if a bundle dragged Node's modules or the Node entry in. */
function assertBrowserBundle(file) {
  const js = readFileSync(file, 'utf8');
  assert.ok(!/node:fs|readFile\(/.test(js), `${file}: no Node file APIs in a browser bundle`);
  assert.ok(js.length > 100000, `${file}: holds the inlined core (${js.length} bytes)`);
}

before(async () => {
  if (NOT_RUN) return;
  tarball = await pack();
  server = new Server();
  await server.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  await server?.dispose();
  for (const s of statics) s.closeAllConnections?.(), s.close();
  if (!KEEP) for (const d of projects) rmSync(d, { recursive: true, force: true });
  else console.log(`kept: ${projects.join(' ')}`);
});

test('the tarball: not private, exports conditions, the wasm inside', { skip: NOT_RUN }, async () => {
  const { stdout } = await run('tar', ['-tzf', tarball]);
  const files = stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''));
  for (const f of ['package.json', 'README.md', 'index.d.ts', 'tandem_crdt.wasm', 'src/index.js', 'src/browser.js',
    'src/platform.js', 'src/platform-browser.js', 'src/wasm-inline.js']) assert.ok(files.includes(f), `the tarball holds ${f}`);
  assert.ok(!files.some((f) => /node_modules|test\/|\.tgz$/.test(f)), `nothing else: ${files.join(' ')}`);
  const { stdout: pj } = await run('tar', ['-xzOf', tarball, 'package/package.json']);
  const pkg = JSON.parse(pj);
  assert.equal(pkg.private, undefined);
  assert.deepEqual(Object.keys(pkg.exports['.']), ['types', 'browser', 'node', 'default']);
  assert.deepEqual(Object.keys(pkg.dependencies), ['ws']);
  assert.equal(pkg.devDependencies, undefined);
});

test('Node 20 ESM: a script in a fresh project', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const dir = await project('node', {
    'main.mjs': `import { connect, createReplica } from 'tandem-client';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
const [url, docId] = process.argv.slice(2);
/* The explicit option too: the packaged file's bytes, through the exports map. */
const wasmPath = fileURLToPath(import.meta.resolve('tandem-client/tandem_crdt.wasm'));
const r = await createReplica({ wasm: await readFile(wasmPath) });
r.text('t').insert(0, 'ok');
if (r.toJSON().t !== 'ok') throw new Error('createReplica with wasm bytes');
const client = await connect(url, { backoff: { baseMs: 100 } });
const doc = await client.open(docId);
const body = doc.text('body');
const lines = (await import('node:readline')).createInterface({ input: process.stdin });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
doc.on('change', () => out({ text: body.toString() }));
out({ ready: true, text: body.toString(), entry: import.meta.resolve('tandem-client') });
for await (const line of lines) {
  const m = JSON.parse(line);
  if (m.append) body.insert(body.length, m.append);
  if (m.close) { await doc.synced; out({ done: true, text: body.toString() }); await client.close(); break; }
}
/* Nothing is left running: the process exits by itself. */
`,
  });
  const env = { ...process.env };
  delete env.TD_WASM; /* the package must find its own module */
  const child = spawn(process.execPath, ['main.mjs', server.url, 'pkg-node'], { cwd: dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let text = '', stderr = '', ready = null, done = null, exited = null;
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
      const m = JSON.parse(buf.slice(0, i));
      if ('text' in m) text = m.text;
      if (m.ready) ready = m;
      if (m.done) done = m;
    }
  });
  child.stderr.on('data', (d) => { stderr += d; });
  child.on('exit', (c) => { exited = c; });
  try {
    await until(() => ready || exited !== null, 'the Node script to connect', 30000);
    assert.ok(ready, `the Node script exited ${exited}: ${stderr}`);
    assert.match(ready.entry, new RegExp(`${path.basename(dir)}/node_modules/tandem-client/src/index\\.js$`), 'the node condition picks src/index.js');
    await converge('pkg-node', {
      text: () => text,
      append: (s) => child.stdin.write(JSON.stringify({ append: s }) + '\n'),
    });
    child.stdin.end(JSON.stringify({ close: true }) + '\n');
    await until(() => exited !== null, 'the Node script to exit', 30000);
    assert.equal(exited, 0, stderr);
    assert.equal(done?.text, 'from-repo|from-package|');
  } finally {
    if (exited === null) child.kill();
  }
});

test('esbuild bundle in Chromium', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const dir = await project('esbuild', { 'main.js': PAGE_MAIN, 'dist/index.html': pageHtml('app.js') });
  await esbuild.build({ entryPoints: [path.join(dir, 'main.js')], bundle: true, format: 'esm', platform: 'browser',
    outfile: path.join(dir, 'dist', 'app.js'), logLevel: 'error' });
  assertBrowserBundle(path.join(dir, 'dist', 'app.js'));
  await checkPage('esbuild', await serveDir(path.join(dir, 'dist')));
});

test('webpack 5 bundle (webpack-cli, no config) in Chromium', { skip: NOT_RUN, timeout: 180000 }, async () => {
  const dir = await project('webpack', { 'src/index.js': PAGE_MAIN, 'dist/index.html': pageHtml('main.js', false) });
  try {
    await run(process.execPath, [WEBPACK_CLI, '--mode', 'production'], { cwd: dir, maxBuffer: 16 << 20 });
  } catch (e) {
    throw new Error(`webpack failed:\n${e.stdout}\n${e.stderr}`);
  }
  assertBrowserBundle(path.join(dir, 'dist', 'main.js'));
  await checkPage('webpack', await serveDir(path.join(dir, 'dist')));
});

const viteFiles = () => ({ 'main.js': PAGE_MAIN, 'index.html': pageHtml('/main.js') });

test('Vite production build (vite preview) in Chromium', { skip: NOT_RUN, timeout: 180000 }, async () => {
  const dir = await project('vite', viteFiles());
  await vite.build({ root: dir, logLevel: 'error', configFile: false });
  const js = (await run('sh', ['-c', 'ls dist/assets/*.js'], { cwd: dir })).stdout.trim().split('\n');
  assert.equal(js.length, 1, `one script: ${js.join(' ')}`);
  assertBrowserBundle(path.join(dir, js[0]));
  const port = await freePort();
  const preview = await vite.preview({ root: dir, logLevel: 'error', configFile: false,
    preview: { host: '127.0.0.1', port, strictPort: true } });
  try {
    await checkPage('vite-build', `http://127.0.0.1:${port}`);
  } finally {
    await preview.close();
  }
});

test('Vite dev server in Chromium', { skip: NOT_RUN, timeout: 180000 }, async () => {
  const dir = await project('vite-dev', viteFiles());
  const port = await freePort();
  const dev = await vite.createServer({ root: dir, logLevel: 'error', configFile: false,
    server: { host: '127.0.0.1', port, strictPort: true, hmr: false } });
  await dev.listen();
  try {
    await checkPage('vite-dev', `http://127.0.0.1:${port}`);
  } finally {
    await dev.close();
  }
});

test('the `wasm` option: Vite build with tandem-client/tandem_crdt.wasm?url', { skip: NOT_RUN, timeout: 180000 }, async () => {
  const dir = await project('vite-url', {
    'main.js': pageMain("import wasmUrl from 'tandem-client/tandem_crdt.wasm?url';", ', wasm: fetch(wasmUrl)'),
    'index.html': pageHtml('/main.js'),
  });
  await vite.build({ root: dir, logLevel: 'error', configFile: false });
  const assets = (await run('sh', ['-c', 'ls dist/assets'], { cwd: dir })).stdout.trim().split('\n');
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `vite emitted the .wasm: ${assets.join(' ')}`);
  const port = await freePort();
  const preview = await vite.preview({ root: dir, logLevel: 'error', configFile: false,
    preview: { host: '127.0.0.1', port, strictPort: true } });
  try {
    await checkPage('vite-url', `http://127.0.0.1:${port}`, { wasmFetched: true });
  } finally {
    await preview.close();
  }
});

test('TypeScript (NodeNext) finds the types through exports', { skip: NOT_RUN, timeout: 120000 }, async () => {
  const dir = await project('types', {
    'main.ts': `import { connect, type ConnectOptions, type WasmSource } from 'tandem-client';
const wasm: WasmSource = new URL('https://example.invalid/tandem_crdt.wasm');
const opts: ConnectOptions = { wasm, backoff: { baseMs: 100 } };
export async function main(url: string): Promise<string> {
  const client = await connect(url, opts);
  const doc = await client.open('x');
  return doc.text('body').toString();
}
`,
    'tsconfig.json': JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext',
      strict: true, noEmit: true, lib: ['ES2022', 'DOM'], types: [] }, files: ['main.ts'] }),
  });
  try {
    await run(process.execPath, [path.join(MODULES, 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir });
  } catch (e) {
    throw new Error(`tsc failed:\n${e.stdout}\n${e.stderr}`);
  }
});
