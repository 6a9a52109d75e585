/* engine: migr_send — the source's dispatcher.
 *
 * It resolves the mode's unit (engine/mode.h) and walks the phases:
 *
 *   HELLO · setup · live · pause · paused · STATE … DONE · owned
 *
 * The switchover and the decision where the guest is after a failure are
 * engine/switchover.c's; what each mode does in its phases is in its own
 * file (mode_precopy.c, mode_handover.c, mode_postcopy.c, mode_hybrid.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/engine.h"
#include "engine/abi.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"
#include "engine/stage.h"

void migr_send_params_defaults(struct migr_send_params *p)
{
    migr_send_params_init(p);
}

/* Without rate control in p the engine leaves the transport's own limit
 * (set by the caller with migr_transport_set_rate) alone. */
void engine_set_rate(struct sender *s, uint64_t rate)
{
    if (s->p->max_bandwidth || s->p->adaptive_bw)
        migr_transport_set_rate(s->t, rate);
}

static void sender_free(struct sender *s)
{
    engine_encoder_destroy(s);
    engine_postcopy_close_channel(s);
    migr_dirty_close(s->d);
    if (s->cancel)
        engine_cancel_detach(s->cancel);
    if (s->own_cancel)
        migr_cancel_free(s->cancel);
    free(s->bm);
    free(s->need);
    free(s->ranges);
    free(s->ranges_meta);
    free(s);
}

static int sender_init(struct sender *s)
{
    const struct migr_send_params *p = s->p;
    struct migr_stats *st = s->st;
    int err;
    s->words = migr_bitmap_words(s->hv->ram_pages);
    snprintf(st->mode, sizeof(st->mode), "%s", engine_mode_label(s->mode, s->cancellable));
    snprintf(st->transport, sizeof(st->transport), "%.*s", (int)strcspn(s->t->peer, ":"), s->t->peer);
    st->ram_bytes = s->hv->ram_pages * MIGR_PAGE_SIZE;
    if (!(s->bm = calloc(s->words * 2, sizeof(uint64_t)))) /* and, behind it, s->seen */
        return migr_errorf(ENOMEM, "send: out of memory for a %llu-page bitmap",
                           (unsigned long long)s->hv->ram_pages);
    s->seen = s->bm + s->words;
    s->t0 = migr_now_ns();
    s->cancel = p->cancel;
    if (!s->cancel && !(s->cancel = migr_cancel_new()))
        return migr_errorf(ENOMEM, "send: out of memory");
    s->own_cancel = !p->cancel;
    s->b = (struct engine_batch){.t = s->t, .st = st, .cancel = s->cancel};
    if ((err = engine_cancel_attach(s->cancel, s->t, p->stall_timeout_ms)) < 0)
        return err;
    st->max_bandwidth = p->max_bandwidth;
    st->adaptive_bw = p->adaptive_bw;
    if (p->adaptive_bw && !p->min_bandwidth)
        return migr_errorf(EINVAL, "adaptive rate control needs a min_bandwidth above 0");
    uint64_t r1 = p->adaptive_bw ? p->min_bandwidth : p->max_bandwidth; /* round 1's rate */
    engine_set_rate(s, p->max_bandwidth && r1 > p->max_bandwidth ? p->max_bandwidth : r1);
    if (s->mode->mode == MIGR_MODE_HANDOVER && !migr_transport_can_pass_fds(s->t))
        return migr_errorf(ENOTSUP, "handover to %s: passing memory needs a unix: or shm: transport on this host",
                           s->t->peer);
    if (s->mode->cancellable_only && !s->cancellable)
        return migr_errorf(EINVAL, "mode %s runs only with take-back (cancellable): without it a destination "
                           "lost in the tail would lose the guest", s->mode->name);
    if (p->switchover_hook && !s->mode->group_ok)
        return migr_errorf(ENOTSUP, "a joint (group) switchover needs pre-copy or hand-over, not %s", st->mode);
    return 0;
}

/* The phases, in order; a NULL hook is a phase the mode does not run. */
static int run(struct sender *s)
{
    int err = sender_init(s);
    const struct engine_mode *m = s->mode;
    if (err < 0 || (err = engine_switch_hello(s)) < 0 || (m->setup && (err = m->setup(s)) < 0))
        return err;
    s->st->setup_ns = migr_now_ns() - s->t0;
    if ((m->live && (err = m->live(s)) < 0) || (err = engine_switch_pause(s)) < 0 ||
        (m->paused && (err = m->paused(s)) < 0) || (err = engine_switch_commit(s)) < 0)
        return err;
    return m->owned ? m->owned(s) : 0;
}

/* migr_send, and with sp: migr_send_settled (engine/settle.c). */
static int send_main(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
                     const struct migr_settle_params *sp, struct migr_stats *st)
{
    uint64_t cpu0 = migr_thread_cpu_ns();
    struct sender *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(st->error, sizeof(st->error), "send: out of memory; the guest keeps running on the source");
        st->resumed_on_source = true;
        return migr_errorf(ENOMEM, "%s", st->error);
    }
    *s = (struct sender){.hv = hv, .t = t, .p = p, .st = st, .cpu0 = cpu0, .owner = OWNER_SOURCE,
                         .settle = sp};
    s->mode = engine_mode_of(p->mode);
    s->cancellable = p->cancellable;
    s->postcopy = s->mode && s->mode->postcopy;
    s->hybrid_rounds = p->hybrid_rounds ? p->hybrid_rounds : 1;
    if (!s->mode) {
        snprintf(st->error, sizeof(st->error), "send: mode %d unknown; the guest keeps running on the source",
                 (int)p->mode);
        st->resumed_on_source = true;
        free(s);
        return migr_errorf(EINVAL, "%s", st->error);
    }
    int err = run(s);
    if (err < 0)
        err = engine_switch_fail(s, err);
    st->total_ns = migr_now_ns() - s->t0;
    st->wire_bytes = t->bytes_sent;
    engine_account(st, t, cpu0);
    sender_free(s);
    if (err < 0)
        migr_errorf(-err, "%s", st->error);
    return err < 0 ? err : 0;
}

/* The caller's structs may be older or newer than ours (engine.h, "ABI"):
 * the engine runs on full-size copies (stats: unless the caller's is ours). */
int migr_send(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
              struct migr_stats *st)
{
    return engine_send(hv, t, p, NULL, st);
}

int engine_send(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
                const struct migr_settle_params *sp, struct migr_stats *st)
{
    struct migr_send_params pl;
    struct migr_stats sl = MIGR_STATS_INIT;
    int err = engine_abi_check_out(st, "send stats", "MIGR_STATS_INIT");
    if (err < 0)
        return err;
    migr_send_params_init(&pl);
    if ((err = engine_abi_in(&pl, sizeof(pl), p, "send params", "migr_send_params_init")) < 0) {
        snprintf(sl.error, sizeof(sl.error), "%s; the guest keeps running on the source", migr_last_error());
        sl.resumed_on_source = true;
        engine_abi_out(st, &sl, sizeof(sl));
        return err;
    }
    struct migr_stats *use = engine_abi_out_begin(st, &sl, sizeof(sl));
    err = send_main(hv, t, &pl, sp, use);
    engine_abi_out(st, use, sizeof(sl));
    return err;
}
