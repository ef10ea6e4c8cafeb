/*
 * srv_jwt.c -- standard tokens: JWTs signed with EdDSA/Ed25519 (RFC 7519,
 * RFC 8037; PROTOCOL.md section 8), and the standard encodings of the
 * public key that verifies them (PEM SubjectPublicKeyInfo, JWK).
 *
 * They exist so that any backend can mint tokens with a stock JWT library
 * instead of tandem's own format. A JWT is hostile input: every segment is
 * size-bounded, strict base64url without padding, and the header is checked
 * (alg must be exactly EdDSA: no `none`, no HMAC, no `crit`) and the
 * signature verified before the claims are even parsed, so unauthenticated
 * bytes never reach the claim logic.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "srv_jwt.h"

/* Bounds, in base64url characters. A header of ours is 36; 256 leaves room
 * for a kid. A signature is 64 bytes: exactly 86 characters. */
#define HEADER_CHARS_MAX 256
#define SIG_CHARS 86
/* The whole token is at most TD_SRV_TOKEN_MAX characters, so the decoded
 * payload is at most 3/4 of that. */
#define JSON_MAX (TD_SRV_TOKEN_MAX / 4 * 3)
/* NumericDate past 2^53 cannot be a double without rounding. */
#define DATE_MAX 9007199254740992.0

int td_srv_jwt_like(const char *tok, size_t len)
{
    return memchr(tok, '.', len) != NULL;
}

/* Strict base64url (RFC 4648 section 5, no padding, no whitespace): the
 * whole of s must decode. libsodium also refuses non-zero trailing bits, so
 * every value has exactly one encoding. Returns 0 or -1. */
int td_srv_b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap,
                         size_t *outlen)
{
    const char *end = NULL;
    if (n == 0 ||
        sodium_base642bin(out, cap, s, n, NULL, outlen, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s + n)
        return -1;
    return 0;
}

/* Parses a decoded JSON segment as one object and nothing else. Embedded
 * NULs are refused (cJSON would stop at them and read a shorter text than
 * the one signed), and so are duplicate member names: RFC 7515 section 5.2
 * lets a verifier refuse them, and with them two parsers could disagree on
 * what a token says. */
static cJSON *json_object(uint8_t *buf, size_t len)
{
    const char *end = NULL;
    buf[len] = '\0';
    if (strlen((const char *)buf) != len)
        return NULL;
    cJSON *o = cJSON_ParseWithOpts((const char *)buf, &end, 1);
    if (!o)
        return NULL;
    if (!cJSON_IsObject(o))
        goto bad;
    for (const cJSON *a = o->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                goto bad;
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

/* The JOSE header: alg exactly "EdDSA"; typ (if any) "JWT"; kid (if any) a
 * string, ignored since the server has one key. Anything else -- crit
 * above all, or jwk/jku/x5u naming a key to trust -- is refused rather than
 * ignored, because ignoring a header member can change what the signer
 * meant. */
static int header_ok(const cJSON *h)
{
    int alg = 0;
    for (const cJSON *m = h->child; m; m = m->next) {
        if (strcmp(m->string, "alg") == 0) {
            if (!cJSON_IsString(m) || strcmp(m->valuestring, "EdDSA") != 0)
                return 0;
            alg = 1;
        } else if (strcmp(m->string, "typ") == 0) {
            if (!cJSON_IsString(m) || strcasecmp(m->valuestring, "JWT") != 0)
                return 0;
        } else if (strcmp(m->string, "kid") == 0) {
            if (!cJSON_IsString(m))
                return 0;
        } else {
            return 0;
        }
    }
    return alg;
}

/* A NumericDate: a whole number of seconds in [0, 2^53]. Fractions are
 * refused: no library we care about mints them, and `exp` must compare
 * exactly like a tandem token's `expires`. */
static int numeric_date(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > DATE_MAX || floor(v->valuedouble) != v->valuedouble)
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

/* rights letters: r read, w write, p presence; each at most once, at least
 * one, nothing else (a typo must not silently grant less or more). */
static int rights_parse(const char *s, uint64_t *out)
{
    static const char letters[] = "rwp";
    uint64_t r = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        const char *l = strchr(letters, *s);
        if (!l)
            return -1;
        uint64_t bit = (uint64_t)1 << (l - letters);
        if (r & bit)
            return -1;
        r |= bit;
    }
    *out = r;
    return 0;
}

/* A string claim validated like the fields of a tandem token. */
static int str_claim(const cJSON *v, char *dst, size_t *dlen)
{
    if (!cJSON_IsString(v))
        return -1;
    size_t n = strlen(v->valuestring);
    if (!td_srv_doc_id_valid((const uint8_t *)v->valuestring, n))
        return -1;
    memcpy(dst, v->valuestring, n);
    dst[n] = '\0';
    *dlen = n;
    return 0;
}

static td_srv_code claims(const cJSON *c, uint64_t now, td_srv_token *out)
{
    uint64_t nbf = 0;
    const cJSON *v;
    if (str_claim(cJSON_GetObjectItemCaseSensitive(c, "sub"), out->user, &out->user_len) < 0 ||
        str_claim(cJSON_GetObjectItemCaseSensitive(c, "doc"), out->pattern,
                  &out->pattern_len) < 0 ||
        numeric_date(cJSON_GetObjectItemCaseSensitive(c, "exp"), &out->expires) < 0)
        return TD_SRV_E_TOKEN_INVALID;
    v = cJSON_GetObjectItemCaseSensitive(c, "rights");
    if (!cJSON_IsString(v) || rights_parse(v->valuestring, &out->rights) < 0)
        return TD_SRV_E_TOKEN_INVALID;
    /* nbf and iat are optional; when present they must be dates, and a
     * token used before its nbf is not valid yet (RFC 7519 4.1.5). */
    v = cJSON_GetObjectItemCaseSensitive(c, "nbf");
    if (v && (numeric_date(v, &nbf) < 0 || now < nbf))
        return TD_SRV_E_TOKEN_INVALID;
    v = cJSON_GetObjectItemCaseSensitive(c, "iat");
    if (v && numeric_date(v, &nbf) < 0)
        return TD_SRV_E_TOKEN_INVALID;
    return now >= out->expires ? TD_SRV_E_TOKEN_EXPIRED : TD_SRV_E_OK;
}

td_srv_code td_srv_jwt_verify(const char *tok, size_t len, const uint8_t pk[32],
                              uint64_t now, td_srv_token *out)
{
    uint8_t hdr[HEADER_CHARS_MAX / 4 * 3 + 3], sig[crypto_sign_BYTES + 1];
    uint8_t json[JSON_MAX + 1];
    size_t hlen = 0, slen = 0, jlen = 0;
    cJSON *o;
    td_srv_code rc = TD_SRV_E_TOKEN_INVALID;

    memset(out, 0, sizeof *out);
    if (len == 0 || len > TD_SRV_TOKEN_MAX || sodium_init() < 0)
        return TD_SRV_E_TOKEN_INVALID;
    /* exactly three segments: header.payload.signature */
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return TD_SRV_E_TOKEN_INVALID;
    size_t hchars = (size_t)(d1 - tok), pchars = (size_t)(d2 - d1 - 1);
    size_t schars = len - (size_t)(d2 + 1 - tok);
    if (hchars > HEADER_CHARS_MAX || schars != SIG_CHARS ||
        td_srv_b64url_decode(tok, hchars, hdr, sizeof hdr - 1, &hlen) < 0 ||
        td_srv_b64url_decode(d2 + 1, schars, sig, sizeof sig, &slen) < 0 ||
        slen != crypto_sign_BYTES)
        return TD_SRV_E_TOKEN_INVALID;
    o = json_object(hdr, hlen);
    int hok = o && header_ok(o);
    cJSON_Delete(o);
    if (!hok)
        return TD_SRV_E_TOKEN_INVALID;
    /* RFC 7515: the signing input is the ASCII of header '.' payload, as
     * received (never re-encoded). */
    if (crypto_sign_verify_detached(sig, (const unsigned char *)tok,
                                    (unsigned long long)(d2 - tok), pk) != 0)
        return TD_SRV_E_TOKEN_INVALID;
    if (td_srv_b64url_decode(d1 + 1, pchars, json, sizeof json - 1, &jlen) < 0 ||
        !(o = json_object(json, jlen)))
        return TD_SRV_E_TOKEN_INVALID;
    rc = claims(o, now, out);
    cJSON_Delete(o);
    if (rc == TD_SRV_E_TOKEN_INVALID)
        memset(out, 0, sizeof *out);
    return rc;
}

/* ---- minting (tandem token --jwt) ---------------------------------------- */

/* Appends base64url(p) at *pos of out (cap bytes, NUL-terminated). */
static int b64_append(char *out, size_t cap, size_t *pos, const void *p, size_t n)
{
    size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (*pos + need > cap)
        return -1;
    sodium_bin2base64(out + *pos, need, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *pos += strlen(out + *pos);
    return 0;
}

int td_srv_token_mint_jwt(const td_srv_token *t, const uint8_t sk[64], char **out)
{
    static const char header[] = "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}";
    char rights[4];
    size_t nr = 0, pos = 0, cap = TD_SRV_TOKEN_MAX + 1;
    uint8_t sig[crypto_sign_BYTES];
    char *json = NULL, *s = NULL;
    int rc = -1;

    *out = NULL;
    if (t->rights & TD_SRV_RIGHT_READ)
        rights[nr++] = 'r';
    if (t->rights & TD_SRV_RIGHT_WRITE)
        rights[nr++] = 'w';
    if (t->rights & TD_SRV_RIGHT_PRESENCE)
        rights[nr++] = 'p';
    rights[nr] = '\0';
    /* the verifier's rules, so that we never print a token it refuses */
    if (sodium_init() < 0 || !nr || (t->rights & ~(uint64_t)7) ||
        (double)t->expires > DATE_MAX ||
        !td_srv_doc_id_valid((const uint8_t *)t->user, t->user_len) ||
        !td_srv_doc_id_valid((const uint8_t *)t->pattern, t->pattern_len) ||
        strlen(t->user) != t->user_len || strlen(t->pattern) != t->pattern_len)
        return -1;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "sub", t->user) ||
        !cJSON_AddStringToObject(o, "doc", t->pattern) ||
        !cJSON_AddStringToObject(o, "rights", rights) ||
        !cJSON_AddNumberToObject(o, "exp", (double)t->expires) ||
        !(json = cJSON_PrintUnformatted(o)) || !(s = malloc(cap)))
        goto done;
    if (b64_append(s, cap, &pos, header, sizeof header - 1) < 0 || pos + 1 >= cap)
        goto done;
    s[pos++] = '.';
    if (b64_append(s, cap, &pos, json, strlen(json)) < 0 || pos + 1 >= cap)
        goto done;
    crypto_sign_detached(sig, NULL, (const unsigned char *)s, pos, sk);
    s[pos++] = '.';
    if (b64_append(s, cap, &pos, sig, sizeof sig) < 0)
        goto done;
    *out = s;
    s = NULL;
    rc = 0;
done:
    free(s);
    free(json);
    cJSON_Delete(o);
    return rc;
}

/* ---- public keys: PEM SubjectPublicKeyInfo, JWK --------------------------- */

/* The DER of an Ed25519 SubjectPublicKeyInfo is fixed (RFC 8410 section 4):
 * SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused) 32 bytes }.
 * Comparing the whole prefix is the strictest possible ASN.1 parse. */
static const uint8_t SPKI_ED25519[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                         0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"

static int pem_parse(const char *text, size_t len, uint8_t pk[32], char *err, size_t errlen)
{
    uint8_t der[64];
    size_t blen = strlen(PEM_BEGIN), elen = strlen(PEM_END), got = 0;
    const char *end = NULL;
    if (len < blen + elen || memcmp(text, PEM_BEGIN, blen) != 0 ||
        memcmp(text + len - elen, PEM_END, elen) != 0) {
        snprintf(err, errlen, "PEM but not one \"PUBLIC KEY\" (SubjectPublicKeyInfo) block");
        return -1;
    }
    const char *body = text + blen;
    size_t n = len - blen - elen;
    if (sodium_base642bin(der, sizeof der, body, n, " \t\r\n", &got, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != body + n || got != sizeof SPKI_ED25519 + 32 ||
        memcmp(der, SPKI_ED25519, sizeof SPKI_ED25519) != 0) {
        snprintf(err, errlen, "PEM public key is not an Ed25519 SubjectPublicKeyInfo");
        return -1;
    }
    memcpy(pk, der + sizeof SPKI_ED25519, 32);
    return 1;
}

static int jwk_str_is(const cJSON *o, const char *name, const char *want, int required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v)
        return !required;
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

static int jwk_parse(const char *text, size_t len, uint8_t pk[32], char *err, size_t errlen)
{
    uint8_t buf[4096];
    size_t got = 0;
    cJSON *o;
    int rc = -1;
    if (len >= sizeof buf) {
        snprintf(err, errlen, "JWK too large");
        return -1;
    }
    memcpy(buf, text, len);
    if (!(o = json_object(buf, len))) {
        snprintf(err, errlen, "JWK is not one JSON object");
        return -1;
    }
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "x");
    if (cJSON_GetObjectItemCaseSensitive(o, "d"))
        /* a private JWK: the server must only ever hold the public half */
        snprintf(err, errlen, "JWK holds a private key (\"d\"); give the server the public "
                              "key only");
    else if (!jwk_str_is(o, "kty", "OKP", 1) || !jwk_str_is(o, "crv", "Ed25519", 1) ||
             !jwk_str_is(o, "alg", "EdDSA", 0) || !jwk_str_is(o, "use", "sig", 0))
        snprintf(err, errlen, "JWK is not an Ed25519 signing key (kty OKP, crv Ed25519)");
    else if (!cJSON_IsString(x) ||
             td_srv_b64url_decode(x->valuestring, strlen(x->valuestring), pk, 32, &got) < 0 ||
             got != 32)
        snprintf(err, errlen, "JWK \"x\" is not 32 bytes of base64url");
    else
        rc = 1;
    cJSON_Delete(o);
    return rc;
}

int td_srv_pubkey_parse_std(const char *text, size_t len, uint8_t pk[32], char *err,
                            size_t errlen)
{
    /* told apart by their first character: base64 never has '-' or '{'
     * (tandem's files are standard base64, and PEM starts with dashes) */
    if (len && text[0] == '{')
        return jwk_parse(text, len, pk, err, errlen);
    if (len >= 5 && memcmp(text, "-----", 5) == 0)
        return pem_parse(text, len, pk, err, errlen);
    return 0;
}
