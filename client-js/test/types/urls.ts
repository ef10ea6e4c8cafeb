// Issue 15: several server URLs (nodes of a cluster) and failover; compiled
// with example.ts by js_types.
import { connect, type Client, type ConnectOptions } from 'tandem-client';

export async function severalNodes(a: string, b: string): Promise<string> {
  const opts: ConnectOptions = { firstUrl: 0, backoff: { baseMs: 200 } };
  const fromArray: Client = await connect([a, b, new URL('ws://127.0.0.1:8082/')], opts);
  const fromList: Client = await connect(`${a},${b}`, { firstUrl: b });
  const one: Client = await connect(new URL(a));
  const urls: readonly string[] = fromArray.urls;
  const now: string = fromList.url;
  fromArray.on('disconnect', (e) => { const from: string = e.url; void [from, e.code, e.reason]; });
  fromArray.on('status', (s) => { if (s === 'online') void fromArray.url; });
  await Promise.all([fromArray.close(), fromList.close(), one.close()]);
  return `${urls.length} ${now}`;
}
