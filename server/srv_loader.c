/*
 * srv_loader.c -- the worker thread behind srv_loader.h.
 *
 * One thread is enough: it only ever waits on the store, and a second one
 * would only reorder loads against each other. Jobs run in the order they
 * were pushed.
 */
#include <pthread.h>
#include <stdlib.h>

#include "srv_loader.h"

struct td_srv_loader {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct td_srv_jobs in, out; /* to run; run, to hand back */
    int stop, started;
    void (*wake)(void *ud);
    void *ud;
};

static void *worker(void *arg)
{
    td_srv_loader *L = arg;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (STAILQ_EMPTY(&L->in) && !L->stop)
            pthread_cond_wait(&L->cv, &L->mu);
        if (L->stop)
            break;
        td_srv_job *j = STAILQ_FIRST(&L->in);
        STAILQ_REMOVE_HEAD(&L->in, link);
        pthread_mutex_unlock(&L->mu);
        j->run(j);
        pthread_mutex_lock(&L->mu);
        if (j->done) {
            STAILQ_INSERT_TAIL(&L->out, j, link);
            L->wake(L->ud);
        } else {
            j->free(j);
        }
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

int td_srv_loader_new(td_srv_loader **out, void (*wake)(void *ud), void *ud)
{
    td_srv_loader *L = calloc(1, sizeof *L);
    if (!L)
        return -1;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    STAILQ_INIT(&L->in);
    STAILQ_INIT(&L->out);
    L->wake = wake;
    L->ud = ud;
    if (pthread_create(&L->th, NULL, worker, L) != 0) {
        td_srv_loader_free(L);
        return -1;
    }
    L->started = 1;
    *out = L;
    return 0;
}

void td_srv_loader_push(td_srv_loader *L, td_srv_job *j)
{
    pthread_mutex_lock(&L->mu);
    STAILQ_INSERT_TAIL(&L->in, j, link);
    pthread_cond_signal(&L->cv);
    pthread_mutex_unlock(&L->mu);
}

void td_srv_loader_poll(td_srv_loader *L)
{
    struct td_srv_jobs done = STAILQ_HEAD_INITIALIZER(done);
    td_srv_job *j;
    pthread_mutex_lock(&L->mu);
    STAILQ_CONCAT(&done, &L->out);
    pthread_mutex_unlock(&L->mu);
    while ((j = STAILQ_FIRST(&done))) { /* oldest first */
        STAILQ_REMOVE_HEAD(&done, link);
        j->done(j);
        j->free(j);
    }
}

static void free_list(struct td_srv_jobs *q)
{
    td_srv_job *j;
    while ((j = STAILQ_FIRST(q))) {
        STAILQ_REMOVE_HEAD(q, link);
        j->free(j);
    }
}

void td_srv_loader_stop(td_srv_loader *L)
{
    if (!L)
        return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_signal(&L->cv);
    pthread_mutex_unlock(&L->mu);
    if (L->started)
        pthread_join(L->th, NULL);
    L->started = 0;
    free_list(&L->in);
    free_list(&L->out);
}

void td_srv_loader_free(td_srv_loader *L)
{
    if (!L)
        return;
    td_srv_loader_stop(L);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    free(L);
}
