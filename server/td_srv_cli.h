/*
 * td_srv_cli.h -- private: the `tandem` command line.
 *
 * `tandem VERB [options] [args]` dispatches through one table of verbs
 * (main.c). A verb is a name, a one-line summary, its help text and a run
 * function receiving the arguments after the verb; the admin verbs live in
 * cli_admin.c and cli_import.c, and `serve` slots in as one more entry.
 * Every verb accepts --help. Exit status: 0 success, 1 the operation failed
 * (the message names what), 2 the command line was wrong.
 */
#ifndef TD_SRV_CLI_H
#define TD_SRV_CLI_H

#include <stdio.h>

#include "tandem_store.h"

enum { TD_SRV_EXIT_OK = 0, TD_SRV_EXIT_FAIL = 1, TD_SRV_EXIT_USAGE = 2 };

typedef struct td_srv_verb td_srv_verb;
struct td_srv_verb {
    const char *name;
    const char *synopsis; /* arguments, e.g. "DOC FILE" */
    const char *summary;  /* one line for `tandem --help` */
    const char *help;     /* the rest of `tandem VERB --help` */
    int (*run)(const td_srv_verb *verb, int argc, char **argv);
};

/* Options a verb accepts besides --help. */
enum {
    TD_SRV_OPT_DATA = 1 << 0,  /* --data DIR (default ./data) */
    TD_SRV_OPT_FORCE = 1 << 1, /* --force */
};

#define TD_SRV_DEFAULT_DATA "./data"
#define TD_SRV_MAX_POS 4

typedef struct td_srv_args {
    const char *data;
    int force;
    const char *pos[TD_SRV_MAX_POS];
    int npos;
} td_srv_args;

/* Parses argv (the arguments after the verb). Returns -1 to go on, or an
 * exit status: 0 after printing --help, 2 after a usage error. */
int td_srv_args_parse(const td_srv_verb *v, int argc, char **argv,
                      unsigned opts, int min_pos, int max_pos, td_srv_args *out);
void td_srv_verb_help(const td_srv_verb *v, FILE *out);
/* "tandem VERB: message" on stderr. */
void td_srv_fail(const td_srv_verb *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Opens the data directory for a verb; prints the error and returns NULL. */
typedef enum { TD_SRV_OPEN_READ, TD_SRV_OPEN_WRITE, TD_SRV_OPEN_CREATE } td_srv_open_mode;
td_store *td_srv_open_store(const td_srv_verb *v, const char *dir,
                            td_srv_open_mode mode);
/* Checks a document id argument; prints the error and returns 0 if bad. */
int td_srv_doc_arg_ok(const td_srv_verb *v, const char *doc);

/* The verbs. */
int td_srv_cmd_docs(const td_srv_verb *v, int argc, char **argv);
int td_srv_cmd_export(const td_srv_verb *v, int argc, char **argv);
int td_srv_cmd_import(const td_srv_verb *v, int argc, char **argv);
int td_srv_cmd_backup(const td_srv_verb *v, int argc, char **argv);
int td_srv_cmd_compact(const td_srv_verb *v, int argc, char **argv);
int td_srv_cmd_check(const td_srv_verb *v, int argc, char **argv);
int td_srv_cmd_delete(const td_srv_verb *v, int argc, char **argv);

#endif /* TD_SRV_CLI_H */
