/*
 * tandem_yjs_bench.c -- tandem-yjs-bench: replays the Yjs updates of an
 * editing trace (written by bench/yjs/make-updates.mjs with the npm yjs
 * package) through the C Yjs model (crdt/yjs/tandem_yjs.h), checks that
 * the text reaches the trace's endContent and measures it.
 *
 *   node bench/yjs/make-updates.mjs ../shared/traces/automerge-paper.json.gz /tmp/ap
 *   build/bench/tandem-yjs-bench [--json] [--load-runs N] /tmp/ap ...
 *
 * Each OUT file (its format: the top of make-updates.mjs) is measured in a
 * child process of its own, so that peak_rss_kb is that file's. Per file:
 *
 *   ok             every update applied with TD_YJS_OK one at a time,
 *                  nothing left pending, td_yjs_to_json's member "text" is
 *                  endContent, and OUT.full (Y.encodeStateAsUpdate of the
 *                  final Yjs doc) loads into an empty doc to the same text
 *                  and the same state vector
 *   updates        number of updates in OUT
 *   integrate_ms   applying them all, one td_yjs_apply_update each (CPU
 *                  time of the child process, as load_ms)
 *   load_ms        applying OUT.full to an empty doc (best of --load-runs, 5)
 *   encoded_bytes  td_yjs_encode_state_as_update(doc, empty sv) after the replay
 *   yjs_bytes      the length of OUT.full (what Yjs encodes)
 *   peak_rss_kb    the child's getrusage ru_maxrss
 *   rest_bytes     td_yjs_doc_stats().bytes after the replay
 *
 * Default output: a '#' header line, then one line per file:
 *   trace, ok, updates, integrate_ms, load_ms, encoded_bytes, yjs_bytes, peak_rss_kb, rest_bytes
 * --json: one JSON object per file and line, those keys first, then Yjs's own
 * times from the header (yjs_ms, yjs_apply_ms, yjs_load_ms), loaded_rest_bytes
 * and error (null when ok). Problems are printed on stderr.
 * Exit status: 0 all ok, 1 some file is not ok (or unreadable), 64 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include "tandem_yjs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct result {
    int ok;
    long updates;
    double integrate_ms, load_ms;
    long long encoded_bytes, yjs_bytes, peak_rss_kb, rest_bytes, loaded_rest_bytes;
    double yjs_ms, yjs_apply_ms, yjs_load_ms;
    char trace[256];
    char error[512];
} result;

/* CPU time of this (single-threaded) process: on a machine shared with
 * builds or other benchmarks, wall time measures the neighbours too. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static double num_or(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* The member "text" of td_yjs_to_json(doc) equals want (UTF-8)? */
static int text_is(td_yjs_doc *doc, const char *want, char *why, size_t whylen)
{
    char *json = NULL;
    size_t jlen = 0;
    td_yjs_err e = td_yjs_to_json(doc, 0, &json, &jlen);
    if (e != TD_YJS_OK) {
        snprintf(why, whylen, "td_yjs_to_json: %s (%s)", td_yjs_strerror(e),
                 td_yjs_doc_error(doc));
        return 0;
    }
    cJSON *root = cJSON_ParseWithLength(json, jlen);
    td_yjs_buf_free(doc, json);
    if (!root) {
        snprintf(why, whylen, "td_yjs_to_json wrote invalid JSON");
        return 0;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text");
    int ok = 0;
    if (!cJSON_IsString(t)) {
        snprintf(why, whylen, "td_yjs_to_json has no string member \"text\"");
    } else if (strcmp(t->valuestring, want) != 0) {
        size_t k = 0;
        while (t->valuestring[k] && t->valuestring[k] == want[k])
            k++;
        snprintf(why, whylen, "text is not endContent (%zu vs %zu bytes, first difference at byte %zu)",
                 strlen(t->valuestring), strlen(want), k);
    } else {
        ok = 1;
    }
    cJSON_Delete(root);
    return ok;
}

static void measure(const char *path, int load_runs, result *r)
{
    size_t len = 0, flen = 0;
    uint8_t *buf = NULL, *full = NULL;
    cJSON *hdr = NULL;
    td_yjs_doc *doc = NULL, *ld = NULL;
    uint8_t *sv1 = NULL, *sv2 = NULL, *enc = NULL;
    size_t sv1len = 0, sv2len = 0, enclen = 0;
    const char *slash = strrchr(path, '/');
    snprintf(r->trace, sizeof r->trace, "%s", slash ? slash + 1 : path);
    r->ok = 0;
    r->updates = -1;
    r->integrate_ms = r->load_ms = -1;
    r->encoded_bytes = r->yjs_bytes = r->peak_rss_kb = r->rest_bytes = r->loaded_rest_bytes = -1;
    r->yjs_ms = r->yjs_apply_ms = r->yjs_load_ms = -1;

    buf = read_all(path, &len);
    if (!buf) {
        snprintf(r->error, sizeof r->error, "cannot read: %s", strerror(errno));
        goto out;
    }
    if (len < 6 || memcmp(buf, "TDYU1\n", 6) != 0) {
        snprintf(r->error, sizeof r->error, "not a make-updates.mjs file (no TDYU1 magic)");
        goto out;
    }
    uint8_t *nl = memchr(buf + 6, '\n', len - 6);
    if (!nl) {
        snprintf(r->error, sizeof r->error, "no header line");
        goto out;
    }
    hdr = cJSON_ParseWithLength((const char *)buf + 6, (size_t)(nl - (buf + 6)));
    const cJSON *end = hdr ? cJSON_GetObjectItemCaseSensitive(hdr, "endContent") : NULL;
    const cJSON *tr = hdr ? cJSON_GetObjectItemCaseSensitive(hdr, "trace") : NULL;
    if (!cJSON_IsString(end)) {
        snprintf(r->error, sizeof r->error, "header is not JSON with endContent");
        goto out;
    }
    if (cJSON_IsString(tr))
        snprintf(r->trace, sizeof r->trace, "%s", tr->valuestring);
    long want_updates = (long)num_or(hdr, "updates", -1);
    r->yjs_bytes = (long long)num_or(hdr, "yjs_bytes", -1);
    r->yjs_ms = num_or(hdr, "yjs_ms", -1);
    r->yjs_apply_ms = num_or(hdr, "yjs_apply_ms", -1);
    r->yjs_load_ms = num_or(hdr, "yjs_load_ms", -1);

    /* Index the records first, so that the timing covers only the model. */
    size_t off = (size_t)(nl + 1 - buf), n = 0, cap = 1024;
    size_t *offs = malloc(cap * sizeof *offs), *lens = malloc(cap * sizeof *lens);
    while (offs && lens && off < len) {
        if (len - off < 4) {
            snprintf(r->error, sizeof r->error, "truncated record length at byte %zu", off);
            free(offs);
            free(lens);
            goto out;
        }
        uint32_t l = (uint32_t)buf[off] | (uint32_t)buf[off + 1] << 8 |
                     (uint32_t)buf[off + 2] << 16 | (uint32_t)buf[off + 3] << 24;
        off += 4;
        if (l > len - off) {
            snprintf(r->error, sizeof r->error, "record %zu runs past the end", n);
            free(offs);
            free(lens);
            goto out;
        }
        if (n == cap) {
            cap *= 2;
            size_t *o2 = realloc(offs, cap * sizeof *offs);
            if (o2)
                offs = o2;
            size_t *l2 = o2 ? realloc(lens, cap * sizeof *lens) : NULL;
            if (l2)
                lens = l2;
            if (!o2 || !l2) {
                snprintf(r->error, sizeof r->error, "out of memory");
                free(offs);
                free(lens);
                goto out;
            }
        }
        offs[n] = off;
        lens[n] = l;
        n++;
        off += l;
    }
    if (!offs || !lens) {
        snprintf(r->error, sizeof r->error, "out of memory");
        free(offs);
        free(lens);
        goto out;
    }
    r->updates = (long)n;
    if (want_updates >= 0 && (size_t)want_updates != n) {
        snprintf(r->error, sizeof r->error, "header says %ld updates, file has %zu", want_updates, n);
        free(offs);
        free(lens);
        goto out;
    }

    td_yjs_err e = td_yjs_doc_new(NULL, &doc);
    if (e != TD_YJS_OK) {
        snprintf(r->error, sizeof r->error, "td_yjs_doc_new: %s", td_yjs_strerror(e));
        free(offs);
        free(lens);
        goto out;
    }
    double t0 = now_ms();
    for (size_t i = 0; i < n; i++) {
        e = td_yjs_apply_update(doc, buf + offs[i], lens[i]);
        if (e != TD_YJS_OK) {
            snprintf(r->error, sizeof r->error, "update %zu (%zu bytes): %s: %s", i, lens[i],
                     td_yjs_strerror(e), td_yjs_doc_error(doc));
            break;
        }
    }
    r->integrate_ms = now_ms() - t0;
    free(offs);
    free(lens);
    if (e != TD_YJS_OK)
        goto out;

    td_yjs_stats st;
    td_yjs_doc_stats(doc, &st);
    r->rest_bytes = (long long)st.bytes;
    if (st.pending_structs || st.pending_deletes) {
        snprintf(r->error, sizeof r->error, "%zu structs and %zu delete ranges left pending",
                 st.pending_structs, st.pending_deletes);
        goto out;
    }
    if (!text_is(doc, end->valuestring, r->error, sizeof r->error))
        goto out;
    e = td_yjs_encode_state_as_update(doc, NULL, 0, &enc, &enclen);
    if (e != TD_YJS_OK) {
        snprintf(r->error, sizeof r->error, "td_yjs_encode_state_as_update: %s: %s",
                 td_yjs_strerror(e), td_yjs_doc_error(doc));
        goto out;
    }
    r->encoded_bytes = (long long)enclen;
    e = td_yjs_encode_state_vector(doc, &sv1, &sv1len);
    if (e != TD_YJS_OK) {
        snprintf(r->error, sizeof r->error, "td_yjs_encode_state_vector: %s", td_yjs_strerror(e));
        goto out;
    }

    /* The whole-document update Yjs wrote. */
    char fpath[4096];
    snprintf(fpath, sizeof fpath, "%s.full", path);
    full = read_all(fpath, &flen);
    if (!full) {
        snprintf(r->error, sizeof r->error, "cannot read .full: %s", strerror(errno));
        goto out;
    }
    if (r->yjs_bytes < 0)
        r->yjs_bytes = (long long)flen;
    for (int k = 0; k < load_runs; k++) {
        if (ld)
            td_yjs_doc_free(ld);
        ld = NULL;
        t0 = now_ms();
        e = td_yjs_doc_new(NULL, &ld);
        if (e == TD_YJS_OK)
            e = td_yjs_apply_update(ld, full, flen);
        double ms = now_ms() - t0;
        if (e != TD_YJS_OK) {
            snprintf(r->error, sizeof r->error, "loading .full: %s: %s", td_yjs_strerror(e),
                     ld ? td_yjs_doc_error(ld) : "");
            goto out;
        }
        if (r->load_ms < 0 || ms < r->load_ms)
            r->load_ms = ms;
    }
    td_yjs_doc_stats(ld, &st);
    r->loaded_rest_bytes = (long long)st.bytes;
    char why[400];
    if (!text_is(ld, end->valuestring, why, sizeof why)) {
        snprintf(r->error, sizeof r->error, "after loading .full: %s", why);
        goto out;
    }
    e = td_yjs_encode_state_vector(ld, &sv2, &sv2len);
    if (e != TD_YJS_OK) {
        snprintf(r->error, sizeof r->error, "td_yjs_encode_state_vector (loaded): %s",
                 td_yjs_strerror(e));
        goto out;
    }
    if (sv1len != sv2len || memcmp(sv1, sv2, sv1len) != 0) {
        snprintf(r->error, sizeof r->error,
                 "state vector after the replay differs from the one after loading .full");
        goto out;
    }
    r->ok = 1;
    r->error[0] = 0;
out:
    if (enc)
        td_yjs_buf_free(doc, enc);
    if (sv1)
        td_yjs_buf_free(doc, sv1);
    if (sv2)
        td_yjs_buf_free(ld, sv2);
    if (doc)
        td_yjs_doc_free(doc);
    if (ld)
        td_yjs_doc_free(ld);
    cJSON_Delete(hdr);
    free(buf);
    free(full);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        r->peak_rss_kb = ru.ru_maxrss;
}

/* Runs measure() in a child so that ru_maxrss is this file's alone. */
static void measure_forked(const char *path, int load_runs, result *r)
{
    int fd[2];
    fflush(NULL);
    if (pipe(fd) != 0) {
        measure(path, load_runs, r);
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        measure(path, load_runs, r);
        return;
    }
    if (pid == 0) {
        close(fd[0]);
        result cr;
        memset(&cr, 0, sizeof cr);
        measure(path, load_runs, &cr);
        const char *p = (const char *)&cr;
        size_t left = sizeof cr;
        while (left) {
            ssize_t w = write(fd[1], p, left);
            if (w <= 0)
                _exit(1);
            p += w;
            left -= (size_t)w;
        }
        _exit(0);
    }
    close(fd[1]);
    memset(r, 0, sizeof *r);
    char *p = (char *)r;
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t n = read(fd[0], p + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != sizeof *r) {
        const char *slash = strrchr(path, '/');
        memset(r, 0, sizeof *r);
        snprintf(r->trace, sizeof r->trace, "%s", slash ? slash + 1 : path);
        r->updates = -1;
        r->integrate_ms = r->load_ms = -1;
        r->encoded_bytes = r->yjs_bytes = r->peak_rss_kb = r->rest_bytes = -1;
        r->loaded_rest_bytes = -1;
        r->yjs_ms = r->yjs_apply_ms = r->yjs_load_ms = -1;
        if (WIFSIGNALED(status))
            snprintf(r->error, sizeof r->error, "crashed (signal %d)", WTERMSIG(status));
        else
            snprintf(r->error, sizeof r->error, "the measuring process died (status %d)",
                     WEXITSTATUS(status));
    }
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_num(const char *key, double v, int integer)
{
    printf(", \"%s\": ", key);
    if (v < 0)
        printf("null");
    else if (integer)
        printf("%.0f", v);
    else
        printf("%.3f", v);
}

int main(int argc, char **argv)
{
    int json = 0, load_runs = 5, first = 1;
    while (first < argc && argv[first][0] == '-' && argv[first][1] == '-') {
        if (!strcmp(argv[first], "--json")) {
            json = 1;
            first++;
        } else if (!strcmp(argv[first], "--load-runs") && first + 1 < argc) {
            load_runs = atoi(argv[first + 1]);
            first += 2;
        } else if (!strcmp(argv[first], "--")) {
            first++;
            break;
        } else {
            break;
        }
    }
    if (first >= argc || load_runs < 1 || load_runs > 1000) {
        fprintf(stderr, "usage: %s [--json] [--load-runs N] OUT...\n"
                        "  OUT: written by node bench/yjs/make-updates.mjs TRACE OUT\n",
                argv[0]);
        return 64;
    }
    if (!json)
        printf("# trace, ok, updates, integrate_ms, load_ms, encoded_bytes, yjs_bytes, "
               "peak_rss_kb, rest_bytes\n");
    int status = 0;
    for (int i = first; i < argc; i++) {
        result r;
        measure_forked(argv[i], load_runs, &r);
        if (!r.ok) {
            status = 1;
            fprintf(stderr, "tandem-yjs-bench: %s: %s\n", argv[i], r.error);
        }
        if (json) {
            printf("{\"trace\": ");
            json_str(r.trace);
            printf(", \"ok\": %s", r.ok ? "true" : "false");
            json_num("updates", (double)r.updates, 1);
            json_num("integrate_ms", r.integrate_ms, 0);
            json_num("load_ms", r.load_ms, 0);
            json_num("encoded_bytes", (double)r.encoded_bytes, 1);
            json_num("yjs_bytes", (double)r.yjs_bytes, 1);
            json_num("peak_rss_kb", (double)r.peak_rss_kb, 1);
            json_num("rest_bytes", (double)r.rest_bytes, 1);
            json_num("yjs_ms", r.yjs_ms, 0);
            json_num("yjs_apply_ms", r.yjs_apply_ms, 0);
            json_num("yjs_load_ms", r.yjs_load_ms, 0);
            json_num("loaded_rest_bytes", (double)r.loaded_rest_bytes, 1);
            printf(", \"error\": ");
            if (r.ok)
                printf("null");
            else
                json_str(r.error);
            printf("}\n");
        } else {
            printf("%s, %s, %ld, %.1f, %.2f, %lld, %lld, %lld, %lld\n", r.trace,
                   r.ok ? "ok" : "FAIL", r.updates, r.integrate_ms, r.load_ms, r.encoded_bytes,
                   r.yjs_bytes, r.peak_rss_kb, r.rest_bytes);
        }
        fflush(stdout);
    }
    return status;
}
