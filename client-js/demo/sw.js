/*
 * sw.js -- keeps the demo page working offline: every asset is fetched
 * from the network when there is one (and the copy refreshed), and from this
 * cache when there is not, so a reload without network still opens the
 * editor, whose document then comes from IndexedDB.
 */
const CACHE = 'tandem-demo-v1';
const ASSETS = ['./', 'index.html', 'app.js', 'style.css'];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(ASSETS)).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (e) => { e.waitUntil(self.clients.claim()); });

self.addEventListener('fetch', (e) => {
  const req = e.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== self.location.origin) return;
  e.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(req);
      if (res.ok) cache.put(req, res.clone());
      return res;
    } catch (err) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
