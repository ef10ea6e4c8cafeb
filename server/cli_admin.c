/*
 * cli_admin.c -- the admin verbs that read or maintain a data directory:
 * docs, export, backup, compact, check, delete (import is cli_import.c).
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
    printf("%-24.*s %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
           " %10" PRIu64 "\n",
           (int)i->doc_len, i->doc, i->snap_ops + i->log_ops, i->log_entries,
           i->log_bytes, i->snap_bytes, i->last_seq);
    return 0;
}

int td_srv_cmd_docs(const td_srv_verb *v, int argc, char **argv)
{
    td_srv_args a;
    td_store_error e = {0};
    docs_ctx c = {0, 0};
    td_store *st;
    int rc = td_srv_args_parse(v, argc, argv, TD_SRV_OPT_DATA, 0, 0, &a);

    if (rc >= 0)
        return rc;
    st = td_srv_open_store(v, a.data, TD_SRV_OPEN_READ);
    if (st == NULL)
        return TD_SRV_EXIT_FAIL;
    printf("%-24s %10s %10s %12s %12s %10s\n", "DOC", "OPS", "LOG", "LOG-BYTES",
           "SNAP-BYTES", "SEQ");
    if (td_store_list(st, print_doc, &c, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        rc = TD_SRV_EXIT_FAIL;
    } else if (c.damaged) {
        td_srv_fail(v, "%zu of %zu documents have damaged metadata", c.damaged, c.n);
        rc = TD_SRV_EXIT_FAIL;
    } else {
        rc = TD_SRV_EXIT_OK;
    }
    td_store_close(st);
    return rc;
}

/* ---- export ------------------------------------------------------------- */

int td_srv_cmd_export(const td_srv_verb *v, int argc, char **argv)
{
    td_srv_args a;
    td_store_error e = {0};
    td_crdt_doc *d = NULL;
    td_store *st;
    char *json = NULL;
    size_t len = 0;
    td_crdt_err ce;
    int rc = td_srv_args_parse(v, argc, argv, TD_SRV_OPT_DATA, 1, 1, &a);

    if (rc >= 0)
        return rc;
    if (!td_srv_doc_arg_ok(v, a.pos[0]))
        return TD_SRV_EXIT_USAGE;
    st = td_srv_open_store(v, a.data, TD_SRV_OPEN_READ);
    if (st == NULL)
        return TD_SRV_EXIT_FAIL;
    if (td_store_load(st, a.pos[0], strlen(a.pos[0]), NULL, &d, NULL, &e) !=
        TD_STORE_OK) {
        td_srv_fail(v, "%s (data directory %s)", e.msg, a.data);
        td_store_close(st);
        return TD_SRV_EXIT_FAIL;
    }
    ce = td_crdt_to_json(d, &json, &len);
    if (ce != TD_CRDT_OK) {
        td_srv_fail(v, "document '%s' cannot be rendered as JSON: %s (%s)", a.pos[0],
                    td_crdt_strerror(ce), td_crdt_doc_error(d));
        rc = TD_SRV_EXIT_FAIL;
    } else if (fwrite(json, 1, len, stdout) != len || fputc('\n', stdout) == EOF ||
               fflush(stdout) != 0) {
        td_srv_fail(v, "writing to stdout failed");
        rc = TD_SRV_EXIT_FAIL;
    } else {
        rc = TD_SRV_EXIT_OK;
    }
    if (json)
        td_crdt_buf_free(d, json);
    td_crdt_doc_free(d);
    td_store_close(st);
    return rc;
}

/* ---- backup ------------------------------------------------------------- */

int td_srv_cmd_backup(const td_srv_verb *v, int argc, char **argv)
{
    td_srv_args a;
    td_store_error e = {0};
    td_store *st;
    int rc = td_srv_args_parse(v, argc, argv, TD_SRV_OPT_DATA, 1, 1, &a);

    if (rc >= 0)
        return rc;
    st = td_srv_open_store(v, a.data, TD_SRV_OPEN_WRITE);
    if (st == NULL)
        return TD_SRV_EXIT_FAIL;
    if (td_store_checkpoint(st, a.pos[0], &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        rc = TD_SRV_EXIT_FAIL;
    } else {
        fprintf(stderr, "tandem backup: %s written; it opens as a data directory "
                        "(--data %s)\n",
                a.pos[0], a.pos[0]);
        rc = TD_SRV_EXIT_OK;
    }
    td_store_close(st);
    return rc;
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
static int target_docs(const td_srv_verb *v, td_store *st, const td_srv_args *a,
                       names *ns)
{
    td_store_error e = {0};
    memset(ns, 0, sizeof *ns);
    if (a->npos == 1) {
        td_store_doc_info info;
        if (!td_srv_doc_arg_ok(v, a->pos[0]))
            return TD_SRV_EXIT_USAGE;
        if (td_store_doc_stat(st, a->pos[0], strlen(a->pos[0]), &info, &e) ==
            TD_STORE_ERR_NOT_FOUND) {
            td_srv_fail(v, "%s in data directory %s", e.msg, a->data);
            return TD_SRV_EXIT_FAIL;
        }
        td_store_doc_info one = {0};
        one.doc = a->pos[0];
        one.doc_len = strlen(a->pos[0]);
        return collect_name(ns, &one) ? TD_SRV_EXIT_FAIL : -1;
    }
    if (td_store_list(st, collect_name, ns, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        return TD_SRV_EXIT_FAIL;
    }
    return -1;
}

/* The common start of verbs that act on [DOC] or every document: parse the
 * arguments, open the store in `mode`, list the target documents. Returns -1
 * with *st and *ns set, or an exit code (nothing left open). */
static int open_targets(const td_srv_verb *v, int argc, char **argv, td_srv_open_mode mode,
                        td_srv_args *a, td_store **st, names *ns)
{
    int rc = td_srv_args_parse(v, argc, argv, TD_SRV_OPT_DATA, 0, 1, a);
    if (rc >= 0)
        return rc;
    *st = td_srv_open_store(v, a->data, mode);
    if (*st == NULL)
        return TD_SRV_EXIT_FAIL;
    rc = target_docs(v, *st, a, ns);
    if (rc >= 0)
        td_store_close(*st);
    return rc;
}

int td_srv_cmd_compact(const td_srv_verb *v, int argc, char **argv)
{
    td_srv_args a;
    td_store_error e = {0};
    td_store_stats before, after;
    td_store *st;
    names ns;
    size_t failed = 0;
    int rc = open_targets(v, argc, argv, TD_SRV_OPEN_WRITE, &a, &st, &ns);

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
    printf("data directory %s: %" PRIu64 " bytes before, %" PRIu64 " after\n", a.data,
           before.disk_bytes, after.disk_bytes);
    names_free(&ns);
    td_store_close(st);
    return failed ? TD_SRV_EXIT_FAIL : TD_SRV_EXIT_OK;
}

/* ---- check -------------------------------------------------------------- */

int td_srv_cmd_check(const td_srv_verb *v, int argc, char **argv)
{
    td_srv_args a;
    td_store *st;
    names ns;
    size_t bad = 0;
    int rc = open_targets(v, argc, argv, TD_SRV_OPEN_READ, &a, &st, &ns);

    if (rc >= 0)
        return rc;
    for (size_t i = 0; i < ns.n; i++) {
        td_store_error e = {0};
        td_store_doc_info info;
        td_crdt_doc *d;
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
    td_store_close(st);
    return bad ? TD_SRV_EXIT_FAIL : TD_SRV_EXIT_OK;
}

/* ---- delete ------------------------------------------------------------- */

int td_srv_cmd_delete(const td_srv_verb *v, int argc, char **argv)
{
    td_srv_args a;
    td_store_error e = {0};
    td_store *st;
    int rc = td_srv_args_parse(v, argc, argv, TD_SRV_OPT_DATA, 1, 1, &a);

    if (rc >= 0)
        return rc;
    if (!td_srv_doc_arg_ok(v, a.pos[0]))
        return TD_SRV_EXIT_USAGE;
    st = td_srv_open_store(v, a.data, TD_SRV_OPEN_WRITE);
    if (st == NULL)
        return TD_SRV_EXIT_FAIL;
    if (td_store_delete(st, a.pos[0], strlen(a.pos[0]), &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s in data directory %s", e.msg, a.data);
        rc = TD_SRV_EXIT_FAIL;
    } else {
        rc = TD_SRV_EXIT_OK;
    }
    td_store_close(st);
    return rc;
}
