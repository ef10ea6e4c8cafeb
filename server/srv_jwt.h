/*
 * srv_jwt.h -- private to server/: standard tokens (JWT, EdDSA/Ed25519,
 * RFC 7519 + RFC 8037) and the standard forms of the public key (PEM
 * SubjectPublicKeyInfo, JWK). srv_auth.c calls these so that
 * td_srv_token_verify and td_srv_key_read accept both formats; nothing
 * here calls back into srv_auth.c.
 */
#ifndef SRV_JWT_H
#define SRV_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "tandem_srv.h"

/* 1 if tok looks like a JWT (contains a '.', which a tandem token, being
 * base64url, never does) -- decides which verifier gets it. */
int td_srv_jwt_like(const char *tok, size_t len);

/* Verifies a JWT (PROTOCOL.md section 8, "Standard tokens"). Same contract
 * as td_srv_token_verify. */
td_srv_code td_srv_jwt_verify(const char *tok, size_t len, const uint8_t pk[32],
                              uint64_t now, td_srv_token *out);

/* Strict base64url (RFC 4648 section 5, no padding): all n characters of s
 * must decode, into at most cap bytes. Returns 0 with *outlen, or -1. */
int td_srv_b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap,
                         size_t *outlen);

/* Parses a public key given as PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC
 * KEY-----") or as a JWK ({"kty":"OKP","crv":"Ed25519","x":...}). text is
 * NUL-terminated, surrounding whitespace already trimmed. Returns 1 (parsed
 * into pk), 0 (neither form: the caller tries tandem's own), or -1 with err
 * saying why (one of those forms, but not a valid Ed25519 public key). */
int td_srv_pubkey_parse_std(const char *text, size_t len, uint8_t pk[32], char *err,
                            size_t errlen);

#endif
