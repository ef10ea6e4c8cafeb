/*
 * fuzz_corpus_gen.c -- writes the fuzz targets' seed corpora, generated
 * from the seed scenario (td_test_docs.c) by the core being tested, so
 * that they always match its current encodings.
 *
 *   fuzz_corpus_gen OUTDIR   -> OUTDIR/batch, OUTDIR/snapshot, OUTDIR/vv
 *
 * A batch seed is one byte naming the target document, then the batch.
 */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    perror(path);
    return -1;
}

static int write_file(const char *dir, const char *name, uint8_t prefix, int has_prefix,
                      const tt_bytes *b)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return -1;
    }
    int ok = 1;
    if (has_prefix)
        ok &= fwrite(&prefix, 1, 1, f) == 1;
    if (b->len)
        ok &= fwrite(b->p, 1, b->len, f) == b->len;
    ok &= fclose(f) == 0;
    if (!ok)
        perror(path);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    char dirs[3][900];
    const char *sub[3] = {"batch", "snapshot", "vv"};
    if (mkdir_p(argv[1]) != 0)
        return 1;
    for (int k = 0; k < 3; k++) {
        snprintf(dirs[k], sizeof dirs[k], "%s/%s", argv[1], sub[k]);
        if (mkdir_p(dirs[k]) != 0)
            return 1;
    }
    const tt_scenario *sc = tt_fuzz_scenario();
    int rc = 0, files = 0;
    for (size_t i = 0; i < sc->n; i++) {
        const tt_enc *e = &sc->enc[i];
        char name[128];
        if (e->kind == TT_ENC_BATCH) {
            for (size_t t = 0; t < sc->ntargets; t++) {
                snprintf(name, sizeof name, "t%zu-%s", t, e->name);
                rc |= write_file(dirs[0], name, (uint8_t)t, 1, &e->b);
                files++;
            }
        } else {
            snprintf(name, sizeof name, "%s", e->name);
            rc |= write_file(dirs[e->kind == TT_ENC_SNAP ? 1 : 2], name, 0, 0, &e->b);
            files++;
        }
    }
    printf("%d seed files in %s\n", files, argv[1]);
    return rc ? 1 : 0;
}
