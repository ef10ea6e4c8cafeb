/*
 * cli_proc.c -- everything around the WebSocket that tests and the load
 * generator need: a blocking HTTP GET (for /healthz, /metrics and
 * /docs/{id}), starting and stopping `tandem serve` as a child process on a
 * free loopback port with its own data directory, reading a process's RSS
 * and CPU time from /proc, and running a command to capture its output.
 *
 * The server child gets PR_SET_PDEATHSIG(SIGKILL), so a test that crashes or
 * is killed by ctest's timeout never leaves a server behind.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "td_client.h"

/* ---- HTTP ---------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decodes a chunked body in place; returns the new length or -1. */
static long dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        if (in >= len)
            return -1;
        unsigned long n = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (!crlf || end > crlf)
            return -1;
        in = (size_t)(crlf - b) + 2;
        if (n == 0)
            return (long)out;
        if (in + n > len)
            return -1;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
    }
}

int td_cli_http_get(const char *host, int port, const char *path,
                    const char *header, char **body, size_t *body_len)
{
    if (body)
        *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s%s\r\n",
                     path, host, port, header ? header : "", header ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req || write_all(fd, req, (size_t)n) < 0) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    long content_length = -1;
    size_t hdr_end = 0;
    int chunked = 0;
    while (buf) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 10000) <= 0)
            break;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = 0;
        if (!hdr_end) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e)
                continue;
            hdr_end = (size_t)(e - buf) + 4;
            for (char *h = strstr(buf, "\r\n"); h && h < e; h = strstr(h + 2, "\r\n")) {
                if (strncasecmp(h + 2, "content-length:", 15) == 0)
                    content_length = strtol(h + 17, NULL, 10);
                if (strncasecmp(h + 2, "transfer-encoding:", 18) == 0 &&
                    strstr(h + 2, "chunked") && strstr(h + 2, "chunked") < strstr(h + 2, "\r\n"))
                    chunked = 1;
            }
        }
        if (content_length >= 0 && len - hdr_end >= (size_t)content_length)
            break;
        if (chunked && len >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0)
            break;
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = 0;
    int status = -1;
    if (hdr_end && sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    if (status > 0 && body) {
        size_t blen = len - hdr_end;
        if (content_length >= 0 && (size_t)content_length < blen)
            blen = (size_t)content_length;
        memmove(buf, buf + hdr_end, blen);
        if (chunked) {
            long d = dechunk(buf, blen);
            blen = d < 0 ? 0 : (size_t)d;
        }
        buf[blen] = 0;
        *body = buf;
        if (body_len)
            *body_len = blen;
        return status;
    }
    free(buf);
    return status;
}

void td_cli_url_escape(const char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = 0;
}

/* ---- the server process ---------------------------------------------------- */

int td_cli_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* port 0: the kernel picks one from the ephemeral range; another
     * process could take it before the server binds, which start detects */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static int spawn(td_cli_server *s, const char *const *extra)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *argv[64];
    int n = 0;
    argv[n++] = s->bin;
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--data";
    argv[n++] = s->data_dir;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(s->bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int wait_healthy(td_cli_server *s, int timeout_ms)
{
    uint64_t deadline = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    while (td_cli_now_us() < deadline) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1; /* exited */
        }
        char *body = NULL;
        int code = td_cli_http_get("127.0.0.1", s->port, "/healthz", NULL, &body, NULL);
        free(body);
        if (code == 200)
            return 0;
        sleep_ms(20);
    }
    return -1;
}

int td_cli_server_start(td_cli_server *s, const char *bin, const char *data_dir,
                        const char *const *extra, int timeout_ms)
{
    memset(s, 0, sizeof *s);
    snprintf(s->bin, sizeof s->bin, "%s", bin);
    if (data_dir) {
        snprintf(s->data_dir, sizeof s->data_dir, "%s", data_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(s->data_dir, sizeof s->data_dir, "%s/tandem-it-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(s->data_dir))
            return -1;
        s->own_dir = 1;
        strncat(s->data_dir, "/data", sizeof s->data_dir - strlen(s->data_dir) - 1);
        if (mkdir(s->data_dir, 0700) < 0)
            return -1;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s.log", s->data_dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = td_cli_free_port();
        if (s->port <= 0)
            return -1;
        snprintf(s->url, sizeof s->url, "ws://127.0.0.1:%d/", s->port);
        if (spawn(s, extra) < 0)
            return -1;
        if (wait_healthy(s, timeout_ms) == 0)
            return 0;
        if (s->pid) /* running but never healthy: give up */
            break;
    }
    if (s->pid)
        td_cli_server_stop(s, SIGKILL, 0);
    return -1;
}

int td_cli_server_restart(td_cli_server *s, const char *const *extra, int timeout_ms)
{
    if (s->pid)
        td_cli_server_stop(s, SIGTERM, 10000);
    if (spawn(s, extra) < 0)
        return -1;
    return wait_healthy(s, timeout_ms);
}

int td_cli_server_stop(td_cli_server *s, int sig, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    int st = -1;
    kill(s->pid, sig);
    uint64_t deadline = td_cli_now_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000u;
    for (;;) {
        pid_t r = waitpid(s->pid, &st, sig == SIGKILL ? 0 : WNOHANG);
        if (r == s->pid)
            break;
        if (r < 0 && errno != EINTR) {
            st = -1;
            break;
        }
        if (td_cli_now_us() >= deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            st = -1;
            break;
        }
        sleep_ms(10);
    }
    s->pid = 0;
    return st;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int td_cli_rm_rf(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void td_cli_server_cleanup(td_cli_server *s)
{
    if (s->pid)
        td_cli_server_stop(s, SIGKILL, 0);
    if (!s->own_dir)
        return;
    if (getenv("TD_KEEP_DATA")) {
        fprintf(stderr, "keeping %s and %s\n", s->data_dir, s->log_path);
        return;
    }
    unlink(s->log_path);
    char parent[512];
    snprintf(parent, sizeof parent, "%s", s->data_dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = 0;
    td_cli_rm_rf(parent);
    s->own_dir = 0;
}

/* ---- /proc ------------------------------------------------------------------- */

static long status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

long td_cli_proc_rss_kb(pid_t pid) { return status_field(pid, "VmRSS"); }
long td_cli_proc_hwm_kb(pid_t pid) { return status_field(pid, "VmHWM"); }

double td_cli_proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return -1;
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int td_cli_run(const char *const *argv, char **out, size_t *out_len)
{
    int pfd[2];
    if (out)
        *out = NULL;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (buf && len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
                cap *= 2;
            }
        }
        char sink[4096];
        ssize_t r = buf ? read(pfd[0], buf + len, cap - len) : read(pfd[0], sink, sizeof sink);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (buf)
            len += (size_t)r;
    }
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (buf)
        buf[len] = 0;
    if (out)
        *out = buf;
    else
        free(buf);
    if (out_len)
        *out_len = len;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
