/*
 * fuzz_corpus_gen.c -- writes the fuzz targets' seed corpora, generated
 * from the seed scenario (td_test_docs.c) by the core being tested, so
 * that they always match its current encodings.
 *
 *   fuzz_corpus_gen OUTDIR   -> OUTDIR/batch, OUTDIR/snapshot, OUTDIR/vv, OUTDIR/yjs
 *
 * A batch seed is one byte naming the target document, then the batch.
 * The yjs seeds are fuzz_yjs.c's Yjs updates, plus the Yjs document model's
 * own encoding of them all (td_yjs_encode_state_as_update).
 */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_common.h"
#include "tandem_yjs.h"

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
    char dirs[4][900];
    const char *sub[4] = {"batch", "snapshot", "vv", "yjs"};
    if (mkdir_p(argv[1]) != 0)
        return 1;
    for (int k = 0; k < 4; k++) {
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
    /* Yjs: the seeds, then the model's encoding of all of them. */
    td_yjs_doc *yd = NULL;
    if (td_yjs_doc_new(NULL, &yd) != TD_YJS_OK)
        return 1;
    size_t ylen;
    const char *yname;
    const uint8_t *yb;
    for (size_t i = 0; (yb = tt_fuzz_yjs_seed(i, &ylen, &yname)) != NULL; i++) {
        tt_bytes b = {(uint8_t *)yb, ylen};
        char name[128];
        snprintf(name, sizeof name, "seed-%02zu-%s", i, yname);
        rc |= write_file(dirs[3], name, 0, 0, &b);
        files++;
        if (td_yjs_apply_update(yd, yb, ylen) != TD_YJS_OK) {
            fprintf(stderr, "yjs seed %s does not apply: %s\n", yname, td_yjs_doc_error(yd));
            rc = 1;
        }
    }
    uint8_t *enc;
    size_t enclen;
    if (td_yjs_encode_state_as_update(yd, NULL, 0, &enc, &enclen) == TD_YJS_OK) {
        tt_bytes b = {enc, enclen};
        rc |= write_file(dirs[3], "model-encoding-of-all-seeds", 0, 0, &b);
        files++;
        td_yjs_buf_free(yd, enc);
    } else {
        fprintf(stderr, "yjs: td_yjs_encode_state_as_update: %s\n", td_yjs_doc_error(yd));
        rc = 1;
    }
    td_yjs_doc_free(yd);
    printf("%d seed files in %s\n", files, argv[1]);
    return rc ? 1 : 0;
}
