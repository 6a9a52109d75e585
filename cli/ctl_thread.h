/* The control socket's own thread (cli/ctl_thread.c), used by cli/ctl.c.
 *
 * The thread owns the listening socket and every client until its command
 * line has arrived. It answers `status` and `cancel` itself, at once, whatever
 * the VMM's main thread is doing (a migration blocked on a stalled peer, a
 * pause); any other command is handed to the main thread, one at a time
 * ("busy" while one runs; before a guest is here, one command waits for it
 * — `migr verify` on a destination in post-copy answers once every page has
 * arrived). A client that connects and says nothing costs
 * nothing but a slot, and is dropped after 5 s.
 */
#ifndef MIGR_CLI_CTL_THREAD_H
#define MIGR_CLI_CTL_THREAD_H

#include "migr/engine.h"
#include "migr/hv.h"
#include "migr/transport.h"

struct ctl_thread;

struct ctl_job {
    int fd;                  /* the client: the main thread answers and closes it */
    char cmd[1024];          /* its command line */
};

/*! Serve the listener l (which stays the caller's) from a new thread. phase:
 *  what status says until a guest is set ("waiting", "starting"). 0 or -errno. */
int ctl_thread_start(struct migr_listener *l, const char *phase, struct ctl_thread **out);
/*! Stop and join the thread, dropping clients it holds. NULL ok. */
void ctl_thread_stop(struct ctl_thread *c);
/*! Main thread: wait up to ms for a handed-over command. 1 with job filled,
 *  0 on time-out. Call ctl_thread_done once it is answered. */
int ctl_thread_next(struct ctl_thread *c, int ms, struct ctl_job *job);
void ctl_thread_done(struct ctl_thread *c);
/*! What status reports: the guest (NULL: none yet) and its info fragment
 *  (copied), or a phase without a guest ("receiving"). */
void ctl_thread_set_vm(struct ctl_thread *c, struct migr_hv *hv, const char *info_json);
void ctl_thread_set_phase(struct ctl_thread *c, const char *phase);
/*! While the guest is paused, status says "ownership": why (the source in
 *  doubt after COMMIT, include/migr/settle.h); NULL or "" clears it. */
void ctl_thread_set_ownership(struct ctl_thread *c, const char *why);
/*! A migration runs (cancel: its handle) or ended (NULL). */
void ctl_thread_migrating(struct ctl_thread *c, struct migr_cancel *cancel);
/*! An incoming migration runs over t (status reads its byte counter), or
 *  ended (NULL: call before t is closed). */
void ctl_thread_incoming(struct ctl_thread *c, const struct migr_transport *t);
/*! The receiver's cancel handle for migr_recv_params.cancel (the thread's;
 *  `cancel` requests it while a stream is received). */
struct migr_cancel *ctl_thread_recv_cancel(struct ctl_thread *c);
/*! migr recv waits for a source on l (NULL: no longer): a `stop` then shuts
 *  l down, which wakes the accept; stop_requested says it came. */
void ctl_thread_waiting(struct ctl_thread *c, struct migr_listener *l);
bool ctl_thread_stop_requested(struct ctl_thread *c);
/*! The migration's latest progress, for status. */
void ctl_thread_progress(struct ctl_thread *c, const struct migr_progress *p);

#endif
