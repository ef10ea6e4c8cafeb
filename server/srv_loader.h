/*
 * srv_loader.h -- private: one worker thread for the slow reads and
 * rewrites the event loop must not wait for (document loads, compactions).
 *
 * A job runs on the worker; if it has a `done` step, that runs later on the
 * loop thread inside td_srv_loader_poll(), oldest first. The worker wakes
 * the loop through the given function, which must be thread-safe
 * (lws_cancel_service).
 */
#ifndef SRV_LOADER_H
#define SRV_LOADER_H

#include <sys/queue.h>

typedef struct td_srv_loader td_srv_loader;
typedef struct td_srv_job td_srv_job;

struct td_srv_job {
    void (*run)(td_srv_job *j);  /* on the worker */
    void (*done)(td_srv_job *j); /* on the loop; NULL: nothing to hand back */
    void (*free)(td_srv_job *j); /* after done, or when dropped unrun */
    STAILQ_ENTRY(td_srv_job) link;
};
STAILQ_HEAD(td_srv_jobs, td_srv_job);

int td_srv_loader_new(td_srv_loader **out, void (*wake)(void *ud), void *ud);
void td_srv_loader_push(td_srv_loader *L, td_srv_job *j);
/* Runs the done steps of finished jobs and frees them. */
void td_srv_loader_poll(td_srv_loader *L);
/* Joins the worker after its current job; queued and finished jobs are
 * freed without their done step. */
void td_srv_loader_stop(td_srv_loader *L);
void td_srv_loader_free(td_srv_loader *L);

#endif /* SRV_LOADER_H */
