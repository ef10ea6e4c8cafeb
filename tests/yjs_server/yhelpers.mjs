/*
 * yhelpers.mjs -- what the Yjs front-end tests share: the stock providers
 * (loaded as CommonJS from client-js/node_modules, so that yjs, y-websocket
 * and @hocuspocus/provider share one yjs instance), a real `tandem serve` on
 * a free port with a temporary data directory, polling, a seeded PRNG.
 *
 * Environment: TD_TANDEM (the server binary; default build/server/tandem).
 * A missing binary or package is a failure, never a skip.
 */
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const TANDEM = process.env.TD_TANDEM || path.join(REPO, 'build', 'server', 'tandem');
const require = createRequire(path.join(REPO, 'client-js', 'package.json'));

/* Throws (a failure) when the binary is not there. */
export function need() {
  if (!existsSync(TANDEM)) throw new Error(`no server binary at ${TANDEM}`);
}

export const Y = require('yjs');
export const WS = require('ws');
export const { WebsocketProvider } = require('y-websocket');
export const awarenessProtocol = require('y-protocols/awareness');
export const hocus = () => require('@hocuspocus/provider');

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(cond, what, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/* Mulberry32: a small seeded PRNG. */
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  return next;
}

/* A `tandem serve`; stop()/kill() and start() again reuse port and data. */
export class Server {
  constructor(args = []) {
    this.extra = args;
    this.data = mkdtempSync(path.join(tmpdir(), 'tandem-yjs-'));
    this.proc = null;
    this.log = '';
  }
  get http() { return `http://127.0.0.1:${this.port}`; }
  get yws() { return `ws://127.0.0.1:${this.port}/yjs`; }
  get hocus() { return `ws://127.0.0.1:${this.port}/hocuspocus`; }
  async start() {
    need();
    this.port ??= await freePort();
    this.proc = spawn(TANDEM, ['serve', '--port', String(this.port), '--data', this.data,
      ...this.extra], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr.on('data', (d) => { this.log += d; });
    const p = this.proc;
    let exited = null;
    p.on('exit', (code, sig) => { exited = `exited ${code ?? sig}`; });
    await until(async () => {
      if (exited) throw new Error(`tandem serve ${exited}: ${this.log}`);
      try { return (await fetch(`${this.http}/healthz`)).ok; } catch { return false; }
    }, 'the server to listen');
    return this;
  }
  async stop(signal = 'SIGTERM') {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    if (p.exitCode !== null || p.signalCode !== null) return;
    await new Promise((r) => { p.on('exit', r); p.kill(signal); });
  }
  kill() { return this.stop('SIGKILL'); }
  /* A sanitizer report in the server's output fails the test. */
  async cleanup() {
    await this.stop();
    rmSync(this.data, { recursive: true, force: true });
    const bad = this.log.match(/(ERROR: (Address|Leak)Sanitizer|runtime error:)[^\n]*/);
    if (bad) throw new Error(`tandem serve reported: ${bad[0]}\n${this.log.slice(-4000)}`);
  }
  async json(doc, token) {
    const q = token ? `?token=${encodeURIComponent(token)}` : '';
    const r = await fetch(`${this.http}/docs/${encodeURIComponent(doc)}${q}`);
    return { status: r.status, body: r.status === 200 ? await r.json() : await r.text() };
  }
}

/* A stock y-websocket client of `room`. */
export function ywsClient(server, room, opts = {}) {
  const doc = opts.doc ?? new Y.Doc();
  const provider = new WebsocketProvider(server.yws, room, doc, {
    WebSocketPolyfill: WS, params: opts.token ? { token: opts.token } : {},
    connect: opts.connect ?? true, disableBc: true, maxBackoffTime: 500,
    awareness: opts.awareness,
  });
  return { doc, provider, awareness: provider.awareness,
    synced: () => provider.synced && provider.wsconnected,
    connect() { provider.connect(); }, disconnect() { provider.disconnect(); },
    destroy() { provider.destroy(); doc.destroy(); } };
}

/* A stock Hocuspocus client of document `name`, on its own socket unless
 * opts.socket (a HocuspocusProviderWebsocket) is given. */
export function hocusClient(server, name, opts = {}) {
  const { HocuspocusProvider, HocuspocusProviderWebsocket } = hocus();
  const doc = opts.doc ?? new Y.Doc();
  const socket = opts.socket ?? new HocuspocusProviderWebsocket({
    url: server.hocus, WebSocketPolyfill: WS, delay: 100, minDelay: 100, maxDelay: 1000,
  });
  const provider = new HocuspocusProvider({ websocketProvider: socket, name, document: doc,
    token: opts.token ?? 'open' });
  provider.attach();
  let online = true;
  return { doc, provider, socket, awareness: provider.awareness,
    synced: () => provider.isSynced && online,
    connect() { if (!online) { online = true; provider.attach(); } },
    disconnect() { if (online) { online = false; provider.detach(); } },
    destroy() { provider.destroy(); if (!opts.socket) socket.destroy(); doc.destroy(); } };
}

/* A Hocuspocus socket driven by hand (for what no stock provider sends:
 * forged or silent awareness). Every message starts with the address. */
const henc = new TextEncoder();
const hvaruint = (n) => {
  const o = [];
  while (n > 127) { o.push((n & 127) | 128); n = Math.floor(n / 128); }
  o.push(n);
  return o;
};
const hstr = (s) => { const b = [...henc.encode(s)]; return [...hvaruint(b.length), ...b]; };
export async function rawHocus(server) {
  const ws = new WS(server.hocus);
  ws.binaryType = 'arraybuffer';
  const got = [];
  ws.on('message', (d) => got.push(new Uint8Array(d)));
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  const send = (addr, body) => ws.send(new Uint8Array([...hstr(addr), ...body]));
  return {
    ws, got,
    auth(addr, token = 'open') { send(addr, [2, 0, ...hstr(token)]); },
    /* Sync step 1 from the empty state: the subscription. */
    step1(addr) { send(addr, [0, 0, 1, 0]); },
    /* entries: [client id, clock, state (null removes)] */
    awareness(addr, entries) {
      const u = [...hvaruint(entries.length)];
      for (const [c, k, s] of entries) u.push(...hvaruint(c), ...hvaruint(k), ...hstr(JSON.stringify(s)));
      send(addr, [1, ...hvaruint(u.length), ...u]);
    },
    close(addr) { send(addr, [7]); },
    send,
    end() { ws.close(); },
    destroy() { ws.close(); },
  };
}
