/*
 * srv_keycmd.c -- `tandem keygen` and `tandem token`: minting the Ed25519
 * key pair and the tokens the server verifies (PROTOCOL.md section 8).
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

#include "srv_internal.h"

static int write_key(const char *path, const uint8_t *key, size_t len, int mode)
{
    char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, key, len, sodium_base64_VARIANT_ORIGINAL);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        fprintf(stderr, "tandem keygen: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(b64);
    b64[n++] = '\n';
    int ok = write(fd, b64, n) == (ssize_t)n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "tandem keygen: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

static int opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *out = argv[++*i];
    return 1;
}

int td_srv_cmd_keygen(int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tandem keygen --out FILE\n\n"
                   "Writes a new Ed25519 key pair: the secret key to FILE (mode 0600, keep it\n"
                   "off the server) and the public key to FILE.pub (for serve --public-key).\n"
                   "Both are one line of base64. Existing files are never overwritten.\n");
            return 0;
        }
        if ((r = opt_value(argc, argv, &i, "--out", &out)) == 1)
            continue;
        fprintf(stderr, "tandem keygen: %s '%s'\nusage: tandem keygen --out FILE\n",
                r < 0 ? "missing value for" : "unknown argument", argv[i]);
        return 2;
    }
    if (!out || !*out) {
        fprintf(stderr, "usage: tandem keygen --out FILE\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    size_t len = strlen(out);
    char *pub = malloc(len + 5);
    if (!pub)
        return 1;
    memcpy(pub, out, len);
    memcpy(pub + len, ".pub", 5);
    int rc = 1;
    if (write_key(out, sk, sizeof sk, 0600) == 0) {
        if (write_key(pub, pk, sizeof pk, 0644) == 0) {
            printf("secret key: %s\npublic key: %s\n", out, pub);
            rc = 0;
        } else {
            unlink(out);
        }
    }
    sodium_memzero(sk, sizeof sk);
    free(pub);
    return rc;
}

static const char token_usage[] =
    "usage: tandem token --key FILE --user USER --doc PATTERN --rights r|rw --ttl SECONDS\n";

int td_srv_cmd_token(int argc, char **argv)
{
    const char *key = NULL, *user = NULL, *doc = NULL, *rights = NULL, *ttl = NULL;
    for (int i = 1; i < argc; i++) {
        int r = 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s\nPrints a token signed with the secret key FILE (from tandem keygen).\n"
                   "  --user USER      who the bearer is (shown to peers in presence)\n"
                   "  --doc PATTERN    document ids it grants; '*' matches any run of\n"
                   "                   characters ('*' = every document, 'team/*')\n"
                   "  --rights r|rw    r: read + presence; rw: read + write + presence\n"
                   "  --ttl SECONDS    valid for this long from now\n",
                   token_usage);
            return 0;
        }
        if ((r = opt_value(argc, argv, &i, "--key", &key)) ||
            (r = opt_value(argc, argv, &i, "--user", &user)) ||
            (r = opt_value(argc, argv, &i, "--doc", &doc)) ||
            (r = opt_value(argc, argv, &i, "--rights", &rights)) ||
            (r = opt_value(argc, argv, &i, "--ttl", &ttl))) {
            if (r > 0)
                continue;
        }
        fprintf(stderr, "tandem token: %s '%s'\n%s", r < 0 ? "missing value for" : "unknown argument",
                argv[i], token_usage);
        return 2;
    }
    if (!key || !user || !doc || !rights || !ttl) {
        fprintf(stderr, "tandem token: --key, --user, --doc, --rights and --ttl are required\n%s",
                token_usage);
        return 2;
    }
    td_srv_token t;
    memset(&t, 0, sizeof t);
    if (strcmp(rights, "r") == 0)
        t.rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_PRESENCE;
    else if (strcmp(rights, "rw") == 0)
        t.rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_WRITE | TD_SRV_RIGHT_PRESENCE;
    else {
        fprintf(stderr, "tandem token: --rights must be r or rw\n");
        return 2;
    }
    char *end;
    errno = 0;
    unsigned long long secs = strtoull(ttl, &end, 10);
    if (errno || *end || end == ttl || ttl[0] == '-' || secs == 0 || secs > 100ull * 365 * 86400) {
        fprintf(stderr, "tandem token: --ttl must be a positive number of seconds\n");
        return 2;
    }
    t.expires = (uint64_t)time(NULL) + secs;
    t.user_len = strlen(user);
    t.pattern_len = strlen(doc);
    if (!td_srv_doc_id_valid((const uint8_t *)user, t.user_len) ||
        !td_srv_doc_id_valid((const uint8_t *)doc, t.pattern_len)) {
        fprintf(stderr, "tandem token: --user and --doc must be 1..255 bytes of UTF-8 "
                        "without control characters\n");
        return 2;
    }
    memcpy(t.user, user, t.user_len);
    memcpy(t.pattern, doc, t.pattern_len);
    if (sodium_init() < 0)
        return 1;
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    char err[256];
    if (td_srv_key_read(key, sk, sizeof sk, err, sizeof err) < 0) {
        fprintf(stderr, "tandem token: %s\n", err);
        return 1;
    }
    char *tok = NULL;
    int rc = td_srv_token_mint(&t, sk, &tok);
    sodium_memzero(sk, sizeof sk);
    if (rc < 0) {
        fprintf(stderr, "tandem token: cannot mint the token\n");
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}
