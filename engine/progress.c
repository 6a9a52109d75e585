/* engine: what a running migration reports (struct migr_progress), source side.
 *
 * Everything is derived from what the sender keeps anyway: the per-round
 * statistics of the rounds already finished (st->precopy.round[]), the transport's
 * byte counter and the codec counters the encoder adds to after each batch.
 * The current round began when the previous ones ended: setup_ns plus their
 * durations after the start (the ROUND_END records between them take
 * microseconds), with the bytes those rounds sent (plus HELLO's few bytes,
 * which only make round 1's rate a little higher for its first moments).
 */
#include <string.h>

#include "migr/common.h"
#include "migr/engine.h"
#include "engine/engine_impl.h"

/* A rate over less than this is noise: the last complete round's is used. */
#define RATE_MIN_NS 50000000ull

static void round_rates(const struct sender *s, uint64_t now, struct migr_progress *pr)
{
    const struct migr_stats *st = s->st;
    uint32_t done = st->precopy.rounds < MIGR_MAX_ROUNDS_KEPT ? st->precopy.rounds : MIGR_MAX_ROUNDS_KEPT;
    uint64_t t_start = s->t0 + st->setup_ns, b_start = 0;
    for (uint32_t i = 0; i < done; i++) {
        t_start += st->precopy.round[i].ns;
        b_start += st->precopy.round[i].bytes;
    }
    double last_rate = 0;
    if (done > 0) {
        const struct migr_round_stats *r = &st->precopy.round[done - 1];
        if (r->ns) {
            last_rate = (double)r->bytes * 1e9 / (double)r->ns;
            pr->dirty_rate = (double)r->dirty_after * MIGR_PAGE_SIZE * 1e9 / (double)r->ns;
        }
        pr->dirty_pages = r->dirty_after;
    }
    uint64_t bytes = s->t->bytes_sent;
    if (st->setup_ns && now > t_start + RATE_MIN_NS && bytes >= b_start)
        pr->transfer_rate = (double)(bytes - b_start) * 1e9 / (double)(now - t_start);
    else
        pr->transfer_rate = last_rate;
    /* The engine's own convergence estimate (mode_precopy.c): the dirty set
     * at the rate the wire moved; in the stop-and-copy, what is left of it. */
    uint64_t left = strcmp(pr->phase ? pr->phase : "", "stop-and-copy") == 0 ? pr->pages_total - pr->pages_done
                                                                               : pr->dirty_pages;
    double rate = last_rate > 0 ? last_rate : pr->transfer_rate;
    pr->expected_downtime_ms = done > 0 && rate > 0 ? (double)left * MIGR_PAGE_SIZE / rate * 1e3 : -1;
}

void engine_progress(struct sender *s, const char *phase, uint64_t done, uint64_t total, bool force)
{
    if (!s->p->progress)
        return;
    /* Paused, every microsecond is downtime: the report at the end of the
     * stop-and-copy cost 10-12 us here, and woke the client's process onto a
     * CPU the switch needs. A long stop-and-copy still reports every 100 ms;
     * the switch reports once DONE is in (engine/switchover.c). */
    if (force && s->owner == OWNER_SOURCE_PAUSED)
        return;
    uint64_t now = migr_now_ns();
    if (!force && now - s->last_progress < 100000000ull)
        return;
    s->last_progress = now;
    const struct migr_stats *st = s->st;
    struct migr_progress pr = {
        .size = sizeof(pr), .phase = phase, .round = s->b.round, .pages_done = done, .pages_total = total,
        .bytes_sent = s->t->bytes_sent, .elapsed_s = (double)(now - s->t0) / 1e9,
        .ram_pages = s->hv->ram_pages, .pages_sent = st->pages, .max_bandwidth = s->t->rate_bps,
    };
    round_rates(s, now, &pr);
    bool any = false;
    for (int k = 0; k < MIGR_STATS_ENCS; k++) {
        pr.codec_pages[k] = st->codec[k].pages;
        pr.codec_bytes[k] = st->codec[k].bytes_out;
        any |= st->codec[k].pages != 0;
    }
    if (!any) { /* no codec stage (compress none, hand-over): raw pages and zero runs */
        pr.codec_pages[MIGR_ENC_RAW] = st->raw_pages;
        pr.codec_bytes[MIGR_ENC_RAW] = st->raw_pages * MIGR_PAGE_SIZE;
        pr.codec_pages[MIGR_ENC_ZERO] = st->zero_pages;
    }
    s->p->progress(s->p->progress_arg, &pr);
}
