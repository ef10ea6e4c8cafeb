/*
 * test_cluster_transport.c -- the cluster transport (server/srv_cluster.c)
 * against a real nats-server with JetStream, which the test starts itself
 * on a free port with a temporary store directory:
 *
 *   - batches a node publishes reach the other nodes in order, each
 *     acknowledged with a growing stream sequence; a retried publish (the
 *     same tag) is stored once;
 *   - a snapshot is a rollup: a node that follows the document afterwards
 *     gets the snapshot first and only the batches after it;
 *   - document ids with any bytes; presence reaches the other nodes only;
 *   - the broker killed: publishes fail as unavailable, the link is reported
 *     down; the broker back on the same store: reported up, following
 *     resumes where it stopped, nothing stored is lost.
 *
 *   test_cluster_transport NATS_SERVER_BINARY
 */
#define _POSIX_C_SOURCE 200809L

#include "srv_cluster.h"
#include "td_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *g_nats_bin;
static char g_dir[256];
static int g_port;
static pid_t g_pid = -1;

/* ---- the broker ------------------------------------------------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts nats-server -js on g_port with store g_dir; 0 once it listens. */
static int broker_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    g_pid = fork();
    if (g_pid == 0) {
        /* its log goes to the store directory, read it when a case fails */
        char log[300];
        snprintf(log, sizeof log, "%s/nats.log", g_dir);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execl(g_nats_bin, g_nats_bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", g_dir,
              (char *)NULL);
        _exit(127);
    }
    if (g_pid < 0)
        return -1;
    for (int i = 0; i < 200; i++) {
        int st;
        if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
            g_pid = -1;
            return -1;
        }
        if (port_open(g_port))
            return 0;
        sleep_ms(25);
    }
    return -1;
}

static void broker_kill(void)
{
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        g_pid = -1;
    }
}

/* ---- a node: the transport plus what it was handed -------------------------------- */

#define MAXEV 4096

typedef struct got {
    uint64_t seq;
    int snapshot;
    char node[64];
    char data[64];
    char doc[64];
} got;

typedef struct node {
    td_srv_cluster *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken;
    /* filled by the handler */
    got del[MAXEV];
    int ndel;
    uint64_t ack_seq[MAXEV];
    int ack_dup[MAXEV];
    td_srv_cluster_err ack_err[MAXEV];
    int nack;
    got pres[64];
    int npres;
    int downs, ups;
} node;

static void wake(void *ud)
{
    node *n = ud;
    pthread_mutex_lock(&n->mu);
    n->woken = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

static void h_published(void *ud, uint64_t tag, td_srv_cluster_err err, uint64_t seq, int dup,
                        const char *msg)
{
    node *n = ud;
    (void)msg;
    if (tag < MAXEV) {
        n->ack_seq[tag] = seq;
        n->ack_dup[tag] = dup;
        n->ack_err[tag] = err;
    }
    n->nack++;
}

static void h_delivered(void *ud, const char *doc, size_t doc_len, uint64_t seq, int snapshot,
                        const char *from, const uint8_t *data, size_t len)
{
    node *n = ud;
    if (n->ndel >= MAXEV)
        return;
    got *g = &n->del[n->ndel++];
    g->seq = seq;
    g->snapshot = snapshot;
    snprintf(g->node, sizeof g->node, "%s", from);
    snprintf(g->data, sizeof g->data, "%.*s", (int)len, (const char *)data);
    snprintf(g->doc, sizeof g->doc, "%.*s", (int)doc_len, doc);
}

static void h_presence(void *ud, const char *doc, size_t doc_len, const char *from,
                       const uint8_t *data, size_t len)
{
    node *n = ud;
    if (n->npres >= 64)
        return;
    got *g = &n->pres[n->npres++];
    snprintf(g->node, sizeof g->node, "%s", from);
    snprintf(g->data, sizeof g->data, "%.*s", (int)len, (const char *)data);
    snprintf(g->doc, sizeof g->doc, "%.*s", (int)doc_len, doc);
}

static void h_broker(void *ud, int up)
{
    node *n = ud;
    if (up)
        n->ups++;
    else
        n->downs++;
}

static const td_srv_cluster_handler handler = {h_published, h_delivered, h_presence, h_broker,
                                                NULL};

static int node_open(node *n, const char *name, int64_t timeout_ms)
{
    memset(n, 0, sizeof *n);
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    char url[64], msg[256] = "";
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", g_port);
    td_srv_cluster_cfg cfg = {.urls = url, .node = name, .publish_timeout_ms = timeout_ms,
                              .wake = wake, .wake_ud = n};
    td_srv_cluster_err e = td_srv_cluster_new(&n->c, &cfg, msg, sizeof msg);
    CHECK_MSG(e == TD_SRV_CLUSTER_OK, "node %s: %s: %s", name, td_srv_cluster_strerror(e), msg);
    return e == TD_SRV_CLUSTER_OK ? 0 : -1;
}

static void node_close(node *n)
{
    td_srv_cluster_free(n->c);
    n->c = NULL;
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
}

/* Polls n until cond(n) holds or ms pass; returns cond(n). */
static int wait_for(node *n, int (*cond)(node *, int), int arg, long ms)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += ms / 1000;
    end.tv_nsec += (ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    for (;;) {
        td_srv_cluster_poll(n->c, &handler, n);
        if (cond(n, arg))
            return 1;
        pthread_mutex_lock(&n->mu);
        int rc = 0;
        while (!n->woken && rc == 0)
            rc = pthread_cond_timedwait(&n->cv, &n->mu, &end);
        n->woken = 0;
        pthread_mutex_unlock(&n->mu);
        if (rc == ETIMEDOUT) {
            td_srv_cluster_poll(n->c, &handler, n);
            return cond(n, arg);
        }
    }
}

static int has_acks(node *n, int k) { return n->nack >= k; }
static int has_dels(node *n, int k) { return n->ndel >= k; }
static int has_pres(node *n, int k) { return n->npres >= k; }
static int has_down(node *n, int k) { return n->downs >= k; }
static int has_up(node *n, int k) { return n->ups >= k; }

/* ---- the cases ------------------------------------------------------------------- */

static node A, B, C;

static void t_batches(void)
{
    REQUIRE(td_srv_cluster_follow(B.c, "d1", 2, 0) == TD_SRV_CLUSTER_OK);
    REQUIRE(td_srv_cluster_follow(A.c, "d1", 2, 0) == TD_SRV_CLUSTER_OK);
    CHECK(td_srv_cluster_follow(A.c, "d1", 2, 0) == TD_SRV_CLUSTER_ERR_ARG);
    for (int i = 1; i <= 200; i++) {
        char b[32];
        int n = snprintf(b, sizeof b, "batch-%d", i);
        REQUIRE(td_srv_cluster_publish(A.c, "d1", 2, 0, (const uint8_t *)b, (size_t)n,
                                       (uint64_t)i) == TD_SRV_CLUSTER_OK);
    }
    REQUIRE(wait_for(&A, has_acks, 200, 10000));
    for (int i = 1; i <= 200; i++) {
        CHECK_MSG(A.ack_err[i] == TD_SRV_CLUSTER_OK, "publish %d: %s", i,
                  td_srv_cluster_strerror(A.ack_err[i]));
        CHECK_MSG(i == 1 || A.ack_seq[i] > A.ack_seq[i - 1], "seq %d not growing", i);
    }
    REQUIRE(wait_for(&B, has_dels, 200, 10000));
    for (int i = 0; i < 200; i++) {
        char want[32];
        snprintf(want, sizeof want, "batch-%d", i + 1);
        CHECK_MSG(strcmp(B.del[i].data, want) == 0, "B got %s at %d", B.del[i].data, i);
        CHECK(strcmp(B.del[i].node, "a") == 0 && !B.del[i].snapshot);
        CHECK(strcmp(B.del[i].doc, "d1") == 0);
        CHECK(B.del[i].seq == A.ack_seq[i + 1]);
    }
    /* A follows too and hears its own batches (it skips them by node). */
    REQUIRE(wait_for(&A, has_dels, 200, 10000));
    CHECK(strcmp(A.del[0].node, "a") == 0);
    /* A retried publish is stored once. */
    int before = A.nack;
    REQUIRE(td_srv_cluster_publish(A.c, "d1", 2, 0, (const uint8_t *)"batch-5", 7, 5) ==
            TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&A, has_acks, before + 1, 10000));
    CHECK(A.ack_dup[5] == 1);
    sleep_ms(200);
    td_srv_cluster_poll(B.c, &handler, &B);
    CHECK_MSG(B.ndel == 200, "the duplicate was delivered (%d)", B.ndel);
out:;
}

static void t_rollup(void)
{
    int before = A.nack;
    /* The fence: a rollup that does not follow the subject's last message
     * is refused (it would drop a message it does not cover). */
    uint64_t last = A.ack_seq[200]; /* d1's last message (t_batches) */
    REQUIRE(last > 1);
    REQUIRE(td_srv_cluster_publish(A.c, "d1", 2, last - 1, (const uint8_t *)"stale", 5, 999) ==
            TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&A, has_acks, before + 1, 10000));
    CHECK_MSG(A.ack_err[999] == TD_SRV_CLUSTER_ERR_REFUSED, "a stale rollup got %s",
              td_srv_cluster_strerror(A.ack_err[999]));
    before = A.nack;
    REQUIRE(td_srv_cluster_publish(A.c, "d1", 2, last, (const uint8_t *)"snap", 4, 1000) ==
            TD_SRV_CLUSTER_OK);
    for (int i = 0; i < 3; i++)
        REQUIRE(td_srv_cluster_publish(A.c, "d1", 2, 0, (const uint8_t *)"tail", 4,
                                       (uint64_t)(1001 + i)) == TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&A, has_acks, before + 4, 10000));
    CHECK(A.ack_err[1000] == TD_SRV_CLUSTER_OK);
    REQUIRE(node_open(&C, "c", 5000) == 0);
    REQUIRE(td_srv_cluster_follow(C.c, "d1", 2, 0) == TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&C, has_dels, 4, 10000));
    CHECK_MSG(C.del[0].snapshot && strcmp(C.del[0].data, "snap") == 0, "C first got %s",
              C.del[0].data);
    CHECK(C.del[0].seq == A.ack_seq[1000]);
    for (int i = 1; i < 4; i++)
        CHECK(!C.del[i].snapshot && strcmp(C.del[i].data, "tail") == 0);
    sleep_ms(200);
    td_srv_cluster_poll(C.c, &handler, &C);
    CHECK_MSG(C.ndel == 4, "C got %d messages, the rollup should leave 4", C.ndel);
    /* B, already following, sees the snapshot in its place. */
    REQUIRE(wait_for(&B, has_dels, 204, 10000));
    CHECK(B.del[200].snapshot);
out:;
}

static void t_ids_and_presence(void)
{
    static const char odd[] = "x.y *>/\xc3\xbc\n";
    size_t n = sizeof odd - 1;
    REQUIRE(td_srv_cluster_follow(B.c, odd, n, 0) == TD_SRV_CLUSTER_OK);
    REQUIRE(td_srv_cluster_follow(A.c, odd, n, 0) == TD_SRV_CLUSTER_OK);
    int before = B.ndel;
    REQUIRE(td_srv_cluster_publish(A.c, odd, n, 0, (const uint8_t *)"odd", 3, 2000) ==
            TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&B, has_dels, before + 1, 10000));
    CHECK(memcmp(B.del[before].doc, odd, n) == 0 && strcmp(B.del[before].data, "odd") == 0);
    sleep_ms(100); /* the presence subscriptions are in place on the server */
    REQUIRE(td_srv_cluster_presence(A.c, odd, n, (const uint8_t *)"here", 4) == TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&B, has_pres, 1, 5000));
    CHECK(strcmp(B.pres[0].node, "a") == 0 && strcmp(B.pres[0].data, "here") == 0);
    sleep_ms(200);
    td_srv_cluster_poll(A.c, &handler, &A);
    CHECK_MSG(A.npres == 0, "a node got its own presence");
    td_srv_cluster_unfollow(B.c, odd, n);
    td_srv_cluster_unfollow(A.c, odd, n);
out:;
}

static void t_broker_outage(void)
{
    node D;
    REQUIRE(node_open(&D, "d", 800) == 0);
    broker_kill();
    REQUIRE(wait_for(&D, has_down, 1, 5000));
    CHECK(!td_srv_cluster_up(D.c));
    /* Refused at once, and so never stored (checked by E below). */
    td_srv_cluster_err e = td_srv_cluster_publish(D.c, "d1", 2, 0, (const uint8_t *)"lost", 4, 1);
    CHECK_MSG(e == TD_SRV_CLUSTER_ERR_UNAVAILABLE, "publish while down: %s",
              td_srv_cluster_strerror(e));
    REQUIRE(broker_start() == 0);
    REQUIRE(wait_for(&D, has_up, 1, 10000));
    CHECK(td_srv_cluster_up(D.c));
    /* What was stored before survives; B's ordered consumer resumes. */
    int before = B.ndel;
    REQUIRE(wait_for(&A, has_up, 1, 10000));
    int acks = A.nack;
    REQUIRE(td_srv_cluster_publish(A.c, "d1", 2, 0, (const uint8_t *)"after", 5, 3000) ==
            TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&A, has_acks, acks + 1, 10000));
    CHECK_MSG(A.ack_err[3000] == TD_SRV_CLUSTER_OK, "publish after restart: %s",
              td_srv_cluster_strerror(A.ack_err[3000]));
    REQUIRE(wait_for(&B, has_dels, before + 1, 15000));
    CHECK(strcmp(B.del[B.ndel - 1].data, "after") == 0);
    node E;
    REQUIRE(node_open(&E, "e", 5000) == 0);
    REQUIRE(td_srv_cluster_follow(E.c, "d1", 2, 0) == TD_SRV_CLUSTER_OK);
    REQUIRE(wait_for(&E, has_dels, 5, 10000));
    sleep_ms(200);
    td_srv_cluster_poll(E.c, &handler, &E);
    CHECK_MSG(E.ndel == 5, "a node loading after the restart got %d messages, not 5", E.ndel);
    CHECK_MSG(E.del[0].snapshot && strcmp(E.del[4].data, "after") == 0,
              "a node loading after the restart got %s (snapshot %d) ... %s", E.del[0].data,
              E.del[0].snapshot, E.del[4].data);
    node_close(&E);
out:
    if (D.c)
        node_close(&D);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s NATS_SERVER_BINARY\n", argv[0]);
        return 2;
    }
    g_nats_bin = argv[1];
    snprintf(g_dir, sizeof g_dir, "/tmp/td_cluster_XXXXXX");
    if (!mkdtemp(g_dir) || (g_port = free_port()) < 0 || broker_start() != 0) {
        fprintf(stderr, "test_cluster_transport: cannot start %s\n", g_nats_bin);
        return 1;
    }
    int rc = 1;
    if (node_open(&A, "a", 5000) == 0 && node_open(&B, "b", 5000) == 0) {
        td_check_run("batches in order, acknowledged, stored once", t_batches);
        td_check_run("a snapshot is a rollup", t_rollup);
        td_check_run("any document id; presence to the others", t_ids_and_presence);
        td_check_run("the broker killed and back", t_broker_outage);
        rc = td_check_status("test_cluster_transport");
    }
    if (C.c)
        node_close(&C);
    if (B.c)
        node_close(&B);
    if (A.c)
        node_close(&A);
    broker_kill();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
