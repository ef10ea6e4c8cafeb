/*
 * cli_import.c -- `tandem import DOC FILE`: a JSON object becomes a
 * document, built with the CRDT API and stored as one batch.
 *
 * The mapping is the inverse of td_crdt_to_json(), so that export after
 * import gives the same JSON back:
 *   top level   object; each key is a root: string -> text, array -> list,
 *               object -> map. A key "name@text" / "name@list" / "name@map"
 *               names the root `name` of that kind explicitly (to_json writes
 *               such keys when one name is used by several kinds).
 *   in lists and maps
 *               array -> nested list, object -> nested map, string -> string
 *               value, true/false/null -> those scalars, number -> integer if
 *               integral and within int64, else float (-0 stays a float).
 * cJSON parses numbers as doubles, so integers beyond 2^53 lose precision.
 * Errors name the JSON path (e.g. /cards/3/title) and what was wrong.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_srv_cli.h"

#define MAX_INPUT ((size_t)256 << 20)

static int import(const td_srv_verb *v, void *args);

static const td_srv_opt import_opts[] = {
    TD_SRV_OPT_DATA_ROW,
    {.name = "force", .kind = TD_SRV_OPT_FLAG, .off = offsetof(td_srv_admin_args, force),
     .help = "replace DOC if it exists"},
    {.name = "yjs", .kind = TD_SRV_OPT_FLAG, .off = offsetof(td_srv_admin_args, yjs),
     .help = "FILE is a binary Yjs v1 update: DOC becomes a Yjs document"},
};
static const td_srv_pos import_pos[] = {{"DOC", offsetof(td_srv_admin_args, doc), 0, 1},
                                        {"FILE", offsetof(td_srv_admin_args, file), 0, 0}};

const td_srv_verb td_srv_verb_import = {
    "import", "create a document from a JSON file",
    "Creates DOC from the JSON object in FILE ('-' reads stdin). Each top-level\n"
    "key names a root: a string becomes a text, an array a list, an object a\n"
    "map (a key ending in @text, @list or @map picks the kind explicitly, as\n"
    "`tandem export` writes it for names used by several kinds). Inside lists\n"
    "and maps, arrays and objects become nested lists and maps, strings are\n"
    "string values, numbers are integers when integral and within 64 bits,\n"
    "else floats. The whole document is stored as one batch.\n"
    "With --yjs, FILE is one binary Yjs v1 update (Y.encodeStateAsUpdate, or\n"
    "`tandem export --format update`) and DOC becomes a Yjs document, served\n"
    "at /yjs/DOC and /hocuspocus.\n"
    "Refuses to touch an existing document unless --force is given, which\n"
    "deletes it first (clients holding a copy would sync their old state back:\n"
    "do this with the server stopped and clients reset).\n",
    import_opts, TD_SRV_LEN(import_opts), import_pos, TD_SRV_LEN(import_pos),
    sizeof(td_srv_admin_args), import};

typedef struct import_ctx {
    const td_srv_verb *v;
    td_crdt_doc *d;
    char path[1024];
} import_ctx;

static char *read_all(const char *file, size_t *len, char *why, size_t whylen)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL) {
        snprintf(why, whylen, "cannot open %s: %s", file, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t got;
        if (n + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            char *nb = ncap > MAX_INPUT + 1 ? NULL : realloc(buf, ncap);
            if (nb == NULL) {
                snprintf(why, whylen, "%s is too large (limit %zu bytes)", file,
                         MAX_INPUT);
                free(buf);
                if (f != stdin)
                    fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(why, whylen, "reading %s failed: %s", file, strerror(errno));
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0';
        *len = n;
    }
    if (f != stdin)
        fclose(f);
    return buf;
}

static int fail_at(import_ctx *c, const char *fmt, const char *detail)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail);
    td_srv_fail(c->v, "at %s: %s", c->path[0] ? c->path : "/", msg);
    return -1;
}

static int crdt_fail(import_ctx *c, td_crdt_err ce)
{
    char detail[400];
    snprintf(detail, sizeof detail, "%s (%s)", td_crdt_strerror(ce),
             td_crdt_doc_error(c->d));
    return fail_at(c, "the document rejected it: %s", detail);
}

/* Appends "/seg" to the path; returns the old length to restore. */
static size_t path_push(import_ctx *c, const char *seg, size_t seglen)
{
    size_t old = strlen(c->path), room = sizeof c->path - old;
    if (room > 2)
        snprintf(c->path + old, room, "/%.*s", (int)(seglen < room - 2 ? seglen : room - 2),
                 seg);
    return old;
}

static size_t path_push_index(import_ctx *c, size_t i)
{
    char num[32];
    snprintf(num, sizeof num, "%zu", i);
    return path_push(c, num, strlen(num));
}

/* A JSON scalar as a CRDT value; 0 if it is not a scalar. */
static int scalar_of(const cJSON *j, td_crdt_value *out)
{
    memset(out, 0, sizeof *out);
    if (cJSON_IsNull(j)) {
        out->type = TD_CRDT_V_NULL;
    } else if (cJSON_IsFalse(j)) {
        out->type = TD_CRDT_V_FALSE;
    } else if (cJSON_IsTrue(j)) {
        out->type = TD_CRDT_V_TRUE;
    } else if (cJSON_IsString(j)) {
        out->type = TD_CRDT_V_STR;
        out->u.str.ptr = j->valuestring;
        out->u.str.len = strlen(j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        double x = j->valuedouble;
        /* 2^63 is exactly representable; int64 is [-2^63, 2^63). */
        if (isfinite(x) && x == floor(x) && x >= -9223372036854775808.0 &&
            x < 9223372036854775808.0 && !(x == 0 && signbit(x))) {
            out->type = TD_CRDT_V_INT;
            out->u.i = (int64_t)x;
        } else {
            out->type = TD_CRDT_V_FLOAT;
            out->u.f = x;
        }
    } else {
        return 0;
    }
    return 1;
}

static int fill_list(import_ctx *c, td_crdt_obj list, const cJSON *arr);
static int fill_map(import_ctx *c, td_crdt_obj map, const cJSON *obj);

static td_crdt_kind kind_of(const cJSON *j)
{
    return cJSON_IsArray(j) ? TD_CRDT_LIST : cJSON_IsObject(j) ? TD_CRDT_MAP : 0;
}

static int fill_obj(import_ctx *c, td_crdt_obj obj, const cJSON *j)
{
    return cJSON_IsArray(j) ? fill_list(c, obj, j) : fill_map(c, obj, j);
}

static int fill_list(import_ctx *c, td_crdt_obj list, const cJSON *arr)
{
    size_t i = 0;
    const cJSON *el;
    cJSON_ArrayForEach(el, arr) {
        size_t old = path_push_index(c, i);
        td_crdt_value val;
        td_crdt_err ce;
        if (scalar_of(el, &val)) {
            ce = td_crdt_list_insert(c->d, list, i, &val, 1);
        } else {
            td_crdt_obj child;
            ce = td_crdt_list_insert_obj(c->d, list, i, kind_of(el), &child);
            if (ce == TD_CRDT_OK && fill_obj(c, child, el) != 0)
                return -1;
        }
        if (ce != TD_CRDT_OK)
            return crdt_fail(c, ce);
        c->path[old] = '\0';
        i++;
    }
    return 0;
}

static int fill_map(import_ctx *c, td_crdt_obj map, const cJSON *obj)
{
    const cJSON *el;
    cJSON_ArrayForEach(el, obj) {
        size_t klen = strlen(el->string), old = path_push(c, el->string, klen);
        td_crdt_value val;
        td_crdt_err ce;
        if (scalar_of(el, &val)) {
            ce = td_crdt_map_set(c->d, map, el->string, klen, &val);
        } else {
            td_crdt_obj child;
            ce = td_crdt_map_set_obj(c->d, map, el->string, klen, kind_of(el), &child);
            if (ce == TD_CRDT_OK && fill_obj(c, child, el) != 0)
                return -1;
        }
        if (ce != TD_CRDT_OK)
            return crdt_fail(c, ce);
        c->path[old] = '\0';
    }
    return 0;
}

/* A top-level key: its root name and kind. */
static int root_of(import_ctx *c, const cJSON *el, size_t *name_len,
                   td_crdt_kind *kind)
{
    static const struct {
        const char *suffix;
        td_crdt_kind kind;
    } suffixes[] = {{"@text", TD_CRDT_TEXT}, {"@list", TD_CRDT_LIST}, {"@map", TD_CRDT_MAP}};
    size_t len = strlen(el->string);
    td_crdt_kind want = cJSON_IsString(el) ? TD_CRDT_TEXT : kind_of(el);

    *name_len = len;
    *kind = want;
    if (want == 0)
        return fail_at(c, "%s cannot be a root: roots are text (a string), list "
                          "(an array) or map (an object)",
                       cJSON_IsNumber(el) ? "a number" : "a true/false/null value");
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t sl = strlen(suffixes[i].suffix);
        if (len > sl && strcmp(el->string + len - sl, suffixes[i].suffix) == 0) {
            if (suffixes[i].kind != want)
                return fail_at(c, "the key says %s but the value is another kind",
                               suffixes[i].suffix + 1);
            *name_len = len - sl;
        }
    }
    return 0;
}

static int build(import_ctx *c, const cJSON *top)
{
    const cJSON *el;
    if (!cJSON_IsObject(top))
        return fail_at(c, "%s", "the top level must be a JSON object whose keys "
                                "are root names");
    cJSON_ArrayForEach(el, top) {
        size_t name_len, old = path_push(c, el->string, strlen(el->string));
        td_crdt_kind kind;
        td_crdt_obj root;
        td_crdt_err ce;
        if (root_of(c, el, &name_len, &kind) != 0)
            return -1;
        ce = td_crdt_root(c->d, kind, el->string, name_len, &root);
        if (ce != TD_CRDT_OK)
            return crdt_fail(c, ce);
        if (kind == TD_CRDT_TEXT) {
            const char *s = el->valuestring;
            if (s[0] && (ce = td_crdt_text_insert(c->d, root, 0, s, strlen(s))) !=
                            TD_CRDT_OK)
                return crdt_fail(c, ce);
        } else if (fill_obj(c, root, el) != 0) {
            return -1;
        }
        c->path[old] = '\0';
    }
    return 0;
}

/* Stores one batch as the whole document DOC (replacing it with --force). */
static int store_batch(const td_srv_verb *v, const td_srv_admin_args *a, td_store_batch *b)
{
    const char *doc = a->doc;
    size_t doc_len = strlen(doc);
    td_store_error e = {0};
    td_store_doc_info info;
    td_store *st;
    uint64_t seq;
    int rc = TD_SRV_EXIT_FAIL;

    st = td_srv_open_store(v, a->data, TD_SRV_OPEN_CREATE);
    if (st == NULL)
        return rc;
    if (td_store_doc_stat(st, doc, doc_len, &info, &e) != TD_STORE_ERR_NOT_FOUND) {
        if (!a->force) {
            td_srv_fail(v, "document '%s' already exists in %s; use --force to "
                           "replace it",
                        doc, a->data);
            goto out;
        }
        if (td_store_delete(st, doc, doc_len, &e) != TD_STORE_OK) {
            td_srv_fail(v, "replacing '%s': %s", doc, e.msg);
            goto out;
        }
    }
    b->doc = doc;
    b->doc_len = doc_len;
    if (td_store_append_wait(st, b, &seq, &e) != TD_STORE_OK) {
        td_srv_fail(v, "storing '%s' failed: %s", doc, e.msg);
        goto out;
    }
    fprintf(stderr, "tandem import: '%s' created in %s (%s, %llu ops, %zu bytes)\n", doc,
            a->data, td_store_kind_name(b->kind), (unsigned long long)b->nops, b->ops_len);
    rc = TD_SRV_EXIT_OK;
out:
    td_store_close(st);
    return rc;
}

/* Stores the built document as one batch. */
static int store_doc(const td_srv_verb *v, const td_srv_admin_args *a, td_crdt_doc *d)
{
    uint8_t *batch = NULL, *vv = NULL;
    size_t blen = 0, vlen = 0;
    td_store_batch b;
    int rc = TD_SRV_EXIT_FAIL;

    if (td_crdt_commit(d, &batch, &blen) != TD_CRDT_OK ||
        td_crdt_vv_encode(d, &vv, &vlen) != TD_CRDT_OK) {
        td_srv_fail(v, "encoding the document failed: %s", td_crdt_doc_error(d));
    } else if (blen == 0) {
        td_srv_fail(v, "%s holds no content to import (empty object, or only "
                       "empty roots)",
                    a->file);
    } else {
        memset(&b, 0, sizeof b);
        b.ops = batch;
        b.ops_len = blen;
        b.nops = td_crdt_op_count(d);
        b.vv = vv;
        b.vv_len = vlen;
        rc = store_batch(v, a, &b);
    }
    if (batch)
        td_crdt_buf_free(d, batch);
    if (vv)
        td_crdt_buf_free(d, vv);
    return rc;
}

/* --yjs: the update must apply to an empty Yjs document as a whole (no
 * missing dependencies); it is stored as it came. */
static int import_yjs(const td_srv_verb *v, const td_srv_admin_args *a, const uint8_t *upd,
                      size_t len)
{
    td_yjs_doc *d = NULL;
    uint8_t *sv = NULL;
    size_t svlen = 0;
    td_yjs_stats ys;
    td_store_batch b;
    int rc = TD_SRV_EXIT_FAIL;
    td_yjs_err ye = td_yjs_doc_new(NULL, &d);

    if (ye == TD_YJS_OK)
        ye = td_yjs_apply_update(d, upd, len);
    if (ye != TD_YJS_OK) {
        td_srv_fail(v, "%s is not a valid Yjs v1 update: %s (%s)", a->file,
                    td_yjs_strerror(ye), d ? td_yjs_doc_error(d) : "");
        goto out;
    }
    td_yjs_doc_stats(d, &ys);
    if (ys.pending_structs || ys.pending_deletes) {
        td_srv_fail(v, "%s depends on updates it does not hold (%zu structs, %zu "
                       "deletions wait for them)",
                    a->file, ys.pending_structs, ys.pending_deletes);
        goto out;
    }
    if (ys.structs == 0) {
        td_srv_fail(v, "%s holds no content to import", a->file);
        goto out;
    }
    if (td_yjs_encode_state_vector(d, &sv, &svlen) != TD_YJS_OK) {
        td_srv_fail(v, "out of memory");
        goto out;
    }
    memset(&b, 0, sizeof b);
    b.ops = upd;
    b.ops_len = len;
    b.nops = ys.structs;
    b.vv = sv;
    b.vv_len = svlen;
    b.kind = TD_STORE_KIND_YJS;
    rc = store_batch(v, a, &b);
out:
    if (sv)
        td_yjs_buf_free(d, sv);
    td_yjs_doc_free(d);
    return rc;
}

static int import(const td_srv_verb *v, void *args)
{
    const td_srv_admin_args *a = args;
    import_ctx c;
    td_crdt_options co = {0};
    cJSON *top;
    const char *end = NULL;
    char *text, why[600];
    size_t len = 0;
    int rc;

    text = read_all(a->file, &len, why, sizeof why);
    if (text == NULL) {
        td_srv_fail(v, "%s", why);
        return TD_SRV_EXIT_FAIL;
    }
    if (a->yjs) {
        rc = import_yjs(v, a, (const uint8_t *)text, len);
        free(text);
        return rc;
    }
    /* require_null_terminated is not used: cJSON 1.7.15 rejects a document
     * followed by whitespace with it; trailing bytes are checked here. */
    top = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (top != NULL) {
        while (end && (size_t)(end - text) < len && strchr(" \t\r\n", *end) && *end)
            end++;
        if (end == NULL || (size_t)(end - text) != len) {
            cJSON_Delete(top);
            top = NULL;
        }
    }
    if (top == NULL) {
        size_t off = end ? (size_t)(end - text) : 0, line = 1;
        for (size_t i = 0; i < off && i < len; i++)
            line += text[i] == '\n';
        td_srv_fail(v, "%s is not valid JSON (near byte %zu, line %zu)", a->file, off,
                    line);
        free(text);
        return TD_SRV_EXIT_FAIL;
    }
    if (sodium_init() < 0) {
        td_srv_fail(v, "libsodium failed to initialise");
        cJSON_Delete(top);
        free(text);
        return TD_SRV_EXIT_FAIL;
    }
    /* A fresh replica id: the imported ops belong to no one else. */
    randombytes_buf(&co.agent, sizeof co.agent);
    memset(&c, 0, sizeof c);
    c.v = v;
    rc = TD_SRV_EXIT_FAIL;
    if (td_crdt_doc_new(&co, &c.d) != TD_CRDT_OK) {
        td_srv_fail(v, "out of memory");
    } else if (build(&c, top) == 0) {
        rc = store_doc(v, a, c.d);
    }
    if (c.d)
        td_crdt_doc_free(c.d);
    cJSON_Delete(top);
    free(text);
    return rc;
}
