/*
 * srv_static.h -- private: the static files of `tandem serve --static DIR`
 * (the demo page), read whole on the loop thread.
 *
 * Only regular files inside DIR are served. Each path component is opened
 * below the one before it with O_NOFOLLOW, so no symlink is followed
 * anywhere in the path (one that stays inside DIR included: refusing them
 * all is simpler to reason about than checking where each one leads), and
 * the file is opened O_NONBLOCK and checked with fstat() before a byte is
 * read, so a FIFO or a device is refused instead of blocking the loop. Dot
 * segments (".", "..", ".git", ...) are refused before anything is opened.
 * Files larger than TD_SRV_STATIC_MAX are refused: the whole file is read
 * in one go on the loop thread, which is fine for the demo's few small
 * files and nothing else.
 */
#ifndef SRV_STATIC_H
#define SRV_STATIC_H

#include <stddef.h>
#include <stdint.h>

/* Largest static file served (the built demo's app.js is about 600 KB). */
#define TD_SRV_STATIC_MAX (8u << 20)

typedef enum td_srv_static_rc {
    TD_SRV_STATIC_OK = 0,
    TD_SRV_STATIC_NOT_FOUND, /* no such file, or a dot segment */
    TD_SRV_STATIC_REFUSED,   /* a symlink, or not a regular file */
    TD_SRV_STATIC_TOO_LARGE, /* bigger than TD_SRV_STATIC_MAX */
    TD_SRV_STATIC_BAD_PATH,  /* not absolute, too long, an empty segment */
    TD_SRV_STATIC_FAILED     /* out of memory, or a read error */
} td_srv_static_rc;

typedef struct td_srv_static_file {
    uint8_t *data; /* malloc'ed; the caller frees it */
    size_t len;
    const char *type; /* the Content-Type, by the name's extension */
} td_srv_static_file;

/* Reads `path` (a decoded URI path, starting with '/'; one ending in '/'
 * means its index.html) below the directory `root` (an absolute path). On
 * TD_SRV_STATIC_OK *out holds the file; otherwise out->data is NULL. */
td_srv_static_rc td_srv_static_read(const char *root, const char *path, td_srv_static_file *out);

#endif /* SRV_STATIC_H */
