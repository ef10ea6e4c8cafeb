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

/* ---- several brokers as one JetStream cluster ---------------------------------------- */

#include <cjson/cJSON.h>

#define MAX_BROKERS 5

static struct {
    char name[16];
    char dir[300];
    char conf[340];
    int port, route, http;
    pid_t pid;
} g_b[MAX_BROKERS];
static int g_nb;
static char g_burls[MAX_BROKERS * 32];

static void brokers_stop(void)
{
    for (int i = 0; i < g_nb; i++)
        if (g_b[i].pid > 0) {
            kill(g_b[i].pid, SIGKILL);
            waitpid(g_b[i].pid, NULL, 0);
            g_b[i].pid = -1;
        }
    const char *keep = getenv("CL_KEEP_BROKERS"); /* for a post-mortem */
    for (int i = 0; i < g_nb; i++)
        if (g_b[i].dir[0] && !(keep && *keep)) {
            td_cli_rm_rf(g_b[i].dir);
            g_b[i].dir[0] = 0;
        }
}

static void brokers_start_one(int i)
{
    char log[400];
    snprintf(log, sizeof log, "%s/nats.log", g_b[i].dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execl(g_nats, g_nats, "-c", g_b[i].conf, (char *)NULL);
        _exit(127);
    }
    g_b[i].pid = pid;
    for (int t = 0; t < 400 && !port_open(g_b[i].port); t++) {
        int st;
        CHECK_MSG(waitpid(pid, &st, WNOHANG) != pid, "nats-server %s exited at start (log %s)",
                  g_b[i].name, log);
        sleep_ms(25);
    }
    CHECK_MSG(port_open(g_b[i].port), "nats-server %s did not listen on %d within 10 s (log %s)",
              g_b[i].name, g_b[i].port, log);
}

static int port_taken(const int *ports, int n, int p)
{
    for (int i = 0; i < n; i++)
        if (ports[i] == p)
            return 1;
    return 0;
}

void cl_init_brokers(int argc, char **argv, const char *name, int n)
{
    it_init(argc, argv, name);
    CHECK_MSG(argc >= 3 && argv[2][0], "usage: %s TANDEM_BINARY NATS_SERVER_BINARY", argv[0]);
    CHECK(n >= 2 && n <= MAX_BROKERS);
    snprintf(g_nats, sizeof g_nats, "%s", argv[2]);
    CHECK_MSG(access(g_nats, X_OK) == 0,
              "nats-server %s is missing: install Debian's nats-server", g_nats);
    const char *tmp = getenv("TMPDIR");
    atexit(brokers_stop);
    int ports[3 * MAX_BROKERS], np = 0;
    for (int i = 0; i < n; i++) {
        int *mine[3] = {&g_b[i].port, &g_b[i].route, &g_b[i].http};
        for (int k = 0; k < 3; k++) {
            int p;
            do
                p = td_cli_free_port();
            while (p > 0 && port_taken(ports, np, p));
            CHECK(p > 0);
            *mine[k] = ports[np++] = p;
        }
        snprintf(g_b[i].name, sizeof g_b[i].name, "b%d", i + 1);
        g_b[i].pid = -1;
        snprintf(g_b[i].dir, sizeof g_b[i].dir, "%.200s/tandem-nats-b%d-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp", i + 1);
        CHECK(mkdtemp(g_b[i].dir) != NULL);
        g_nb = i + 1;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(g_burls + off, sizeof g_burls - off, "%snats://127.0.0.1:%d",
                                i ? "," : "", g_b[i].port);
    for (int i = 0; i < n; i++) {
        char conf[sizeof g_b[i].conf];
        snprintf(conf, sizeof conf, "%s/nats.conf", g_b[i].dir);
        memcpy(g_b[i].conf, conf, sizeof conf);
        FILE *f = fopen(g_b[i].conf, "w");
        CHECK(f != NULL);
        fprintf(f,
                "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n"
                "jetstream { store_dir: \"%s/js\" }\n"
                "cluster {\n  name: tandem-test\n  listen: 127.0.0.1:%d\n  routes: [\n",
                g_b[i].name, g_b[i].port, g_b[i].http, g_b[i].dir, g_b[i].route);
        for (int j = 0; j < n; j++)
            if (j != i)
                fprintf(f, "    nats-route://127.0.0.1:%d\n", g_b[j].route);
        fprintf(f, "  ]\n}\n");
        CHECK(fclose(f) == 0);
    }
    for (int i = 0; i < n; i++)
        brokers_start_one(i);
    uint64_t t0 = td_cli_now_us();
    CHECK_MSG(cl_brokers_ready(NULL, 0, 30000),
              "the %d nats-servers did not form a JetStream cluster within 30 s (logs in %s/..)",
              n, g_b[0].dir);
    printf("%d nats-servers clustered (%s), JetStream meta leader elected with %d peers in %.1f s\n",
           n, g_burls, n, (double)(td_cli_now_us() - t0) / 1e6);
}

int cl_brokers(void)
{
    return g_nb;
}

const char *cl_brokers_url(void)
{
    return g_burls;
}

const char *cl_broker_name(int i)
{
    return i >= 0 && i < g_nb ? g_b[i].name : "?";
}

int cl_broker_index(const char *name)
{
    for (int i = 0; name && i < g_nb; i++)
        if (strcmp(g_b[i].name, name) == 0)
            return i;
    return -1;
}

int cl_broker_alive(int i)
{
    return i >= 0 && i < g_nb && g_b[i].pid > 0;
}

void cl_broker_kill_at(int i)
{
    CHECK(i >= 0 && i < g_nb);
    if (g_b[i].pid > 0) {
        kill(g_b[i].pid, SIGKILL);
        waitpid(g_b[i].pid, NULL, 0);
        g_b[i].pid = -1;
    }
}

void cl_broker_restart_at(int i)
{
    cl_broker_kill_at(i);
    brokers_start_one(i);
}

/* GET path of broker i's monitoring port, parsed; NULL if it does not
 * answer 200 with JSON. */
static cJSON *broker_get(int i, const char *path)
{
    if (!cl_broker_alive(i))
        return NULL;
    char *body = NULL;
    size_t len = 0;
    int st = td_cli_http_get("127.0.0.1", g_b[i].http, path, NULL, &body, &len);
    cJSON *j = st == 200 && body ? cJSON_ParseWithLength(body, len) : NULL;
    free(body);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The detail of `stream` in a /jsz?accounts=true&streams=true answer. */
static const cJSON *stream_detail(const cJSON *jsz, const char *stream)
{
    const cJSON *acc, *s;
    cJSON_ArrayForEach(acc, cJSON_GetObjectItemCaseSensitive(jsz, "account_details"))
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(acc, "stream_detail"))
    {
        const char *nm = jstr(s, "name");
        if (nm && strcmp(nm, stream) == 0)
            return s;
    }
    return NULL;
}

/* 1 if every replica in `replicas` (a /jsz array) is a live broker, current
 * and not offline, and there are `want` of them. */
static int replicas_current(const cJSON *replicas, int want)
{
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, replicas)
    {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "current")) ||
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "offline")) ||
            !cl_broker_alive(cl_broker_index(jstr(r, "name"))))
            return 0;
        n++;
    }
    return n == want;
}

static int brokers_ready_now(const char *stream, int stream_replicas)
{
    char leader[16] = "";
    int live = 0;
    for (int i = 0; i < g_nb; i++) {
        if (!cl_broker_alive(i))
            continue;
        live++;
        cJSON *j = broker_get(i, "/jsz");
        const cJSON *mc = cJSON_GetObjectItemCaseSensitive(j, "meta_cluster");
        const char *l = jstr(mc, "leader");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(mc, "cluster_size");
        int ok = l && *l && cJSON_IsNumber(size) && size->valueint == g_nb &&
                 (!leader[0] || strcmp(leader, l) == 0);
        if (ok && !leader[0])
            snprintf(leader, sizeof leader, "%s", l);
        cJSON_Delete(j);
        if (!ok)
            return 0;
    }
    int li = cl_broker_index(leader);
    if (li < 0 || !cl_broker_alive(li))
        return 0;
    cJSON *j = broker_get(li, "/jsz");
    int ok = replicas_current(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "meta_cluster"),
                                         "replicas"),
        live - 1);
    cJSON_Delete(j);
    if (!ok || !stream)
        return ok;
    int si = cl_stream_leader(stream);
    if (si < 0)
        return 0;
    j = broker_get(si, "/jsz?accounts=true&streams=true");
    const cJSON *sd = stream_detail(j, stream);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(sd, "cluster");
    const char *sl = jstr(cl, "leader");
    ok = sl && strcmp(sl, g_b[si].name) == 0 &&
         replicas_current(cJSON_GetObjectItemCaseSensitive(cl, "replicas"), stream_replicas - 1);
    cJSON_Delete(j);
    return ok;
}

int cl_brokers_ready(const char *stream, int stream_replicas, int timeout_ms)
{
    uint64_t end = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    do {
        if (brokers_ready_now(stream, stream_replicas))
            return 1;
        sleep_ms(50);
    } while (td_cli_now_us() < end);
    return 0;
}

int cl_stream_leader(const char *stream)
{
    for (int i = 0; i < g_nb; i++) {
        cJSON *j = broker_get(i, "/jsz?accounts=true&streams=true");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(stream_detail(j, stream), "cluster");
        int li = cl_broker_index(jstr(cl, "leader"));
        cJSON_Delete(j);
        if (li >= 0 && cl_broker_alive(li))
            return li;
    }
    return -1;
}

int cl_broker_conns(int i)
{
    cJSON *j = broker_get(i, "/connz");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "num_connections");
    int r = cJSON_IsNumber(n) ? n->valueint : -1;
    cJSON_Delete(j);
    return r;
}

static struct {
    char name[32];
    char replicas[12];
    const char *argv[8];
} g_bnodes[MAX_NODES];
static int g_nbnodes;

const char *const *cl_brokers_node_args(const char *name, int replicas)
{
    for (int i = 0; i < g_nbnodes; i++)
        if (strcmp(g_bnodes[i].name, name) == 0)
            return g_bnodes[i].argv;
    CHECK(g_nbnodes < MAX_NODES);
    int i = g_nbnodes++;
    snprintf(g_bnodes[i].name, sizeof g_bnodes[i].name, "%s", name);
    snprintf(g_bnodes[i].replicas, sizeof g_bnodes[i].replicas, "%d", replicas);
    const char *a[] = {"--cluster",          g_burls, "--cluster-node", g_bnodes[i].name,
                       "--cluster-replicas", g_bnodes[i].replicas, NULL};
    memcpy(g_bnodes[i].argv, a, sizeof a);
    return g_bnodes[i].argv;
}

td_cli_server *cl_brokers_node(const char *name, int replicas)
{
    return it_server(cl_brokers_node_args(name, replicas));
}

long long cl_broker_stream_last_seq(int i, const char *stream)
{
    cJSON *j = broker_get(i, "/jsz?accounts=true&streams=true");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(stream_detail(j, stream), "state");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(st, "last_seq");
    long long r = cJSON_IsNumber(ls) ? (long long)ls->valuedouble : -1;
    cJSON_Delete(j);
    return r;
}
