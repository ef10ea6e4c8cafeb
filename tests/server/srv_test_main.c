/*
 * srv_test_main.c -- `tandem-srv-test serve|keygen|token ...`: the server's
 * verbs without the admin CLI, so tests can run the real server before (or
 * without) the `tandem` binary wiring them.
 */
#include <stdio.h>
#include <string.h>

#include "tandem_srv.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return td_srv_cmd_serve(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return td_srv_cmd_keygen(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return td_srv_cmd_token(argc - 1, argv + 1);
    fprintf(stderr, "usage: %s serve|keygen|token [options]\n", argv[0]);
    return 2;
}
