// jwt_mint.mjs -- the Node side of test_jwt.c (issue 13, bar 2): mints
// standard tokens with the stock `jose` library, good ones and every kind
// of bad one, so the server is checked against what real backends send.
//
//   node jwt_mint.mjs JOSE_INDEX_JS OUTDIR
//
// Writes OUTDIR/pub.pem (SubjectPublicKeyInfo) and OUTDIR/pub.jwk of a fresh
// Ed25519 key pair and prints one "NAME TOKEN" line per case. The good token
// is minted exactly as README.md shows (importPKCS8 + SignJWT).
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { createHmac, sign as nodeSign } from 'node:crypto';

const [joseIndex, outdir] = process.argv.slice(2);
const jose = await import(pathToFileURL(joseIndex).href);
const { SignJWT, generateKeyPair, exportSPKI, exportJWK, exportPKCS8, importPKCS8 } = jose;

const opts = { extractable: true };
const a = await generateKeyPair('EdDSA', opts);
const b = await generateKeyPair('EdDSA', opts);
const pem = await exportSPKI(a.publicKey);
const jwk = await exportJWK(a.publicKey);
writeFileSync(`${outdir}/pub.pem`, pem);
writeFileSync(`${outdir}/pub.jwk`, JSON.stringify(jwk));
const pkcs8 = await exportPKCS8(a.privateKey);

const now = Math.floor(Date.now() / 1000);
const out = [];
const emit = (name, tok) => out.push(`${name} ${tok}`);
const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

// README.md's five lines
const key = await importPKCS8(pkcs8, 'EdDSA');
const token = await new SignJWT({ doc: 'team/*', rights: 'rwp' })
  .setProtectedHeader({ alg: 'EdDSA' }).setSubject('alice').setExpirationTime('1h')
  .sign(key);
emit('good', token);

const mint = (claims, header = { alg: 'EdDSA' }, k = a.privateKey) =>
  new SignJWT(claims).setProtectedHeader(header).sign(k);
const base = { sub: 'alice', doc: 'team/*', rights: 'rwp', exp: now + 3600 };
const without = (n) => Object.fromEntries(Object.entries(base).filter(([k]) => k !== n));
// signing by hand, for headers jose refuses to produce
const edSign = (header, claims) => {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${nodeSign(null, Buffer.from(input), a.privateKey).toString('base64url')}`;
};

emit('readonly', await mint({ ...base, sub: 'bob', rights: 'rp' }));
emit('typ_kid_iat', await mint({ ...base, sub: 'carol', iat: now }, { alg: 'EdDSA', typ: 'JWT', kid: 'k1' }));
emit('expired', await mint({ ...base, exp: now - 10 }));
emit('wrongkey', await mint(base, { alg: 'EdDSA' }, b.privateKey));
{
  // one bit flipped in the signature
  const [h, p, s] = token.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[17] ^= 0x04;
  emit('forged', `${h}.${p}.${sig.toString('base64url')}`);
  // the payload changed under the old signature
  const ro = (await mint({ ...base, rights: 'r' })).split('.');
  emit('tampered', `${h}.${ro[1]}.${s}`);
  emit('padded', `${token}=`);
  emit('two_segments', `${h}.${p}`);
  emit('empty_sig', `${h}.${p}.`);
  emit('std_base64', `${h}.${p}.${sig.toString('base64').replace(/=+$/, '')}x`);
}
emit('none', `${b64({ alg: 'none' })}.${b64(base)}.`);
emit('none_signed', edSign({ alg: 'none' }, base));
emit('ed25519_alg', edSign({ alg: 'Ed25519' }, base));
emit('crit', edSign({ alg: 'EdDSA', crit: ['exp'], exp: 1 }, base));
emit('jwk_header', edSign({ alg: 'EdDSA', jwk }, base));
{
  // HS256 with the public key as the HMAC secret: the classic confusion
  const raw = Buffer.from(jwk.x, 'base64url');
  for (const [n, secret] of [['hs256_raw', raw], ['hs256_pem', Buffer.from(pem)]]) {
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(base)}`;
    emit(n, `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`);
  }
}
for (const c of ['sub', 'exp', 'doc', 'rights']) emit(`missing_${c}`, await mint(without(c)));
emit('rights_x', await mint({ ...base, rights: 'rwx' }));
emit('rights_dup', await mint({ ...base, rights: 'rr' }));
emit('rights_empty', await mint({ ...base, rights: '' }));
emit('rights_array', await mint({ ...base, rights: ['r', 'w'] }));
emit('exp_string', await mint({ ...base, exp: String(now + 3600) }));
emit('exp_fraction', await mint({ ...base, exp: now + 3600.5 }));
emit('nbf_future', await mint({ ...base, nbf: now + 3600 }));
emit('sub_control', await mint({ ...base, sub: 'a\nb' }));
emit('sub_long', await mint({ ...base, sub: 'x'.repeat(256) }));
{
  // a duplicate member: "rights" read-only first, then rwp
  const h = b64({ alg: 'EdDSA' });
  const p = b64(`{"sub":"alice","doc":"team/*","rights":"r","exp":${now + 3600},"rights":"rwp"}`);
  emit('dup_claim', `${h}.${p}.${nodeSign(null, Buffer.from(`${h}.${p}`), a.privateKey).toString('base64url')}`);
}
emit('header_long', await mint(base, { alg: 'EdDSA', kid: 'k'.repeat(300) }));
// just over TD_SRV_TOKEN_MAX (2048), validly signed
emit('oversized', await mint({ ...base, pad: 'x'.repeat(1400) }));
console.log(out.join('\n'));
