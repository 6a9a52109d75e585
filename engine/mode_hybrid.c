/* engine: hybrid — pre-copy rounds first, then post-copy.
 *
 *   source:       HELLO · fault channel offered · at most hybrid_rounds
 *                 pre-copy rounds · discard rounds · pause · the last stale
 *                 pages discarded · switchover · push what the destination
 *                 lacks (postcopy_send.c)
 *   destination:  as post-copy, and DISCARD drops stale copies on arrival
 *
 * Discard rounds: a stale copy costs the destination a punch (~5.5 us per
 * run of pages on this machine, 45 ms for 8,000 scattered pages). Punching
 * inside the pause was the 84-179 ms hybrid downtime at 1 GiB, so the
 * destination drops them while the guest still runs here and says READY
 * when done; each round discards what the guest wrote during the previous
 * one, so that only the pages written since the last harvest are dropped
 * inside the pause.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/record.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"

/* Tell the destination which of its copies are stale (ranges). */
static int send_discard(struct sender *s, const uint64_t *bm)
{
    struct migr_range *rg = s->ranges;
    uint8_t *meta = s->ranges_meta;
    size_t cap = 8 + MIGR_RANGES_MAX * 16;
    uint32_t n = 0;
    int err;
    for (uint64_t i = 0; i < s->hv->ram_pages; i++) {
        if ((i & 63) == 0 && bm[i >> 6] == 0) { /* inside the pause: skip clean words */
            i += 63;
            continue;
        }
        if (!migr_bit_test(bm, i))
            continue;
        uint64_t pfn = migr_hv_index_pfn(s->hv, i);
        if (n && rg[n - 1].pfn + rg[n - 1].npages == pfn) {
            rg[n - 1].npages++;
            continue;
        }
        if (n == MIGR_RANGES_MAX) {
            int len = migr_ranges_encode("DISCARD", rg, n, meta, cap);
            if (len < 0 || (err = migr_rec_send(s->t, MIGR_REC_DISCARD, meta, (uint32_t)len, NULL, 0)) < 0)
                return len < 0 ? len : err;
            n = 0;
        }
        rg[n++] = (struct migr_range){pfn, 1};
    }
    if (n == 0)
        return 0;
    int len = migr_ranges_encode("DISCARD", rg, n, meta, cap);
    if (len < 0)
        return len;
    return migr_rec_send(s->t, MIGR_REC_DISCARD, meta, (uint32_t)len, NULL, 0);
}

int engine_hybrid_setup(struct sender *s)
{
    int err;
    if ((err = engine_postcopy_offer_channel(s)) < 0 || (err = engine_precopy_setup(s)) < 0)
        return err;
    if (!(s->need = calloc(s->words, 8)) ||
        !(s->ranges = malloc(MIGR_RANGES_MAX * sizeof(*s->ranges))) ||
        !(s->ranges_meta = malloc(8 + MIGR_RANGES_MAX * 16)))
        return migr_errorf(ENOMEM, "send: out of memory for a %llu-page bitmap",
                           (unsigned long long)s->hv->ram_pages);
    return 0;
}

/* Discard rounds after the pre-copy rounds; need collects every page
 * discarded. */
int engine_hybrid_discard_rounds(struct sender *s)
{
    int err;
    for (int k = 0; k < 3; k++) {
        uint64_t n = migr_bitmap_count(s->bm, s->hv->ram_pages);
        if (n <= 64)
            break; /* few enough for the pause */
        struct migr_ack ack;
        uint64_t r0 = migr_now_ns();
        s->b.round++;
        if ((err = send_discard(s, s->bm)) < 0 || (err = engine_send_round_end(s, 0, n, 0)) < 0 ||
            (err = engine_expect(s, MIGR_REC_READY, &ack)) < 0)
            return err;
        for (uint64_t w = 0; w < s->words; w++)
            s->need[w] |= s->bm[w];
        memset(s->bm, 0, s->words * 8);
        long h = engine_harvest(s, s->bm);
        if (h < 0)
            return (int)h;
        if (s->b.round <= MIGR_MAX_ROUNDS_KEPT)
            s->st->precopy.round[s->b.round - 1] = (struct migr_round_stats){
                .ns = migr_now_ns() - r0, .dirty_after = migr_bitmap_count(s->bm, s->hv->ram_pages)};
        s->st->precopy.rounds = s->b.round;
    }
    return 0;
}

/* Rounds (at most hybrid_rounds), then discard rounds. */
static int hybrid_live(struct sender *s)
{
    struct engine_rounds rule = {.limit = s->p->max_rounds < s->hybrid_rounds ? s->p->max_rounds : s->hybrid_rounds,
                                 .target_ns = (uint64_t)s->p->downtime_ms * 1000000ull};
    int err = engine_precopy_rounds(s, &rule);
    return err < 0 ? err : engine_hybrid_discard_rounds(s);
}

/* Inside the pause: the destination drops its last stale copies; those
 * pages follow in post-copy with the ones of the discard rounds. */
int engine_hybrid_paused(struct sender *s)
{
    long n = engine_harvest(s, s->bm);
    if (n < 0)
        return (int)n;
    s->st->precopy.rounds = ++s->b.round; /* the paused one counts, as pre-copy's stop-and-copy does */
    int err = send_discard(s, s->bm);
    if (err < 0)
        return err;
    for (uint64_t w = 0; w < s->words; w++)
        s->bm[w] |= s->need[w];
    return 0;
}

/* Destination: pages the guest dirtied after they were sent. Their copies
 * here are stale and will be fetched again in post-copy: drop them now (the
 * source may still be running the guest: a discard round), one punch per
 * run of pages that hold something, so that the pause has only the last few
 * to drop. */
int engine_recv_discard(struct receiver *r, const struct migr_rec_hdr *h)
{
    uint32_t n;
    int err = migr_ranges_decode("DISCARD", r->meta, h->meta_len, r->ranges, &n);
    if (err < 0)
        return migr_error_prefix(-err, "record %llu", (unsigned long long)r->seq);
    engine_prefault_stop(r); /* it must not refill what is punched here */
    for (uint32_t i = 0; i < n; i++) {
        const struct migr_range *rg = &r->ranges[i];
        int64_t first = migr_hv_pfn_index(r->hv, rg->pfn);
        int64_t last = migr_hv_pfn_index(r->hv, rg->pfn + rg->npages - 1);
        if (first < 0 || last != first + (int64_t)rg->npages - 1)
            return migr_errorf(EBADMSG, "record %llu (DISCARD): range %u (pfn 0x%llx, %llu pages) leaves guest RAM",
                               (unsigned long long)r->seq, i, (unsigned long long)rg->pfn,
                               (unsigned long long)rg->npages);
        uint64_t run = 0, run_len = 0;
        for (uint64_t k = (uint64_t)first; k <= (uint64_t)last + 1; k++) {
            bool drop = k <= (uint64_t)last && migr_bit_test(r->alloc, k);
            if (drop && run_len && run + run_len == k) {
                run_len++;
                continue;
            }
            if (run_len && (err = engine_punch(r, run, run_len)) < 0)
                return err;
            run = k;
            run_len = drop;
        }
        for (uint64_t k = (uint64_t)first; k <= (uint64_t)last; k++) {
            migr_bit_clear(r->alloc, k);
            migr_bit_clear(r->nonzero, k);
            migr_bit_clear(r->received, k);
            migr_bit_clear(r->torn, k);
        }
        r->discarded += rg->npages;
        r->discard_seen = true;
        engine_postcopy_ahead(r); /* the tail: post-copy from here */
    }
    return 0;
}

const struct engine_mode engine_mode_hybrid = {
    .mode = MIGR_MODE_HYBRID,
    .name = "hybrid",
    .cname = "chybrid",
    .postcopy = true,
    .setup = engine_hybrid_setup,
    .live = hybrid_live,
    .pre_pause = engine_postcopy_accept_channel,
    .paused = engine_hybrid_paused,
    .owned = engine_postcopy_owned,
    ENGINE_POSTCOPY_RECV,
};
