/*
 * cl_util.c -- the broker and the proxy of the cluster tests (cl_util.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cl_util.h"

static char g_dir[300];
static char g_url[64];
static pid_t g_pid = -1;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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

static void broker_stop(void)
{
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        g_pid = -1;
    }
    if (g_dir[0]) {
        td_cli_rm_rf(g_dir);
        g_dir[0] = 0;
    }
}

static char g_nats[512];
static int g_port;

/* Starts nats-server on g_port with its store in g_dir; fails the test if
 * it does not listen within 10 s. */
static void broker_start(void)
{
    char ports[16], log[400];
    snprintf(ports, sizeof ports, "%d", g_port);
    snprintf(log, sizeof log, "%s/nats.log", g_dir);
    pid_t parent = getpid();
    g_pid = fork();
    CHECK(g_pid >= 0);
    if (g_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execl(g_nats, g_nats, "-js", "-a", "127.0.0.1", "-p", ports, "-sd", g_dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400 && !port_open(g_port); i++) {
        int st;
        CHECK_MSG(waitpid(g_pid, &st, WNOHANG) != g_pid, "nats-server exited at start (log %s)",
                  log);
        sleep_ms(25);
    }
    CHECK_MSG(port_open(g_port), "nats-server did not listen on %d within 10 s (log %s)", g_port,
              log);
}

void cl_init(int argc, char **argv, const char *name)
{
    it_init(argc, argv, name);
    CHECK_MSG(argc >= 3 && argv[2][0], "usage: %s TANDEM_BINARY NATS_SERVER_BINARY", argv[0]);
    snprintf(g_nats, sizeof g_nats, "%s", argv[2]);
    CHECK_MSG(access(g_nats, X_OK) == 0,
              "nats-server %s is missing: install Debian's nats-server", g_nats);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/tandem-nats-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(g_dir) != NULL);
    atexit(broker_stop);
    g_port = td_cli_free_port();
    CHECK(g_port > 0);
    broker_start();
    snprintf(g_url, sizeof g_url, "nats://127.0.0.1:%d", g_port);
    printf("nats-server pid %d on %s, store %s\n", (int)g_pid, g_url, g_dir);
}

void cl_broker_kill(void)
{
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        g_pid = -1;
    }
}

void cl_broker_restart(void)
{
    cl_broker_kill();
    broker_start();
}

const char *cl_nats_url(void)
{
    return g_url;
}

#define MAX_NODES 8

static struct {
    char name[32];
    const char *argv[8];
} g_nodes[MAX_NODES];
static int g_nnodes;

const char *const *cl_node_args(const char *name)
{
    for (int i = 0; i < g_nnodes; i++)
        if (strcmp(g_nodes[i].name, name) == 0)
            return g_nodes[i].argv;
    CHECK(g_nnodes < MAX_NODES);
    int i = g_nnodes++;
    snprintf(g_nodes[i].name, sizeof g_nodes[i].name, "%s", name);
    const char *a[] = {"--cluster", g_url, "--cluster-node", g_nodes[i].name, NULL};
    memcpy(g_nodes[i].argv, a, sizeof a);
    return g_nodes[i].argv;
}

td_cli_server *cl_node(const char *name)
{
    return it_server(cl_node_args(name));
}

char *cl_doc_json(td_cli_server *s, const char *doc)
{
    char *json = NULL;
    int st = it_get_doc(s, doc, NULL, &json);
    if (st == 200)
        return json;
    free(json);
    return NULL;
}

/* ---- the proxy ------------------------------------------------------------------ */

#define MAX_PAIRS 64

struct cl_proxy {
    int lfd, port;
    atomic_int target, drop, stop;
    pthread_t th;
    int a[MAX_PAIRS], b[MAX_PAIRS]; /* client side, node side; -1: free */
};

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* shutdown() first: a node started meanwhile may hold copies of these
 * descriptors (fork), and close() alone would then end nothing. */
static void pair_close(cl_proxy *p, int i)
{
    if (p->a[i] >= 0) {
        shutdown(p->a[i], SHUT_RDWR);
        close(p->a[i]);
    }
    if (p->b[i] >= 0) {
        shutdown(p->b[i], SHUT_RDWR);
        close(p->b[i]);
    }
    p->a[i] = p->b[i] = -1;
}

/* Copies what `from` has to `to`; -1 when the pair is over. */
static int pump(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return -1;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += w;
    }
    return 0;
}

static void *proxy_run(void *arg)
{
    cl_proxy *p = arg;
    struct pollfd fds[1 + 2 * MAX_PAIRS];
    int who[1 + 2 * MAX_PAIRS];
    while (!atomic_load(&p->stop)) {
        if (atomic_exchange(&p->drop, 0))
            for (int i = 0; i < MAX_PAIRS; i++)
                pair_close(p, i);
        int n = 0;
        fds[n] = (struct pollfd){p->lfd, POLLIN, 0};
        who[n++] = -1;
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (p->a[i] < 0)
                continue;
            fds[n] = (struct pollfd){p->a[i], POLLIN, 0};
            who[n++] = i;
            fds[n] = (struct pollfd){p->b[i], POLLIN, 0};
            who[n++] = MAX_PAIRS + i;
        }
        if (poll(fds, (nfds_t)n, 20) <= 0)
            continue;
        for (int k = 1; k < n; k++) {
            if (!fds[k].revents)
                continue;
            int i = who[k] % MAX_PAIRS;
            if (p->a[i] < 0)
                continue; /* closed by its other half this turn */
            int from = who[k] < MAX_PAIRS ? p->a[i] : p->b[i];
            int to = who[k] < MAX_PAIRS ? p->b[i] : p->a[i];
            if (pump(from, to) < 0)
                pair_close(p, i);
        }
        if (fds[0].revents & POLLIN) {
            int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0)
                continue;
            int i = 0;
            while (i < MAX_PAIRS && p->a[i] >= 0)
                i++;
            int s = i < MAX_PAIRS ? dial(atomic_load(&p->target)) : -1;
            if (s < 0) {
                close(c); /* the node is down: the client sees a refused connection */
                continue;
            }
            p->a[i] = c;
            p->b[i] = s;
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        pair_close(p, i);
    return NULL;
}

cl_proxy *cl_proxy_new(int target_port)
{
    cl_proxy *p = calloc(1, sizeof *p);
    CHECK(p != NULL);
    for (int i = 0; i < MAX_PAIRS; i++)
        p->a[i] = p->b[i] = -1;
    atomic_store(&p->target, target_port);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(p->lfd >= 0);
    CHECK(bind(p->lfd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(p->lfd, (struct sockaddr *)&a, &len) == 0);
    CHECK(listen(p->lfd, 64) == 0);
    p->port = ntohs(a.sin_port);
    CHECK(pthread_create(&p->th, NULL, proxy_run, p) == 0);
    return p;
}

int cl_proxy_port(const cl_proxy *p)
{
    return p->port;
}

void cl_proxy_retarget(cl_proxy *p, int target_port, int drop)
{
    atomic_store(&p->target, target_port);
    if (!drop)
        return;
    atomic_store(&p->drop, 1);
    /* Returns once they are closed, so the caller can wait for the clients
     * to come back. */
    while (atomic_load(&p->drop))
        sleep_ms(2);
}

void cl_proxy_free(cl_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
    close(p->lfd);
    free(p);
}
