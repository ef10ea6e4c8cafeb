/*
 * cli_main.c -- the `tandem` binary: finds the verb and runs it.
 *
 * Each verb (its options, arguments, help and run function) is defined next
 * to its code; this list is all that `tandem --help` and dispatch need.
 */
#include <stdio.h>
#include <string.h>

#include "td_srv_cli.h"

static const td_srv_verb *const verbs[] = {
    &td_srv_verb_serve,       &td_srv_verb_keygen,       &td_srv_verb_token,
    &td_srv_verb_docs.verb,   &td_srv_verb_export.verb,  &td_srv_verb_import,
    &td_srv_verb_backup.verb, &td_srv_verb_compact.verb, &td_srv_verb_check.verb,
    &td_srv_verb_delete.verb,
};

static void usage(FILE *out)
{
    fprintf(out, "usage: tandem COMMAND [options] [args]\n\n"
                 "A real-time collaboration server and its admin tools.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < TD_SRV_LEN(verbs); i++) {
        char left[32];
        size_t n = (size_t)snprintf(left, sizeof left, "%s", verbs[i]->name);
        for (size_t p = 0; p < verbs[i]->npos && n < sizeof left; p++)
            n += (size_t)snprintf(left + n, sizeof left - n,
                                  verbs[i]->pos[p].optional ? " [%s]" : " %s",
                                  verbs[i]->pos[p].name);
        fprintf(out, "  %-18s %s\n", left, verbs[i]->summary);
    }
    fprintf(out, "\nRun 'tandem COMMAND --help' for a command's options.\n");
}

static const td_srv_verb *find_verb(const char *name)
{
    for (size_t i = 0; i < TD_SRV_LEN(verbs); i++)
        if (strcmp(name, verbs[i]->name) == 0)
            return verbs[i];
    return NULL;
}

int main(int argc, char **argv)
{
    const td_srv_verb *v;

    if (argc < 2) {
        usage(stderr);
        return TD_SRV_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && (v = find_verb(argv[2])) != NULL)
            td_srv_cli_help(v, stdout);
        else
            usage(stdout);
        return TD_SRV_EXIT_OK;
    }
    if ((v = find_verb(argv[1])) != NULL)
        return td_srv_cli_run(v, argc - 1, argv + 1);
    fprintf(stderr, "tandem: unknown command '%s'; run 'tandem --help' for the list\n",
            argv[1]);
    return TD_SRV_EXIT_USAGE;
}
