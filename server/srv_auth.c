/*
 * srv_auth.c -- Ed25519 tokens (PROTOCOL.md section 8).
 *
 * A token is base64url(payload || signature); the signature covers a fixed
 * context string followed by the payload, so a signature made for anything
 * else with the same key can never pass as a token. The server holds only
 * the public key. Everything in a token is validated like network input
 * before the signature is even checked. Standard tokens (JWTs) and the
 * PEM/JWK forms of the public key are handled by srv_jwt.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "srv_jwt.h"
#include "tandem_srv.h"

#define TOKEN_CONTEXT "tandem-token-v1"
#define TOKEN_CONTEXT_LEN 15
#define TOKEN_FORMAT 1
#define PAYLOAD_MAX 1024

int td_srv_pattern_match(const char *pat, size_t plen, const char *doc, size_t dlen)
{
    /* Iterative glob with one backtrack point: linear-ish, no recursion, so
     * a hostile pattern of many stars cannot blow the stack. */
    size_t p = 0, d = 0, star_p = (size_t)-1, star_d = 0;
    while (d < dlen) {
        if (p < plen && pat[p] == '*') {
            star_p = p++;
            star_d = d;
        } else if (p < plen && pat[p] == doc[d]) {
            p++, d++;
        } else if (star_p != (size_t)-1) {
            p = star_p + 1;
            d = ++star_d;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

static int field_ok(const char *s, size_t len)
{
    return td_srv_doc_id_valid((const uint8_t *)s, len);
}

static size_t payload_encode(const td_srv_token *t, uint8_t *out, size_t cap)
{
    td_srv_wbuf w;
    size_t n = 0;
    td_srv_wbuf_init(&w, 0);
    td_srv_put_u8(&w, TOKEN_FORMAT);
    td_srv_put_varint(&w, t->rights);
    td_srv_put_varint(&w, t->expires);
    td_srv_put_bytes(&w, t->user, t->user_len);
    td_srv_put_bytes(&w, t->pattern, t->pattern_len);
    if (!w.oom && w.len <= cap) {
        memcpy(out, td_srv_wbuf_msg(&w), w.len);
        n = w.len;
    }
    td_srv_wbuf_free(&w);
    return n;
}

static int sign_input(const uint8_t *payload, size_t plen, uint8_t *out)
{
    memcpy(out, TOKEN_CONTEXT, TOKEN_CONTEXT_LEN);
    memcpy(out + TOKEN_CONTEXT_LEN, payload, plen);
    return (int)(TOKEN_CONTEXT_LEN + plen);
}

int td_srv_token_mint(const td_srv_token *t, const uint8_t sk[64], char **out)
{
    uint8_t raw[PAYLOAD_MAX + crypto_sign_BYTES];
    uint8_t msg[TOKEN_CONTEXT_LEN + PAYLOAD_MAX];
    size_t plen, b64len;
    char *s;

    *out = NULL;
    if (sodium_init() < 0 || !field_ok(t->user, t->user_len) ||
        !field_ok(t->pattern, t->pattern_len))
        return -1;
    plen = payload_encode(t, raw, PAYLOAD_MAX);
    if (!plen)
        return -1;
    int mlen = sign_input(raw, plen, msg);
    crypto_sign_detached(raw + plen, NULL, msg, (unsigned long long)mlen, sk);
    b64len = sodium_base64_ENCODED_LEN(plen + crypto_sign_BYTES,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    s = malloc(b64len);
    if (!s)
        return -1;
    sodium_bin2base64(s, b64len, raw, plen + crypto_sign_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *out = s;
    return 0;
}

static int payload_decode(const uint8_t *p, size_t len, td_srv_token *t)
{
    size_t pos = 1;
    td_srv_bytes user, pat;
    if (len < 1 || p[0] != TOKEN_FORMAT)
        return -1;
    if (td_srv_read_varint(p, len, &pos, &t->rights) < 0 ||
        td_srv_read_varint(p, len, &pos, &t->expires) < 0 ||
        td_srv_read_bytes(p, len, &pos, &user) < 0 ||
        td_srv_read_bytes(p, len, &pos, &pat) < 0 || pos != len)
        return -1;
    if (!field_ok((const char *)user.ptr, user.len) ||
        !field_ok((const char *)pat.ptr, pat.len))
        return -1;
    memcpy(t->user, user.ptr, user.len);
    t->user[user.len] = '\0';
    t->user_len = user.len;
    memcpy(t->pattern, pat.ptr, pat.len);
    t->pattern[pat.len] = '\0';
    t->pattern_len = pat.len;
    return 0;
}

td_srv_code td_srv_token_verify(const char *tok, size_t len, const uint8_t pk[32],
                                uint64_t now, td_srv_token *out)
{
    uint8_t raw[PAYLOAD_MAX + crypto_sign_BYTES];
    uint8_t msg[TOKEN_CONTEXT_LEN + PAYLOAD_MAX];
    size_t rawlen = 0, plen;

    memset(out, 0, sizeof *out);
    if (len == 0 || len > TD_SRV_TOKEN_MAX)
        return TD_SRV_E_TOKEN_INVALID;
    /* Standard tokens (JWT) are told apart by their dots; verifying both
     * here means every caller (HELLO, HTTP) accepts both formats. */
    if (td_srv_jwt_like(tok, len))
        return td_srv_jwt_verify(tok, len, pk, now, out);
    if (td_srv_b64url_decode(tok, len, raw, sizeof raw, &rawlen) < 0)
        return TD_SRV_E_TOKEN_INVALID;
    if (rawlen <= crypto_sign_BYTES)
        return TD_SRV_E_TOKEN_INVALID;
    plen = rawlen - crypto_sign_BYTES;
    if (plen > PAYLOAD_MAX || payload_decode(raw, plen, out) < 0) {
        memset(out, 0, sizeof *out);
        return TD_SRV_E_TOKEN_INVALID;
    }
    int mlen = sign_input(raw, plen, msg);
    if (crypto_sign_verify_detached(raw + plen, msg, (unsigned long long)mlen, pk) != 0) {
        memset(out, 0, sizeof *out);
        return TD_SRV_E_TOKEN_INVALID;
    }
    if (now >= out->expires)
        return TD_SRV_E_TOKEN_EXPIRED;
    return TD_SRV_E_OK;
}

/* ---- key files ------------------------------------------------------------------ */

int td_srv_key_read(const char *path, uint8_t *key, size_t keylen, char *err,
                    size_t errlen)
{
    /* room for a PEM or JWK public key; anything larger is not a key */
    char buf[4096];
    size_t n, got = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f) || !feof(f); /* a read error, or more than fits */
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: cannot read it, or too large for a key", path);
        return -1;
    }
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                 buf[n - 1] == '\t'))
        buf[--n] = '\0';
    /* A public key may also be PEM or JWK, so that the key pair of any JWT
     * library works; secret keys stay in tandem's own format only. */
    if (keylen == 32) {
        char why[200];
        int rc = td_srv_pubkey_parse_std(buf, n, key, why, sizeof why);
        if (rc < 0)
            snprintf(err, errlen, "%s: %s", path, why);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
    }
    if (sodium_base642bin(key, keylen, buf, n, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != keylen) {
        snprintf(err, errlen, "%s: not a base64 %zu-byte key%s", path, keylen,
                 keylen == 32 ? ", a PEM public key or a JWK" : "");
        return -1;
    }
    return 0;
}
