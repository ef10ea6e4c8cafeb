/*
 * test_slowconsumer.c -- bar 7 of issue 5: a client that never reads while
 * others write a lot is disconnected once its unsent queue passes the cap
 * (--send-queue 4 MiB here), and the server's RSS stays under a bound.
 *
 * The bulk of the traffic is presence: 4 writers each replace their
 * 256 KiB presence state every 50 ms (--max-presence 262144), which the
 * server coalesces to one broadcast per writer per 100 ms -- about 10 MiB/s
 * to every subscriber (4 MiB/s under the sanitizers, see tick_us), none of
 * it stored, so the server's own memory does
 * not grow with the traffic (RocksDB memtables would, with document writes).
 * One writer also sends small text batches. Without the cap, the server
 * would have to hold everything the stalled reader has not taken -- far more
 * than the bound after a few seconds (the kernel buffers of a loopback
 * socket absorb only a few MiB). A second reader that does read must end
 * with the same text and every writer's last state.
 *
 * The bound: the server's RSS after setup plus 48 MiB (96 MiB under ASan).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define DOC "firehose"
#define NW 4
#define STATE_SIZE (256 * 1024)

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

typedef struct last_states {
    td_cli_doc *reader;
    uint64_t session[NW];
    char mark[NW];
} last_states;

static int has_last_states(void *p)
{
    last_states *ls = p;
    for (int i = 0; i < NW; i++) {
        td_cli_peer peer;
        if (!td_cli_peer_get(ls->reader, ls->session[i], &peer) ||
            peer.state_len != STATE_SIZE || peer.state[0] != ls->mark[i])
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_slowconsumer");
    const char *extra[] = {"--send-queue", "4194304", "--max-presence", "262144",
                           "--max-frame", "1048576", NULL};
    td_cli_server *s = it_server(extra);
    td_cli_ctx *ctx = it_ctx();

    td_cli_conn *cw[NW];
    td_cli_doc *w[NW];
    for (int i = 0; i < NW; i++) {
        cw[i] = td_cli_connect(ctx, s->url, NULL);
        w[i] = td_cli_subscribe(cw[i], DOC, NULL);
    }
    td_cli_conn *cslow = td_cli_connect(ctx, s->url, NULL);
    td_cli_conn *cfast = td_cli_connect(ctx, s->url, NULL);
    td_cli_doc *slow = td_cli_subscribe(cslow, DOC, NULL);
    td_cli_doc *fast = td_cli_subscribe(cfast, DOC, NULL);
    for (int i = 0; i < NW; i++)
        CHECK(it_wait_ready(cw[i], 10000));
    CHECK(it_wait_ready(cslow, 10000) && it_wait_ready(cfast, 10000));
    CHECK(it_wait_docs_synced(w, NW, 10000));
    CHECK(it_wait_docs_synced(&slow, 1, 10000) && it_wait_docs_synced(&fast, 1, 10000));
    td_cli_set_reading(cslow, 0);

    long rss0 = td_cli_proc_rss_kb(s->pid);
    long bound = rss0 + (it_sanitized() ? 96 : 48) * 1024;
    CHECK(rss0 > 0);
    printf("server RSS after setup: %ld KiB; bound: %ld KiB\n", rss0, bound);

    char *state = malloc(STATE_SIZE);
    CHECK(state != NULL);
    last_states ls = {fast, {0}, {0}};
    td_crdt_obj t;
    CHECK(td_crdt_root(td_cli_doc_crdt(w[0]), TD_CRDT_TEXT, "log", 3, &t) == TD_CRDT_OK);

    /* Under the sanitizers this process (writers and the reading client in
     * one loop) cannot keep up with 10 MiB/s, and the reading client would
     * become a slow consumer too: a 250 ms tick makes it 4 MiB/s,
     * still enough to fill the stalled reader's 4 MiB queue in seconds. */
    uint64_t tick_us = it_sanitized() ? 250000 : 50000;
    uint64_t t0 = td_cli_now_us(), t_closed = 0;
    uint64_t run_us = it_sanitized() ? 12000000 : 8000000;
    uint64_t sent_bytes = 0, tick = 0;
    long rss_max = rss0;
    double closes = 0;
    while (td_cli_now_us() - t0 < run_us) {
        for (int i = 0; i < NW; i++) {
            char mark = (char)('a' + (tick + (uint64_t)i) % 26);
            memset(state, mark, STATE_SIZE);
            if (td_cli_queued(cw[i]) < 2 * STATE_SIZE) {
                CHECK(td_cli_presence(w[i], state, STATE_SIZE) == 0);
                ls.mark[i] = mark;
                sent_bytes += STATE_SIZE;
            }
        }
        CHECK(td_crdt_text_insert(td_cli_doc_crdt(w[0]), t, 0, "0123456789", 10) == TD_CRDT_OK);
        CHECK(td_cli_commit(w[0], NULL) == 0);
        tick++;
        uint64_t next = t0 + tick * tick_us;
        for (uint64_t now = td_cli_now_us(); now < next; now = td_cli_now_us())
            td_cli_service(ctx, (int)((next - now) / 1000));
        long rss = td_cli_proc_rss_kb(s->pid);
        if (rss > rss_max)
            rss_max = rss;
        if (!t_closed && tick % 4 == 0 &&
            (closes = it_metric(s, "tandem_slow_consumer_closes_total")) >= 1)
            t_closed = td_cli_now_us();
        /* go on for 2 s after the close, to see memory stays flat */
        if (t_closed && td_cli_now_us() - t_closed > 2000000)
            break;
        for (int i = 0; i < NW; i++)
            CHECK_MSG(td_cli_conn_state(cw[i]) == TD_CLI_READY, "writer %d disconnected (%d)", i,
                   td_cli_close_code(cw[i]));
        CHECK_MSG(td_cli_conn_state(cfast) == TD_CLI_READY, "the reading client was disconnected (%d)",
               td_cli_close_code(cfast));
    }
    closes = it_metric(s, "tandem_slow_consumer_closes_total");
    printf("writers sent %.1f MiB of presence in %.1f s; slow-consumer closes: %.0f "
           "(after %.1f s); server RSS max %ld KiB (grew %ld KiB), bound %ld KiB\n",
           (double)sent_bytes / 1048576.0, (double)(td_cli_now_us() - t0) / 1e6, closes,
           t_closed ? (double)(t_closed - t0) / 1e6 : -1.0, rss_max, rss_max - rss0, bound);
    CHECK_MSG(closes == 1, "expected exactly the stalled reader to be disconnected");
    CHECK_MSG(rss_max <= bound, "server RSS %ld KiB above the bound %ld KiB", rss_max, bound);

    /* the stalled reader, reading again, finds its connection closed: 1008
     * if the close frame made it, else a dropped TCP connection */
    td_cli_set_reading(cslow, 1);
    CHECK(td_cli_wait(ctx, is_closed, cslow, 20000));
    printf("stalled reader's close code: %d\n", td_cli_close_code(cslow));
    CHECK(td_cli_close_code(cslow) == 1008 || td_cli_close_code(cslow) == 1006);

    /* the reading client has the text and every writer's last state */
    for (int i = 0; i < NW; i++)
        ls.session[i] = td_cli_session(cw[i]);
    CHECK_MSG(td_cli_wait(ctx, has_last_states, &ls, 10000), "the reader lacks a last state");
    td_cli_doc *pair[2] = {w[0], fast};
    CHECK(it_wait_converged(pair, 2, 30000));
    /* and the slow one resyncs on reconnect */
    CHECK(td_cli_reconnect(cslow) == 0);
    td_cli_doc *trio[3] = {w[0], fast, slow};
    CHECK_MSG(it_wait_converged(trio, 3, 30000), "the slow reader did not resync");
    free(state);
    it_pass();
}
