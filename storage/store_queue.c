/*
 * store_queue.c -- the FIFOs the store's threads are fed through.
 *
 * Appends wait for the store thread, completions for td_store_poll() and
 * documents for the compaction thread, all in the same kind of singly
 * linked FIFO: items carry their link as first member, so queueing never
 * allocates and a whole append group moves between queues in O(1).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <time.h>

#include "store_internal.h"

void td_store_fifo_init(td_store_fifo *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

void td_store_fifo_put(td_store_fifo *q, td_store_link *first,
                       td_store_link *last)
{
    *q->tail = first;
    q->tail = &last->next;
}

td_store_link *td_store_fifo_take_all(td_store_fifo *q)
{
    td_store_link *head = q->head;
    td_store_fifo_init(q);
    return head;
}

/* ---- a queue served by one thread --------------------------------------- */

void td_store_queue_init(td_store_queue *q, int drain)
{
    pthread_condattr_t ca;

    pthread_mutex_init(&q->mu, NULL);
    /* Timed waits (td_store_queue_take_until) use the monotonic clock. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    td_store_fifo_init(&q->items);
    q->drain = drain;
    q->sleeping = q->stopping = q->started = 0;
}

void td_store_queue_destroy(td_store_queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cond);
}

int td_store_queue_start(td_store_queue *q, void *(*fn)(void *), void *arg)
{
    if (pthread_create(&q->thread, NULL, fn, arg) != 0)
        return -1;
    q->started = 1;
    return 0;
}

int td_store_queue_put(td_store_queue *q, td_store_link *item,
                       atomic_size_t *counter)
{
    int wake;

    item->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    if (counter)
        atomic_fetch_add(counter, 1);
    td_store_fifo_put(&q->items, item, item);
    /* Only a sleeping thread needs the (costly) signal; one that is busy
     * looks at the queue again before it sleeps. */
    wake = q->sleeping;
    q->sleeping = 0;
    pthread_mutex_unlock(&q->mu);
    if (wake)
        pthread_cond_signal(&q->cond);
    return 0;
}

td_store_link *td_store_queue_take_until(td_store_queue *q, size_t max_size,
                                         const struct timespec *deadline,
                                         int *ended)
{
    td_store_link *head, *last;
    size_t size;
    int timed_out = 0;

    pthread_mutex_lock(&q->mu);
    while (q->items.head == NULL && !q->stopping && !timed_out) {
        q->sleeping = 1;
        if (deadline)
            timed_out = pthread_cond_timedwait(&q->cond, &q->mu, deadline) ==
                        ETIMEDOUT;
        else
            pthread_cond_wait(&q->cond, &q->mu);
        q->sleeping = 0;
    }
    *ended = q->stopping && (q->items.head == NULL || !q->drain);
    if (q->items.head == NULL || *ended) {
        pthread_mutex_unlock(&q->mu);
        return NULL;
    }
    head = last = q->items.head;
    size = head->size;
    if (max_size > 0)
        while (last->next && size + last->next->size <= max_size) {
            last = last->next;
            size += last->size;
        }
    q->items.head = last->next;
    if (q->items.head == NULL)
        q->items.tail = &q->items.head;
    last->next = NULL;
    pthread_mutex_unlock(&q->mu);
    return head;
}

td_store_link *td_store_queue_take(td_store_queue *q, size_t max_size)
{
    int ended;
    return td_store_queue_take_until(q, max_size, NULL, &ended);
}

td_store_link *td_store_queue_stop(td_store_queue *q)
{
    td_store_link *left;

    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->mu);
    if (q->started) {
        pthread_join(q->thread, NULL);
        q->started = 0;
    }
    pthread_mutex_lock(&q->mu);
    left = td_store_fifo_take_all(&q->items);
    pthread_mutex_unlock(&q->mu);
    return left;
}
