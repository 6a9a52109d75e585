/* engine: pre-copy — the default mode.
 *
 *   source:       round 1 (all RAM) · rounds of dirty pages until the expected
 *                 downtime is below target (or no progress) · pause · the last
 *                 dirty pages (stop-and-copy) · switchover
 *   destination:  every page of RAM intact before SWITCHOVER is answered
 *
 * Pages are sent straight from guest RAM (the kernel copies them into the
 * socket): no bounce buffer. A page the guest rewrites while it is being sent
 * may arrive torn; its CRC then fails at the receiver, which marks it for
 * resend — and the tracker has already seen the write, so the next round (or
 * the paused final round) resends it. See docs/format.md, "torn pages".
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "migr/common.h"
#include "migr/dirty.h"
#include "migr/record.h"
#include "engine/engine_impl.h"
#include "engine/mode.h"
#include "engine/stage.h"

/* Rate for the next pre-copy round (docs/design.md, "Rate control"). */
static uint64_t round_rate(const struct migr_send_params *p, uint32_t round, uint64_t dirty_bps)
{
    if (!p->adaptive_bw)
        return p->max_bandwidth;
    uint64_t r = round <= 1 ? p->min_bandwidth : dirty_bps + p->min_bandwidth;
    return p->max_bandwidth && r > p->max_bandwidth ? p->max_bandwidth : r;
}

static uint64_t estimate_ns(uint64_t dirty_pages, uint64_t bytes, uint64_t ns)
{
    if (bytes == 0 || ns == 0)
        return UINT64_MAX;
    double bw = (double)bytes / (double)ns; /* bytes per ns */
    return (uint64_t)((double)dirty_pages * MIGR_PAGE_SIZE / bw);
}

/* Send the pages set in bm (all pages if bm is NULL). total = how many. */
static int send_pages(struct sender *s, const uint64_t *bm, uint64_t total, const char *phase)
{
    struct migr_hv *hv = s->hv;
    uint64_t done = 0, idx = 0;
    int err;
    for (uint32_t r = 0; r < hv->nregions; r++) {
        const struct migr_hv_region *g = &hv->regions[r];
        uint64_t npages = g->size / MIGR_PAGE_SIZE, pfn0 = g->gpa / MIGR_PAGE_SIZE;
        for (uint64_t i = 0; i < npages; i++, idx++) {
            if (bm) {
                if (bm[idx >> 6] == 0) { /* skip clean words fast */
                    uint64_t skip = 64 - (idx & 63);
                    if (skip > npages - i)
                        skip = npages - i;
                    i += skip - 1;
                    idx += skip - 1;
                    continue;
                }
                if (!migr_bit_test(bm, idx))
                    continue;
            }
            done++;
            err = s->enc ? engine_encode_page(s, g->host + i * MIGR_PAGE_SIZE, pfn0 + i)
                         : engine_batch_page(&s->b, g->host + i * MIGR_PAGE_SIZE, pfn0 + i);
            if (err < 0)
                return err;
            if (err > 0)
                engine_progress(s, phase, done, total, false);
        }
    }
    if ((s->enc && (err = engine_encode_flush(s)) < 0) || (err = engine_batch_flush(&s->b)) < 0)
        return err;
    engine_progress(s, phase, done, total, true);
    return 0;
}

int engine_send_round_end(struct sender *s, uint64_t pages, uint64_t dirty, uint32_t flags)
{
    uint8_t meta[MIGR_ROUND_END_SIZE];
    struct migr_round_end re = {.round = s->b.round, .pages_sent = pages, .dirty_pages = dirty, .flags = flags};
    int len = migr_round_end_encode(&re, meta, sizeof(meta));
    if (len < 0)
        return len;
    return migr_rec_send(s->t, MIGR_REC_ROUND_END, meta, (uint32_t)len, NULL, 0);
}

long engine_harvest(struct sender *s, uint64_t *bm)
{
    long n = migr_dirty_harvest(s->d, bm);
    long f = n < 0 ? 0 : engine_holes_filter(s->hv, bm, s->seen);
    return n < 0 ? n : f < 0 ? f : n - f;
}

int engine_precopy_setup(struct sender *s)
{
    int err;
    if ((err = engine_encoder_create(s)) < 0 || (err = migr_dirty_open(s->p->tracker, s->hv, &s->d)) < 0 ||
        (err = migr_dirty_start(s->d)) < 0)
        return err;
    snprintf(s->st->tracker, sizeof(s->st->tracker), "%s", s->d->ops->name);
    return 0;
}

/* One live round: round 1 sends every page — never-written ones as ZERO
 * runs, unread, ahead of the data (engine/holes.c; the tracker runs
 * already) — later rounds what the last harvest found. */
static int round_pages(struct sender *s, uint64_t dirty)
{
    if (s->b.round > 1)
        return send_pages(s, s->bm, dirty, "precopy");
    long ndata = engine_data_scan(s->hv, s->seen);
    int err = ndata < 0 ? (int)ndata : engine_send_holes(s, s->seen);
    return err < 0 ? err : send_pages(s, s->seen, (uint64_t)ndata, "precopy");
}

int engine_precopy_rounds(struct sender *s, const struct engine_rounds *rule)
{
    const struct migr_send_params *p = s->p;
    struct migr_stats *st = s->st;
    uint64_t best_dirty = UINT64_MAX, stale_rounds = 0, dirty = 0, dirty_bps = 0;
    int err, resyncs = 0;
    for (s->b.round = 1;; s->b.round++) {
        uint64_t rate = round_rate(p, s->b.round, dirty_bps);
        engine_set_rate(s, rate);
        uint64_t r0 = migr_now_ns(), b0 = s->t->bytes_sent, pg0 = st->pages;
        if ((err = round_pages(s, dirty)) < 0)
            return err;
        memset(s->bm, 0, s->words * sizeof(uint64_t));
        long n = engine_harvest(s, s->bm);
        if (n < 0)
            return (int)n;
        dirty = migr_bitmap_count(s->bm, s->hv->ram_pages);
        uint64_t rns = migr_now_ns() - r0, rbytes = s->t->bytes_sent - b0;
        if (s->b.round <= MIGR_MAX_ROUNDS_KEPT)
            st->precopy.round[s->b.round - 1] = (struct migr_round_stats){st->pages - pg0, rbytes, rns, dirty, rate};
        dirty_bps = rns ? (uint64_t)((double)dirty * MIGR_PAGE_SIZE * 1e9 / (double)rns) : 0;
        if (s->b.round == 1) {
            st->precopy.first_pass_ns = rns;
            st->precopy.first_pass_pages = st->pages - pg0;
        }
        st->precopy.rounds = s->b.round;
        if ((err = engine_send_round_end(s, st->pages - pg0, dirty, 0)) < 0)
            return err;
        /* Stop when the rest fits the target, or rounds stop helping. */
        uint64_t next_ns = estimate_ns(dirty, rbytes, rns);
        if (next_ns <= rule->target_ns || dirty <= rule->done_pages) {
            /* Converged — once what is still queued towards the destination
             * is in (the sync), which may take a while the guest spends
             * dirtying pages; if those no longer fit, one more round (twice
             * at most) rather than a larger stop-and-copy. */
            if ((err = engine_sync(s)) < 0)
                return err;
            long more = engine_harvest(s, s->bm);
            if (more < 0)
                return (int)more;
            dirty = migr_bitmap_count(s->bm, s->hv->ram_pages);
            next_ns = estimate_ns(dirty, rbytes, rns);
            if (next_ns <= rule->target_ns || dirty <= rule->done_pages || ++resyncs > 2) {
                st->precopy.converged = true;
                return 0;
            }
            continue;
        }
        /* halve: the guest dirties pages about as fast during the next
         * round as during this one, so that round leaves about
         * dirty x next/this pages behind; unless that is under half of
         * dirty, another round costs more than it saves. */
        if (rule->halve && (dirty >= best_dirty || next_ns >= rns / 2))
            return 0;
        if (dirty < best_dirty) {
            best_dirty = dirty;
            stale_rounds = 0;
        } else if (++stale_rounds >= 3) {
            return 0;
        }
        if (s->b.round >= rule->limit)
            return 0;
    }
}

static int precopy_live(struct sender *s)
{
    struct engine_rounds rule = {.limit = s->p->max_rounds, .target_ns = (uint64_t)s->p->downtime_ms * 1000000ull};
    return engine_precopy_rounds(s, &rule);
}

/* Stop-and-copy: the guest is paused, the last dirty pages go. */
int engine_precopy_paused(struct sender *s)
{
    struct migr_stats *st = s->st;
    long n = engine_harvest(s, s->bm);
    if (n < 0)
        return (int)n;
    uint64_t dirty = migr_bitmap_count(s->bm, s->hv->ram_pages);
    s->b.round++;
    uint64_t r0 = migr_now_ns(), b0 = s->t->bytes_sent, pg0 = st->pages;
    int err = send_pages(s, s->bm, dirty, "stop-and-copy");
    if (err < 0)
        return err;
    if (s->b.round <= MIGR_MAX_ROUNDS_KEPT)
        st->precopy.round[s->b.round - 1] = (struct migr_round_stats){
            st->pages - pg0, s->t->bytes_sent - b0, migr_now_ns() - r0, 0, s->p->max_bandwidth};
    st->precopy.rounds = s->b.round;
    return engine_send_round_end(s, st->pages - pg0, 0, 0);
}

/* Destination, at SWITCHOVER: never run a guest with a page missing or torn. */
int engine_precopy_recv_switchover(struct receiver *r)
{
    struct migr_hv *hv = r->hv;
    for (uint64_t w = 0; w < migr_bitmap_words(hv->ram_pages); w++) {
        uint64_t missing = ~r->received[w], bad = r->torn[w];
        uint64_t valid = w * 64 + 64 <= hv->ram_pages ? ~0ull : (1ull << (hv->ram_pages & 63)) - 1;
        if ((missing | bad) & valid) {
            uint64_t i = w * 64 + (uint64_t)__builtin_ctzll((missing | bad) & valid);
            return migr_errorf(EPROTO, "record %llu (SWITCHOVER): page 0x%llx %s; refusing to run an incomplete "
                               "guest", (unsigned long long)r->seq, (unsigned long long)migr_hv_index_pfn(hv, i),
                               migr_bit_test(r->torn, i) ? "failed its CRC and was not resent"
                                                         : "was never received");
        }
    }
    return 0;
}

const struct engine_mode engine_mode_precopy = {
    .mode = MIGR_MODE_PRECOPY,
    .name = "precopy",
    .group_ok = true,
    .recv_records = ENGINE_REC_BIT(MIGR_REC_PAGES) | ENGINE_REC_BIT(MIGR_REC_ROUND_END) |
                    ENGINE_REC_BIT(MIGR_REC_STATE),
    .setup = engine_precopy_setup,
    .live = precopy_live,
    .paused = engine_precopy_paused,
    .recv_setup = engine_recv_setup_copy,
    .recv_switchover = engine_precopy_recv_switchover,
    .recv_run = engine_recv_done,
};
