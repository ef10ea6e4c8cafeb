/*
 * cli_args.c -- the one argument parser and help printer of every verb,
 * driven by the verb's tables (td_srv_cli.h).
 *
 * A value comes from the table's default, then the option's environment
 * variable, then the command line, the last one winning. Options may come
 * before, between or after the positional arguments; `--opt VALUE` and
 * `--opt=VALUE` are the same; `--` ends the options (for document ids
 * starting with '-'). A misspelt option is an error naming it, never a
 * silently ignored word.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "td_srv_cli.h"

#define HELP_COL 28 /* width of the "--name ARG" column in help */

/* ---- values -------------------------------------------------------------- */

typedef struct unit {
    const char *suffix;
    uint64_t mul;
} unit;

static const unit size_units[] = {{"K", 1u << 10}, {"k", 1u << 10}, {"M", 1u << 20},
                                  {"m", 1u << 20}, {"G", 1u << 30}, {"g", 1u << 30},
                                  {NULL, 0}};
/* What may follow the multiplier: "8M", "8MB", "8MiB" all mean the same. */
static const char *const size_tails[] = {"", "B", "b", "i", "iB", "ib", NULL};
static const unit ms_units[] = {{"ms", 1}, {"s", 1000}, {NULL, 0}};
static const char *const no_tails[] = {"", NULL};

static const td_srv_choice bool_choices[] = {
    {"0", 0}, {"1", 1}, {"false", 0}, {"true", 1}, {NULL, 0}};

/* A decimal number, then at most one of `units`, then one of `tails`. */
static int parse_u64(const char *s, const unit *units, const char *const *tails,
                     uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mul = 1;

    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (; units && units->suffix; units++) {
        size_t n = strlen(units->suffix);
        if (strncmp(end, units->suffix, n) == 0) {
            mul = units->mul;
            end += n;
            break;
        }
    }
    while (*tails && strcmp(end, *tails) != 0)
        tails++;
    if (!*tails || (v && mul > UINT64_MAX / v))
        return -1;
    *out = v * mul;
    return 0;
}

static int set_str(const td_srv_opt *o, const char *s, void *field)
{
    (void)o;
    if (!*s)
        return -1;
    *(const char **)field = s;
    return 0;
}

static int set_port(const td_srv_opt *o, const char *s, void *field)
{
    uint64_t u;
    (void)o;
    if (parse_u64(s, NULL, no_tails, &u) < 0 || u < 1 || u > 65535)
        return -1;
    *(int *)field = (int)u;
    return 0;
}

static int set_u64(const td_srv_opt *o, const char *s, void *field)
{
    const unit *units = o->kind == TD_SRV_OPT_SIZE       ? size_units
                        : o->kind == TD_SRV_OPT_DURATION ? ms_units
                                                         : NULL;
    return parse_u64(s, units, o->kind == TD_SRV_OPT_SIZE ? size_tails : no_tails,
                     (uint64_t *)field);
}

static const td_srv_choice *choices_of(const td_srv_opt *o)
{
    return o->kind == TD_SRV_OPT_BOOL ? bool_choices : o->choices;
}

static int set_choice(const td_srv_opt *o, const char *s, void *field)
{
    for (const td_srv_choice *c = choices_of(o); c->name; c++)
        if (strcmp(s, c->name) == 0) {
            *(int *)field = c->value;
            return 0;
        }
    return -1;
}

static int set_flag(const td_srv_opt *o, const char *s, void *field)
{
    (void)o;
    (void)s;
    *(int *)field = 1;
    return 0;
}

static int (*const setters[])(const td_srv_opt *, const char *, void *) = {
    [TD_SRV_OPT_STR] = set_str,       [TD_SRV_OPT_PORT] = set_port,
    [TD_SRV_OPT_SIZE] = set_u64,      [TD_SRV_OPT_DURATION] = set_u64,
    [TD_SRV_OPT_COUNT] = set_u64,     [TD_SRV_OPT_BOOL] = set_choice,
    [TD_SRV_OPT_ENUM] = set_choice,   [TD_SRV_OPT_FLAG] = set_flag,
};

static int set_value(const td_srv_opt *o, const char *s, void *out)
{
    return setters[o->kind](o, s, (char *)out + o->off);
}

/* ---- help ---------------------------------------------------------------- */

/* "--name ARG": ARG from the table, or an enum's choices as a|b|c. */
static void opt_left(const td_srv_opt *o, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "--%s", o->name);
    if (o->arg) {
        snprintf(buf + n, size - n, " %s", o->arg);
        return;
    }
    if (o->kind != TD_SRV_OPT_ENUM)
        return;
    for (const td_srv_choice *c = o->choices; c->name && n < size; c++)
        n += (size_t)snprintf(buf + n, size - n, "%c%s", c == o->choices ? ' ' : '|',
                              c->name);
}

static void usage_line(const td_srv_verb *v, FILE *out)
{
    char left[128];
    int optional = 0;

    fprintf(out, "usage: tandem %s", v->name);
    for (size_t i = 0; i < v->nopts; i++) {
        if (v->opts[i].required) {
            opt_left(&v->opts[i], left, sizeof left);
            fprintf(out, " %s", left);
        } else {
            optional = 1;
        }
    }
    if (optional)
        fputs(" [options]", out);
    for (size_t i = 0; i < v->npos; i++)
        fprintf(out, v->pos[i].optional ? " [%s]" : " %s", v->pos[i].name);
}

/* One option: the left column, then the help whose further lines are
 * indented to the help column. */
static void help_row(FILE *out, const char *left, const char *help, const char *def,
                     const char *env)
{
    const char *nl;

    if (strlen(left) > HELP_COL)
        fprintf(out, "  %s\n  %-*s ", left, HELP_COL, "");
    else
        fprintf(out, "  %-*s ", HELP_COL, left);
    while ((nl = strchr(help, '\n')) != NULL) {
        fprintf(out, "%.*s\n  %-*s ", (int)(nl - help), help, HELP_COL, "");
        help = nl + 1;
    }
    fputs(help, out);
    if (def)
        fprintf(out, " (default %s)", def);
    fputc('\n', out);
    if (env)
        fprintf(out, "  %-*s [%s]\n", HELP_COL, "", env);
}

void td_srv_cli_help(const td_srv_verb *v, FILE *out)
{
    char left[128];
    int any_env = 0;

    usage_line(v, out);
    fprintf(out, "\n\n%c%s.\n", toupper((unsigned char)v->summary[0]), v->summary + 1);
    if (v->about)
        fprintf(out, "\n%s", v->about);
    fputc('\n', out);
    for (size_t i = 0; i < v->nopts; i++) {
        opt_left(&v->opts[i], left, sizeof left);
        help_row(out, left, v->opts[i].help, v->opts[i].def, v->opts[i].env);
        any_env |= v->opts[i].env != NULL;
    }
    help_row(out, "--help", "show this help", NULL, NULL);
    if (any_env)
        fputs("\nAn option's [VARIABLE] in the environment sets it too; the command "
              "line wins.\n",
              out);
}

/* ---- messages ------------------------------------------------------------ */

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
    fprintf(stderr, "tandem %s: %s%s%s%s\n", v->name, what, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    usage_line(v, stderr);
    fprintf(stderr, " (see 'tandem %s --help')\n", v->name);
    return TD_SRV_EXIT_USAGE;
}

static int bad_value(const td_srv_verb *v, const td_srv_opt *o, const char *val,
                     const char *from)
{
    char left[128];
    opt_left(o, left, sizeof left);
    td_srv_fail(v, "bad value '%s' %s %s", val, from ? "in" : "for", from ? from : left);
    return TD_SRV_EXIT_USAGE;
}

/* ---- parsing ------------------------------------------------------------- */

static const td_srv_opt *find_opt(const td_srv_verb *v, const char *name, size_t len)
{
    for (size_t i = 0; i < v->nopts; i++)
        if (strlen(v->opts[i].name) == len && strncmp(v->opts[i].name, name, len) == 0)
            return &v->opts[i];
    return NULL;
}

/* Defaults, then the environment. */
static int preset(const td_srv_verb *v, void *out, uint64_t *given)
{
    for (size_t i = 0; i < v->nopts; i++) {
        const td_srv_opt *o = &v->opts[i];
        const char *env = o->env ? getenv(o->env) : NULL;
        if (o->def && set_value(o, o->def, out) < 0)
            return bad_value(v, o, o->def, "the built-in default");
        if (env && set_value(o, env, out) < 0)
            return bad_value(v, o, env, o->env);
        if (env)
            *given |= (uint64_t)1 << i;
    }
    return -1;
}

/* One "--name" or "--name=value" at argv[*i]; may take argv[*i + 1]. */
static int parse_opt(const td_srv_verb *v, int argc, char **argv, int *i, void *out,
                     uint64_t *given)
{
    const char *a = argv[*i] + 2, *eq = strchr(a, '='), *val;
    const td_srv_opt *o = NULL;
    char left[128];

    if (argv[*i][1] == '-')
        o = find_opt(v, a, eq ? (size_t)(eq - a) : strlen(a));
    if (o == NULL)
        return usage_error(v, "unknown option", argv[*i]);
    opt_left(o, left, sizeof left);
    if (o->kind == TD_SRV_OPT_FLAG && eq)
        return usage_error(v, "this option takes no value:", argv[*i]);
    if (o->kind == TD_SRV_OPT_FLAG)
        val = "";
    else if (eq)
        val = eq + 1;
    else if (*i + 1 < argc)
        val = argv[++*i];
    else
        return usage_error(v, "missing value:", left);
    if (set_value(o, val, out) < 0)
        return bad_value(v, o, val, NULL);
    *given |= (uint64_t)1 << (o - v->opts);
    return -1;
}

/* What needs every value in: required options, ranges, positionals. */
static int check(const td_srv_verb *v, void *out, uint64_t given, size_t npos)
{
    char left[128];

    for (size_t i = 0; i < v->nopts; i++) {
        const td_srv_opt *o = &v->opts[i];
        uint64_t n;
        opt_left(o, left, sizeof left);
        if (o->required && !(given & ((uint64_t)1 << i)))
            return usage_error(v, "missing option:", left);
        if (o->kind < TD_SRV_OPT_SIZE || o->kind > TD_SRV_OPT_COUNT)
            continue;
        n = *(const uint64_t *)((const char *)out + o->off);
        if (o->max && (n < o->min || n > o->max)) {
            td_srv_fail(v, "--%s must be from %" PRIu64 " to %" PRIu64, o->name, o->min,
                        o->max);
            return TD_SRV_EXIT_USAGE;
        }
        if (n < o->min) {
            td_srv_fail(v, "--%s must be at least %" PRIu64, o->name, o->min);
            return TD_SRV_EXIT_USAGE;
        }
    }
    if (npos < v->npos && !v->pos[npos].optional)
        return usage_error(v, "missing argument", v->pos[npos].name);
    for (size_t i = 0; i < npos; i++) {
        const char *a = *(const char **)((char *)out + v->pos[i].off);
        if (v->pos[i].doc_id && !td_store_doc_id_valid(a, strlen(a))) {
            td_srv_fail(v, "invalid document id '%s': ids are 1 to 255 bytes of UTF-8 "
                           "without control characters",
                        a);
            return TD_SRV_EXIT_USAGE;
        }
    }
    return -1;
}

static int parse(const td_srv_verb *v, int argc, char **argv, void *out)
{
    uint64_t given = 0;
    size_t npos = 0;
    int only_pos = 0, rc;

    if (v->nopts > 64) {
        td_srv_fail(v, "more options than the parser tracks");
        return TD_SRV_EXIT_FAIL;
    }
    rc = preset(v, out, &given);
    for (int i = 1; rc < 0 && i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
        } else if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            td_srv_cli_help(v, stdout);
            rc = TD_SRV_EXIT_OK;
        } else if (!only_pos && a[0] == '-' && a[1] != '\0') {
            rc = parse_opt(v, argc, argv, &i, out, &given);
        } else if (npos < v->npos) {
            *(const char **)((char *)out + v->pos[npos++].off) = a;
        } else {
            rc = usage_error(v, "unexpected argument", a);
        }
    }
    return rc < 0 ? check(v, out, given, npos) : rc;
}

int td_srv_cli_run(const td_srv_verb *v, int argc, char **argv)
{
    void *args = calloc(1, v->args_size);
    int rc;

    if (args == NULL) {
        td_srv_fail(v, "out of memory");
        return TD_SRV_EXIT_FAIL;
    }
    rc = parse(v, argc, argv, args);
    if (rc < 0)
        rc = v->run(v, args);
    free(args);
    return rc;
}
