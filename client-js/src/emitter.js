/*
 * emitter.js -- a minimal event emitter shared by the client, documents,
 * objects and presence. A listener that throws never breaks the client: the
 * exception is reported (reportError in browsers, console.error in Node) and
 * the other listeners still run.
 */
export class Emitter {
  constructor() { this._ls = new Map(); }
  on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    if (!this._ls.has(name)) this._ls.set(name, new Set());
    this._ls.get(name).add(fn);
    return () => this.off(name, fn);
  }
  once(name, fn) {
    const off = this.on(name, (...a) => { off(); fn(...a); });
    return off;
  }
  off(name, fn) { this._ls.get(name)?.delete(fn); }
  listenerCount(name) { return this._ls.get(name)?.size ?? 0; }
  emit(name, ...args) {
    const ls = this._ls.get(name);
    if (!ls) return;
    for (const fn of [...ls]) {
      try { fn(...args); } catch (err) { reportListenerError(err); }
    }
  }
}

function reportListenerError(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else console.error('tandem-client: a listener threw:', err);
}
