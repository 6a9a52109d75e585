/* engine: tail — pre-copy rounds while they help, then the switch: a
 * stop-and-copy of the few pages left, or, where the rounds stopped
 * converging, a short cancellable post-copy tail (the CLI's default mode).
 *
 *   source:       HELLO (chybrid-tail) · fault channel offered · pre-copy
 *                 rounds while each is expected to halve the dirty pages,
 *                 until TAIL_DONE pages at most are left; then
 *                 converged:  pause · those pages (stop-and-copy) · switch
 *                 otherwise:  discard rounds · pause · the last stale pages
 *                             discarded · switch · push what the destination
 *                             lacks while the guest runs there (post-copy)
 *   destination:  a DISCARD makes it post-copy (hybrid's part); without one
 *                 it is pre-copy's: every page intact at SWITCHOVER
 *
 * Why both: a stop-and-copy's downtime grows with the dirty set it moves, a
 * post-copy switch's does not — but the switch has a floor of its own at the
 * destination (userfaultfd over all RAM, threads, and the take-back
 * tracker unless it started at the first DISCARD: 0.3-0.4 ms for 1 GiB
 * here, figures in docs/design.md "The tail" — against
 * ~3 us per page copied in the pause; a stale page costs a punch of ~100 us
 * when KVM maps it under this nested hypervisor). So pages left after converging rounds go inside the pause,
 * and only a guest that dirties faster than rounds can chase gets the tail.
 *
 * Safety: always the cancellable variant. In the tail the source keeps
 * every page and the destination checkpoints back under the lease
 * (EPOCH_ACK), so a dead destination, a broken link or `migr cancel` gives
 * the guest back to the source; only the source's own death in the tail
 * loses it (docs/design.md, "What survives what"). A pre-copy switch has
 * pre-copy's guarantees.
 */
#include "migr/common.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

/* Rounds stop converging above this many dirty pages: the tail. At or
 * below, the pages go inside the pause (~0.2 ms for 64). */
#define TAIL_DONE 64u

static int tail_live(struct sender *s)
{
    struct engine_rounds rule = {.limit = s->p->max_rounds, .done_pages = TAIL_DONE, .halve = true};
    int err = engine_precopy_rounds(s, &rule);
    if (err < 0)
        return err;
    s->postcopy = !s->st->precopy.converged;
    return s->postcopy ? engine_hybrid_discard_rounds(s) : 0;
}

static int tail_paused(struct sender *s)
{
    return s->postcopy ? engine_hybrid_paused(s) : engine_precopy_paused(s);
}

static int tail_owned(struct sender *s)
{
    return s->postcopy ? engine_postcopy_owned(s) : 0;
}

/* Destination: the source discarded pages only if it switches as post-copy. */
static int tail_recv_switchover(struct receiver *r)
{
    return r->discard_seen ? engine_postcopy_prepare(r) : engine_precopy_recv_switchover(r);
}

static int tail_recv_commit(struct receiver *r)
{
    return r->pc ? engine_postcopy_recv_commit(r) : 0;
}

static int tail_recv_resumed(struct receiver *r)
{
    return r->pc ? engine_postcopy_recv_resumed(r) : 0;
}

static int tail_recv_run(struct receiver *r)
{
    return r->pc ? engine_postcopy_recv_run(r) : engine_recv_done(r);
}

const struct engine_mode engine_mode_tail = {
    .mode = MIGR_MODE_TAIL,
    .name = "hybrid-tail",        /* on the wire it is hybrid: destinations need nothing new */
    .cname = "chybrid-tail",
    .cancellable_only = true,
    .postcopy = true,             /* until tail_live decides */
    .recv_records = ENGINE_REC_BIT(MIGR_REC_PAGES) | ENGINE_REC_BIT(MIGR_REC_ROUND_END) |
                    ENGINE_REC_BIT(MIGR_REC_STATE) | ENGINE_REC_BIT(MIGR_REC_FAULT_CHANNEL) |
                    ENGINE_REC_BIT(MIGR_REC_DISCARD),
    .setup = engine_hybrid_setup,
    .live = tail_live,
    .pre_pause = engine_postcopy_accept_channel,
    .paused = tail_paused,
    .owned = tail_owned,
    .recv_setup = engine_recv_setup_copy,
    .recv_switchover = tail_recv_switchover,
    .recv_commit = tail_recv_commit,
    .recv_resumed = tail_recv_resumed,
    .recv_run = tail_recv_run,
};
