/*
 * cli_args.c -- what every verb shares: option parsing, help, messages,
 * opening the data directory.
 *
 * Options may come before, between or after the positional arguments;
 * `--opt VALUE` and `--opt=VALUE` are the same; `--` ends the options (for
 * document ids starting with '-'). A misspelt option is an error naming it,
 * never a silently ignored word.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "td_srv_cli.h"

void td_srv_verb_help(const td_srv_verb *v, FILE *out)
{
    fprintf(out, "usage: tandem %s [options]%s%s\n\n%c%s.\n\n%s", v->name,
            v->synopsis[0] ? " " : "", v->synopsis,
            toupper((unsigned char)v->summary[0]), v->summary + 1, v->help);
    fprintf(out, "  --help       show this help\n");
}

void td_srv_fail(const td_srv_verb *v, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tandem %s: ", v->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const td_srv_verb *v, const char *what, const char *arg)
{
    fprintf(stderr, "tandem %s: %s%s%s%s\nusage: tandem %s [options]%s%s "
                    "(see 'tandem %s --help')\n",
            v->name, what, arg ? " '" : "", arg ? arg : "", arg ? "'" : "", v->name,
            v->synopsis[0] ? " " : "", v->synopsis, v->name);
    return TD_SRV_EXIT_USAGE;
}

int td_srv_args_parse(const td_srv_verb *v, int argc, char **argv,
                      unsigned opts, int min_pos, int max_pos, td_srv_args *out)
{
    int only_pos = 0;

    memset(out, 0, sizeof *out);
    out->data = TD_SRV_DEFAULT_DATA;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
        } else if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            td_srv_verb_help(v, stdout);
            return TD_SRV_EXIT_OK;
        } else if (!only_pos && (opts & TD_SRV_OPT_DATA) &&
                   strncmp(a, "--data", 6) == 0 && (a[6] == '\0' || a[6] == '=')) {
            if (a[6] == '=') {
                out->data = a + 7;
            } else if (i + 1 < argc) {
                out->data = argv[++i];
            } else {
                return usage_error(v, "--data needs a directory", NULL);
            }
            if (out->data[0] == '\0')
                return usage_error(v, "--data needs a directory", NULL);
        } else if (!only_pos && (opts & TD_SRV_OPT_FORCE) && strcmp(a, "--force") == 0) {
            out->force = 1;
        } else if (!only_pos && a[0] == '-' && a[1] != '\0') {
            return usage_error(v, "unknown option", a);
        } else {
            if (out->npos >= max_pos || out->npos >= TD_SRV_MAX_POS)
                return usage_error(v, "unexpected argument", a);
            out->pos[out->npos++] = a;
        }
    }
    if (out->npos < min_pos)
        return usage_error(v, "missing argument(s):", v->synopsis);
    return -1;
}

td_store *td_srv_open_store(const td_srv_verb *v, const char *dir,
                            td_srv_open_mode mode)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st = NULL;

    o.read_only = mode == TD_SRV_OPEN_READ;
    o.create_if_missing = mode == TD_SRV_OPEN_CREATE;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    if (td_store_open(dir, &o, &st, &e) != TD_STORE_OK) {
        td_srv_fail(v, "%s", e.msg);
        return NULL;
    }
    return st;
}

int td_srv_doc_arg_ok(const td_srv_verb *v, const char *doc)
{
    if (td_store_doc_id_valid(doc, strlen(doc)))
        return 1;
    td_srv_fail(v, "invalid document id '%s': ids are 1 to 255 bytes of UTF-8 "
                   "without control characters",
                doc);
    return 0;
}
