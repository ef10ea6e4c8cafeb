// yjs_wasm.mjs -- crdt/yjs/ built for wasm32-wasi (wasm/tandem_yjs.wasm)
// works as the native build does: a Yjs update made by the npm yjs package
// loads, reads back as JSON, and re-encodes to an update yjs reads to the
// same content.
//
//   node tests/yjs/yjs_wasm.mjs build/wasm/tandem_yjs.wasm
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import assert from 'node:assert/strict'

const wasmPath = process.argv[2]
if (!wasmPath) {
  console.error('usage: node yjs_wasm.mjs TANDEM_YJS_WASM')
  process.exit(2)
}
const Y = createRequire(path.resolve('client-js/package.json'))('yjs')

const mod = new WebAssembly.Module(readFileSync(wasmPath))
// The library does no I/O: any WASI import it pulls in must never be called.
const imports = {}
for (const imp of WebAssembly.Module.imports(mod)) {
  imports[imp.module] ??= {}
  imports[imp.module][imp.name] = () => { throw new Error(`unexpected import ${imp.module}.${imp.name}`) }
}
const { exports: X } = new WebAssembly.Instance(mod, imports)
X._initialize?.() // a reactor module: its constructors, once
const mem = () => new Uint8Array(X.memory.buffer)
const u32 = (p) => new DataView(X.memory.buffer).getUint32(p, true)

function call (fn, ...args) {
  const rc = fn(...args)
  assert.equal(rc, 0, `${fn.name}: error ${rc}`)
}

// A document with text, formatting, a map, an array and XML.
const src = new Y.Doc()
src.getText('text').insert(0, 'héllo 😀 world', { bold: true })
src.getMap('map').set('n', 42)
src.getArray('list').push([1, 'two', { three: 3 }])
const frag = src.getXmlFragment('prose')
const el = new Y.XmlElement('p')
el.setAttribute('class', 'x')
el.insert(0, [new Y.XmlText('hi')])
frag.insert(0, [el])
src.getText('text').delete(0, 2)
const update = Y.encodeStateAsUpdate(src)

const slots = X.malloc(16)
call(X.td_yjs_doc_new, 0, slots)
const doc = u32(slots)
const buf = X.malloc(update.length)
mem().set(update, buf)
call(X.td_yjs_apply_update, doc, buf, update.length)

call(X.td_yjs_to_json, doc, 0, slots, slots + 4)
const json = JSON.parse(new TextDecoder().decode(mem().slice(u32(slots), u32(slots) + u32(slots + 4))))
X.td_yjs_buf_free(doc, u32(slots))
assert.deepEqual(json, {
  list: [1, 'two', { three: 3 }],
  map: { n: 42 },
  prose: '<p class="x">hi</p>',
  text: 'llo 😀 world'
})

call(X.td_yjs_encode_state_as_update, doc, 0, 0, slots, slots + 4)
const out = mem().slice(u32(slots), u32(slots) + u32(slots + 4))
X.td_yjs_buf_free(doc, u32(slots))
const back = new Y.Doc()
Y.applyUpdate(back, out)
assert.deepEqual(back.getText('text').toDelta(), src.getText('text').toDelta())
assert.equal(back.getXmlFragment('prose').toString(), frag.toString())
assert.deepEqual(Y.encodeStateVector(back), Y.encodeStateVector(src))
X.td_yjs_doc_free(doc)
X.free(buf)
X.free(slots)
console.log(`yjs_wasm: ${wasmPath} (${readFileSync(wasmPath).length} bytes) loads a yjs update of ${update.length} bytes and re-encodes it (${out.length} bytes)`)
