/*
 * cli_admin.c -- the admin verbs that read or maintain a data directory:
 * docs, export, backup, compact, check, delete (import is cli_import.c),
 * each an act on the data directory that admin_run opens for it.
 *
 * Verbs that only read open the directory read-only, which RocksDB allows
 * next to a running server; verbs that write need its lock and say so when
 * a server holds it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_srv_cli.h"

/* ---- shared ------------------------------------------------------------- */

td_store *td_srv_open_store(const td_srv_verb *v, const char *dir,
                            td_srv_open_mode mode)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st = NULL;

    o.read_only = mode == TD_SRV_OPEN_READ;
    o.create_if_missing = mode == TD_SRV_OPEN_CREATE;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    if (td_store_open(dir, &o, &st, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        return NULL;
    }
    return st;
}

static const td_srv_opt data_opt[] = {TD_SRV_OPT_DATA_ROW};
static const td_srv_pos doc_pos[] = {{"DOC", offsetof(td_srv_admin_args, doc), 0, 1}};
static const td_srv_pos doc_opt_pos[] = {{"DOC", offsetof(td_srv_admin_args, doc), 1, 1}};
static const td_srv_pos dir_pos[] = {{"DIR", offsetof(td_srv_admin_args, dir), 0, 0}};

/* Every admin verb but import: open the store, act, close it. */
static int admin_run(const td_srv_verb *v, void *args)
{
    const td_srv_admin_verb *av = (const td_srv_admin_verb *)v; /* its first member */
    const td_srv_admin_args *a = args;
    td_store *st = td_srv_open_store(v, a->data, av->mode);
    int rc;

    if (st == NULL)
        return TD_SRV_EXIT_FAIL;
    rc = av->act(v, a, st);
    td_store_close(st);
    return rc;
}

#define ADMIN_VERB(name, summary, about, pos, npos, mode, act)                      \
    {{name, summary, about, data_opt, 1, pos, npos, sizeof(td_srv_admin_args),      \
      admin_run},                                                                   \
     mode, act}

/* ---- docs --------------------------------------------------------------- */

typedef struct docs_ctx {
    size_t n, damaged;
} docs_ctx;

static int print_doc(void *ud, const td_store_doc_info *i)
{
    docs_ctx *c = ud;
    c->n++;
    if (i->status != TD_STORE_OK) {
        c->damaged++;
        printf("%-24.*s  DAMAGED: %s\n", (int)i->doc_len, i->doc, i->msg);
        return 0;
    }
    printf("%-24.*s %-6s %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
           " %10" PRIu64 "\n",
           (int)i->doc_len, i->doc, td_store_kind_name(i->kind), i->snap_ops + i->log_ops,
           i->log_entries, i->log_bytes, i->snap_bytes, i->last_seq);
    return 0;
}

static int docs(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};
    docs_ctx c = {0, 0};

    (void)a;
    printf("%-24s %-6s %10s %10s %12s %12s %10s\n", "DOC", "KIND", "OPS", "LOG", "LOG-BYTES",
           "SNAP-BYTES", "SEQ");
    if (td_store_list(st, print_doc, &c, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        return TD_SRV_EXIT_FAIL;
    }
    if (c.damaged) {
        td_srv_fail(v, "%zu of %zu documents have damaged metadata", c.damaged, c.n);
        return TD_SRV_EXIT_FAIL;
    }
    return TD_SRV_EXIT_OK;
}

/* ---- export ------------------------------------------------------------- */

/* Writes len bytes and, for text, a newline to stdout. */
static int put_out(const td_srv_verb *v, const void *p, size_t len, int text)
{
    if (fwrite(p, 1, len, stdout) != len || (text && fputc('\n', stdout) == EOF) ||
        fflush(stdout) != 0) {
        td_srv_fail(v, "writing to stdout failed");
        return TD_SRV_EXIT_FAIL;
    }
    return TD_SRV_EXIT_OK;
}

static int export_tandem(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};
    td_crdt_doc *d = NULL;
    char *json = NULL;
    size_t len = 0;
    td_crdt_err ce;
    int rc;

    if (strcmp(a->format, "json") != 0) {
        td_srv_fail(v, "'%s' is a tandem document: it exports as json only", a->doc);
        return TD_SRV_EXIT_FAIL;
    }
    if (td_store_load(st, a->doc, strlen(a->doc), NULL, &d, NULL, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s (data directory %s)", e.msg, a->data);
        return TD_SRV_EXIT_FAIL;
    }
    ce = td_crdt_to_json(d, &json, &len);
    if (ce != TD_CRDT_OK) {
        td_srv_fail(v, "document '%s' cannot be rendered as JSON: %s (%s)", a->doc,
                    td_crdt_strerror(ce), td_crdt_doc_error(d));
        rc = TD_SRV_EXIT_FAIL;
    } else {
        rc = put_out(v, json, len, 1);
    }
    if (json)
        td_crdt_buf_free(d, json);
    td_crdt_doc_free(d);
    return rc;
}

/* A Yjs document: as JSON (td_yjs_to_json), or as one Yjs v1 update of the
 * whole document (Y.encodeStateAsUpdate), which Y.applyUpdate or `tandem
 * import --yjs` read back. */
static int export_yjs(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};
    td_yjs_doc *d = NULL;
    uint8_t *out = NULL;
    size_t len = 0;
    int as_json = strcmp(a->format, "json") == 0;
    td_yjs_err ye;
    int rc;

    if (td_store_load_yjs(st, a->doc, strlen(a->doc), NULL, &d, NULL, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s (data directory %s)", e.msg, a->data);
        return TD_SRV_EXIT_FAIL;
    }
    ye = as_json ? td_yjs_to_json(d, 0, (char **)&out, &len)
                 : td_yjs_encode_state_as_update(d, NULL, 0, &out, &len);
    if (ye != TD_YJS_OK) {
        td_srv_fail(v, "document '%s' cannot be written: %s (%s)", a->doc,
                    td_yjs_strerror(ye), td_yjs_doc_error(d));
        rc = TD_SRV_EXIT_FAIL;
    } else {
        rc = put_out(v, out, len, as_json);
    }
    if (out)
        td_yjs_buf_free(d, out);
    td_yjs_doc_free(d);
    return rc;
}

static int export(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};
    td_store_doc_info info;

    if (strcmp(a->format, "json") != 0 && strcmp(a->format, "update") != 0) {
        td_srv_fail(v, "--format must be json or update, not '%s'", a->format);
        return TD_SRV_EXIT_USAGE;
    }
    if (td_store_doc_stat(st, a->doc, strlen(a->doc), &info, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s (data directory %s)", e.msg, a->data);
        return TD_SRV_EXIT_FAIL;
    }
    return info.kind == TD_STORE_KIND_YJS ? export_yjs(v, a, st) : export_tandem(v, a, st);
}

/* ---- backup ------------------------------------------------------------- */

static int backup(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};

    if (td_store_checkpoint(st, a->dir, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        return TD_SRV_EXIT_FAIL;
    }
    fprintf(stderr, "tandem backup: %s written; it opens as a data directory (--data %s)\n",
            a->dir, a->dir);
    return TD_SRV_EXIT_OK;
}

/* ---- compact ------------------------------------------------------------ */

typedef struct names {
    char **v;
    size_t n, cap;
} names;

static int collect_name(void *ud, const td_store_doc_info *i)
{
    names *ns = ud;
    char *s;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 64;
        char **nv = realloc(ns->v, cap * sizeof *nv);
        if (nv == NULL)
            return 1;
        ns->v = nv;
        ns->cap = cap;
    }
    s = malloc(i->doc_len + 1);
    if (s == NULL)
        return 1;
    memcpy(s, i->doc, i->doc_len);
    s[i->doc_len] = '\0';
    ns->v[ns->n++] = s;
    return 0;
}

static void names_free(names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
}

/* The documents a verb works on: the one named, or all of them. */
static int target_docs(const td_srv_verb *v, td_store *st, const td_srv_admin_args *a,
                       names *ns)
{
    td_store_error e = {0};
    memset(ns, 0, sizeof *ns);
    if (a->doc) {
        td_store_doc_info info;
        if (td_store_doc_stat(st, a->doc, strlen(a->doc), &info, &e) ==
            TD_STORE_ERR_NOT_FOUND) {
            td_srv_fail(v, "%s in data directory %s", e.msg, a->data);
            return TD_SRV_EXIT_FAIL;
        }
        td_store_doc_info one = {0};
        one.doc = a->doc;
        one.doc_len = strlen(a->doc);
        return collect_name(ns, &one) ? TD_SRV_EXIT_FAIL : -1;
    }
    if (td_store_list(st, collect_name, ns, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        return TD_SRV_EXIT_FAIL;
    }
    return -1;
}

static int compact(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};
    td_store_stats before, after;
    names ns;
    size_t failed = 0;
    int rc = target_docs(v, st, a, &ns);

    if (rc >= 0)
        return rc;
    td_store_get_stats(st, &before);
    for (size_t i = 0; i < ns.n; i++) {
        td_store_compact_info info;
        if (td_store_compact(st, ns.v[i], strlen(ns.v[i]), 1, &info, &e) !=
            TD_STORE_OK) {
            td_srv_fail(v, "%s", e.msg);
            failed++;
        } else if (info.compacted) {
            printf("%s: folded %" PRIu64 " log entries (%" PRIu64
                   " bytes) into a %" PRIu64 "-byte snapshot at sequence %" PRIu64 "\n",
                   ns.v[i], info.folded_entries, info.folded_bytes, info.snap_bytes,
                   info.snap_seq);
        } else if (info.pending_ops) {
            printf("%s: not compacted: %" PRIu64 " ops wait for missing "
                   "dependencies\n",
                   ns.v[i], info.pending_ops);
        } else {
            printf("%s: nothing to fold\n", ns.v[i]);
        }
    }
    if (td_store_compact_files(st, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        failed++;
    }
    td_store_get_stats(st, &after);
    printf("data directory %s: %" PRIu64 " bytes before, %" PRIu64 " after\n", a->data,
           before.disk_bytes, after.disk_bytes);
    names_free(&ns);
    return failed ? TD_SRV_EXIT_FAIL : TD_SRV_EXIT_OK;
}

/* ---- check -------------------------------------------------------------- */

static int check(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    names ns;
    size_t bad = 0;
    int rc = target_docs(v, st, a, &ns);

    if (rc >= 0)
        return rc;
    for (size_t i = 0; i < ns.n; i++) {
        td_store_error e = {0};
        td_store_doc_info info;
        td_crdt_doc *d;
        if (td_store_doc_stat(st, ns.v[i], strlen(ns.v[i]), &info, &e) == TD_STORE_OK &&
            info.kind == TD_STORE_KIND_YJS) {
            td_yjs_doc *yd = NULL;
            td_yjs_stats ys;
            if (td_store_load_yjs(st, ns.v[i], strlen(ns.v[i]), NULL, &yd, &info, &e) !=
                TD_STORE_OK) {
                printf("DAMAGED %s\n", e.msg);
                bad++;
                continue;
            }
            td_yjs_doc_stats(yd, &ys);
            printf("ok      %s: Yjs, %zu structs, %" PRIu64 " log entries, %zu pending\n",
                   ns.v[i], ys.structs, info.log_entries, ys.pending_structs);
            td_yjs_doc_free(yd);
            continue;
        }
        if (td_store_load(st, ns.v[i], strlen(ns.v[i]), NULL, &d, &info, &e) !=
            TD_STORE_OK) {
            printf("DAMAGED %s\n", e.msg);
            bad++;
            continue;
        }
        printf("ok      %s: %" PRIu64 " ops, %" PRIu64 " log entries, %zu pending\n",
               ns.v[i], td_crdt_op_count(d), info.log_entries, td_crdt_pending_ops(d));
        td_crdt_doc_free(d);
    }
    if (bad)
        td_srv_fail(v, "%zu of %zu documents failed to load", bad, ns.n);
    names_free(&ns);
    return bad ? TD_SRV_EXIT_FAIL : TD_SRV_EXIT_OK;
}

/* ---- delete ------------------------------------------------------------- */

static int delete(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st)
{
    td_store_error e = {0};

    if (td_store_delete(st, a->doc, strlen(a->doc), &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s in data directory %s", e.msg, a->data);
        return TD_SRV_EXIT_FAIL;
    }
    return TD_SRV_EXIT_OK;
}

/* ---- the verbs ---------------------------------------------------------- */

const td_srv_admin_verb td_srv_verb_docs = ADMIN_VERB(
    "docs", "list the documents with their sizes",
    "Lists every document: its kind (tandem, or yjs for a document written\n"
    "through /yjs or /hocuspocus), ops, log entries after the snapshot, bytes in the\n"
    "log and in the snapshot, and the newest server sequence. Opens the data\n"
    "directory read-only, so it also works while a server is running.\n"
    "Exits 1 if any document's metadata is damaged.\n",
    NULL, 0, TD_SRV_OPEN_READ, docs);
static const td_srv_opt export_opts[] = {
    TD_SRV_OPT_DATA_ROW,
    {.name = "format", .kind = TD_SRV_OPT_STR, .off = offsetof(td_srv_admin_args, format),
     .arg = "json|update", .help = "json, or (Yjs documents) one binary Yjs update",
     .def = "json"},
};
const td_srv_admin_verb td_srv_verb_export = {
    {"export", "print a document as JSON (or a Yjs document as a Yjs update)",
     "Prints the document's content as JSON on stdout (one line, keys in byte\n"
     "order): an object whose keys are the root names; text roots are strings,\n"
     "lists arrays, maps objects. A Yjs document (written through /yjs or\n"
     "/hocuspocus) is written as docs/YJS.md describes, or with --format update\n"
     "as one binary Yjs v1 update of the whole document (Y.applyUpdate reads\n"
     "it; so does `tandem import --yjs`). Read-only, works while a server runs.\n",
     export_opts, TD_SRV_LEN(export_opts), doc_pos, 1, sizeof(td_srv_admin_args),
     admin_run},
    TD_SRV_OPEN_READ,
    export};
const td_srv_admin_verb td_srv_verb_backup = ADMIN_VERB(
    "backup", "write a consistent copy of the data directory",
    "Writes a RocksDB checkpoint of the whole store into DIR, which must not\n"
    "exist yet. DIR is a complete data directory: `tandem VERB --data DIR` and\n"
    "the server open it as it is. Needs the data directory's lock (stop the\n"
    "server first).\n",
    dir_pos, 1, TD_SRV_OPEN_WRITE, backup);
const td_srv_admin_verb td_srv_verb_compact = ADMIN_VERB(
    "compact", "fold logs into snapshots and reclaim disk space",
    "Folds the log of DOC (or of every document) into a new snapshot, whatever\n"
    "the thresholds, then has RocksDB rewrite its files so the space is\n"
    "returned. Needs the data directory's lock.\n",
    doc_opt_pos, 1, TD_SRV_OPEN_WRITE, compact);
const td_srv_admin_verb td_srv_verb_check = ADMIN_VERB(
    "check", "verify that documents load",
    "Loads DOC (or every document) the way the server would -- checksums,\n"
    "snapshot, every log entry through the CRDT core -- and reports each one\n"
    "that fails. Exits 1 if any does. Read-only.\n",
    doc_opt_pos, 1, TD_SRV_OPEN_READ, check);
const td_srv_admin_verb td_srv_verb_delete = ADMIN_VERB(
    "delete", "delete a document",
    "Deletes DOC: its log, snapshot and metadata, in one write. Needs the data\n"
    "directory's lock.\n",
    doc_pos, 1, TD_SRV_OPEN_WRITE, delete);
