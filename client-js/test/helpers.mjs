/*
 * helpers.mjs -- what the client tests share: a real `tandem serve` on a
 * free port with a temporary data directory, a seeded PRNG, and polling.
 *
 * Environment: TD_TANDEM (the server binary; default build/server/tandem),
 * TD_WASM (the core; default build/wasm/tandem_crdt.wasm), TD_SEED. Under
 * ctest, CMake passes TD_TANDEM and TD_WASM of the build being tested.
 *
 * A test that cannot run is a failure, not a skip (mustRun below): a missing
 * or broken server binary means the build is broken, not that the test does
 * not apply.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const TANDEM = process.env.TD_TANDEM || path.join(REPO, 'build', 'server', 'tandem');
process.env.TD_WASM ||= path.join(REPO, 'build', 'wasm', 'tandem_crdt.wasm');

/* Why the server tests cannot run here, or null. */
export function serverMissing() {
  if (!existsSync(TANDEM)) return `no server binary at ${TANDEM}`;
  try { execFileSync(TANDEM, ['serve', '--help'], { stdio: 'ignore', timeout: 20000 }); } catch (e) {
    return `\`${TANDEM} serve --help\` failed (${e.status != null ? `exit ${e.status}` : e.signal ?? e.code ?? e.message})`;
  }
  return null;
}

/* The tests of a file need what `problems` names (reasons it cannot run;
 * falsy entries are ignored). If any is missing that is a FAILURE: one test
 * fails naming them all, and the value returned (the `skip` option of the
 * file's other tests) keeps those from running into the same wall again.
 * Returns false when nothing is missing. */
export function mustRun(...problems) {
  const why = problems.filter(Boolean);
  if (why.length === 0) return false;
  test(`cannot run: ${why.join('; ')}`, () => { assert.fail(why.join('; ')); });
  return `not run (failed above): ${why.join('; ')}`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Polls cond() every 20 ms until it is truthy or `ms` pass (then throws
 * with `what`). */
export async function until(cond, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/* A `tandem serve` process; stop() and start() again reuse port and data. */
export class Server {
  constructor(opts = {}) {
    this.extra = opts.args ?? [];
    this.data = opts.data ?? mkdtempSync(path.join(tmpdir(), 'tandem-js-'));
    this.ownData = !opts.data;
    this.proc = null;
    this.log = '';
  }
  get url() { return `ws://127.0.0.1:${this.port}/`; }
  get http() { return `http://127.0.0.1:${this.port}`; }
  async start() {
    this.port ??= await freePort();
    const args = ['serve', '--addr', '127.0.0.1', '--port', String(this.port), '--data', this.data, ...this.extra];
    this.proc = spawn(TANDEM, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (d) => { this.log += d; if (this.log.length > 200000) this.log = this.log.slice(-100000); };
    this.proc.stdout.on('data', onData);
    this.proc.stderr.on('data', onData);
    const proc = this.proc;
    let exited = null;
    proc.on('exit', (code, sig) => { exited = `exited ${code ?? sig}`; });
    await until(async () => {
      if (exited) throw new Error(`tandem serve ${exited}:\n${this.log}`);
      try { return (await fetch(`${this.http}/healthz`)).ok; } catch { return false; }
    }, 'the server to answer /healthz', 20000);
    this.startedAt = Date.now();
  }
  /* SIGTERM and wait for the exit. */
  async stop() {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) { this.proc = null; return; }
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10000);
    await gone;
    clearTimeout(t);
    this.proc = null;
  }
  async dispose() {
    await this.stop();
    if (this.ownData) rmSync(this.data, { recursive: true, force: true });
  }
  /* GET /docs/{id} as JSON (null on 404). */
  async docJSON(id, token) {
    const r = await fetch(`${this.http}/docs/${encodeURIComponent(id)}`,
      token ? { headers: { authorization: `Bearer ${token}` } } : {});
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(`GET /docs/${id}: ${r.status}`);
    return r.json();
  }
}

/* mulberry32: a seed replays the same choices everywhere. */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (arr) => arr[Math.floor(next() * arr.length)];
  return next;
}

export const ALPHABET = [...'abcdefghijklmnopqrstuvwxyz   \n', 'é', 'Ж', '漢', '😀', '🎉'];

/* n UTF-16 units of text made of `words` picked by rnd (BMP only: a paste
 * is about bytes, not about surrogate pairs), some multi-byte in UTF-8. */
export function bigText(rnd, n, words = ['tandem ', 'edit ', 'paste ', 'é ', 'Ж ', '漢字 ', 'line\n', 'a', 'bc ']) {
  const parts = [];
  let len = 0;
  while (len < n) {
    const w = rnd.pick(words);
    parts.push(w);
    len += w.length;
  }
  return parts.join('').slice(0, n);
}

/* Applies a text change's delta (UTF-16) to a string. */
export function applyDelta(str, delta) {
  let out = '', at = 0;
  for (const op of delta) {
    if ('retain' in op) { out += str.slice(at, at + op.retain); at += op.retain; } else if ('delete' in op) at += op.delete;
    else out += op.insert;
  }
  return out + str.slice(at);
}
