/*
 * presence.js -- who else is in a document, and where (cursors, names).
 *
 * A state is any JSON value, sent as UTF-8 JSON. The server broadcasts a
 * session's state at most once per presence_interval; the client throttles
 * the same way (the first change after a quiet interval goes out at once,
 * later ones are coalesced and the last one always goes out at the end of
 * the interval), and heartbeats with an empty state every ttl/2 so its entry
 * does not expire. Peers are keyed by session id; `peers` excludes this
 * client. On disconnect the peer list empties (the server sends a fresh
 * snapshot after the next SUBSCRIBE).
 */
import { Emitter } from './emitter.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8');

export class Presence extends Emitter {
  constructor(doc) {
    super();
    this.doc = doc;
    this.state = undefined;
    this._peers = new Map();
    this._lastSent = -Infinity;
    this._timer = null;
    this._hb = null;
    this._dirty = false;
  }

  /* [{session, agent, user, state}] of the other clients. */
  get peers() { return [...this._peers.values()]; }

  set(state) {
    const bytes = enc.encode(JSON.stringify(state));
    const max = this.doc.client.limits?.maxPresence;
    if (max && bytes.length > max) throw new RangeError(`presence state is ${bytes.length} bytes, the server takes ${max}`);
    this.state = state;
    this._bytes = bytes;
    this._dirty = true;
    this._pump();
  }

  /* Sends the state if the interval allows, else once it does. */
  _pump() {
    if (!this._dirty || !this.doc._subscribedOnWire) return;
    const interval = this.doc.client.limits?.presenceIntervalMs ?? 100;
    const wait = this._lastSent + interval - Date.now();
    if (wait > 0) {
      if (!this._timer) this._timer = setTimeout(() => { this._timer = null; this._pump(); }, wait);
      return;
    }
    this._send(this._bytes);
    this._dirty = false;
  }

  _send(bytes) {
    if (this.doc.client._sendPresence(this.doc, bytes)) this._lastSent = Date.now();
  }

  /* Called once the document is subscribed on a new connection. */
  _onSubscribed() {
    this._lastSent = -Infinity;
    if (this._bytes) this._dirty = true;
    this._pump();
    clearInterval(this._hb);
    const ttl = this.doc.client.limits?.presenceTtlMs ?? 30000;
    /* Checked every ttl/4 so that a late timer still heartbeats well
     * before the ttl (at most 5/8 ttl after the last message). */
    this._hb = setInterval(() => {
      if (this._bytes && !this._dirty && Date.now() - this._lastSent >= (3 * ttl) / 8) {
        this._send(new Uint8Array(0));
      }
    }, Math.max(25, ttl / 4));
    this._hb.unref?.();
  }

  _onDisconnected() {
    clearInterval(this._hb);
    this._hb = null;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._peers.size) {
      this._peers.clear();
      this.emit('change', this.peers);
    }
  }

  _onPeers(entries) {
    const mySession = this.doc.client.session;
    for (const p of entries) {
      if (p.session === mySession) continue;
      let state;
      try { state = JSON.parse(dec.decode(p.state)); } catch { continue; /* not a tandem-client peer */ }
      this._peers.set(p.session, { session: p.session, agent: p.agent.toString(), user: p.user, state });
    }
    this.emit('change', this.peers);
  }

  _onLeave(session) {
    if (this._peers.delete(session)) this.emit('change', this.peers);
  }

  _stop() { this._onDisconnected(); this._bytes = null; }
}
