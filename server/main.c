/*
 * main.c -- the `tandem` binary: finds the verb and runs it.
 *
 * The verbs are one table. Adding one (the server's `serve`) means writing
 * its run function and adding a row; help, dispatch and error handling come
 * from here and cli_args.c.
 */
#include <stdio.h>
#include <string.h>

#include "td_srv_cli.h"
#include "tandem_srv.h"

/* The server layer's verbs take argv with the verb name first; the table
 * passes what follows it. */
static int run_serve(const td_srv_verb *v, int argc, char **argv)
{
    (void)v;
    return td_srv_cmd_serve(argc + 1, argv - 1);
}

static int run_keygen(const td_srv_verb *v, int argc, char **argv)
{
    (void)v;
    return td_srv_cmd_keygen(argc + 1, argv - 1);
}

static int run_token(const td_srv_verb *v, int argc, char **argv)
{
    (void)v;
    return td_srv_cmd_token(argc + 1, argv - 1);
}

#define DATA_HELP "  --data DIR   the data directory (default ./data)\n"

static const td_srv_verb verbs[] = {
    {"serve", "[OPTIONS]", "run the collaboration server",
     "Run 'tandem serve --help' for its options.\n", run_serve},
    {"keygen", "--out FILE", "write an Ed25519 key pair for tokens",
     "Run 'tandem keygen --help' for its options.\n", run_keygen},
    {"token", "--key FILE ...", "print a signed access token",
     "Run 'tandem token --help' for its options.\n", run_token},
    {"docs", "", "list the documents with their sizes",
     "Lists every document: ops, log entries after the snapshot, bytes in the\n"
     "log and in the snapshot, and the newest server sequence. Opens the data\n"
     "directory read-only, so it also works while a server is running.\n"
     "Exits 1 if any document's metadata is damaged.\n\n" DATA_HELP,
     td_srv_cmd_docs},
    {"export", "DOC", "print a document as JSON",
     "Prints the document's content as JSON on stdout (one line, keys in byte\n"
     "order): an object whose keys are the root names; text roots are strings,\n"
     "lists arrays, maps objects. Read-only, works while a server runs.\n\n" DATA_HELP,
     td_srv_cmd_export},
    {"import", "DOC FILE", "create a document from a JSON file",
     "Creates DOC from the JSON object in FILE ('-' reads stdin). Each top-level\n"
     "key names a root: a string becomes a text, an array a list, an object a\n"
     "map (a key ending in @text, @list or @map picks the kind explicitly, as\n"
     "`tandem export` writes it for names used by several kinds). Inside lists\n"
     "and maps, arrays and objects become nested lists and maps, strings are\n"
     "string values, numbers are integers when integral and within 64 bits,\n"
     "else floats. The whole document is stored as one batch.\n"
     "Refuses to touch an existing document unless --force is given, which\n"
     "deletes it first (clients holding a copy would sync their old state back:\n"
     "do this with the server stopped and clients reset).\n\n" DATA_HELP
     "  --force      replace DOC if it exists\n",
     td_srv_cmd_import},
    {"backup", "DIR", "write a consistent copy of the data directory",
     "Writes a RocksDB checkpoint of the whole store into DIR, which must not\n"
     "exist yet. DIR is a complete data directory: `tandem --data DIR ...` and\n"
     "the server open it as it is. Needs the data directory's lock (stop the\n"
     "server first).\n\n" DATA_HELP,
     td_srv_cmd_backup},
    {"compact", "[DOC]", "fold logs into snapshots and reclaim disk space",
     "Folds the log of DOC (or of every document) into a new snapshot, whatever\n"
     "the thresholds, then has RocksDB rewrite its files so the space is\n"
     "returned. Needs the data directory's lock.\n\n" DATA_HELP,
     td_srv_cmd_compact},
    {"check", "[DOC]", "verify that documents load",
     "Loads DOC (or every document) the way the server would -- checksums,\n"
     "snapshot, every log entry through the CRDT core -- and reports each one\n"
     "that fails. Exits 1 if any does. Read-only.\n\n" DATA_HELP,
     td_srv_cmd_check},
    {"delete", "DOC", "delete a document",
     "Deletes DOC: its log, snapshot and metadata, in one write. Needs the data\n"
     "directory's lock.\n\n" DATA_HELP,
     td_srv_cmd_delete},
};

#define NVERBS (sizeof verbs / sizeof verbs[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: tandem COMMAND [options] [args]\n\n"
                 "A real-time collaboration server and its admin tools.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < NVERBS; i++) {
        char left[32];
        snprintf(left, sizeof left, "%s %s", verbs[i].name, verbs[i].synopsis);
        fprintf(out, "  %-18s %s\n", left, verbs[i].summary);
    }
    fprintf(out, "\nRun 'tandem COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return TD_SRV_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc >= 3) {
            for (size_t i = 0; i < NVERBS; i++)
                if (strcmp(argv[2], verbs[i].name) == 0) {
                    td_srv_verb_help(&verbs[i], stdout);
                    return TD_SRV_EXIT_OK;
                }
        }
        usage(stdout);
        return TD_SRV_EXIT_OK;
    }
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].run(&verbs[i], argc - 2, argv + 2);
    fprintf(stderr, "tandem: unknown command '%s'; run 'tandem --help' for the list\n",
            argv[1]);
    return TD_SRV_EXIT_USAGE;
}
