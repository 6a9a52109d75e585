/* engine: tail — pre-copy rounds while they help, then a short cancellable
 * post-copy tail instead of the stop-and-copy (the CLI's default mode).
 *
 *   source:       HELLO (as "chybrid") · fault channel offered · pre-copy
 *                 rounds until the dirty pages would be pushed in under
 *                 tail_ms, or the next round would not halve them · discard
 *                 rounds · pause · the last stale pages discarded · vCPU
 *                 state · switchover · push the dirty pages while the guest
 *                 runs on the destination and faults on them
 *   destination:  hybrid's part, unchanged (the wire says "chybrid")
 *
 * Why: a stop-and-copy moves the last dirty set inside the pause, so its
 * downtime grows with the dirty rate; here the pause carries only the vCPU
 * state and a list of stale pages, whatever the guest dirties. The price is
 * a window (the tail, a few ms for a few thousand pages) in which the guest
 * runs on the destination with pages that only the source holds. It is
 * always the cancellable variant: the source keeps every page and the
 * destination checkpoints back and holds a lease (EPOCH_ACK), so a dead
 * destination, a broken link or `migr cancel` in the tail gives the guest
 * back to the source. Only the source's own death in the tail loses it
 * (docs/design.md, "What survives what").
 */
#include "migr/common.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

static int tail_live(struct sender *s)
{
    const struct migr_send_params *p = s->p;
    struct engine_rounds rule = {.limit = p->max_rounds,
                                 .target_ns = (uint64_t)(p->tail_ms ? p->tail_ms : 20) * 1000000ull,
                                 .halve = true};
    int err = engine_precopy_rounds(s, &rule);
    return err < 0 ? err : engine_hybrid_discard_rounds(s);
}

const struct engine_mode engine_mode_tail = {
    .mode = MIGR_MODE_TAIL,
    .name = "hybrid-tail",        /* "hybrid": the JSON summary's post-copy fields are printed */
    .cname = "chybrid-tail",
    .wire = &engine_mode_hybrid,
    .cancellable_only = true,
    .postcopy = true,
    .setup = engine_hybrid_setup,
    .live = tail_live,
    .pre_pause = engine_postcopy_accept_channel,
    .paused = engine_hybrid_paused,
    .owned = engine_postcopy_owned,
    ENGINE_POSTCOPY_RECV,
};
