/* engine: post-copy — switch first, the pages follow.
 *
 *   source:       HELLO · fault channel offered · pause · switchover · push
 *                 the pages and answer faults until COMPLETE (postcopy_send.c)
 *   destination:  at SWITCHOVER drop stale copies and register RAM with
 *                 userfaultfd; at COMMIT start the fault thread and send DONE
 *                 before the resume; place pages until all are resident
 *                 (postcopy_recv.c)
 *
 * Cancellable (the default; HELLO "cpostcopy"): the destination checkpoints
 * back, and the source can take the guest back (docs/design.md).
 */
#include <string.h>

#include "migr/common.h"
#include "migr/record.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

int engine_postcopy_owned(struct sender *s)
{
    /* The guest runs on the destination now and needs our pages. */
    s->b.cancel = NULL; /* a cancel is the post-copy protocol's from here */
    int err = engine_postcopy_push(s, s->d ? s->bm : NULL);
    if (err == 0)
        s->st->postcopy.ns = migr_now_ns() - s->t_done;
    return err;
}

/* The guest of the HELLO's shape, and what the switch will need
 * (postcopy_recv.c, engine_postcopy_ahead). */
int engine_postcopy_recv_setup(struct receiver *r, const struct migr_hello *h)
{
    int err = engine_recv_setup_copy(r, h);
    if (err == 0)
        engine_postcopy_ahead(r);
    return err;
}

/* DONE ends the source's downtime, so it goes once the guest runs here —
 * except without a fault channel: then the guest's first faults put
 * PAGE_REQ records on the main stream, and they must follow DONE, which
 * then goes just before the resume. (With a channel they wait there until
 * the source, having read DONE, starts serving it.) */
int engine_postcopy_recv_commit(struct receiver *r)
{
    int err = engine_postcopy_start(r);
    return err < 0 || r->fch ? err : engine_recv_ack(r, MIGR_REC_DONE);
}

int engine_postcopy_recv_resumed(struct receiver *r)
{
    int err = r->fch ? engine_recv_ack(r, MIGR_REC_DONE) : 0;
    return err < 0 ? err : engine_postcopy_start_epochs(r);
}

int engine_postcopy_recv_run(struct receiver *r)
{
    uint64_t p0 = migr_now_ns();
    int err = engine_postcopy_run(r);
    if (err < 0)
        return err;
    r->st->postcopy.ns = migr_now_ns() - p0;
    engine_postcopy_finish(r);
    return 0;
}

const struct engine_mode engine_mode_postcopy = {
    .mode = MIGR_MODE_POSTCOPY,
    .name = "postcopy",
    .cname = "cpostcopy",
    .postcopy = true,
    .setup = engine_postcopy_offer_channel,
    .pre_pause = engine_postcopy_accept_channel,
    .owned = engine_postcopy_owned,
    ENGINE_POSTCOPY_RECV,
};
