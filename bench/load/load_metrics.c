/*
 * load_metrics.c -- counters read from a server's /metrics (load_metrics.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load_metrics.h"

double load_metric(const char *body, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = body; line && *line;) {
        const char *next = strchr(line, '\n');
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ')
            return strtod(line + nl + 1, NULL);
        line = next ? next + 1 : NULL;
    }
    return -1;
}

load_writes load_writes_of(const td_cli_server *s)
{
    load_writes w = {-1, -1};
    char *body = NULL;
    if (td_cli_http_get("127.0.0.1", s->port, "/metrics", NULL, &body, NULL) == 200 && body) {
        w.msgs = load_metric(body, "tandem_messages_out_total");
        w.writes = load_metric(body, "tandem_message_writes_total");
    }
    free(body);
    return w;
}

void load_print_writes(const td_cli_server *s, load_writes before)
{
    load_writes now = load_writes_of(s);
    if (before.msgs < 0 || before.writes < 0 || now.msgs < 0 || now.writes < 0)
        return;
    double msgs = now.msgs - before.msgs, writes = now.writes - before.writes;
    if (writes > 0)
        printf("  server: %.0f messages in %.0f socket writes (%.2f messages per write)\n", msgs,
               writes, msgs / writes);
}
