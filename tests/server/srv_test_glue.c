/*
 * srv_test_glue.c -- see srv_test_glue.h.
 */
#include "srv_test_glue.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static td_cli_ctx *g_ctx;

int srv_scratch_dir(char *out, size_t outlen, const char *name)
{
    char cmd[1200];
    int n = snprintf(out, outlen, "/tmp/td-srv-%s-%d", name, (int)getpid());
    if (n < 0 || (size_t)n >= outlen || (size_t)n > 500)
        return -1;
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", out, out);
    return system(cmd) == 0 ? 0 : -1;
}

td_cli_ctx *srv_ctx(int deflate)
{
    if (!g_ctx) {
        td_cli_ctx_opts o = {.deflate = deflate};
        g_ctx = td_cli_ctx_new(&o);
    }
    return g_ctx;
}

void srv_ctx_free(void)
{
    td_cli_ctx_free(g_ctx);
    g_ctx = NULL;
}

td_cli_conn *srv_connect(int port, int timeout_ms)
{
    char url[64];
    td_cli_conn_opts o = {.raw = 1};
    td_cli_ctx *ctx = srv_ctx(0);
    if (!ctx)
        return NULL;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    td_cli_conn *c = td_cli_connect(ctx, url, &o);
    if (c && !td_cli_wait_open(c, timeout_ms)) {
        td_cli_conn_free(c);
        c = NULL;
    }
    return c;
}

int srv_send_msg(td_cli_conn *c, const td_srv_msg *m)
{
    td_srv_wbuf w;
    td_srv_wbuf_init(&w, 0);
    int rc = td_srv_msg_encode(m, &w) < 0
                 ? -1
                 : td_cli_send_raw(c, td_srv_wbuf_msg(&w), w.len, 0);
    td_srv_wbuf_free(&w);
    return rc;
}

td_srv_msg srv_decode(const td_cli_msg *m)
{
    td_srv_msg d;
    memset(&d, 0, sizeof d);
    if (m && td_srv_msg_decode(m->data, m->len, &d, NULL) != TD_SRV_E_OK)
        memset(&d, 0, sizeof d);
    return d;
}

int srv_closed(td_cli_conn *c, int *code)
{
    if (code)
        *code = td_cli_close_code(c);
    return td_cli_conn_state(c) == TD_CLI_CLOSED;
}

int srv_closed_pred(void *arg)
{
    return srv_closed(arg, NULL);
}

int srv_http_get(int port, const char *path, char **body)
{
    return td_cli_http_get("127.0.0.1", port, path, NULL, body, NULL);
}

int srv_start(td_cli_server *s, const char *bin, const char *data,
              const char *const *extra, int *port)
{
    if (td_cli_server_start(s, bin, data, extra, 10000) != 0)
        return -1;
    *port = s->port;
    return (int)s->pid;
}

int srv_stop(td_cli_server *s)
{
    int st = td_cli_server_stop(s, SIGTERM, 10000);
    if (st < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int srv_apply_msg(td_crdt_doc *doc, const td_srv_msg *m)
{
    if (m->type == TD_SRV_MSG_SYNC)
        return m->batch.len ? (int)td_crdt_apply(doc, m->batch.ptr, m->batch.len, NULL) : 0;
    if (m->type == TD_SRV_MSG_REMOTE) {
        size_t pos = 0;
        td_srv_item it;
        while (td_srv_items_next(m, &pos, &it))
            if (td_crdt_apply(doc, it.batch.ptr, it.batch.len, NULL) != TD_CRDT_OK)
                return -1;
        return 0;
    }
    return -1;
}

int srv_apply_raw(td_crdt_doc *doc, const td_cli_msg *raw)
{
    td_srv_msg m = srv_decode(raw);
    return srv_apply_msg(doc, &m);
}

char *srv_text_of(td_crdt_doc *doc)
{
    td_crdt_obj t;
    char *s = NULL, *copy;
    size_t len;
    int owned = td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK &&
                td_crdt_text_get(doc, t, &s, &len) == TD_CRDT_OK;
    if (!owned) {
        s = "<error>";
        len = strlen(s);
    }
    copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    if (owned)
        td_crdt_buf_free(doc, s);
    return copy;
}
