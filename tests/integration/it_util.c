/*
 * it_util.c -- see it_util.h. The cleanup path matters most here: every way
 * out of a test (pass, failed check) stops the servers it started and
 * removes their data directories, and prints the tail of each server's log
 * on failure so that a red run in CI says what the server thought.
 */
#define _GNU_SOURCE
#include "it_util.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define MAX_SERVERS 8

static const char *g_bin;
static const char *g_name;
static uint64_t g_rng, g_seed;
static td_cli_server g_servers[MAX_SERVERS];
static int g_nservers;
static td_cli_ctx *g_ctx;

const char *it_bin(void) { return g_bin; }

int it_sanitized(void)
{
#ifdef IT_SANITIZE
    return 1;
#else
    return 0;
#endif
}

double it_scale(void) { return it_sanitized() ? 0.25 : 1.0; }

int it_n(int n, int lo)
{
    int v = (int)(n * it_scale());
    return v < lo ? lo : v;
}

uint64_t it_rand(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}

uint32_t it_below(uint32_t n) { return n ? (uint32_t)(it_rand() % n) : 0; }

static void cleanup(void)
{
    if (g_ctx) {
        td_cli_ctx_free(g_ctx);
        g_ctx = NULL;
    }
    for (int i = 0; i < g_nservers; i++)
        td_cli_server_cleanup(&g_servers[i]);
    g_nservers = 0;
}

static void print_log_tail(const td_cli_server *s)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
    char buf[4001];
    size_t n = fread(buf, 1, 4000, f);
    buf[n] = 0;
    fclose(f);
    fprintf(stderr, "---- server log tail (%s) ----\n%s\n----\n", s->log_path, buf);
}

void it_fail(void)
{
    for (int i = 0; i < g_nservers; i++)
        print_log_tail(&g_servers[i]);
    fprintf(stderr, "%s: FAILED (rerun with IT_SEED=%llu)\n", g_name,
            (unsigned long long)g_seed);
    cleanup();
    exit(1);
}

void it_pass(void)
{
    cleanup();
    printf("%s: ok\n", g_name);
    exit(0);
}

static void on_signal(int sig)
{
    /* ctest timeout or ^C: the children die with us (PDEATHSIG); just go */
    signal(sig, SIG_DFL);
    raise(sig);
}

void it_init(int argc, char **argv, const char *name)
{
    g_name = name;
    td_check_on_fail = it_fail;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s TANDEM_BINARY\n", argv[0]);
        exit(2);
    }
    g_bin = argv[1];
    const char *seed = getenv("IT_SEED");
    g_rng = seed ? strtoull(seed, NULL, 10) : td_cli_random64();
    if (!g_rng)
        g_rng = 1;
    g_seed = g_rng;
    uint64_t printed = g_rng;
    printf("%s: seed %llu%s\n", name, (unsigned long long)printed,
           it_sanitized() ? " (sanitizer build: loads scaled down)" : "");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (it_sanitized()) {
        /* ASan's quarantine would otherwise dominate the server's RSS */
        const char *old = getenv("ASAN_OPTIONS");
        char buf[1024];
        snprintf(buf, sizeof buf, "%s%squarantine_size_mb=16", old ? old : "",
                 old && *old ? ":" : "");
        setenv("ASAN_OPTIONS", buf, 1);
    }
    const char *help[] = {g_bin, "serve", "--help", NULL};
    char *out = NULL;
    int rc = td_cli_run(help, &out, NULL);
    free(out);
    /* a server that cannot even print its usage is a failure, not a skip */
    CHECK_MSG(rc == 0, "`%s serve --help` does not work (exit %d)", g_bin, rc);
}

td_cli_ctx *it_ctx(void)
{
    if (!g_ctx) {
        td_cli_ctx_opts o = {0};
        g_ctx = td_cli_ctx_new(&o);
        CHECK(g_ctx != NULL);
    }
    return g_ctx;
}

td_cli_server *it_server(const char *const *extra)
{
    CHECK(g_nservers < MAX_SERVERS);
    td_cli_server *s = &g_servers[g_nservers];
    int rc = td_cli_server_start(s, g_bin, NULL, extra, 30000);
    g_nservers++; /* registered even on failure, so its dir is removed */
    CHECK_MSG(rc == 0, "server did not start (log %s)", s->log_path);
    printf("server pid %d on %s, data %s\n", (int)s->pid, s->url, s->data_dir);
    return s;
}

int it_get_doc(td_cli_server *s, const char *doc, const char *token, char **json)
{
    char esc[800], path[900], hdr[2200];
    td_cli_url_escape(doc, strlen(doc), esc);
    snprintf(path, sizeof path, "/docs/%s", esc);
    if (token)
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", token);
    return td_cli_http_get("127.0.0.1", s->port, path, token ? hdr : NULL, json, NULL);
}

int it_json_equal(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    if (strcmp(a, b) == 0)
        return 1;
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    int eq = ja && jb && cJSON_Compare(ja, jb, 1);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return eq;
}

double it_metric(td_cli_server *s, const char *name)
{
    char *body = NULL;
    if (td_cli_http_get("127.0.0.1", s->port, "/metrics", NULL, &body, NULL) != 200) {
        free(body);
        return -1;
    }
    double v = -1;
    size_t nl = strlen(name);
    for (char *line = body; line && *line;) {
        char *next = strchr(line, '\n');
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
            v = strtod(line + nl + 1, NULL);
            break;
        }
        line = next ? next + 1 : NULL;
    }
    free(body);
    return v;
}

typedef struct conv_arg {
    td_cli_doc **docs;
    size_t n;
} conv_arg;

static int converged(void *p)
{
    conv_arg *a = p;
    for (size_t i = 0; i < a->n; i++)
        if (td_cli_unacked(a->docs[i]) || !td_cli_doc_synced(a->docs[i]))
            return 0;
    char *first = td_cli_doc_json(a->docs[0]);
    int ok = first != NULL;
    for (size_t i = 1; ok && i < a->n; i++) {
        char *js = td_cli_doc_json(a->docs[i]);
        ok = js && strcmp(js, first) == 0;
        free(js);
    }
    free(first);
    return ok;
}

int it_wait_converged(td_cli_doc **docs, size_t n, int timeout_ms)
{
    conv_arg a = {docs, n};
    if (td_cli_wait(it_ctx(), converged, &a, timeout_ms))
        return 1;
    for (size_t i = 0; i < n; i++) {
        char *js = td_cli_doc_json(docs[i]);
        fprintf(stderr, "replica %zu of %s: unacked %zu synced %d pending %zu: %.300s\n", i,
                td_cli_doc_id(docs[i]), td_cli_unacked(docs[i]), td_cli_doc_synced(docs[i]),
                td_crdt_pending_ops(td_cli_doc_crdt(docs[i])), js ? js : "(null)");
        free(js);
    }
    return 0;
}

static int conn_ready(void *p)
{
    td_cli_conn *c = p;
    return td_cli_conn_state(c) == TD_CLI_READY;
}

int it_wait_ready(td_cli_conn *c, int timeout_ms)
{
    return td_cli_wait(it_ctx(), conn_ready, c, timeout_ms);
}

static int all_synced(void *p)
{
    conv_arg *a = p;
    for (size_t i = 0; i < a->n; i++)
        if (!td_cli_doc_synced(a->docs[i]))
            return 0;
    return 1;
}

int it_wait_docs_synced(td_cli_doc **docs, size_t n, int timeout_ms)
{
    conv_arg a = {docs, n};
    return td_cli_wait(it_ctx(), all_synced, &a, timeout_ms);
}

/* ---- random edits ------------------------------------------------------- */

static const char *const words[] = {"a", "bc", "déf", "ghij", "κλμ", "😀", " ", "xyz\n"};

static td_crdt_value random_scalar(void)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    switch (it_below(5)) {
    case 0: v.type = TD_CRDT_V_NULL; break;
    case 1: v.type = it_below(2) ? TD_CRDT_V_TRUE : TD_CRDT_V_FALSE; break;
    case 2: v.type = TD_CRDT_V_INT; v.u.i = (int64_t)it_below(1000000) - 500000; break;
    case 3: v.type = TD_CRDT_V_FLOAT; v.u.f = (double)it_below(1000) / 8.0; break;
    default: {
        const char *w = words[it_below(sizeof words / sizeof words[0])];
        v.type = TD_CRDT_V_STR;
        v.u.str.ptr = w;
        v.u.str.len = strlen(w);
    }
    }
    return v;
}

static void edit_text(td_crdt_doc *doc, td_crdt_obj t)
{
    size_t len = td_crdt_text_length(doc, t);
    if (len > 0 && it_below(3) == 0) {
        size_t pos = it_below((uint32_t)len);
        size_t cnt = 1 + it_below(3);
        if (pos + cnt > len)
            cnt = len - pos;
        CHECK(td_crdt_text_delete(doc, t, pos, cnt) == TD_CRDT_OK);
    } else {
        const char *w = words[it_below(sizeof words / sizeof words[0])];
        CHECK(td_crdt_text_insert(doc, t, it_below((uint32_t)len + 1), w, strlen(w)) ==
              TD_CRDT_OK);
    }
}

static void edit_list(td_crdt_doc *doc, td_crdt_obj l, int depth)
{
    size_t len = td_crdt_list_length(doc, l);
    uint32_t r = it_below(6);
    if (len > 0 && r == 0) {
        CHECK(td_crdt_list_delete(doc, l, it_below((uint32_t)len), 1) == TD_CRDT_OK);
    } else if (r == 1 && depth < 3) {
        td_crdt_obj o;
        td_crdt_kind k = (td_crdt_kind)(1 + it_below(3));
        CHECK(td_crdt_list_insert_obj(doc, l, it_below((uint32_t)len + 1), k, &o) ==
              TD_CRDT_OK);
    } else if (len > 0 && r == 2) {
        /* edit inside a nested object if the element is one */
        td_crdt_value v;
        CHECK(td_crdt_list_get(doc, l, it_below((uint32_t)len), &v) == TD_CRDT_OK);
        if (v.type == TD_CRDT_V_OBJ) {
            if (v.obj_kind == TD_CRDT_TEXT)
                edit_text(doc, v.u.obj);
            else if (v.obj_kind == TD_CRDT_LIST)
                edit_list(doc, v.u.obj, depth + 1);
            else {
                td_crdt_value s = random_scalar();
                CHECK(td_crdt_map_set(doc, v.u.obj, "n", 1, &s) == TD_CRDT_OK);
            }
        }
    } else {
        td_crdt_value v = random_scalar();
        CHECK(td_crdt_list_insert(doc, l, it_below((uint32_t)len + 1), &v, 1) == TD_CRDT_OK);
    }
}

static void edit_map(td_crdt_doc *doc, td_crdt_obj m)
{
    char key[8];
    snprintf(key, sizeof key, "k%u", it_below(12));
    uint32_t r = it_below(8);
    if (r == 0) {
        CHECK(td_crdt_map_delete(doc, m, key, strlen(key)) == TD_CRDT_OK);
    } else if (r == 1) {
        /* a nested object filled in the same batch */
        td_crdt_obj o;
        td_crdt_kind k = (td_crdt_kind)(1 + it_below(3));
        td_crdt_value v = random_scalar();
        CHECK(td_crdt_map_set_obj(doc, m, key, strlen(key), k, &o) == TD_CRDT_OK);
        if (k == TD_CRDT_TEXT)
            CHECK(td_crdt_text_insert(doc, o, 0, "n", 1) == TD_CRDT_OK);
        else if (k == TD_CRDT_LIST)
            CHECK(td_crdt_list_insert(doc, o, 0, &v, 1) == TD_CRDT_OK);
        else
            CHECK(td_crdt_map_set(doc, o, "n", 1, &v) == TD_CRDT_OK);
    } else {
        td_crdt_value v = random_scalar();
        CHECK(td_crdt_map_set(doc, m, key, strlen(key), &v) == TD_CRDT_OK);
    }
}

void it_random_edits(td_crdt_doc *doc, int n)
{
    td_crdt_obj t, l, m;
    CHECK(td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    CHECK(td_crdt_root(doc, TD_CRDT_LIST, "cards", 5, &l) == TD_CRDT_OK);
    CHECK(td_crdt_root(doc, TD_CRDT_MAP, "meta", 4, &m) == TD_CRDT_OK);
    for (int i = 0; i < n; i++) {
        switch (it_below(3)) {
        case 0: edit_text(doc, t); break;
        case 1: edit_list(doc, l, 0); break;
        default: edit_map(doc, m); break;
        }
    }
}

/* ---- tokens, raw exchanges, checks (issue 10) ----------------------------- */

static char g_keydir[600];

static void rm_keydir(void)
{
    if (g_keydir[0])
        td_cli_rm_rf(g_keydir);
    g_keydir[0] = 0;
}

static char *run_trimmed(const char *const *argv)
{
    char *out = NULL;
    int rc = td_cli_run(argv, &out, NULL);
    CHECK_MSG(rc == 0 && out, "%s %s exited %d", argv[0], argv[1], rc);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
    return out;
}

const char *it_keygen(void)
{
    static char key[700];
    static int n;
    if (!g_keydir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_keydir, sizeof g_keydir, "%s/tandem-it-keys-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        CHECK(mkdtemp(g_keydir) != NULL);
        atexit(rm_keydir);
    }
    snprintf(key, sizeof key, "%s/key%d", g_keydir, n++);
    const char *argv[] = {g_bin, "keygen", "--out", key, NULL};
    free(run_trimmed(argv));
    return key;
}

char *it_token(const char *key, const char *user, const char *pattern, const char *rights,
               const char *ttl)
{
    const char *argv[] = {g_bin,     "token",  "--key",  key,   "--user", user, "--doc",
                          pattern,   "--rights", rights, "--ttl", ttl,     NULL};
    return run_trimmed(argv);
}

td_cli_doc *it_open_doc(td_cli_server *s, const char *token, uint64_t agent, const char *doc)
{
    td_cli_conn_opts o = {0};
    o.token = token;
    o.agent = agent;
    td_cli_conn *c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(c != NULL);
    td_cli_doc *d = td_cli_subscribe(c, doc, NULL);
    CHECK(d != NULL);
    CHECK_MSG(it_wait_ready(c, 10000), "no WELCOME (closed %d)", td_cli_close_code(c));
    CHECK_MSG(it_wait_docs_synced(&d, 1, 10000), "no SYNC of %s", doc);
    return d;
}

td_crdt_doc *it_replica(uint64_t agent)
{
    td_crdt_options o = {0};
    o.agent = agent;
    td_crdt_doc *r = NULL;
    CHECK(td_crdt_doc_new(&o, &r) == TD_CRDT_OK);
    return r;
}

void it_text_append(td_crdt_doc *r, const char *text)
{
    td_crdt_obj t;
    CHECK(td_crdt_root(r, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    CHECK(td_crdt_text_insert(r, t, td_crdt_text_length(r, t), text, strlen(text)) ==
          TD_CRDT_OK);
}

td_cli_conn *it_raw_connect(td_cli_server *s, const char *token, uint64_t agent)
{
    td_cli_conn_opts o = {0};
    o.raw = 1;
    td_cli_conn *c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(c != NULL);
    CHECK_MSG(td_cli_wait_open(c, 10000), "raw connection to %s did not open", s->url);
    td_cli_buf b = {0};
    td_cli_put_u8(&b, TD_CLI_HELLO);
    td_cli_put_varint(&b, 1);
    td_cli_put_bytes(&b, token, token ? strlen(token) : 0);
    td_cli_put_varint(&b, agent);
    CHECK(!b.oom && td_cli_send_raw(c, b.data, b.len, 0) == 0);
    td_cli_buf_free(&b);
    td_cli_msg *m = td_cli_expect(c, TD_CLI_WELCOME, 10000);
    CHECK_MSG(m != NULL, "no WELCOME on a raw connection (closed %d)", td_cli_close_code(c));
    td_cli_msg_free(m);
    return c;
}

void it_raw_subscribe(td_cli_conn *c, const char *doc, td_crdt_doc *replica)
{
    uint8_t *vv = NULL;
    size_t vvlen = 0;
    if (replica)
        CHECK(td_crdt_vv_encode(replica, &vv, &vvlen) == TD_CRDT_OK);
    td_cli_buf b = {0};
    td_cli_put_u8(&b, TD_CLI_SUBSCRIBE);
    td_cli_put_bytes(&b, doc, strlen(doc));
    td_cli_put_bytes(&b, vv, vvlen);
    if (vv)
        td_crdt_buf_free(replica, vv);
    CHECK(!b.oom && td_cli_send_raw(c, b.data, b.len, 0) == 0);
    td_cli_buf_free(&b);
    uint64_t deadline = td_cli_now_us() + 10000000u;
    for (;;) {
        uint64_t now = td_cli_now_us();
        CHECK_MSG(now < deadline, "no SYNC of %s on a raw connection", doc);
        td_cli_msg *m = td_cli_expect(c, TD_CLI_SYNC, (int)((deadline - now) / 1000) + 1);
        CHECK_MSG(m != NULL, "no SYNC of %s on a raw connection (closed %d)", doc,
                  td_cli_close_code(c));
        size_t pos = 1;
        uint64_t idl = 0, bl = 0;
        CHECK(td_cli_get_varint(m->data, m->len, &pos, &idl) == 0 && idl <= m->len - pos);
        int mine = idl == strlen(doc) && memcmp(m->data + pos, doc, idl) == 0;
        pos += idl;
        CHECK(td_cli_get_varint(m->data, m->len, &pos, &bl) == 0 && bl <= m->len - pos);
        if (mine && replica && bl)
            CHECK_MSG(td_crdt_apply(replica, m->data + pos, bl, NULL) == TD_CRDT_OK,
                      "SYNC of %s does not apply: %s", doc, td_crdt_doc_error(replica));
        td_cli_msg_free(m);
        if (mine)
            return;
    }
}

void it_raw_send_update(td_cli_conn *c, const char *doc, uint64_t batch_id,
                        const uint8_t *batch, size_t len)
{
    td_cli_buf b = {0};
    td_cli_put_u8(&b, TD_CLI_UPDATE);
    td_cli_put_bytes(&b, doc, strlen(doc));
    td_cli_put_varint(&b, batch_id);
    td_cli_put_bytes(&b, batch, len);
    CHECK(!b.oom && td_cli_send_raw(c, b.data, b.len, 0) == 0);
    td_cli_buf_free(&b);
}

int it_raw_answer(td_cli_conn *c, const char *doc, uint64_t *batch_id, int timeout_ms)
{
    uint64_t deadline = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    size_t dl = strlen(doc);
    for (;;) {
        uint64_t now = td_cli_now_us();
        if (now >= deadline)
            return -1;
        td_cli_msg *m = td_cli_expect(c, 0, (int)((deadline - now) / 1000) + 1);
        if (!m)
            return -1;
        size_t pos = 1;
        uint64_t code = 0, idl = 0;
        int ack = m->len && m->data[0] == TD_CLI_ACK;
        int err = m->len && m->data[0] == TD_CLI_ERROR;
        /* ACK: doc, batch id; ERROR: code, doc, batch id */
        int ok = (ack || (err && td_cli_get_varint(m->data, m->len, &pos, &code) == 0)) &&
                 td_cli_get_varint(m->data, m->len, &pos, &idl) == 0 && idl <= m->len - pos &&
                 idl == dl && memcmp(m->data + pos, doc, dl) == 0;
        if (ok) {
            pos += idl;
            ok = td_cli_get_varint(m->data, m->len, &pos, batch_id) == 0;
        }
        td_cli_msg_free(m);
        if (ok)
            return ack ? 0 : (int)code;
    }
}

int it_raw_update(td_cli_conn *c, const char *doc, uint64_t batch_id, const uint8_t *batch,
                  size_t len, int timeout_ms)
{
    it_raw_send_update(c, doc, batch_id, batch, len);
    uint64_t deadline = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    for (;;) {
        uint64_t now = td_cli_now_us(), bid = 0;
        int rc = now >= deadline ? -1
                                 : it_raw_answer(c, doc, &bid, (int)((deadline - now) / 1000) + 1);
        if (rc < 0 || bid == batch_id)
            return rc;
    }
}

uint8_t *it_commit(td_crdt_doc *replica, size_t *len)
{
    uint8_t *out = NULL;
    CHECK(td_crdt_commit(replica, &out, len) == TD_CRDT_OK);
    CHECK_MSG(out != NULL, "nothing to commit");
    uint8_t *copy = malloc(*len);
    CHECK(copy != NULL);
    memcpy(copy, out, *len);
    td_crdt_buf_free(replica, out);
    return copy;
}

int it_doc_matches(td_cli_server *s, const char *doc, const char *token, td_cli_doc *d)
{
    char *js = NULL, *mine = td_cli_doc_json(d);
    int st = it_get_doc(s, doc, token, &js);
    int ok = st == 200 && mine && it_json_equal(js, mine);
    if (!ok)
        fprintf(stderr, "GET /docs/%s: %d %.400s\n  replica: %.400s\n", doc, st,
                js ? js : "(none)", mine ? mine : "(null)");
    free(js);
    free(mine);
    return ok;
}

int it_server_alive(const td_cli_server *s)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double it_percentile(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}
