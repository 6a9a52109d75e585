/* engine: stopping a migration from outside, and the stall watchdog.
 *
 * Before COMMIT the source owns the guest, so a cancel (or a link on which
 * nothing moves any more) may end the migration at any moment: the link is
 * shut down, which wakes the engine from whatever send or receive it is
 * blocked in, and its failure path resumes the guest here. COMMIT is the
 * line: the engine crosses it under the handle's lock, and after it neither
 * a cancel nor the watchdog touches the link (the destination may run the
 * guest; post-copy's own protocol handles a cancel from there on).
 *
 * The destination's handle (migr_recv_params.cancel) is gentler: a first
 * request only marks it, and the receiver stops at its next record and tells
 * the source why (an ERROR record), so the source resumes its guest knowing
 * who cancelled; a second request shuts the link down (a source that sends
 * nothing). From COMMIT on the guest is the destination's: requests are
 * refused (-EBUSY) and change nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine_impl.h"
#include "migr/common.h"

struct migr_cancel {
    pthread_mutex_t lock;
    bool requested;               /* migr_cancel_request() */
    bool stalled;                 /* the watchdog saw no progress */
    bool committed;               /* COMMIT is (being) sent: the link stays up */
    bool dest;                    /* a receiver's handle (engine_cancel_attach_dest) */
    bool dest_owns;               /* the receiver took COMMIT: nothing to cancel */
    struct migr_transport *t;     /* the running migration's link, or NULL */
    /* the watchdog */
    pthread_t watch;
    bool watching, watch_stop;
    pthread_cond_t cond;
    uint32_t timeout_ms;
};

struct migr_cancel *migr_cancel_new(void)
{
    struct migr_cancel *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    return c;
}

void migr_cancel_free(struct migr_cancel *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

/* Lock held. */
static bool wake_link(struct migr_cancel *c)
{
    if (!c->t || c->committed)
        return false;
    c->t->ops->shutdown(c->t);
    return true;
}

int migr_cancel_request(struct migr_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    int ret;
    if (c->dest_owns) {
        ret = migr_errorf(EBUSY, "the guest switched over to the destination (COMMIT): it runs there now");
    } else if (c->dest && !c->requested) {
        c->requested = true;
        ret = 0; /* the receiver stops at its next record */
    } else {
        c->requested = true;
        ret = wake_link(c);
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

bool migr_cancel_requested(struct migr_cancel *c)
{
    return c && __atomic_load_n(&c->requested, __ATOMIC_RELAXED);
}

/* Bytes moved either way on t; read without the transport's help (a plain
 * 64-bit load of counters only the engine's threads update). */
static uint64_t moved(const struct migr_transport *t)
{
    return __atomic_load_n(&t->bytes_sent, __ATOMIC_RELAXED) + __atomic_load_n(&t->bytes_recv, __ATOMIC_RELAXED);
}

static void *watch_main(void *arg)
{
    struct migr_cancel *c = arg;
    pthread_mutex_lock(&c->lock);
    uint64_t last = c->t ? moved(c->t) : 0, since = migr_now_ns();
    while (!c->watch_stop && !c->committed) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_nsec += 100000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cond, &c->lock, &dl);
        if (c->watch_stop || c->committed || !c->t)
            break;
        uint64_t now = migr_now_ns(), m = moved(c->t);
        if (m != last) {
            last = m;
            since = now;
        } else if (now - since >= (uint64_t)c->timeout_ms * 1000000ull) {
            c->stalled = true;
            wake_link(c);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int engine_cancel_attach(struct migr_cancel *c, struct migr_transport *t, uint32_t stall_timeout_ms)
{
    pthread_mutex_lock(&c->lock);
    c->t = t;
    c->committed = false;
    c->stalled = false;
    c->watch_stop = false;
    c->timeout_ms = stall_timeout_ms;
    if (c->requested)
        wake_link(c); /* cancelled before it started */
    int err = 0;
    if (stall_timeout_ms && (err = pthread_create(&c->watch, NULL, watch_main, c)) == 0)
        c->watching = true;
    pthread_mutex_unlock(&c->lock);
    return err ? migr_errorf(err, "send: start the stall watchdog") : 0;
}

void engine_cancel_attach_dest(struct migr_cancel *c, struct migr_transport *t)
{
    pthread_mutex_lock(&c->lock);
    c->t = t;
    c->dest = true;
    c->dest_owns = c->committed = false;
    pthread_mutex_unlock(&c->lock);
}

bool engine_cancel_take(struct migr_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    bool ok = !c->requested;
    if (ok)
        c->dest_owns = c->committed = true;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

bool engine_cancel_commit(struct migr_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    bool ok = !c->requested && !c->stalled;
    if (ok)
        c->committed = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return ok;
}

int engine_cancel_reason(struct migr_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    int why = c->committed ? 0 : c->requested ? -ECANCELED : c->stalled ? -ETIMEDOUT : 0;
    uint32_t ms = c->timeout_ms;
    pthread_mutex_unlock(&c->lock);
    if (why == -ECANCELED)
        migr_errorf(ECANCELED, "migration cancelled");
    else if (why == -ETIMEDOUT)
        migr_errorf(ETIMEDOUT, "no progress on the link for %u ms (stalled destination or network)", ms);
    return why;
}

void engine_cancel_detach(struct migr_cancel *c)
{
    pthread_mutex_lock(&c->lock);
    bool joined = c->watching;
    c->watch_stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (joined)
        pthread_join(c->watch, NULL);
    pthread_mutex_lock(&c->lock);
    c->watching = false;
    c->t = NULL;
    pthread_mutex_unlock(&c->lock);
}
