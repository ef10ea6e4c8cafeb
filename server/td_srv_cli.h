/*
 * td_srv_cli.h -- private: the `tandem` command line.
 *
 * `tandem VERB [options] [args]`: every verb is a td_srv_verb, a table of
 * its options and positional arguments plus its help text, next to the code
 * that runs it (cli_serve.c, cli_keys.c, cli_admin.c, cli_import.c).
 * cli_args.c is the one parser and help printer for all of them; cli_main.c
 * lists the verbs. Exit status: 0 success, 1 the operation failed (the
 * message names what), 2 the command line was wrong.
 */
#ifndef TD_SRV_CLI_H
#define TD_SRV_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tandem_store.h"
#include "tandem_yjs.h"

enum { TD_SRV_EXIT_OK = 0, TD_SRV_EXIT_FAIL = 1, TD_SRV_EXIT_USAGE = 2 };

#define TD_SRV_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* What an option's value is, and the C type it is stored as. */
typedef enum td_srv_opt_kind {
    TD_SRV_OPT_STR,      /* const char *, not empty */
    TD_SRV_OPT_PORT,     /* int, 1..65535 */
    TD_SRV_OPT_SIZE,     /* uint64_t bytes; K, M, G suffixes (powers of 1024) */
    TD_SRV_OPT_DURATION, /* uint64_t milliseconds; "ms" or "s" suffix */
    TD_SRV_OPT_COUNT,    /* uint64_t */
    TD_SRV_OPT_BOOL,     /* int: 0, 1, false, true */
    TD_SRV_OPT_ENUM,     /* int: the value of one of `choices` */
    TD_SRV_OPT_FLAG      /* int set to 1; takes no value */
} td_srv_opt_kind;

typedef struct td_srv_choice {
    const char *name;
    int value;
} td_srv_choice; /* lists end with {NULL, 0} */

typedef struct td_srv_opt {
    const char *name; /* without "--" */
    td_srv_opt_kind kind;
    size_t off;       /* of the field in the verb's argument struct */
    const char *env;  /* environment variable setting it, or NULL */
    const char *arg;  /* in help: "DIR"; NULL for a flag or enum (its choices) */
    const char *help; /* may hold '\n' */
    const char *def;  /* default, parsed like a value; NULL leaves 0 */
    const td_srv_choice *choices; /* TD_SRV_OPT_ENUM */
    int required;
    uint64_t min, max; /* checked once all values are in; max 0: none */
} td_srv_opt; /* tables name the fields they set; the rest are 0 */

typedef struct td_srv_pos {
    const char *name; /* "DOC" */
    size_t off;       /* const char * in the argument struct */
    int optional;     /* only after the required ones */
    int doc_id;       /* must be a valid document id */
} td_srv_pos;

typedef struct td_srv_verb td_srv_verb;
struct td_srv_verb {
    const char *name;
    const char *summary; /* one line for `tandem --help`, lower case */
    const char *about;   /* the rest of `tandem VERB --help`, or NULL */
    const td_srv_opt *opts;
    size_t nopts;
    const td_srv_pos *pos;
    size_t npos;
    size_t args_size; /* of the struct the tables' offsets point into */
    /* Runs the verb with its parsed arguments; returns the exit status. */
    int (*run)(const td_srv_verb *v, void *args);
};

/* Parses argv (argv[0] the verb's name) into a zeroed argument struct:
 * the table's defaults, then the environment, then argv. Runs the verb
 * with it, or prints --help (exit 0) or a usage error (exit 2). */
int td_srv_cli_run(const td_srv_verb *v, int argc, char **argv);
void td_srv_cli_help(const td_srv_verb *v, FILE *out);
/* "tandem VERB: message" on stderr. */
void td_srv_fail(const td_srv_verb *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The verbs. serve, keygen and token are in the server library (tandem_srv.h's
 * td_srv_cmd_* run them); the rest only in `tandem`. */
extern const td_srv_verb td_srv_verb_serve, td_srv_verb_keygen, td_srv_verb_token,
    td_srv_verb_import;

/* ---- the admin verbs (cli_admin.c, cli_import.c) ------------------------- */

typedef struct td_srv_admin_args {
    const char *data;
    int force;
    int yjs;            /* import: FILE is a Yjs update */
    const char *format; /* export: json or update */
    const char *doc, *file, *dir; /* positionals, NULL if not given */
} td_srv_admin_args;

typedef enum { TD_SRV_OPEN_READ, TD_SRV_OPEN_WRITE, TD_SRV_OPEN_CREATE } td_srv_open_mode;

/* A verb that works on the open data directory: its run opens the store
 * in `mode`, calls `act` and closes it. */
typedef struct td_srv_admin_verb {
    td_srv_verb verb; /* first, so run can find the rest */
    td_srv_open_mode mode;
    int (*act)(const td_srv_verb *v, const td_srv_admin_args *a, td_store *st);
} td_srv_admin_verb;

extern const td_srv_admin_verb td_srv_verb_docs, td_srv_verb_export, td_srv_verb_backup,
    td_srv_verb_compact, td_srv_verb_check, td_srv_verb_delete;

/* Opens the data directory for a verb; prints the error and returns NULL. */
td_store *td_srv_open_store(const td_srv_verb *v, const char *dir,
                            td_srv_open_mode mode);

/* The --data row of every admin verb's option table. */
#define TD_SRV_OPT_DATA_ROW                                                           \
    {.name = "data", .kind = TD_SRV_OPT_STR, .off = offsetof(td_srv_admin_args, data), \
     .env = "TANDEM_DATA", .arg = "DIR", .help = "the data directory", .def = "./data"}

#endif /* TD_SRV_CLI_H */
