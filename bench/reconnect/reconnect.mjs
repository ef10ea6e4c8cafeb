#!/usr/bin/env node
/*
 * reconnect.mjs -- workload D with real JS clients (client-js, its wasm
 * core) against this build's `tandem serve`: client X goes offline, makes
 * OPS single-character inserts at random positions (each its own batch),
 * reconnects; D = the time from the reconnect call until client Y has
 * applied all of them. Same as ../shared/peers-server's workload D, with
 * the two resend paths side by side in one run:
 *
 *   one-by-one  every pending batch resent as its own UPDATE (the client's
 *               behaviour before issue 14; Client._mergeResend = false)
 *   merged      what the server lacks, as one UPDATE after the SYNC (now)
 *
 * Each mode has its own document and pair of clients; rounds alternate
 * between the modes, so both see the same machine load and document sizes.
 * Each mode's last line gives where D goes: the median time after connect()
 * of the socket's open, WELCOME, the SYNC, the first UPDATE sent, and Y's
 * first remote batch received and applied.
 *
 *   node bench/reconnect/reconnect.mjs [--ops 1000] [--rounds 5]
 *        [--durability group|off|fsync]
 *   flock /tmp/tandem-bench.lock node bench/reconnect/reconnect.mjs
 *
 * Environment: TD_TANDEM (server binary; default build/server/tandem),
 * TD_WASM (default build/wasm/tandem_crdt.wasm).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const TANDEM = process.env.TD_TANDEM || path.join(REPO, 'build', 'server', 'tandem');
process.env.TD_WASM ||= path.join(REPO, 'build', 'wasm', 'tandem_crdt.wasm');
const { connect } = await import(path.join(REPO, 'client-js', 'src', 'index.js'));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const OPS = Number(opt('ops', 1000));
const ROUNDS = Number(opt('rounds', 5));
const DURABILITY = opt('durability', 'group');
const CHARS = 'abcdefghijklmnopqrstuvwxyz';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function until(cond, what, ms = 60000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const STAGES = ['open', 'welcome', 'sync', 'update', 'y_recv', 'y_applied'];
const median = (a) => { const s = [...a].sort((x, y) => x - y); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };

async function pair(url, name, merged) {
  const x = await connect(url, { storage: null, backoff: { baseMs: 50, capMs: 500 } });
  const y = await connect(url, { storage: null, backoff: { baseMs: 50, capMs: 500 } });
  x._mergeResend = merged;
  const dx = await x.open(name), dy = await y.open(name);
  await Promise.all([dx.synced, dy.synced]);
  const agent = dx.agent;
  /* Y counts, like the harness's receiver, at each remote change event */
  const st = { x, y, dx, dy, agent, target: 0, done: null, remoteEvents: 0, frames: 0 };
  dy.on('change', (e) => {
    if (e.local) return;
    st.remoteEvents++;
    if (st.done && dy._core.vvGet(agent) >= st.target) { const d = st.done; st.done = null; d(); }
  });
  /* Stage clocks of a round (performance.now()), read by round(): the
   * socket open (HELLO sent), WELCOME, the document's SYNC, the first
   * UPDATE sent, Y's first remote batch taken and applied. */
  st.at = {};
  const mark = (k) => { st.at[k] ??= performance.now(); };
  const wrap = (o, name, k, after = false) => {
    const f = o[name].bind(o);
    o[name] = (...a) => { if (!after) mark(k); const r = f(...a); if (after) mark(k); return r; };
  };
  wrap(x, '_hello', 'open');
  wrap(x, '_onWelcome', 'welcome');
  wrap(dx, '_onSync', 'sync');
  wrap(dy, '_applyRemote', 'y_recv');
  wrap(dy, '_applyRemote', 'y_applied', true);
  const realSend = x._send.bind(x);
  x._send = (bytes) => { if (bytes[0] === 0x04) { st.frames++; mark('update'); } return realSend(bytes); };
  return st;
}

async function round(st) {
  st.x.disconnect();
  await sleep(200);
  const t = st.dx.text('t');
  for (let i = 0; i < OPS; i++) t.insert(Math.floor(Math.random() * (t.length + 1)), CHARS[(Math.random() * 26) | 0]);
  st.target = st.dx._core.vvGet(st.agent);
  const pending = st.dx.pending.length;
  await sleep(100);
  st.frames = 0;
  st.remoteEvents = 0;
  st.at = {};
  const seen = new Promise((r) => { st.done = r; });
  const t0 = performance.now();
  st.x.connect();
  await seen;
  const ms = performance.now() - t0;
  await st.dx.synced;
  await until(() => st.dx.text('t').toString() === st.dy.text('t').toString(), 'convergence', 10000);
  const stages = Object.fromEntries(STAGES.map((k) => [k, (st.at[k] ?? NaN) - t0]));
  return { ms, pending, updates: st.frames, remoteEvents: st.remoteEvents, len: t.length, stages };
}

const data = mkdtempSync(path.join(tmpdir(), 'tandem-reconnect-'));
const port = await freePort();
const proc = spawn(TANDEM, ['serve', '--addr', '127.0.0.1', '--port', String(port), '--data', data, '--durability', DURABILITY],
  { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
proc.stderr.on('data', (d) => { log = (log + d).slice(-20000); });
try {
  await until(() => proc.exitCode === null, 'spawn', 1000);
  for (let i = 0; ; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break; } catch { /* not yet */ }
    if (proc.exitCode !== null || i > 400) throw new Error(`tandem serve did not start:\n${log}`);
    await sleep(50);
  }
  const url = `ws://127.0.0.1:${port}/`;
  const modes = { 'one-by-one': await pair(url, 'd-old', false), merged: await pair(url, 'd-new', true) };
  const res = { 'one-by-one': [], merged: [] };
  const stageRes = { 'one-by-one': [], merged: [] };
  console.log(`# workload D: ${OPS} offline single-char inserts, ${ROUNDS} rounds per mode, --durability ${DURABILITY}`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, st] of Object.entries(modes)) {
      const o = await round(st);
      res[name].push(o.ms);
      stageRes[name].push(o.stages);
      console.log(`round ${r + 1} ${name.padEnd(10)} D = ${o.ms.toFixed(2).padStart(8)} ms  (${o.pending} pending batches, ` +
        `${o.updates} UPDATE frames, Y: ${o.remoteEvents} remote change events, doc ${o.len} chars)\n` +
        `        stages: ${STAGES.map((k) => `${k} ${o.stages[k].toFixed(2)}`).join(', ')}`);
    }
  }
  for (const [name, ms] of Object.entries(res)) {
    console.log(`${name.padEnd(10)} D median ${median(ms).toFixed(2)} ms, min ${Math.min(...ms).toFixed(2)}, max ${Math.max(...ms).toFixed(2)}`);
  }
  /* Where D goes: median clock of each stage, in ms after connect(); the
   * first UPDATE of one-by-one is its first resent batch. */
  for (const [name, rows] of Object.entries(stageRes)) {
    console.log(`${name.padEnd(10)} stages (median ms after connect): ` +
      STAGES.map((k) => `${k} ${median(rows.map((r) => r[k])).toFixed(2)}`).join(', '));
  }
  for (const st of Object.values(modes)) { await st.x.close(); await st.y.close(); }
} finally {
  proc.kill('SIGTERM');
  await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
  rmSync(data, { recursive: true, force: true });
}
