/*
 * main.js -- the demo editor: CodeMirror 6 bound to a tandem text.
 *
 * Local CodeMirror transactions become text edits (one tandem transaction
 * each); remote changes arrive as deltas and become CodeMirror changes
 * annotated as remote, so they are not sent back. Presence carries each
 * user's name, colour and selection, both as UTF-16 offsets and as anchors
 * (text.anchor: tied to characters); a peer's selection is drawn where its
 * anchors resolve in our text after every change, so it stays on the same
 * characters whoever types before it (offsets only for a peer without
 * anchors, or whose characters have not reached us yet), as a coloured caret
 * with a name label and a tinted selection.
 *
 * URL parameters: doc (default "demo"), name (default a random one), token
 * (when the server requires one). Bundled by scripts/build-demo.mjs.
 */
import { EditorView, basicSetup } from 'codemirror';
import { EditorState, StateField, StateEffect, Annotation, Transaction } from '@codemirror/state';
import { Decoration, WidgetType } from '@codemirror/view';
import { connect } from '../src/index.js';
import wasm from 'tandem-wasm-bytes'; /* the core, bundled by scripts/build-demo.mjs */

const params = new URLSearchParams(location.search);
const DOC = params.get('doc') || 'demo';
const NAMES = ['Ada', 'Grace', 'Linus', 'Barbara', 'Ken', 'Margaret', 'Dennis', 'Frances', 'Alan', 'Radia'];
const NAME = params.get('name') || `${NAMES[Math.floor(Math.random() * NAMES.length)]}-${Math.floor(Math.random() * 100)}`;
const COLORS = ['#e53935', '#8e24aa', '#3949ab', '#039be5', '#00897b', '#7cb342', '#fb8c00', '#6d4c41'];
const COLOR = COLORS[[...NAME].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % COLORS.length];

const $ = (id) => document.getElementById(id);
$('docname').textContent = DOC;

const remote = Annotation.define();

/* ---- remote cursors ---------------------------------------------------------- */

const setPeers = StateEffect.define();

class CaretWidget extends WidgetType {
  constructor(name, color) { super(); this.name = name; this.color = color; }
  eq(o) { return o.name === this.name && o.color === this.color; }
  toDOM() {
    const caret = document.createElement('span');
    caret.className = 'td-cursor';
    caret.style.borderColor = this.color;
    const label = document.createElement('span');
    label.className = 'td-cursor-label';
    label.style.background = this.color;
    label.textContent = this.name;
    caret.appendChild(label);
    return caret;
  }
  ignoreEvent() { return true; }
}

/* A peer's position moved through one of our changes. A peer's positions
 * are in its own copy of the text, which may be ahead of ours: the server
 * does not order a peer's PRESENCE after the REMOTE holding that peer's
 * earlier edits (docs/PROTOCOL.md section 7; the REMOTE waits for the store,
 * the PRESENCE does not), so a caret may name a position past our end. Such
 * a position is kept as it is (and drawn at the end) until our text catches
 * up. It must never reach ChangeSet.mapPos, which throws for it: a state
 * field that throws makes every later transaction of the editor fail, so
 * neither typing nor remote changes would reach the editor any more. */
const mapPeerPos = (changes, pos) => (pos <= changes.length ? changes.mapPos(pos) : pos);

/* Peers as {session, name, color, anchor, head}, mapped through changes. */
const peersField = StateField.define({
  create: () => [],
  update(peers, tr) {
    for (const e of tr.effects) if (e.is(setPeers)) return e.value;
    if (!tr.docChanged) return peers;
    return peers.map((p) => ({ ...p, anchor: mapPeerPos(tr.changes, p.anchor), head: mapPeerPos(tr.changes, p.head) }));
  },
  provide: (f) => EditorView.decorations.from(f, (peers) => (view) => {
    const len = view.state.doc.length;
    const ranges = [];
    for (const p of peers) {
      const head = Math.min(p.head, len), anchor = Math.min(p.anchor, len);
      const from = Math.min(head, anchor), to = Math.max(head, anchor);
      if (from < to) {
        ranges.push(Decoration.mark({ attributes: { style: `background: ${p.color}33` }, class: 'td-selection' }).range(from, to));
      }
      ranges.push(Decoration.widget({ widget: new CaretWidget(p.name, p.color), side: 1 }).range(head));
    }
    return Decoration.set(ranges, true);
  }),
});

/* ---- wiring ------------------------------------------------------------------ */

/* A tandem delta (UTF-16 positions in the old text) as CodeMirror changes. */
function deltaToChanges(delta) {
  const changes = [];
  let pos = 0;
  for (const op of delta) {
    if ('retain' in op) pos += op.retain;
    else if ('delete' in op) { changes.push({ from: pos, to: pos + op.delete }); pos += op.delete; } else changes.push({ from: pos, insert: op.insert });
  }
  return changes;
}

async function main() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  const token = params.get('token') || '';
  const client = await connect(url, { token, wasm });
  const statusEl = $('status');
  const showStatus = (s) => { statusEl.textContent = s; statusEl.className = `status ${s}`; };
  showStatus(client.status);
  client.on('status', showStatus);
  client.on('error', (e) => console.warn('tandem:', e.code, e.message));

  const doc = await client.open(DOC);
  const text = doc.text('body');
  const syncedEl = $('synced');
  const showSynced = () => { syncedEl.textContent = doc.isSynced ? 'all changes saved' : `${doc.pending.length} unsent change(s)`; };
  doc.on('synced', showSynced);
  doc.on('change', showSynced);
  showSynced();

  const sendSelection = (sel) => {
    const { anchor, head } = sel.main;
    let rel;
    try { rel = { anchor: text.anchor(anchor, -1), head: text.anchor(head, -1) }; } catch { rel = undefined; }
    doc.presence.set({ name: NAME, color: COLOR, anchor, head, rel });
  };

  const view = new EditorView({
    parent: $('editor'),
    state: EditorState.create({
      doc: text.toString(),
      extensions: [
        basicSetup,
        EditorView.lineWrapping,
        peersField,
        EditorView.updateListener.of((u) => {
          const isRemote = u.transactions.some((tr) => tr.annotation(remote));
          if (u.docChanged && !isRemote) {
            try {
              doc.transact(() => {
                let adj = 0;
                u.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
                  const ins = inserted.toString();
                  if (toA > fromA) text.delete(fromA + adj, toA - fromA);
                  if (ins) text.insert(fromA + adj, ins);
                  adj += ins.length - (toA - fromA);
                });
              });
            } catch (e) {
              /* Only if the editor had drifted from the text: show the text
               * (after this update; an update may not dispatch). */
              console.warn('tandem demo: a local edit did not apply to the document, resetting the editor:', e);
              queueMicrotask(resetEditor);
            }
          }
          if (u.selectionSet || (u.docChanged && !isRemote) || u.focusChanged) sendSelection(u.state.selection);
        }),
      ],
    }),
  });

  /* Remote changes become editor changes. The editor must always show the
   * text: if a delta cannot be applied (it would mean the editor had already
   * drifted), or the result differs, the editor is reset to the text. A
   * throw here would only be reported by the client's emitter, and the
   * editor would silently stop following the document. */
  const remoteTr = { annotations: [remote.of(true), Transaction.addToHistory.of(false)] };
  const resetEditor = () => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text.toString() }, ...remoteTr });
  text.on('change', (c) => {
    if (c.local) return;
    if (!c.reset) {
      try {
        view.dispatch({ changes: deltaToChanges(c.delta), ...remoteTr });
      } catch (e) {
        console.warn('tandem demo: a remote change did not apply to the editor:', e);
      }
    }
    if (view.state.doc.toString() !== text.toString()) {
      if (!c.reset) console.warn('tandem demo: editor drifted from the document, resetting');
      resetEditor();
    }
  });

  const peopleEl = $('people');
  /* A peer's state is whatever that peer sent: only non-negative integer
   * positions are drawn. */
  const position = (x) => (Number.isSafeInteger(x) && x >= 0 ? x : null);
  /* The peer's anchor (only into our text 'body'), else its offset. */
  const place = (state, key) => {
    const rel = state.rel?.[key];
    if (rel && rel.root === 'body') {
      const i = doc.resolve(rel);
      if (i !== null) return i;
    }
    return position(state[key]);
  };
  const renderPeople = (peers) => {
    view.dispatch({ effects: setPeers.of(peers.filter((p) => p.state && place(p.state, 'head') !== null)
      .map((p) => {
        const head = place(p.state, 'head');
        return { session: p.session, name: String(p.state.name ?? p.user ?? '?'), color: String(p.state.color ?? '#888'),
          anchor: place(p.state, 'anchor') ?? head, head };
      })) });
    peopleEl.replaceChildren(...[{ state: { name: `${NAME} (you)`, color: COLOR } }, ...peers].map((p) => {
      const li = document.createElement('li');
      const dot = document.createElement('span');
      dot.className = 'dot';
      dot.style.background = String(p.state?.color ?? '#888');
      li.append(dot, String(p.state?.name ?? p.user ?? '?'));
      return li;
    }));
  };
  doc.presence.on('change', renderPeople);
  renderPeople(doc.presence.peers);
  /* After any change, carets go where their anchors are now (after the
   * editor took the change: not from inside its update). */
  let replace = false;
  doc.on('change', () => {
    if (replace) return;
    replace = true;
    queueMicrotask(() => { replace = false; if (doc.presence.peers.length) renderPeople(doc.presence.peers); });
  });
  sendSelection(view.state.selection);

  addEventListener('pagehide', () => { doc.save(); });
  addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') doc.save(); });

  window.tandemDemo = { client, doc, view, text: () => view.state.doc.toString(), name: NAME };
}

const swReady = 'serviceWorker' in navigator
  ? navigator.serviceWorker.register('sw.js').then(() => navigator.serviceWorker.ready).catch((e) => console.warn('service worker:', e))
  : Promise.resolve();
window.tandemDemoReady = Promise.all([main(), swReady]);
