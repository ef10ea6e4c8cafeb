/*
 * test_healthz.c -- issue 10, item 5, as a load balancer sees it: while the
 * store cannot write (its disk is full) GET /healthz answers 503 with the
 * reason, the rest of the server keeps answering, and once space returns
 * /healthz says 200 "ok" again without a restart.
 *
 * The data directory lives on a small tmpfs (MNT_SIZE) filled up to a
 * little below its size by a filler file; edits then fill the rest.
 * Needs to mount a tmpfs (root, or CAP_SYS_ADMIN): where that is not
 * permitted it prints "SKIP: cannot mount tmpfs: ..." and exits 77.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "it_util.h"

#define MNT_SIZE "size=24m"
#define LEFT_FREE (3u << 20) /* what the filler leaves for the edits */
#define PIECE (128u << 10)   /* text per edit */

static char g_tmp[512], g_mnt[600];
static td_cli_server g_srv;

static void unmount(void)
{
    td_cli_server_stop(&g_srv, SIGKILL, 0);
    if (g_mnt[0] && umount2(g_mnt, MNT_DETACH) != 0)
        perror("umount");
    td_cli_rm_rf(g_tmp);
}

static int healthz(char **body)
{
    return td_cli_http_get("127.0.0.1", g_srv.port, "/healthz", NULL, body, NULL);
}

static int settled(void *arg)
{
    td_cli_doc *d = arg;
    return td_cli_unacked(d) == 0 || td_cli_error_count(td_cli_doc_conn(d)) > 0 ||
           td_cli_conn_state(td_cli_doc_conn(d)) != TD_CLI_READY;
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "test_healthz");
    const char *t = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/tandem-healthz-XXXXXX", t && *t ? t : "/tmp");
    CHECK(mkdtemp(g_tmp) != NULL);
    snprintf(g_mnt, sizeof g_mnt, "%s/mnt", g_tmp);
    CHECK(mkdir(g_mnt, 0700) == 0);
    if (mount("tmpfs", g_mnt, "tmpfs", 0, MNT_SIZE) != 0) {
        printf("SKIP: cannot mount tmpfs: %s\n", strerror(errno));
        g_mnt[0] = 0;
        td_cli_rm_rf(g_tmp);
        return 77;
    }
    atexit(unmount);

    char data[700], filler[700];
    snprintf(data, sizeof data, "%s/data", g_mnt);
    snprintf(filler, sizeof filler, "%s/filler", g_mnt);
    CHECK(mkdir(data, 0700) == 0);
    CHECK_MSG(td_cli_server_start(&g_srv, it_bin(), data, NULL, 30000) == 0,
              "server did not start (log %s)", g_srv.log_path);
    char *body = NULL;
    CHECK(healthz(&body) == 200 && strcmp(body, "ok\n") == 0);
    free(body);
    body = NULL;

    /* Fill the file system up to LEFT_FREE. */
    struct statvfs vfs;
    CHECK(statvfs(g_mnt, &vfs) == 0);
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    CHECK(avail > LEFT_FREE);
    FILE *f = fopen(filler, "w");
    CHECK(f != NULL);
    static char block[65536];
    for (uint64_t left = avail - LEFT_FREE; left;) {
        size_t n = left < sizeof block ? (size_t)left : sizeof block;
        CHECK(fwrite(block, 1, n, f) == n);
        left -= n;
    }
    CHECK(fclose(f) == 0);

    /* Edits until the store cannot write. */
    td_cli_ctx *ctx = it_ctx();
    td_cli_conn *c = td_cli_connect(ctx, g_srv.url, NULL);
    td_cli_doc *d = td_cli_subscribe(c, "fill", NULL);
    CHECK(it_wait_ready(c, 10000) && it_wait_docs_synced(&d, 1, 10000));
    td_crdt_obj text;
    CHECK(td_crdt_root(td_cli_doc_crdt(d), TD_CRDT_TEXT, "t", 1, &text) == TD_CRDT_OK);
    char *piece = malloc(PIECE);
    CHECK(piece != NULL);
    int status = 200, edits = 0;
    for (; edits < 400 && status == 200; edits++) {
        for (size_t i = 0; i < PIECE; i++)
            piece[i] = (char)('a' + (i + (size_t)edits) % 26);
        if (td_cli_conn_state(c) == TD_CLI_READY) {
            CHECK(td_crdt_text_insert(td_cli_doc_crdt(d), text, 0, piece, PIECE) == TD_CRDT_OK);
            CHECK(td_cli_commit(d, NULL) == 0);
            td_cli_wait(ctx, settled, d, 5000);
        }
        free(body);
        body = NULL;
        status = healthz(&body);
    }
    free(piece);
    printf("after %d edits of %u KiB: /healthz %d: %s", edits, PIECE >> 10, status,
           body ? body : "(no body)\n");
    CHECK_MSG(status == 503, "/healthz never reported the full disk (%d)", status);
    CHECK_MSG(body && strncmp(body, "store cannot write: ", 20) == 0 && strlen(body) > 21,
              "/healthz 503 without a reason: %s", body ? body : "(none)");
    free(body);
    body = NULL;
    /* The rest of the server is up meanwhile. */
    CHECK(td_cli_http_get("127.0.0.1", g_srv.port, "/metrics", NULL, &body, NULL) == 200);
    free(body);
    body = NULL;

    /* Space comes back: healthy again, without a restart. */
    CHECK(unlink(filler) == 0);
    uint64_t t0 = td_cli_now_us();
    do {
        td_cli_service(ctx, 100);
        free(body);
        body = NULL;
        status = healthz(&body);
    } while (status != 200 && td_cli_now_us() - t0 < 20000000);
    printf("space back: /healthz %d after %.1f s\n", status,
           (double)(td_cli_now_us() - t0) / 1e6);
    CHECK_MSG(status == 200 && body && strcmp(body, "ok\n") == 0,
              "/healthz did not recover: %d %s", status, body ? body : "");
    free(body);
    td_cli_close(c);
    it_pass();
}
