#!/usr/bin/env node
/*
 * build-demo.mjs -- bundles the demo editor (demo/main.js, CodeMirror 6 and
 * tandem-client) with esbuild into one directory the server can serve with
 * `tandem serve --static DIR`: index.html, style.css, sw.js and app.js. The
 * core (tandem_crdt.wasm, from the build) is bundled into app.js as bytes
 * (the import 'tandem-wasm-bytes'): one file less to serve and to cache
 * for offline use, and no dependence on the server knowing application/wasm.
 * Run by the build (CMake target tandem_demo):
 *
 *   node scripts/build-demo.mjs --out build/client-js/demo --wasm build/wasm/tandem_crdt.wasm
 *
 * Prints the size of what it wrote. Output never goes into the source tree.
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

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(PKG, 'demo', 'main.js')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: false,
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
  plugins: [{
    name: 'tandem-wasm-bytes',
    setup(b) {
      b.onResolve({ filter: /^tandem-wasm-bytes$/ }, () => ({ path: wasm, namespace: 'wasm-bytes' }));
      b.onLoad({ filter: /.*/, namespace: 'wasm-bytes' }, () => ({ contents: readFileSync(wasm), loader: 'binary' }));
    },
  }],
});
for (const f of ['index.html', 'style.css', 'sw.js']) copyFileSync(path.join(PKG, 'demo', f), path.join(out, f));
const kib = (f) => (statSync(f).size / 1024).toFixed(1);
console.log(`demo: ${out}: app.js ${kib(path.join(out, 'app.js'))} KiB (holds tandem_crdt.wasm, ${kib(wasm)} KiB)`);
