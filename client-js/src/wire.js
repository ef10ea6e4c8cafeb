/*
 * wire.js -- the tandem wire protocol (docs/PROTOCOL.md), both directions.
 *
 * The client validates what the server sends as strictly as the server
 * validates clients: minimal varints of at most 10 bytes, lengths that stay
 * inside the message, fatal UTF-8 decoding, doc ids of 1..255 bytes without
 * control characters, and no trailing bytes. decodeServer() throws a
 * WireError for anything else; the connection turns that into an 'error'
 * event and a reconnect, so a bad frame never reaches application code.
 *
 * Protocol version 2 (docs/PROTOCOL.md section 3.9): a message whose type
 * byte has DEFLATE (0x40) set is deflated: a varint (the inflated body's
 * size), then a raw deflate stream of the body. inflateMessage() and
 * deflateMessage() turn one into the other; the platform (#platform)
 * supplies the deflate itself.
 *
 * 64-bit fields (agent, session, batch_id) travel as BigInt inside this file;
 * decoded messages give Numbers where the value is below 2^53 (sessions and
 * limits) and BigInt for agents.
 */

export const C = { HELLO: 0x01, SUBSCRIBE: 0x02, UNSUBSCRIBE: 0x03, UPDATE: 0x04, PRESENCE: 0x05 };
export const S = {
  WELCOME: 0x81, SYNC: 0x82, ACK: 0x83, REMOTE: 0x84, PRESENCE: 0x85, LEAVE: 0x86, ERROR: 0x87,
};

export class WireError extends Error {}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/* ---- encoding ------------------------------------------------------------ */

class Writer {
  constructor() { this.parts = []; this.n = 0; }
  byte(b) { this.parts.push(Uint8Array.of(b)); this.n += 1; return this; }
  varint(v) {
    let x = BigInt(v);
    if (x < 0n || x >= 1n << 64n) throw new RangeError('varint out of range');
    const out = [];
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      out.push(b);
    } while (x);
    this.parts.push(Uint8Array.from(out)); this.n += out.length;
    return this;
  }
  bytes(u8) { this.varint(u8.length); this.parts.push(u8); this.n += u8.length; return this; }
  u64le(v) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
    this.parts.push(b); this.n += 8;
    return this;
  }
  string(s) { return this.bytes(enc.encode(s)); }
  done() {
    const out = new Uint8Array(this.n);
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

/* The protocol versions this client speaks: 2 (deflated messages) and 1. */
export const PROTOCOL_VERSION = 2;
export const DEFLATE = 0x40;
/* Messages shorter than this are sent as they are (as the server does). */
export const DEFLATE_MIN = 1024;
/* The largest inflated message the client accepts from a server. */
export const MAX_INFLATED = 1 << 30;

export function encodeHello(token, agent, version = 1) {
  return new Writer().byte(C.HELLO).varint(version).string(token || '').varint(agent).done();
}

/* A deflated message: the type byte with DEFLATE, the inflated body's size,
 * the raw deflate stream `z` of the body. */
export function joinDeflated(type, bodyLen, z) {
  const head = new Writer().byte(type | DEFLATE).varint(bodyLen).done();
  const out = new Uint8Array(head.length + z.length);
  out.set(head, 0);
  out.set(z, head.length);
  return out;
}

/* msg deflated with deflateRawSync(body) if it is at least DEFLATE_MIN
 * bytes and that makes it shorter; otherwise msg itself. */
export function deflateMessage(msg, deflateRawSync) {
  if (msg.length < DEFLATE_MIN || (msg[0] & DEFLATE)) return msg;
  const z = deflateRawSync(msg.subarray(1));
  if (!z) return msg;
  const out = joinDeflated(msg[0], msg.length - 1, z);
  return out.length < msg.length ? out : msg;
}

/* The plain message of a deflated one. inflateRaw(stream, size) returns the
 * inflated bytes (at most size + 1 of them) or a Promise of them; so does
 * this. Throws (or rejects with) WireError when the size is above `max` or
 * the stream does not inflate to exactly the declared size. */
export function inflateMessage(u8, inflateRaw, max = MAX_INFLATED) {
  const r = new Reader(u8);
  const type = r.byte() & ~DEFLATE;
  const size = r.num();
  if (size > max) r.fail(`deflated message of ${size} bytes (above ${max})`);
  const stream = u8.subarray(r.at);
  const done = (body) => {
    if (!body || body.length !== size) {
      throw new WireError(`malformed message: deflated body inflates to ${body ? body.length : 'nothing'} bytes, not ${size}`);
    }
    const out = new Uint8Array(size + 1);
    out[0] = type;
    out.set(body, 1);
    return out;
  };
  let body;
  try { body = inflateRaw(stream, size); } catch (e) {
    throw new WireError(`malformed message: corrupt deflate stream (${e?.message ?? e})`);
  }
  if (body && typeof body.then === 'function') {
    return body.then(done, (e) => {
      throw new WireError(`malformed message: corrupt deflate stream (${e?.message ?? e})`);
    });
  }
  return done(body);
}
export function encodeSubscribe(doc, vv) {
  return new Writer().byte(C.SUBSCRIBE).string(doc).bytes(vv).done();
}
export function encodeUnsubscribe(doc) {
  return new Writer().byte(C.UNSUBSCRIBE).string(doc).done();
}
export function encodeUpdate(doc, batchId, batch) {
  return new Writer().byte(C.UPDATE).string(doc).varint(batchId).bytes(batch).done();
}
/* The protocol's defaults (docs/PROTOCOL.md section 10): what a client
 * assumes before its first WELCOME names the server's limits. */
export const DEFAULT_MAX_BATCH = 4 << 20;
export const DEFAULT_MAX_FRAME = 8 << 20;

/* The largest batch an UPDATE for `doc` may carry: the server refuses a batch
 * above max_batch (too_large) and closes on a message above max_frame, which
 * adds the UPDATE's own fields (type, doc id, batch_id and length, each
 * varint at most 10 bytes). `limits`: the WELCOME, or null before one. */
export function maxBatchFor(doc, limits) {
  const maxBatch = limits?.maxBatch || DEFAULT_MAX_BATCH;
  const maxFrame = limits?.maxFrame || DEFAULT_MAX_FRAME;
  const overhead = 1 + 10 + enc.encode(doc).length + 10 + 10;
  return Math.max(1, Math.min(maxBatch, maxFrame - overhead));
}
export function encodePresence(doc, state) {
  return new Writer().byte(C.PRESENCE).string(doc).bytes(state).done();
}

/* Checks a document id as the server does (1..255 bytes, no controls). */
export function validDocId(id) {
  if (typeof id !== 'string') return false;
  const n = enc.encode(id).length;
  // eslint-disable-next-line no-control-regex
  return n >= 1 && n <= 255 && !/[\u0000-\u001f\u007f]/.test(id) && id.isWellFormed?.() !== false;
}

/* ---- decoding ------------------------------------------------------------ */

class Reader {
  constructor(u8) { this.u8 = u8; this.at = 0; }
  fail(what) { throw new WireError(`malformed message: ${what} at byte ${this.at}`); }
  byte() {
    if (this.at >= this.u8.length) this.fail('truncated');
    return this.u8[this.at++];
  }
  varintBig() {
    let x = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      x |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (!(b & 0x80)) {
        if (i > 0 && b === 0) this.fail('non-minimal varint');
        if (x >= 1n << 64n) this.fail('varint above 2^64');
        return x;
      }
    }
    return this.fail('varint longer than 10 bytes');
  }
  /* A varint that must fit a JS number exactly. */
  num() {
    const x = this.varintBig();
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('value too large');
    return Number(x);
  }
  bytes() {
    const n = this.num();
    if (n > this.u8.length - this.at) this.fail('length past the end');
    const out = this.u8.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  string() {
    const b = this.bytes();
    try { return dec.decode(b); } catch { return this.fail('bad UTF-8'); }
  }
  doc(mayBeEmpty = false) {
    const b = this.bytes();
    if (b.length > 255 || (!mayBeEmpty && b.length === 0)) this.fail('bad doc id length');
    let s;
    try { s = dec.decode(b); } catch { return this.fail('doc id is not UTF-8'); }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(s)) this.fail('control character in doc id');
    return s;
  }
  u64le() {
    if (this.u8.length - this.at < 8) this.fail('truncated');
    const v = new DataView(this.u8.buffer, this.u8.byteOffset + this.at, 8).getBigUint64(0, true);
    this.at += 8;
    return v;
  }
  end() { if (this.at !== this.u8.length) this.fail('trailing bytes'); }
  /* A count, then that many items read by `item`. Each item takes at least
   * one byte, so a count beyond what is left is a lie. */
  list(empty, item) {
    const n = this.num();
    if (n < 1) this.fail(empty);
    if (n > this.u8.length - this.at) this.fail('count past the end');
    const out = [];
    for (let i = 0; i < n; i++) out.push(item());
    return out;
  }
}

/* A version vector (docs/FORMAT.md section 2: 01, a count, then per agent
 * its u64 id and its count) with agent's count set to `count` (0: left
 * out); the other entries keep their order. Throws WireError if vv is
 * malformed. */
export function vvWithCount(vv, agent, count) {
  if (!vv.length) return vv;
  const r = new Reader(vv);
  if (r.byte() !== 1) r.fail('unknown version vector version');
  const n = r.num();
  const keep = [];
  for (let i = 0; i < n; i++) {
    const id = r.u64le();
    const c = r.varintBig();
    if (id !== agent) keep.push([id, c]);
    else if (count > 0) keep.push([id, BigInt(count)]);
  }
  r.end();
  const w = new Writer().byte(1).varint(keep.length);
  for (const [id, c] of keep) w.u64le(id).varint(c);
  return w.done();
}

/* Decodes one server message into a plain object {type, ...}; throws
 * WireError if it is malformed. Unknown types decode to {type: 'unknown'}. */
export function decodeServer(u8) {
  const r = new Reader(u8);
  const t = r.byte();
  let m;
  switch (t) {
    case S.WELCOME: {
      m = { type: 'welcome', version: r.num(), session: r.num(), user: r.string(),
        rights: r.num(), expires: r.num(), maxFrame: r.num(), maxBatch: r.num(),
        maxPresence: r.num(), presenceIntervalMs: r.num(), presenceTtlMs: r.num() };
      if (m.session === 0) r.fail('session 0');
      break;
    }
    case S.SYNC:
      m = { type: 'sync', doc: r.doc(), batch: r.bytes(), vv: r.bytes() };
      break;
    case S.ACK: {
      m = { type: 'ack', doc: r.doc(), batchId: r.num() };
      if (m.batchId === 0) r.fail('batch_id 0');
      break;
    }
    case S.REMOTE: {
      const doc = r.doc();
      const batches = r.list('REMOTE with no batch', () => {
        const b = r.bytes();
        if (b.length === 0) r.fail('empty batch');
        return b;
      });
      m = { type: 'remote', doc, batches };
      break;
    }
    case S.PRESENCE: {
      const doc = r.doc();
      const peers = r.list('PRESENCE with no entry', () => {
        const session = r.num(), agent = r.varintBig(), user = r.string(), state = r.bytes();
        if (state.length === 0) r.fail('empty presence state');
        if (session === 0) r.fail('session 0');
        return { session, agent, user, state };
      });
      m = { type: 'presence', doc, peers };
      break;
    }
    case S.LEAVE:
      m = { type: 'leave', doc: r.doc(), session: r.num() };
      break;
    case S.ERROR: {
      m = { type: 'error', code: r.num(), doc: r.doc(true), batchId: r.num(), message: r.string() };
      break;
    }
    default:
      return { type: 'unknown', code: t };
  }
  r.end();
  return m;
}

/* Error codes of docs/PROTOCOL.md section 6. */
export const ERR = {
  1: 'bad_message', 2: 'unknown_type', 3: 'bad_version', 4: 'hello_required',
  5: 'bad_doc_id', 6: 'auth_required', 7: 'token_invalid', 8: 'token_expired',
  9: 'forbidden', 10: 'read_only', 11: 'not_subscribed', 12: 'invalid_batch',
  13: 'too_large', 14: 'limit', 15: 'doc_unavailable', 16: 'store_failed',
  17: 'busy', 18: 'internal', 19: 'shutting_down', 20: 'agent_taken', 21: 'missing_ops', 22: 'wrong_kind', 23: 'unavailable',
};
