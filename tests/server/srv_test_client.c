/*
 * srv_test_client.c -- see srv_test_client.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include <libwebsockets.h>

#include "srv_test_client.h"

int tc_failures;

typedef struct outq {
    uint8_t *buf; /* LWS_PRE + len */
    size_t len;
    int binary;
    struct outq *next;
} outq;

struct tc_conn {
    struct lws *wsi;
    int connected, failed, closed, close_code;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    tc_msg *in_head, *in_tail;
    size_t in_n;
    outq *out_head, *out_tail;
    uint8_t *draining; /* last big buffer written: deflate may still read it */
};

static struct lws_context *g_ctx;
static lws_sorted_usec_list_t g_tick;

/* lws_service() blocks until an event; a 5 ms tick bounds every wait. */
static void tick(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(g_ctx, 0, sul, tick, 5 * 1000);
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
              size_t len)
{
    tc_conn *c = user ? *(tc_conn **)user : NULL;
    (void)user;
    c = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c)
            c->connected = 1;
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            c->failed = 1;
            c->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && len >= 2)
            c->close_code = ((uint8_t *)in)[0] << 8 | ((uint8_t *)in)[1];
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) {
            c->closed = 1;
            c->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c)
            break;
        if (lws_is_first_fragment(wsi))
            c->rx_len = 0;
        if (c->rx_len + len > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 1024;
            while (cap < c->rx_len + len)
                cap *= 2;
            c->rx = realloc(c->rx, cap);
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (lws_is_final_fragment(wsi)) {
            tc_msg *m = calloc(1, sizeof *m);
            m->data = malloc(c->rx_len ? c->rx_len : 1);
            memcpy(m->data, c->rx, c->rx_len);
            m->len = c->rx_len;
            if (c->in_tail)
                c->in_tail->next = m;
            else
                c->in_head = m;
            c->in_tail = m;
            c->in_n++;
            c->rx_len = 0;
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        /* permessage-deflate reads a big buffer after lws_write() returns,
         * until lws calls us writeable again */
        if (c) {
            free(c->draining);
            c->draining = NULL;
        }
        if (c && c->out_head) {
            outq *q = c->out_head;
            if (lws_write(wsi, q->buf + LWS_PRE, q->len,
                          q->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < 0)
                return -1;
            c->out_head = q->next;
            if (!c->out_head)
                c->out_tail = NULL;
            c->draining = q->buf;
            free(q);
            if (c->out_head)
                lws_callback_on_writable(wsi);
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protos[] = {{"tandem", cb, 0, 4096, 0, NULL, 0},
                                              {NULL, NULL, 0, 0, 0, NULL, 0}};

static const struct lws_extension deflate_exts[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL}};

int tc_init(void)
{
    return tc_init_deflate(0);
}

int tc_init_deflate(int deflate)
{
    struct lws_context_creation_info info;
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protos;
    if (deflate)
        info.extensions = deflate_exts;
    g_ctx = lws_create_context(&info);
    if (!g_ctx)
        return -1;
    tick(&g_tick);
    return 0;
}

void tc_done(void)
{
    if (g_ctx) {
        lws_sul_cancel(&g_tick);
        lws_context_destroy(g_ctx);
    }
    g_ctx = NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tc_wait(int ms, int (*fn)(void *), void *ud)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        if (fn && fn(ud))
            return 1;
        if (now_ms() >= end)
            return fn ? 0 : 1;
        lws_service(g_ctx, 0);
    }
}

static int conn_ready(void *ud)
{
    tc_conn *c = ud;
    return c->connected || c->failed || c->closed;
}

tc_conn *tc_connect(int port, int timeout_ms)
{
    struct lws_client_connect_info ci;
    tc_conn *c = calloc(1, sizeof *c);
    memset(&ci, 0, sizeof ci);
    ci.context = g_ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = "/";
    ci.host = "127.0.0.1";
    ci.origin = "127.0.0.1";
    ci.protocol = NULL;
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    if (!lws_client_connect_via_info(&ci)) {
        free(c);
        return NULL;
    }
    tc_wait(timeout_ms, conn_ready, c);
    if (!c->connected) {
        tc_close(c);
        return NULL;
    }
    return c;
}

static int conn_gone(void *ud)
{
    tc_conn *c = ud;
    return !c->wsi;
}

void tc_close(tc_conn *c)
{
    if (!c)
        return;
    if (c->wsi) {
        lws_set_opaque_user_data(c->wsi, NULL);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        c->wsi = NULL;
        tc_wait(50, NULL, NULL);
    }
    (void)conn_gone;
    while (c->in_head) {
        tc_msg *m = c->in_head;
        c->in_head = m->next;
        tc_msg_free(m);
    }
    while (c->out_head) {
        outq *q = c->out_head;
        c->out_head = q->next;
        free(q->buf);
        free(q);
    }
    free(c->rx);
    free(c->draining);
    free(c);
}

int tc_send(tc_conn *c, const uint8_t *p, size_t len, int binary)
{
    outq *q;
    if (!c->wsi)
        return -1;
    q = calloc(1, sizeof *q);
    q->buf = malloc(LWS_PRE + len + 1);
    memcpy(q->buf + LWS_PRE, p, len);
    q->len = len;
    q->binary = binary;
    if (c->out_tail)
        c->out_tail->next = q;
    else
        c->out_head = q;
    c->out_tail = q;
    lws_callback_on_writable(c->wsi);
    return 0;
}

int tc_send_msg(tc_conn *c, const td_srv_msg *m)
{
    td_srv_wbuf w;
    int rc;
    td_srv_wbuf_init(&w, 0);
    if (td_srv_msg_encode(m, &w) < 0) {
        td_srv_wbuf_free(&w);
        return -1;
    }
    rc = tc_send(c, td_srv_wbuf_msg(&w), w.len, 1);
    td_srv_wbuf_free(&w);
    return rc;
}

typedef struct exp_ctx {
    tc_conn *c;
    int type;
    tc_msg *found;
} exp_ctx;

static int find_msg(void *ud)
{
    exp_ctx *e = ud;
    tc_msg **pp = &e->c->in_head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        tc_msg *m = *pp;
        if (e->type == 0 || (m->len && m->data[0] == e->type)) {
            *pp = m->next;
            if (e->c->in_tail == m)
                e->c->in_tail = prev;
            e->c->in_n--;
            m->next = NULL;
            e->found = m;
            return 1;
        }
    }
    return e->c->wsi == NULL && !e->c->in_head ? 1 : 0;
}

tc_msg *tc_expect(tc_conn *c, int type, int ms)
{
    exp_ctx e = {c, type, NULL};
    tc_wait(ms, find_msg, &e);
    return e.found;
}

void tc_msg_free(tc_msg *m)
{
    if (m) {
        free(m->data);
        free(m);
    }
}

int tc_closed(tc_conn *c, int *code)
{
    if (code)
        *code = c->close_code;
    return c->closed || c->failed || !c->wsi;
}

size_t tc_inbox_count(tc_conn *c)
{
    return c->in_n;
}

int tc_http_get(int port, const char *path, char **body)
{
    struct sockaddr_in a;
    char req[512], *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
    *body = NULL;
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, 4096);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    char *b = strstr(buf, "\r\n\r\n");
    *body = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

int tc_server_start(const char *bin, const char *data, const char *const *extra, int *port_out)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int port = 20000 + (int)randombytes_uniform(20000);
        char portstr[16];
        const char *argv[32];
        int n = 0;
        snprintf(portstr, sizeof portstr, "%d", port);
        argv[n++] = bin;
        argv[n++] = "serve";
        argv[n++] = "--port";
        argv[n++] = portstr;
        argv[n++] = "--data";
        argv[n++] = data;
        for (int i = 0; extra && extra[i] && n < 30; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        pid_t pid = fork();
        if (pid == 0) {
            execv(bin, (char *const *)argv);
            _exit(127);
        }
        for (int i = 0; i < 100; i++) {
            char *body = NULL;
            int st = tc_http_get(port, "/healthz", &body);
            free(body);
            if (st == 200) {
                *port_out = port;
                return pid;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break;
            usleep(50 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

int tc_server_stop(int pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        tc_wait(50, NULL, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}
