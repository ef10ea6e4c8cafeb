/*
 * fuzz_replay.c -- runs the fuzz targets' entry points over files, without
 * libFuzzer, so that the targets are compiled and exercised by every build
 * (gcc included) and a crash input can be replayed under a debugger.
 *
 *   fuzz_replay --batch PATH... [--snapshot PATH...] [--vv PATH...] [--yjs PATH...]
 *
 * Each PATH is a file or a directory (its regular files, in name order);
 * a missing directory is skipped. Every input that breaks a contract is
 * reported (a crash or sanitizer report still ends the run); it exits 1 if
 * any did, or if a mode that was named found no input at all.
 */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef int (*entry_fn)(const uint8_t *, size_t);

static int run_file(entry_fn fn, const char *path)
{
    long before = tt_fuzz_failures;
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf)
        return -1;
    fn(buf, len);
    free(buf);
    if (tt_fuzz_failures != before)
        fprintf(stderr, "  (input: %s)\n", path);
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the number of inputs run, -1 on an I/O error. */
static long run_path(entry_fn fn, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0; /* an optional directory that does not exist */
    if (!S_ISDIR(st.st_mode))
        return run_file(fn, path);
    DIR *dir = opendir(path);
    if (!dir) {
        perror(path);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof *names);
        }
        size_t l = strlen(path) + strlen(de->d_name) + 2;
        names[n] = malloc(l);
        snprintf(names[n], l, "%s/%s", path, de->d_name);
        n++;
    }
    closedir(dir);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(fn, names[i]) < 0)
                count = -1;
            else if (count >= 0)
                count++;
        }
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *flag;
        entry_fn fn;
    } modes[] = {
        {"--batch", tt_fuzz_batch_one},
        {"--snapshot", tt_fuzz_snapshot_one},
        {"--vv", tt_fuzz_vv_one},
        {"--yjs", tt_fuzz_yjs_one},
    };
    enum { NMODES = sizeof modes / sizeof modes[0] };
    long counts[NMODES] = {0};
    int named[NMODES] = {0};
    int mode = -1, status = 0;
    tt_fuzz_keep_going = 1;
    for (int i = 1; i < argc; i++) {
        int m = -1;
        for (int k = 0; k < NMODES; k++)
            if (!strcmp(argv[i], modes[k].flag))
                m = k;
        if (m >= 0) {
            mode = m;
            named[m] = 1;
            continue;
        }
        if (mode < 0) {
            fprintf(stderr,
                    "usage: %s --batch PATH... [--snapshot PATH...] [--vv PATH...] [--yjs PATH...]\n",
                    argv[0]);
            return 2;
        }
        long c = run_path(modes[mode].fn, argv[i]);
        if (c < 0)
            status = 1;
        else
            counts[mode] += c;
    }
    for (int k = 0; k < NMODES; k++) {
        if (!named[k])
            continue;
        printf("%s: %ld inputs\n", modes[k].flag + 2, counts[k]);
        if (counts[k] == 0) {
            fprintf(stderr, "%s: no inputs found\n", modes[k].flag + 2);
            status = 1;
        }
    }
    if (tt_fuzz_failures) {
        fprintf(stderr, "%ld inputs broke a contract\n", tt_fuzz_failures);
        status = 1;
    }
    return status;
}
