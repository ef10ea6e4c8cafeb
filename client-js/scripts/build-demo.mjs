#!/usr/bin/env node
/*
 * build-demo.mjs -- bundles the demo pages with esbuild into one directory
 * the server can serve with `tandem serve --static DIR`:
 *
 *   app    the plain-text editor (demo/main.js, CodeMirror 6 and
 *          tandem-client): index.html, style.css, sw.js and app.js. The
 *          core (tandem_crdt.wasm, from the build) is bundled into app.js as
 *          bytes (the import 'tandem-wasm-bytes'): one file less to serve and
 *          to cache for offline use, and no dependence on the server knowing
 *          application/wasm.
 *   rich   the rich-text editor (demo/rich.js: TipTap, Yjs and the stock
 *          @hocuspocus/provider against the server's /hocuspocus):
 *          rich.html, rich.css and rich.js (it uses style.css of `app`).
 *
 * Run by the build (CMake targets tandem_demo and tandem_demo_rich), one
 * part each, so that one part failing cannot stop the other:
 *
 *   node scripts/build-demo.mjs --out build/client-js/demo --wasm build/wasm/tandem_crdt.wasm [--part app]
 *   node scripts/build-demo.mjs --out build/client-js/demo --part rich
 *
 * Without --part both are built. Prints the size of what it wrote. Output
 * never goes into the source tree.
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, statSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(HERE, '..');
const args = process.argv.slice(2);
const arg = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const out = path.resolve(arg('--out', path.join(PKG, '..', 'build', 'client-js', 'demo')));
const wasm = path.resolve(arg('--wasm', path.join(PKG, '..', 'build', 'wasm', 'tandem_crdt.wasm')));
const part = arg('--part', 'all');
if (!['all', 'app', 'rich'].includes(part)) throw new Error(`--part ${part}: expected app or rich`);
const kib = (f) => (statSync(f).size / 1024).toFixed(1);
const common = { bundle: true, format: 'esm', platform: 'browser', target: ['es2022'], minify: true, sourcemap: false, logLevel: 'warning' };

mkdirSync(out, { recursive: true });
if (part !== 'rich') {
  await build({
    ...common,
    entryPoints: [path.join(PKG, 'demo', 'main.js')],
    outfile: path.join(out, 'app.js'),
    plugins: [{
      name: 'tandem-wasm-bytes',
      setup(b) {
        b.onResolve({ filter: /^tandem-wasm-bytes$/ }, () => ({ path: wasm, namespace: 'wasm-bytes' }));
        b.onLoad({ filter: /.*/, namespace: 'wasm-bytes' }, () => ({ contents: readFileSync(wasm), loader: 'binary' }));
      },
    }],
  });
  for (const f of ['index.html', 'style.css', 'sw.js']) copyFileSync(path.join(PKG, 'demo', f), path.join(out, f));
  console.log(`demo: ${out}: app.js ${kib(path.join(out, 'app.js'))} KiB (holds tandem_crdt.wasm, ${kib(wasm)} KiB)`);
}

if (part !== 'app') {
  /* One copy of yjs in the bundle: two break Yjs (its types are checked
   * with instanceof, and it warns "Yjs was already imported"). The page,
   * y-tiptap and the provider must all import the one that npm dedupes to
   * (npm ls yjs); esbuild takes its ES module build for every import. */
  const result = await build({
    ...common,
    entryPoints: [path.join(PKG, 'demo', 'rich.js')],
    outfile: path.join(out, 'rich.js'),
    metafile: true,
  });
  const yjsCopies = Object.keys(result.metafile.inputs).filter((f) => /(^|\/)yjs\/(dist\/yjs\.[cm]?js|src\/index\.js)$/.test(f));
  if (yjsCopies.length !== 1) throw new Error(`rich.js must hold exactly one copy of yjs, not ${yjsCopies.length}: ${yjsCopies.join(', ')}`);
  for (const f of ['rich.html', 'rich.css']) copyFileSync(path.join(PKG, 'demo', f), path.join(out, f));
  console.log(`demo: ${out}: rich.js ${kib(path.join(out, 'rich.js'))} KiB (TipTap, Yjs, Hocuspocus provider)`);
}
