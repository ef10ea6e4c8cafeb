/*
 * client.js -- the connection: HELLO, subscriptions, resend, reconnect.
 *
 * One WebSocket carries every open document. Its life cycle:
 *
 *   connecting --WELCOME--> online --close/error--> offline --timer--> connecting
 *
 * On WELCOME every open document is resubscribed with its version vector,
 * then its presence. A document with one unacknowledged batch resends it at
 * once, behind the SUBSCRIBE (renumbered). One with several (edits made
 * offline: one batch per keystroke) sends them as ONE batch: it waits for the
 * SYNC and sends the diff against the SYNC's version vector, which is what
 * the server lacks (Doc._resendLacking, as after a move or a refused batch).
 * The diff replaces the pending batches it covers (it is stored before they
 * are forgotten), so its ACK settles all of them, and the document is synced
 * only then; a drop before the SYNC leaves the old batches pending for the
 * next connection, a drop after it leaves the diff pending (resent; a
 * duplicate is acknowledged and changes nothing). The server stores and
 * broadcasts the batch once, and peers apply it as one change.
 *
 * Retries wait a random time in [0, min(cap, base * 2^attempt)) ("full
 * jitter"), so a server restart does not bring every client back in the same
 * instant. In browsers the page's offline/online events close the socket at
 * once and retry at once.
 *
 * What the server sends is validated (wire.js); a malformed frame, or a batch
 * the core refuses, is an 'error' event and a reconnect, never an exception
 * in application code. A refused token (auth_required, token_invalid, or an
 * expired one that a token function cannot renew) is an 'error' event with
 * the server's message, and the client stops retrying until setToken().
 *
 * Several URLs (nodes of one cluster, docs/CLUSTER.md): the first attempt
 * goes to a random one (so clients spread over the nodes), and every failed
 * attempt or dropped connection moves to the next one, round-robin, after
 * the same jittered delay. On WELCOME from another node than the last one,
 * each document does not pipeline its pending batches: it resubscribes, and
 * at the SYNC sends everything the node lacks against the SYNC's version
 * vector (Doc._resendLacking, as after a refused batch): the pending
 * batches, and anything the previous node acknowledged that this one has not
 * got (with a cluster, normally nothing: an acknowledged batch is on a
 * quorum of brokers; between independent servers, everything).
 *
 * Protocol version 2 (docs/PROTOCOL.md section 3.9): HELLO asks for version
 * 2 unless opts.compression is false; the server then sends large messages
 * deflated, and this client deflates its own large messages where the
 * platform deflates synchronously (Node). An older server answers
 * bad_version: the client falls back to version 1 at once, for that URL,
 * and stays there while this Client lives. Deflated frames are inflated in
 * order: while one inflates asynchronously (browsers), the frames behind it
 * wait in _inq.
 *
 * disconnect() takes the client offline on purpose: no socket, no retries,
 * network events ignored. Edits go on applying locally and queue as pending
 * batches, exactly as during an outage; connect() (or reconnect()) ends it,
 * and the ordinary catch-up on WELCOME (SUBSCRIBE with the version vector,
 * then the pending batches) sends them.
 */
import { Emitter } from './emitter.js';
import * as wire from './wire.js';
import { Doc, randomAgent } from './doc.js';
import { onNetworkChange, defaultStorage, networkUp, inflateRaw, deflateRawSync } from '#platform';
import { CoreError } from './core.js';

const AUTH_CODES = new Set([6, 7, 8]);
const RETRY_CODES = new Set([8, 11, 16, 17, 18, 19, 23]); // 23: cluster broker unreachable
const DROP_CODES = new Set([10, 12, 13]);
/* Repaired by resending what the server lacks (Client._repair). */
const REPAIR_CODES = new Set([13, 20, 21]);
const AGENT_RETRY_MS = 500;
const AGENT_RETRY_CAP_MS = 30000;
const HELLO_TIMEOUT_MS = 10000;

export class Client extends Emitter {
  constructor(url, opts, core, WebSocketImpl) {
    super();
    /* the server URLs, in the order given; `url` is the one in use (or
     * tried next) */
    this.urls = Object.freeze(parseUrls(url));
    this._urlIndex = firstUrlIndex(this.urls, opts.firstUrl);
    this.url = this.urls[this._urlIndex];
    /* Local copies (storage) are kept under the first URL given, whichever
     * node is in use: one copy per document and cluster. */
    this._storageBase = this.urls[0];
    /* The URL of the last WELCOME: a WELCOME from another one is a move to
     * another node (see _onWelcome). */
    this._welcomedUrl = null;
    this._core = core;
    this._WS = WebSocketImpl;
    /* Protocol version 2 (deflated messages) unless compression: false;
     * URLs whose server refused version 2 (answered bad_version) get 1. */
    this._compression = opts.compression !== false;
    this._v1Urls = new Set();
    /* The version of the current connection's WELCOME (0 before one). */
    this.protocol = 0;
    this._inq = null; /* frames waiting behind an asynchronous inflate */
    this._token = opts.token ?? '';
    /* Replica id for HELLO and, when set by the caller, for every document
     * (tests); otherwise each document takes a fresh random one. */
    this._fixedAgent = opts.agent != null;
    this.agent = this._fixedAgent ? checkAgent(opts.agent) : randomAgent();
    this._manual = false; /* disconnect() until connect() */
    this.backoff = { baseMs: opts.backoff?.baseMs ?? 500, capMs: opts.backoff?.capMs ?? 30000 };
    this.storage = opts.storage === undefined ? defaultStorage() : opts.storage;
    this.status = 'offline';
    this.session = 0;
    this.user = '';
    this.limits = null;
    this.docs = new Map(); /* id -> Doc */
    this._opening = new Map(); /* id -> Promise<Doc> */
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._stopped = false; /* auth refused, bad version, or close() */
    this._closed = false;
    this._online = networkUp();
    this._nextBatch = 1;
    /* Several pending batches are resent as one (see _subscribe); false
     * resends them one by one, as before (bench/reconnect compares them). */
    this._mergeResend = true;
    this._offNet = onNetworkChange((up) => this._onNetwork(up));
    this._connect();
  }

  /* ---- public --------------------------------------------------------------- */

  /* Opens a document (one subscription however often it is opened).
   * opts.agent: this replica's agent id (tests), when it is loaded now. */
  open(id, opts = {}) {
    if (this._closed) return Promise.reject(new Error('client is closed'));
    if (!wire.validDocId(id)) return Promise.reject(new TypeError(`bad document id ${JSON.stringify(id)}`));
    const doc = this.docs.get(id);
    if (doc) { doc._refs++; return Promise.resolve(doc); }
    let p = this._opening.get(id);
    if (p) return p.then((d) => { d._refs++; return d; });
    p = this._load(id, opts).finally(() => this._opening.delete(id));
    this._opening.set(id, p);
    return p;
  }

  /* Gives a new token (string or async function) and reconnects. */
  setToken(token) {
    this._token = token;
    if (this._closed) return;
    if (this._manual) { this._stopped = false; return; } /* used at connect() */
    this._stopped = false;
    this._attempt = 0;
    if (this._ws && this.status === 'online') this._hello();
    else { this._drop(); this._connect(); }
  }

  /* Goes offline on purpose until connect(): the socket is closed, nothing
   * is retried, edits are kept (pending) and sent on connect. */
  disconnect() {
    if (this._closed) return;
    this._manual = true;
    clearTimeout(this._timer);
    this._timer = null;
    this._drop();
    this._setStatus('offline');
  }

  /* Ends disconnect() (or retries at once after a refusal): connects now. */
  connect() {
    if (this._closed) return;
    this._manual = false;
    this._stopped = false;
    this._attempt = 0;
    if (!this._ws) { clearTimeout(this._timer); this._timer = null; this._connect(); }
  }

  /* True between disconnect() and connect(). */
  get disconnected() { return this._manual; }

  /* Reconnects now (e.g. after the app learns the network is back); also
   * ends disconnect(). */
  reconnect() {
    if (this._closed) return;
    this._manual = false;
    this._stopped = false;
    this._attempt = 0;
    this._drop();
    this._connect();
  }

  async close() {
    for (const d of [...this.docs.values()]) { d._refs = 1; await d.close(); }
    this._closed = true;
    this._stopped = true;
    this._offNet();
    this._drop();
    this._setStatus('offline');
  }

  /* ---- documents -------------------------------------------------------------- */

  async _load(id, opts = {}) {
    const agent = () => (opts.agent != null ? checkAgent(opts.agent) : this._fixedAgent ? this.agent : randomAgent());
    const key = `${this._storageBase}#${id}`;
    let saved = null;
    if (this.storage) {
      try { saved = await this.storage.load(key); } catch (e) {
        this.emit('error', { code: 'storage', message: `local storage: ${e?.message ?? e}` });
      }
    }
    let coreDoc = null;
    if (saved?.snapshot) {
      try { coreDoc = this._core.loadDoc(agent(), saved.snapshot); } catch (e) {
        this.emit('error', { code: 'storage', doc: id, message: `saved state unreadable, starting empty: ${e.message}` });
      }
    }
    coreDoc ??= this._core.newDoc(agent());
    const doc = new Doc(this, id, this._core, coreDoc, this.storage, key);
    for (const rec of saved?.pending ?? []) {
      try { coreDoc.apply(rec.batch); } catch { continue; }
      /* split for a limit unknown here: resplit if the server finds it too large */
      doc.pending.push({ rid: rec.rid, batch: rec.batch, id: 0, limit: Infinity });
    }
    doc._cycle = null;
    doc._notePendingEmpty();
    this.docs.set(id, doc);
    if (this.status === 'online') this._subscribe(doc);
    return doc;
  }

  _closeDoc(doc) {
    this.docs.delete(doc.id);
    if (doc._subscribedOnWire) this._send(wire.encodeUnsubscribe(doc.id));
  }

  /* moved: this connection is to another node than the last one, which
   * may lack what that one acknowledged: the pending batches are not sent
   * now, the SYNC's version vector decides what to send (Doc._resendLacking,
   * which replaces them by the diff). Several pending batches are sent as
   * one, right behind SUBSCRIBE (Doc._mergePending, usually done while the
   * socket opened), or, when the replica cannot tell what the server has,
   * as the diff against the SYNC's version vector. */
  _subscribe(doc, moved = false) {
    doc._subscribed = false;
    /* A repair waiting out its delay goes ahead on the new connection. */
    if (doc._recovering === 'wait') doc._resync();
    else if (doc._recovering === null && (moved || (this._mergeResend && doc.pending.length > 1 && !doc._mergePending()))) doc._recovering = 'sync';
    doc._subscribedOnWire = this._send(wire.encodeSubscribe(doc.id, doc._core.vv()));
    for (const rec of doc.pending) rec.id = 0;
    doc._byId.clear();
    this._sendPending(doc);
    doc.presence._onSubscribed();
  }

  /* A resync on this connection (its SYNC tells doc what the server lacks);
   * offline, the next WELCOME subscribes anyway. */
  _resubscribe(doc) {
    if (this.status !== 'online' || !doc._subscribedOnWire) return;
    this._send(wire.encodeSubscribe(doc.id, doc._core.vv()));
  }

  /* Sends every pending batch of doc not yet sent on this connection, unless
   * a refused batch is being repaired (Doc._recover). */
  _sendPending(doc) {
    if (this.status !== 'online' || !doc._subscribedOnWire || doc._recovering) return;
    for (const rec of doc.pending) {
      if (rec.id) continue;
      const id = this._nextBatch++;
      if (!this._send(wire.encodeUpdate(doc.id, id, rec.batch))) return;
      rec.id = id;
      doc._byId.set(id, rec);
    }
  }

  _sendPresence(doc, bytes) {
    if (this.status !== 'online' || !doc._subscribedOnWire) return false;
    return this._send(wire.encodePresence(doc.id, bytes));
  }

  /* ---- connection ------------------------------------------------------------- */

  _setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', s);
  }

  /* token: a token to use instead of asking this._token (a renewed one). */
  async _connect(tokenOverride) {
    if (this._closed || this._stopped || this._manual || this._ws) return;
    clearTimeout(this._timer);
    this._timer = null;
    if (!this._online) { this._setStatus('offline'); return; }
    this._setStatus('connecting');
    const gen = (this._gen = (this._gen ?? 0) + 1);
    let token;
    try {
      token = tokenOverride ?? (typeof this._token === 'function' ? await this._token() : this._token);
    } catch (e) {
      if (gen !== this._gen) return;
      this._fail({ code: 'token', message: `the token function failed: ${e?.message ?? e}` });
      return;
    }
    if (gen !== this._gen || this._closed || this._stopped) return;
    this._sentToken = token ?? '';
    let ws;
    try {
      ws = new this._WS(this.url);
    } catch (e) {
      this._fail({ code: 'connect', message: e.message });
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._authError = null;
    this._helloTimer = setTimeout(() => {
      if (this._ws === ws && this.status !== 'online') {
        this.emit('error', { code: 'timeout', message: 'no WELCOME from the server' });
        this._drop();
        this._retry();
      }
    }, HELLO_TIMEOUT_MS);
    ws.onopen = () => { if (this._ws === ws) this._hello(); };
    ws.onmessage = (ev) => { if (this._ws === ws) this._onFrame(ev.data); };
    ws.onerror = () => {};
    ws.onclose = (ev) => { if (this._ws === ws) this._onClose(ev.code, ev.reason); };
  }

  /* The version HELLO asks for on this URL. */
  _helloVersion() {
    return this._compression && !this._v1Urls.has(this.url) ? wire.PROTOCOL_VERSION : 1;
  }

  _hello() {
    this._helloSent = this._helloVersion();
    this._send(wire.encodeHello(this._sentToken, this.agent, this._helloSent));
    /* While the server answers: several pending batches become one, sent
     * right behind SUBSCRIBE at WELCOME (see _subscribe), for the limits of
     * the last WELCOME (made again if this one differs). Not for a HELLO
     * with a new token on a live connection: its batches are in flight. */
    if (this._mergeResend && this.limits && this.status !== 'online') {
      for (const d of this.docs.values()) if (d.pending.length > 1) d._mergePending();
    }
  }

  async _refreshToken() {
    if (typeof this._token !== 'function') return false;
    try {
      const t = await this._token();
      if (!t || t === this._sentToken) return false;
      this._sentToken = t;
      return true;
    } catch { return false; }
  }

  _send(bytes) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    if (this.protocol >= 2 && deflateRawSync && bytes.length >= wire.DEFLATE_MIN) {
      try { bytes = wire.deflateMessage(bytes, deflateRawSync); } catch { /* send it plain */ }
    }
    try { ws.send(bytes); return true; } catch { return false; }
  }

  /* Closes the socket without events (they are ignored once _ws changes). */
  _drop() {
    clearTimeout(this._helloTimer);
    const ws = this._ws;
    this._ws = null;
    this._inq = null;
    this.protocol = 0;
    this._gen = (this._gen ?? 0) + 1;
    if (ws) {
      try { ws.close(); } catch { /* already closed */ }
    }
    this.session = 0;
    for (const d of this.docs.values()) {
      d._subscribed = false;
      d._subscribedOnWire = false;
      d.presence._onDisconnected();
    }
  }

  _onClose(code, reason) {
    const wasOnline = this.status === 'online';
    this._drop();
    if (this._authError || code === 1002) {
      this._stopped = true;
      this._setStatus('offline');
      return;
    }
    if (wasOnline) this._attempt = 0;
    this.emit('disconnect', { code, reason, url: this.url });
    this._retry();
  }

  _fail(err) {
    this.emit('error', err);
    this._drop();
    this._retry();
  }

  _retry() {
    this._setStatus('offline');
    if (this._closed || this._stopped || this._manual || this._timer) return;
    const ceiling = Math.min(this.backoff.capMs, this.backoff.baseMs * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 30);
    const delay = Math.random() * ceiling;
    this._nextUrl();
    /* when the next attempt is due: what the jitter decided, whatever the
     * event loop's lag when the timer fires */
    this.nextAttemptAt = Date.now() + delay;
    this._timer = setTimeout(() => { this._timer = null; this._connect(); }, delay);
  }

  /* After a failed attempt or a dropped connection: the next URL, round-robin. */
  _nextUrl() {
    if (this.urls.length < 2) return;
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    this.url = this.urls[this._urlIndex];
  }

  _onNetwork(up) {
    this._online = up;
    if (!up) {
      this._drop();
      clearTimeout(this._timer);
      this._timer = null;
      this._setStatus('offline');
    } else if (!this._ws && !this._stopped && !this._closed && !this._manual) {
      this._attempt = 0;
      this._connect();
    }
  }

  /* ---- messages --------------------------------------------------------------- */

  _onFrame(data) {
    if (typeof data === 'string') { this._protocolError('text frame from the server'); return; }
    const u8 = data instanceof ArrayBuffer ? new Uint8Array(data)
      : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : null;
    if (!u8) { this._protocolError('unexpected frame type'); return; }
    if (this._inq) { this._inq.push(u8); return; }
    const plain = this._plain(u8);
    if (plain && typeof plain.then === 'function') {
      this._inq = [];
      this._drainInflating(plain, this._inq);
      return;
    }
    if (plain) this._onPlainFrame(plain);
  }

  /* u8 as a plain message: itself, or inflated (a Uint8Array, or a Promise
   * of one on platforms that inflate asynchronously); null after a
   * protocol error. */
  _plain(u8) {
    if (!(u8.length && (u8[0] & wire.DEFLATE))) return u8;
    if (this.protocol < 2) {
      this._protocolError(`deflated message (type 0x${u8[0].toString(16)}) on a version ${this.protocol || 1} connection`);
      return null;
    }
    try { return wire.inflateMessage(u8, inflateRaw); } catch (e) { this._protocolError(e.message); return null; }
  }

  /* Handles the inflating message `first`, then the frames that queue in q
   * behind it, in order; stops if the connection (and so q) changes. */
  async _drainInflating(first, q) {
    let next = first;
    for (;;) {
      let plain;
      try { plain = await next; } catch (e) {
        if (this._inq === q) this._protocolError(e.message);
        return;
      }
      if (this._inq !== q) return;
      this._onPlainFrame(plain);
      if (this._inq !== q) return;
      if (!q.length) { this._inq = null; return; }
      next = this._plain(q.shift());
      if (!next) return;
    }
  }

  _onPlainFrame(u8) {
    let m;
    try { m = wire.decodeServer(u8); } catch (e) { this._protocolError(e.message); return; }
    try {
      this._dispatch(m);
    } catch (e) {
      if (e instanceof CoreError) this._protocolError(`the server sent a batch the core refused: ${e.message}`);
      else this._protocolError(`internal: ${e?.stack ?? e}`);
    }
  }

  _protocolError(message) {
    this.emit('error', { code: 'bad_message', message });
    this._drop();
    this._retry();
  }

  _dispatch(m) {
    if (m.type !== 'welcome' && m.type !== 'error' && m.type !== 'unknown' && this.status !== 'online') {
      throw new wire.WireError(`${m.type} before WELCOME`);
    }
    const doc = m.doc ? this.docs.get(m.doc) : null;
    switch (m.type) {
      case 'welcome': return this._onWelcome(m);
      case 'sync': if (doc) doc._onSync(m.batch, m.vv); return undefined;
      case 'ack': if (doc) doc._onAck(m.batchId); return undefined;
      case 'remote': if (doc) for (const b of m.batches) doc._applyRemote(b); return undefined;
      case 'presence': if (doc) doc.presence._onPeers(m.peers); return undefined;
      case 'leave': if (doc) doc.presence._onLeave(m.session); return undefined;
      case 'error':
        this._onError(m, doc).catch((e) => this.emit('error', { code: 'internal', message: String(e?.stack ?? e) }));
        return undefined;
      default: return undefined; /* unknown server type: newer server; ignore */
    }
  }

  _onWelcome(m) {
    if (m.version < 1 || m.version > (this._helloSent ?? 1)) {
      throw new wire.WireError(`unsupported protocol version ${m.version}`);
    }
    this.protocol = m.version;
    clearTimeout(this._helloTimer);
    const again = this.status === 'online';
    const moved = !again && this._welcomedUrl !== null && this._welcomedUrl !== this.url;
    this._welcomedUrl = this.url;
    this.session = m.session;
    this.user = m.user;
    this.rights = m.rights;
    this.limits = m;
    this._attempt = 0;
    this._setStatus('online');
    if (again) { /* re-HELLO with a fresh token: subscriptions are kept */
      for (const d of this.docs.values()) this._sendPending(d);
      return;
    }
    for (const d of this.docs.values()) this._subscribe(d, moved);
  }

  async _onError(m, doc) {
    const name = wire.ERR[m.code] ?? `error_${m.code}`;
    const info = { code: name, number: m.code, doc: m.doc || undefined, message: m.message };
    /* Refused at HELLO: the server closes with 1008 next. */
    if (AUTH_CODES.has(m.code) && this.status !== 'online') {
      if (m.code === 8 && await this._refreshToken()) {
        /* The close follows; reconnect at once with the fresh token. */
        this._drop();
        this._connect(this._sentToken);
        return;
      }
      this._authError = info;
      this._stopped = true;
      this.emit('error', { ...info, fatal: true });
      return;
    }
    if (m.code === 3 && this.status !== 'online' && this._helloSent > 1) {
      /* An older server: it speaks version 1 only. Again at once, with 1. */
      this._v1Urls.add(this.url);
      this._drop();
      this._connect(this._sentToken);
      return;
    }
    if (m.code === 3) { this._stopped = true; this.emit('error', { ...info, fatal: true }); return; }
    if (m.code === 8 && !m.doc && !m.batchId) {
      /* The token expired during the session. */
      if (await this._refreshToken()) { this._hello(); return; }
      this.emit('error', info);
      return;
    }
    if (doc && m.batchId) {
      const rec = doc._byId.get(m.batchId);
      /* The answer to a batch no longer tracked on this connection: one sent
       * behind a refused batch (refused the same way; its repair is under
       * way), or before a resubscribe. */
      if (!rec && (REPAIR_CODES.has(m.code) || DROP_CODES.has(m.code) || RETRY_CODES.has(m.code))) return;
      if (rec && this._repair(m.code, rec, doc, info)) return;
      if (rec) {
        doc._byId.delete(m.batchId);
        if (DROP_CODES.has(m.code)) {
          doc._forget(rec);
          this.emit('error', { ...info, dropped: true });
          doc.emit('error', { ...info, dropped: true });
          doc._rebuild();
          this._subscribe(doc);
          return;
        }
        if (RETRY_CODES.has(m.code)) {
          rec.id = 0;
          if (m.code === 8) { if (await this._refreshToken()) this._hello(); return; }
          if (m.code === 11) { this._subscribe(doc); return; }
          if (m.code !== 19) setTimeout(() => this._sendPending(doc), 100 + Math.random() * 200);
          return;
        }
      }
    }
    if (doc && (m.code === 9 || m.code === 15)) doc._subscribed = false;
    this.emit('error', info);
    if (doc) doc.emit('error', info);
  }

  /* Refusals that sending what the server lacks repairs (Doc._recover);
   * returns false for the others. One 'error' event per repair, with
   * `recovering: true`; a too_large batch that was already split for the
   * server's current limit cannot be repaired: `fatal: true`, and the
   * document stops sending (Doc._halt). */
  _repair(code, rec, doc, info) {
    if (code === 21) {
      doc._recover(rec, 0);
    } else if (code === 20) {
      /* Refused again and again while the owner of an agent in the batch --
       * most often this client's own earlier connection, not yet timed out
       * by the server -- is still there: wait longer each time. */
      const n = doc._takenCount++;
      doc._changeAgent();
      doc._recover(rec, n === 0 ? 0 : Math.min(AGENT_RETRY_CAP_MS, AGENT_RETRY_MS * 2 ** (n - 1)) * (0.5 + Math.random() / 2));
    } else if (code === 13 && rec.limit > doc._batchLimit()) {
      doc._recover(rec, 0); /* the limit shrank since it was split: split again */
    } else if (code === 13) {
      doc._halt();
      const fatal = { ...info, fatal: true,
        message: `${info.message} (a batch of ${rec.batch.length} bytes, split for this limit: nothing is sent for ${doc.id} until it is opened again)` };
      this.emit('error', fatal);
      doc.emit('error', fatal);
      return true;
    } else {
      return false;
    }
    const ev = { ...info, recovering: true };
    this.emit('error', ev);
    doc.emit('error', ev);
    return true;
  }
}

/* A 64-bit agent id given by the caller (bigint, safe integer or decimal
 * string); 0 is not an agent. */
export function checkAgent(a) {
  let v;
  try { v = BigInt(a); } catch { throw new TypeError(`agent must be a 64-bit integer, not ${String(a)}`); }
  if (v <= 0n || v >= 1n << 64n) throw new RangeError(`agent ${v} is outside 1..2^64-1`);
  return v;
}

/* The server URLs: a string (one URL, or several separated by commas), a
 * URL, or an array (or other iterable) of those. Blanks around each are
 * dropped, and repeats. */
export function parseUrls(input) {
  const items = typeof input === 'string' ? input.split(',')
    : input instanceof URL ? [String(input)]
      : input != null && typeof input[Symbol.iterator] === 'function' ? [...input].map((u) => String(u ?? ''))
        : [String(input ?? '')];
  const urls = [...new Set(items.map((u) => u.trim()).filter(Boolean))];
  if (urls.length === 0) throw new TypeError('connect: no server URL given');
  return urls;
}

/* Where the round-robin starts: opts.firstUrl (an index into urls, or one of
 * them), or a random one so that clients spread over the nodes. */
function firstUrlIndex(urls, first) {
  if (first == null) return Math.floor(Math.random() * urls.length);
  if (typeof first === 'number') {
    if (!Number.isInteger(first) || first < 0 || first >= urls.length) {
      throw new RangeError(`firstUrl ${first} is not an index of the ${urls.length} URLs`);
    }
    return first;
  }
  const i = urls.indexOf(String(first).trim());
  if (i < 0) throw new RangeError(`firstUrl ${String(first)} is not one of the URLs`);
  return i;
}
