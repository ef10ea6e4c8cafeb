/*
 * rich.js -- the rich-text demo: TipTap bound to a Y.XmlFragment, synced
 * through the stock @hocuspocus/provider with tandem's Hocuspocus front-end
 * (ws://<this host>/hocuspocus). Remote carets and selections with names and
 * colours come from @tiptap/extension-collaboration-caret (Yjs awareness).
 *
 * URL: the document is the query parameter `doc`, else the #hash, else
 * "rich-demo"; `name` sets the user name (default a random one, kept per tab
 * in sessionStorage and editable in the header); `token` is sent in
 * Hocuspocus's Auth message when the server requires one (as the plain-text
 * demo sends `?token=` in its HELLO).
 *
 * The status line shows the provider's connection status, whether the first
 * sync is done, and its count of unsynced changes (tandem acknowledges an
 * update with SyncStatus only after its durable write, so 0 means on disk).
 *
 * Bundled by scripts/build-demo.mjs into rich.js beside the plain-text demo.
 */
import { Editor } from '@tiptap/core';
import { StarterKit } from '@tiptap/starter-kit';
import { Collaboration } from '@tiptap/extension-collaboration';
import { CollaborationCaret } from '@tiptap/extension-collaboration-caret';
import { HocuspocusProvider } from '@hocuspocus/provider';
import * as Y from 'yjs';

const params = new URLSearchParams(location.search);
const hashDoc = () => { try { return decodeURIComponent(location.hash.slice(1)); } catch { return ''; } };
const DOC = params.get('doc') || hashDoc() || 'rich-demo';
const TOKEN = params.get('token') || null;
const FIELD = 'default'; /* the XmlFragment's name, Hocuspocus/TipTap's convention */

const NAMES = ['Ada', 'Grace', 'Linus', 'Barbara', 'Ken', 'Margaret', 'Dennis', 'Frances', 'Alan', 'Radia'];
const COLORS = ['#e53935', '#8e24aa', '#3949ab', '#039be5', '#00897b', '#7cb342', '#fb8c00', '#6d4c41'];
const colorOf = (name) => COLORS[[...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % COLORS.length];
const NAME_KEY = 'tandem-rich-name';
const storedName = () => { try { return sessionStorage.getItem(NAME_KEY); } catch { return null; } };
const storeName = (n) => { try { sessionStorage.setItem(NAME_KEY, n); } catch { /* private mode */ } };
const randomName = () => `${NAMES[Math.floor(Math.random() * NAMES.length)]}-${Math.floor(Math.random() * 100)}`;

let NAME = (params.get('name') || storedName() || randomName()).slice(0, 40);
storeName(NAME);

const $ = (id) => document.getElementById(id);
$('docname').textContent = DOC;

const ydoc = new Y.Doc();
const provider = new HocuspocusProvider({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/hocuspocus`,
  name: DOC,
  document: ydoc,
  token: TOKEN,
});

/* ---- status line --------------------------------------------------------------- */

const state = { status: provider.configuration.websocketProvider.status, denied: null, readonly: false };
const statusEl = $('status'), syncedEl = $('synced');
function showStatus() {
  const s = state.denied ? 'denied' : state.status;
  statusEl.textContent = state.denied ? `access denied: ${state.denied}` : state.readonly && s === 'connected' ? 'connected (read-only)' : s;
  statusEl.className = `status ${s}`;
  const n = provider.unsyncedChanges;
  syncedEl.textContent = !provider.isSynced ? `not synced yet${n ? ` (${n} unsynced change${n === 1 ? '' : 's'})` : ''}`
    : n === 0 ? 'synced: all changes saved' : `synced, ${n} unsynced change${n === 1 ? '' : 's'}`;
  syncedEl.dataset.unsynced = String(n);
  syncedEl.dataset.synced = String(provider.isSynced);
}
provider.on('status', ({ status }) => { state.status = status; showStatus(); });
provider.on('synced', showStatus);
provider.on('unsyncedChanges', showStatus);
provider.on('authenticationFailed', ({ reason }) => { state.denied = reason || 'refused'; showStatus(); });

/* ---- the editor ------------------------------------------------------------------ */

/* The awareness field `user`, which CollaborationCaret draws. A peer's
 * caret is shown while its editor has the focus (y-tiptap sends no cursor
 * otherwise), so a rename made in the header shows once the editor has the
 * focus again. */
const me = () => ({ name: NAME, color: colorOf(NAME) });
const HEX = /^#[0-9a-fA-F]{6}$/;
const peerName = (u) => (u && typeof u.name === 'string' && u.name ? u.name.slice(0, 40) : '?');
const peerColor = (u) => (u && HEX.test(u.color) ? u.color : '#888888');

const editor = new Editor({
  element: $('editor'),
  extensions: [
    StarterKit.configure({ undoRedo: false }), /* Collaboration brings its own (per user) undo */
    Collaboration.configure({ document: ydoc, field: FIELD }),
    CollaborationCaret.configure({ provider, user: me() }),
  ],
  editorProps: { attributes: { spellcheck: 'false', 'aria-label': 'document' } },
});

provider.on('authenticated', ({ scope }) => {
  state.denied = null;
  state.readonly = scope === 'readonly';
  editor.setEditable(!state.readonly);
  $('editor').classList.toggle('readonly', state.readonly);
  showStatus();
  renderToolbar();
});

/* ---- toolbar --------------------------------------------------------------------- */

const COMMANDS = {
  bold: { run: (c) => c.toggleBold(), active: () => editor.isActive('bold') },
  italic: { run: (c) => c.toggleItalic(), active: () => editor.isActive('italic') },
  strike: { run: (c) => c.toggleStrike(), active: () => editor.isActive('strike') },
  code: { run: (c) => c.toggleCode(), active: () => editor.isActive('code') },
  h1: { run: (c) => c.toggleHeading({ level: 1 }), active: () => editor.isActive('heading', { level: 1 }) },
  h2: { run: (c) => c.toggleHeading({ level: 2 }), active: () => editor.isActive('heading', { level: 2 }) },
  bulletList: { run: (c) => c.toggleBulletList(), active: () => editor.isActive('bulletList') },
  orderedList: { run: (c) => c.toggleOrderedList(), active: () => editor.isActive('orderedList') },
  blockquote: { run: (c) => c.toggleBlockquote(), active: () => editor.isActive('blockquote') },
  codeBlock: { run: (c) => c.toggleCodeBlock(), active: () => editor.isActive('codeBlock') },
  undo: { run: (c) => c.undo(), active: () => false },
  redo: { run: (c) => c.redo(), active: () => false },
};
const buttons = [...document.querySelectorAll('#toolbar button[data-cmd]')];
function renderToolbar() {
  for (const b of buttons) {
    const cmd = COMMANDS[b.dataset.cmd];
    b.classList.toggle('active', cmd.active());
    b.disabled = !editor.isEditable;
  }
}
for (const b of buttons) {
  b.addEventListener('mousedown', (e) => e.preventDefault()); /* keep the editor's selection */
  b.addEventListener('click', () => { COMMANDS[b.dataset.cmd].run(editor.chain().focus()).run(); });
}
editor.on('transaction', renderToolbar);

/* ---- who is online --------------------------------------------------------------- */

const peopleEl = $('people');
function renderPeople() {
  const mine = provider.awareness.clientID;
  const people = [];
  for (const [id, s] of provider.awareness.getStates()) {
    const u = s && s.user;
    if (!u) continue;
    people.push({ me: id === mine, name: peerName(u), color: peerColor(u) });
  }
  people.sort((a, b) => (b.me - a.me) || a.name.localeCompare(b.name));
  peopleEl.replaceChildren(...people.map((p) => {
    const li = document.createElement('li');
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.style.background = p.color;
    li.append(dot, p.me ? `${p.name} (you)` : p.name);
    return li;
  }));
}
provider.awareness.on('change', renderPeople);

/* ---- my name --------------------------------------------------------------------- */

const nameEl = $('myname');
nameEl.value = NAME;
nameEl.addEventListener('change', () => {
  const n = nameEl.value.trim().slice(0, 40);
  if (!n) { nameEl.value = NAME; return; }
  NAME = n;
  storeName(NAME);
  editor.commands.updateUser(me());
});

showStatus();
renderToolbar();
renderPeople();
addEventListener('hashchange', () => { if (!params.get('doc') && hashDoc() !== DOC) location.reload(); });

/* For tests and the console. */
window.tandemRich = { editor, provider, ydoc, field: FIELD, doc: DOC, get name() { return NAME; } };
window.tandemRichReady = Promise.resolve(window.tandemRich);
