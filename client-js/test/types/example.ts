// A typed use of the whole API: compiled with `tsc --noEmit` by the test
// suite (js_types), so index.d.ts cannot drift from what the README shows.
import { connect, type Anchor, type ChangeEvent, type Peer, type Value } from 'tandem-client';

interface Cursor { name: string; color: string; anchor: number; head: number }

export async function example(url: string): Promise<string> {
  const client = await connect(url, { token: async () => 'token-from-my-backend', backoff: { capMs: 10_000 } });
  client.on('status', (s) => { const st: 'connecting' | 'online' | 'offline' = s; void st; });
  client.on('error', (e) => console.warn(e.code, e.message, e.fatal === true, e.recovering === true));

  const doc = await client.open('notes');
  const same = await client.open('notes'); // shares the subscription
  void same;
  const body = doc.text('body');
  body.insert(0, 'Hello');
  body.delete(0, 1);
  const n: number = body.length;
  const s: string = body.toString();

  const meta = doc.map('meta');
  meta.set('title', 'Notes');
  meta.set('tags', ['a', 'b']);
  meta.set('owner', { name: 'ann', age: 40, admin: true, id: 12n, parent: null });
  const title: Value | undefined = meta.get('title');
  const keys: string[] = meta.keys();
  const nested = meta.setMap('nested', { x: 1 });
  nested.setText('caption', 'hi').insert(2, '!');

  const items = doc.list('items');
  items.push(1, 'two', { three: 3 });
  items.insert(0, null);
  items.delete(0);
  const first: Value | undefined = items.get(0);
  const all: Value[] = items.toArray();

  doc.transact(() => { body.insert(0, 'A'); items.push(2); });
  doc.on('change', (e: ChangeEvent) => {
    for (const c of e.changes) {
      if (c.kind === 'text') c.delta?.forEach((op) => { if ('insert' in op) { const t: string = op.insert; void t; } });
      else if (c.kind === 'map') c.keys?.forEach((k) => void k);
      else c.inserted?.forEach((r) => void (r.index + r.length));
    }
    void e.local;
  });
  body.on('change', (c) => void c.delta);

  doc.presence.set({ name: 'ann', color: '#f00', anchor: 0, head: 0 } satisfies Cursor);
  doc.presence.on('change', (peers: Peer<Cursor>[]) => peers.forEach((p) => void p.state.name));

  // issue 13: undo, anchors, offline on purpose, agent ids
  const um = doc.undoManager({ captureTimeout: 300, scope: [body] });
  um.on('stack-item-added', (e) => { e.stackItem.meta.set('cursor', 0); void e.type; });
  const undone = um.undo();
  if (undone && um.canRedo()) um.redo();
  um.stopCapturing();
  doc.transact(() => body.insert(0, 'x'), 'my-origin');
  const anchor: Anchor = body.anchor(1, -1);
  const at: number | null = doc.resolve(anchor);
  const agent: bigint = doc.agent;
  client.disconnect();
  const off: boolean = client.disconnected;
  client.connect();
  const other = await client.open('agents', { agent: 42n });
  void [at, agent, off, other, items.anchor(0)];
  um.destroy();

  await doc.synced;
  const flag: boolean = doc.isSynced;
  client.setToken('another');
  await doc.close();
  await client.close();
  return `${n} ${s} ${String(title)} ${keys.length} ${String(first)} ${all.length} ${flag}`;
}
