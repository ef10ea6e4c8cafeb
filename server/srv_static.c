/*
 * srv_static.c -- static files below --static DIR (srv_static.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srv_static.h"

/* Longest URI path looked at; lws has already cut the query off. */
#define PATH_LEN 1024
#define INDEX "index.html"

/* Content types by extension; anything else is application/octet-stream,
 * which a browser will not run or render. */
static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".wasm", "application/wasm"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".ico", "image/x-icon"},
    {".map", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* What a failed open or stat means to the client. ELOOP is O_NOFOLLOW
 * meeting a symlink; ENXIO is a socket file; ENOTDIR a file used as a
 * directory. */
static const struct {
    int err;
    td_srv_static_rc rc;
} errnos[] = {
    {ENOENT, TD_SRV_STATIC_NOT_FOUND}, {ENOTDIR, TD_SRV_STATIC_NOT_FOUND},
    {ENAMETOOLONG, TD_SRV_STATIC_BAD_PATH}, {ELOOP, TD_SRV_STATIC_REFUSED},
    {EACCES, TD_SRV_STATIC_REFUSED}, {EPERM, TD_SRV_STATIC_REFUSED},
    {ENXIO, TD_SRV_STATIC_REFUSED}, {ENODEV, TD_SRV_STATIC_REFUSED},
};

static td_srv_static_rc from_errno(int err)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (errnos[i].err == err)
            return errnos[i].rc;
    return TD_SRV_STATIC_FAILED;
}

/* A path segment that may be opened: not empty, and no dot-file ("." and
 * ".." included; lws normally removes those from the URI already, this does
 * not rely on it). */
static td_srv_static_rc segment_ok(const char *seg)
{
    if (!*seg)
        return TD_SRV_STATIC_BAD_PATH;
    return seg[0] == '.' ? TD_SRV_STATIC_NOT_FOUND : TD_SRV_STATIC_OK;
}

/* Opens the segment `seg` below the directory `dir` (consumed), without
 * following a symlink: a directory if more segments follow, else a regular
 * file. Its kind is looked at before it is opened (so a device is never
 * opened) and again after (so one swapped in meanwhile is still refused). */
static td_srv_static_rc open_below(int dir, const char *seg, int last, int *fd,
                                   struct stat *st)
{
    td_srv_static_rc rc = segment_ok(seg);
    *fd = -1;
    if (rc == TD_SRV_STATIC_OK && fstatat(dir, seg, st, AT_SYMLINK_NOFOLLOW) != 0)
        rc = from_errno(errno);
    if (rc == TD_SRV_STATIC_OK && !(last ? S_ISREG(st->st_mode) : S_ISDIR(st->st_mode)))
        rc = S_ISLNK(st->st_mode) || last ? TD_SRV_STATIC_REFUSED : TD_SRV_STATIC_NOT_FOUND;
    if (rc == TD_SRV_STATIC_OK) {
        *fd = openat(dir, seg,
                     O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
                         (last ? O_NONBLOCK : O_DIRECTORY));
        if (*fd < 0)
            rc = from_errno(errno);
        else if (fstat(*fd, st) != 0)
            rc = TD_SRV_STATIC_FAILED;
        else if (!(last ? S_ISREG(st->st_mode) : S_ISDIR(st->st_mode)))
            rc = TD_SRV_STATIC_REFUSED;
    }
    close(dir);
    if (rc != TD_SRV_STATIC_OK && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* Reads the regular file fd (st_size bytes as stat said; a file that
 * shrinks meanwhile is served as far as it goes). */
static td_srv_static_rc read_all(int fd, const struct stat *st, td_srv_static_file *out)
{
    size_t want = (size_t)st->st_size, got = 0;
    if (st->st_size < 0 || (uint64_t)st->st_size > TD_SRV_STATIC_MAX)
        return TD_SRV_STATIC_TOO_LARGE;
    out->data = malloc(want ? want : 1);
    if (!out->data)
        return TD_SRV_STATIC_FAILED;
    while (got < want) {
        ssize_t n = read(fd, out->data + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(out->data);
            out->data = NULL;
            return TD_SRV_STATIC_FAILED;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    out->len = got;
    return TD_SRV_STATIC_OK;
}

td_srv_static_rc td_srv_static_read(const char *root, const char *path, td_srv_static_file *out)
{
    char buf[PATH_LEN + sizeof INDEX];
    td_srv_static_rc rc = TD_SRV_STATIC_OK;
    struct stat st;
    size_t n = path ? strlen(path) : 0;
    char *seg = buf, *slash;
    int fd;

    memset(out, 0, sizeof *out);
    if (!root || n == 0 || path[0] != '/' || n > PATH_LEN)
        return TD_SRV_STATIC_BAD_PATH;
    memcpy(buf, path + 1, n); /* without the '/', with the NUL */
    if (path[n - 1] == '/')
        memcpy(buf + n - 1, INDEX, sizeof INDEX);
    /* The root itself was resolved once at startup (cli_serve.c). */
    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return from_errno(errno);
    for (;; seg = slash + 1) {
        slash = strchr(seg, '/');
        if (slash)
            *slash = '\0';
        rc = open_below(fd, seg, slash == NULL, &fd, &st);
        if (rc != TD_SRV_STATIC_OK)
            return rc;
        if (!slash)
            break;
    }
    out->type = type_of(seg);
    rc = read_all(fd, &st, out);
    close(fd);
    return rc;
}
