/*
 * cli_keys.c -- `tandem keygen` and `tandem token`: minting the Ed25519
 * key pair and the tokens the server verifies (PROTOCOL.md section 8),
 * tandem's own or, with --jwt, standard ones (JWT, EdDSA).
 *
 * The secret key never needs to be on the server: keygen writes FILE (the
 * secret, mode 0600) and FILE.pub (what `serve --public-key` reads).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "tandem_srv.h"
#include "td_srv_cli.h"

/* ---- keygen -------------------------------------------------------------- */

typedef struct keygen_args {
    const char *out;
} keygen_args;

static const td_srv_opt keygen_opts[] = {
    {.name = "out", .kind = TD_SRV_OPT_STR, .off = offsetof(keygen_args, out),
     .arg = "FILE", .required = 1,
     .help = "the secret key's file; the public key goes to FILE.pub"},
};

static int keygen(const td_srv_verb *v, void *args);

const td_srv_verb td_srv_verb_keygen = {
    "keygen", "write an Ed25519 key pair for tokens",
    "The secret key goes to FILE (mode 0600, keep it off the server), the public\n"
    "key to FILE.pub (for serve --public-key). Both are one line of base64.\n"
    "Existing files are never overwritten.\n",
    keygen_opts, TD_SRV_LEN(keygen_opts), NULL, 0, sizeof(keygen_args), keygen};

static int write_key(const char *path, const uint8_t *key, size_t len, int mode)
{
    char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, key, len, sodium_base64_VARIANT_ORIGINAL);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        td_srv_fail(&td_srv_verb_keygen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(b64);
    b64[n++] = '\n';
    int ok = write(fd, b64, n) == (ssize_t)n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        td_srv_fail(&td_srv_verb_keygen, "cannot write %s", path);
        return -1;
    }
    return 0;
}

static int keygen(const td_srv_verb *v, void *args)
{
    const keygen_args *a = args;
    int rc = TD_SRV_EXIT_FAIL;

    (void)v;
    if (sodium_init() < 0)
        return TD_SRV_EXIT_FAIL;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    size_t len = strlen(a->out);
    char *pub = malloc(len + 5);
    if (!pub)
        return TD_SRV_EXIT_FAIL;
    memcpy(pub, a->out, len);
    memcpy(pub + len, ".pub", 5);
    if (write_key(a->out, sk, sizeof sk, 0600) == 0) {
        if (write_key(pub, pk, sizeof pk, 0644) == 0) {
            printf("secret key: %s\npublic key: %s\n", a->out, pub);
            rc = TD_SRV_EXIT_OK;
        } else {
            unlink(a->out);
        }
    }
    sodium_memzero(sk, sizeof sk);
    free(pub);
    return rc;
}

int td_srv_cmd_keygen(int argc, char **argv)
{
    return td_srv_cli_run(&td_srv_verb_keygen, argc, argv);
}

/* ---- token --------------------------------------------------------------- */

typedef struct token_args {
    const char *key, *user, *doc;
    int rights;
    uint64_t ttl;
    int jwt;
} token_args;

static const td_srv_choice rights[] = {
    {"r", TD_SRV_RIGHT_READ | TD_SRV_RIGHT_PRESENCE},
    {"rw", TD_SRV_RIGHT_READ | TD_SRV_RIGHT_WRITE | TD_SRV_RIGHT_PRESENCE},
    {NULL, 0}};

/* Every option of token but --jwt is required; none has a variable. */
#define OPT(n, k, field, a)                                                           \
    .name = n, .kind = TD_SRV_OPT_##k, .off = offsetof(token_args, field), .arg = a,   \
    .required = 1
static const td_srv_opt token_opts[] = {
    {OPT("key", STR, key, "FILE"), .help = "the secret key (from tandem keygen)"},
    {OPT("user", STR, user, "USER"), .help = "who the bearer is (shown to peers in presence)"},
    {OPT("doc", STR, doc, "PATTERN"),
     .help = "document ids it grants; '*' matches any run of\n"
             "characters ('*' = every document, 'team/*')"},
    {OPT("rights", ENUM, rights, NULL), .choices = rights,
     .help = "r: read + presence; rw: read + write + presence"},
    /* A century: far enough for any use, near enough not to overflow. */
    {OPT("ttl", COUNT, ttl, "SECONDS"), .min = 1, .max = 100ull * 365 * 86400,
     .help = "valid for this long from now"},
    {.name = "jwt", .kind = TD_SRV_OPT_FLAG, .off = offsetof(token_args, jwt),
     .help = "print a standard token (JWT, EdDSA) instead of tandem's own;\n"
             "the server accepts both"},
};
#undef OPT

static int token(const td_srv_verb *v, void *args);

const td_srv_verb td_srv_verb_token = {
    "token", "print a signed access token", NULL,
    token_opts, TD_SRV_LEN(token_opts), NULL, 0, sizeof(token_args), token};

/* The token's fields from the arguments. Returns -1 or an exit status. */
static int token_fill(const td_srv_verb *v, const token_args *a, td_srv_token *t)
{
    memset(t, 0, sizeof *t);
    t->rights = (uint64_t)a->rights;
    t->expires = (uint64_t)time(NULL) + a->ttl;
    t->user_len = strlen(a->user);
    t->pattern_len = strlen(a->doc);
    if (!td_srv_doc_id_valid((const uint8_t *)a->user, t->user_len) ||
        !td_srv_doc_id_valid((const uint8_t *)a->doc, t->pattern_len)) {
        td_srv_fail(v, "--user and --doc must be 1..255 bytes of UTF-8 without control "
                       "characters");
        return TD_SRV_EXIT_USAGE;
    }
    memcpy(t->user, a->user, t->user_len);
    memcpy(t->pattern, a->doc, t->pattern_len);
    return -1;
}

static int token(const td_srv_verb *v, void *args)
{
    const token_args *a = args;
    td_srv_token t;
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    char err[256], *tok = NULL;
    int rc = token_fill(v, a, &t);

    if (rc >= 0)
        return rc;
    if (sodium_init() < 0)
        return TD_SRV_EXIT_FAIL;
    if (td_srv_key_read(a->key, sk, sizeof sk, err, sizeof err) < 0) {
        td_srv_fail(v, "%s", err);
        return TD_SRV_EXIT_FAIL;
    }
    rc = a->jwt ? td_srv_token_mint_jwt(&t, sk, &tok) : td_srv_token_mint(&t, sk, &tok);
    sodium_memzero(sk, sizeof sk);
    if (rc < 0) {
        td_srv_fail(v, "cannot mint the token");
        return TD_SRV_EXIT_FAIL;
    }
    printf("%s\n", tok);
    free(tok);
    return TD_SRV_EXIT_OK;
}

int td_srv_cmd_token(int argc, char **argv)
{
    return td_srv_cli_run(&td_srv_verb_token, argc, argv);
}
