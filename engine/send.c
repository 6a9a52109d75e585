/* engine: the source side of pre-copy migration.
 *
 *   HELLO · round 1 (all RAM) · rounds of dirty pages until the expected
 *   downtime is below target (or no progress) · pause · last dirty pages ·
 *   STATE · SWITCHOVER · wait READY · COMMIT · wait DONE · release.
 *
 * Pages are sent straight from guest RAM (the kernel copies them into the
 * socket): no bounce buffer. A page the guest rewrites while it is being sent
 * may arrive torn; its CRC then fails at the receiver, which marks it for
 * resend — and the tracker has already seen the write, so the next round (or
 * the paused final round) resends it. See docs/format.md, "torn pages".
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migr/engine.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "migr/record.h"
#include "engine/engine_impl.h"
#include "engine/stage.h"

void migr_send_params_defaults(struct migr_send_params *p)
{
    memset(p, 0, sizeof(*p));
    p->downtime_ms = 300;
    p->max_rounds = 30;
    p->tracker = "auto";
    p->postcopy_after = -1;
    p->prepage = 8;
    p->compress = "auto";
    p->xbzrle_cache_mib = 64;
    p->compress_threads = 0; /* the engine picks: 2 with 2+ CPUs online (docs/compress.md) */
    p->min_bandwidth = 64ull << 20;
    p->stall_timeout_ms = 10000;
    p->postcopy_lease_ms = 10000;
}

/* Without rate control in p the engine leaves the transport's own limit
 * (set by the caller with migr_transport_set_rate) alone. */
static void set_rate(const struct migr_send_params *p, struct migr_transport *t, uint64_t rate)
{
    if (p->max_bandwidth || p->adaptive_bw)
        migr_transport_set_rate(t, rate);
}

/* Rate for the next pre-copy round (docs/design.md, "Rate control"). */
static uint64_t round_rate(const struct migr_send_params *p, uint32_t round, uint64_t dirty_bps)
{
    if (!p->adaptive_bw)
        return p->max_bandwidth;
    uint64_t r = round <= 1 ? p->min_bandwidth : dirty_bps + p->min_bandwidth;
    return p->max_bandwidth && r > p->max_bandwidth ? p->max_bandwidth : r;
}

void engine_progress(struct sender *s, const char *phase, uint64_t done, uint64_t total, bool force)
{
    if (!s->p->progress)
        return;
    uint64_t now = migr_now_ns();
    if (!force && now - s->last_progress < 100000000ull)
        return;
    s->last_progress = now;
    struct migr_progress pr = {
        .phase = phase, .round = s->b.round, .pages_done = done, .pages_total = total,
        .bytes_sent = s->t->bytes_sent, .elapsed_s = (double)(now - s->t0) / 1e9,
    };
    s->p->progress(s->p->progress_arg, &pr);
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

static int send_round_end(struct sender *s, uint64_t pages, uint64_t dirty)
{
    uint8_t meta[MIGR_ROUND_END_SIZE];
    struct migr_round_end re = {.round = s->b.round, .pages_sent = pages, .dirty_pages = dirty};
    int len = migr_round_end_encode(&re, meta, sizeof(meta));
    if (len < 0)
        return len;
    return migr_rec_send(s->t, MIGR_REC_ROUND_END, meta, (uint32_t)len, NULL, 0);
}

/* Wait for the peer's answer of the given type; an ERROR record becomes the error. */
static int expect(struct sender *s, uint16_t type, struct migr_ack *ack)
{
    uint8_t meta[MIGR_ERROR_MSG_MAX + 64];
    struct migr_rec_hdr h;
    int err = migr_rec_recv(s->t, &s->rx_seq, &h, meta, sizeof(meta));
    if (err < 0)
        return migr_error_prefix(-err, "waiting for %s from %s", migr_rec_type_name(type), s->t->peer);
    if (h.type == MIGR_REC_ERROR) {
        int code;
        char msg[MIGR_ERROR_MSG_MAX + 1];
        if (migr_error_decode(meta, h.meta_len, &code, msg, sizeof(msg)) < 0)
            return migr_errorf(EPROTO, "destination sent a malformed ERROR record");
        return migr_errorf(code > 0 ? code : EPROTO, "destination refused: %s", msg);
    }
    if (h.type != type || h.bulk_len != 0)
        return migr_errorf(EPROTO, "expected %s from the destination, got %s",
                           migr_rec_type_name(type), migr_rec_type_name(h.type));
    return migr_ack_decode(meta, h.meta_len, ack);
}

/* After a send failure: the destination may have said why before closing. */
static void peer_reason(struct sender *s)
{
    struct pollfd pfd = {.fd = s->t->fd, .events = POLLIN};
    char saved[512];
    snprintf(saved, sizeof(saved), "%s", migr_last_error());
    if (poll(&pfd, 1, 300) == 1) {
        struct migr_ack a;
        int err = expect(s, MIGR_REC_READY, &a);
        if (err < 0 && strstr(migr_last_error(), "destination refused")) {
            char why[512];
            snprintf(why, sizeof(why), "%s", migr_last_error());
            migr_errorf(EPROTO, "%s (%s)", why, saved);
            return;
        }
    }
    migr_errorf(EIO, "%s", saved);
}

/* Hand-over: the destination maps the very same memory. Sent while the guest
 * still runs: the destination only maps it, touching nothing until COMMIT. */
static int send_memfds(struct sender *s)
{
    struct migr_memfd_desc m = {.nregions = s->hv->nregions};
    int fds[MIGR_MAX_REGIONS];
    uint8_t meta[8 + MIGR_MAX_REGIONS * 24];
    for (uint32_t i = 0; i < m.nregions; i++) {
        const struct migr_hv_region *g = &s->hv->regions[i];
        if (g->memfd < 0)
            return migr_errorf(ENOTSUP, "handover: region %u has no memfd to pass", i);
        m.r[i].gpa = g->gpa;
        m.r[i].size = g->size;
        m.r[i].off = g->memfd_off;
        fds[i] = g->memfd;
    }
    int len = migr_memfd_encode(&m, meta, sizeof(meta));
    if (len < 0)
        return len;
    int err = migr_rec_send(s->t, MIGR_REC_MEMFD, meta, (uint32_t)len, NULL, 0);
    if (err < 0)
        return err;
    return migr_transport_send_fds(s->t, fds, (int)m.nregions);
}

/* Hybrid: tell the destination which of its copies are stale (ranges). */
static int send_discard(struct sender *s, const uint64_t *bm)
{
    static struct migr_range rg[MIGR_RANGES_MAX];
    static uint8_t meta[8 + MIGR_RANGES_MAX * 16];
    uint32_t n = 0;
    int err;
    for (uint64_t i = 0; i < s->hv->ram_pages; i++) {
        if (!migr_bit_test(bm, i))
            continue;
        uint64_t pfn = migr_hv_index_pfn(s->hv, i);
        if (n && rg[n - 1].pfn + rg[n - 1].npages == pfn) {
            rg[n - 1].npages++;
            continue;
        }
        if (n == MIGR_RANGES_MAX) {
            int len = migr_ranges_encode("DISCARD", rg, n, meta, sizeof(meta));
            if (len < 0 || (err = migr_rec_send(s->t, MIGR_REC_DISCARD, meta, (uint32_t)len, NULL, 0)) < 0)
                return len < 0 ? len : err;
            n = 0;
        }
        rg[n++] = (struct migr_range){pfn, 1};
    }
    if (n == 0)
        return 0;
    int len = migr_ranges_encode("DISCARD", rg, n, meta, sizeof(meta));
    if (len < 0)
        return len;
    return migr_rec_send(s->t, MIGR_REC_DISCARD, meta, (uint32_t)len, NULL, 0);
}

/* A harvest without the tracker's false positives on never-written pages
 * (engine/holes.c): those never reach the rounds or the convergence test. */
static long harvest(struct sender *s, struct migr_dirty *d, uint64_t *bm)
{
    long n = migr_dirty_harvest(d, bm);
    long f = n < 0 ? 0 : engine_holes_filter(s->hv, bm, s->seen);
    return n < 0 ? n : f < 0 ? f : n - f;
}

/* Hybrid, before the pause: discard rounds. The destination drops (punches)
 * its stale copies while the guest still runs here — ~5.5 us per run of
 * pages on this machine, 45 ms for 8,000 scattered pages — and says READY
 * when done; each round discards what the guest wrote during the previous
 * one, so that only the pages written since the last harvest are dropped
 * inside the pause. need collects every page discarded. */
static int discard_rounds(struct sender *s, struct migr_dirty *d, uint64_t *bm, uint64_t *need)
{
    uint64_t words = migr_bitmap_words(s->hv->ram_pages);
    for (int k = 0; k < 3; k++) {
        uint64_t n = migr_bitmap_count(bm, s->hv->ram_pages);
        if (n <= 64)
            break; /* few enough for the pause */
        struct migr_ack ack;
        uint64_t r0 = migr_now_ns();
        int err;
        s->b.round++;
        if ((err = send_discard(s, bm)) < 0 || (err = send_round_end(s, 0, n)) < 0 ||
            (err = expect(s, MIGR_REC_READY, &ack)) < 0)
            return err;
        for (uint64_t w = 0; w < words; w++)
            need[w] |= bm[w];
        memset(bm, 0, words * 8);
        long h = harvest(s, d, bm);
        if (h < 0)
            return (int)h;
        if (s->b.round <= MIGR_MAX_ROUNDS_KEPT)
            s->st->round[s->b.round - 1] = (struct migr_round_stats){
                .ns = migr_now_ns() - r0, .dirty_after = migr_bitmap_count(bm, s->hv->ram_pages)};
        s->st->rounds = s->b.round;
    }
    return 0;
}

/* Let the destination take in what is still queued in the socket before the
 * guest stops: otherwise it drains those megabytes inside the downtime. */
static void drain(struct migr_transport *t)
{
    uint64_t until = migr_now_ns() + 200000000ull;
    long long outq;
    while ((outq = migr_transport_outq(t)) > (64 << 10) && migr_now_ns() < until)
        usleep(200);
}

static void sender_free(struct sender *s)
{
    if (!s)
        return;
    if (s->cancel)
        engine_cancel_detach(s->cancel);
    if (s->own_cancel)
        migr_cancel_free(s->cancel);
    free(s);
}

static uint64_t estimate_ns(uint64_t dirty_pages, uint64_t bytes, uint64_t ns)
{
    if (bytes == 0 || ns == 0)
        return UINT64_MAX;
    double bw = (double)bytes / (double)ns; /* bytes per ns */
    return (uint64_t)((double)dirty_pages * MIGR_PAGE_SIZE / bw);
}

int migr_send(struct migr_hv *hv, struct migr_transport *t, const struct migr_send_params *p,
              struct migr_stats *st)
{
    struct sender *s = calloc(1, sizeof(*s));
    uint64_t words = migr_bitmap_words(hv->ram_pages);
    uint64_t *bm = calloc(words * 2, sizeof(uint64_t)); /* and, behind it, s->seen */
    uint64_t *need = NULL;        /* hybrid: pages discarded in discard rounds */
    struct migr_dirty *d = NULL;
    uint8_t *blob = NULL;
    bool paused_by_us = false, committed = false, in_postcopy = false;
    uint64_t t_pause = 0, cpu0 = migr_thread_cpu_ns();
    int err;

    memset(st, 0, sizeof(*st));
    const char *mode = p->handover ? "handover"
                     : p->postcopy_after == 0 ? (p->no_cancel ? "postcopy" : "cpostcopy")
                     : p->postcopy_after > 0 ? (p->no_cancel ? "hybrid" : "chybrid") : "precopy";
    bool postcopy = !p->handover && p->postcopy_after >= 0;
    snprintf(st->mode, sizeof(st->mode), "%s", mode);
    snprintf(st->transport, sizeof(st->transport), "%.*s", (int)strcspn(t->peer, ":"), t->peer);
    st->ram_bytes = hv->ram_pages * MIGR_PAGE_SIZE;
    if (!s || !bm) {
        err = migr_errorf(ENOMEM, "send: out of memory for a %llu-page bitmap",
                          (unsigned long long)hv->ram_pages);
        goto fail;
    }
    s->hv = hv;
    s->seen = bm + words;
    s->t = t;
    s->p = p;
    s->st = st;
    s->t0 = migr_now_ns();
    s->cancel = p->cancel;
    if (!s->cancel && !(s->cancel = migr_cancel_new())) {
        err = migr_errorf(ENOMEM, "send: out of memory");
        goto fail;
    }
    s->own_cancel = !p->cancel;
    s->b = (struct engine_batch){.t = t, .st = st, .cancel = s->cancel};
    if ((err = engine_cancel_attach(s->cancel, t, p->stall_timeout_ms)) < 0)
        goto fail;
    st->max_bandwidth = p->max_bandwidth;
    st->adaptive_bw = p->adaptive_bw;
    if (p->adaptive_bw && !p->min_bandwidth) {
        err = migr_errorf(EINVAL, "adaptive rate control needs a min_bandwidth above 0");
        goto fail;
    }
    set_rate(p, t, round_rate(p, 1, 0));

    if (p->handover && !migr_transport_can_pass_fds(t)) {
        err = migr_errorf(ENOTSUP, "handover to %s: passing memory needs a unix: or shm: transport on this host",
                          t->peer);
        goto fail;
    }
    if (p->switchover_hook && postcopy) {
        err = migr_errorf(ENOTSUP, "a joint (group) switchover needs pre-copy or hand-over, not %s", mode);
        goto fail;
    }
    /* set-up: stream header and layout, then dirty tracking */
    struct migr_hello hello;
    migr_hv_describe(hv, &hello);
    snprintf(hello.mode, sizeof(hello.mode), "%s", mode);
    uint8_t hmeta[MIGR_HELLO_FIXED + MIGR_MAX_REGIONS * 16];
    int hlen = migr_hello_encode(&hello, hmeta, sizeof(hmeta));
    if (hlen < 0 || (err = migr_preamble_send(t)) < 0 ||
        (err = migr_rec_send(t, MIGR_REC_HELLO, hmeta, (uint32_t)hlen, NULL, 0)) < 0) {
        err = hlen < 0 ? hlen : err;
        goto fail;
    }
    if (postcopy && (err = engine_postcopy_offer_channel(s)) < 0)
        goto fail;
    if (postcopy && p->postcopy_after == 0) {
        st->setup_ns = migr_now_ns() - s->t0;
        goto pause; /* post-copy: switch at once, every page follows */
    }
    if (p->handover) {
        /* Pause only once the destination has built its VM on our memory:
         * that set-up grows with guest size and must not fall into the pause. */
        struct migr_ack early;
        if ((err = send_memfds(s)) < 0 || (err = expect(s, MIGR_REC_READY, &early)) < 0)
            goto fail;
        st->setup_ns = migr_now_ns() - s->t0;
        st->converged = true; /* nothing to converge: no page is copied */
        goto pause;
    }
    if ((err = engine_encoder_create(s)) < 0 ||
        (err = migr_dirty_open(p->tracker, hv, &d)) < 0 || (err = migr_dirty_start(d)) < 0)
        goto fail;
    snprintf(st->tracker, sizeof(st->tracker), "%s", d->ops->name);
    st->setup_ns = migr_now_ns() - s->t0;

    /* live rounds */
    uint64_t best_dirty = UINT64_MAX, stale_rounds = 0, dirty = 0, dirty_bps = 0;
    for (s->b.round = 1;; s->b.round++) {
        uint64_t rate = round_rate(p, s->b.round, dirty_bps);
        set_rate(p, t, rate);
        uint64_t r0 = migr_now_ns(), b0 = t->bytes_sent, pg0 = st->pages_sent;
        if (s->b.round == 1) {
            /* Never-written pages go as ZERO runs, unread, ahead of the data
             * (engine/holes.c; the tracker runs already). */
            long ndata = engine_data_scan(hv, s->seen);
            err = ndata < 0 ? (int)ndata : engine_send_holes(s, s->seen);
            if (err == 0)
                err = send_pages(s, s->seen, (uint64_t)ndata, "precopy");
        } else {
            err = send_pages(s, bm, dirty, "precopy");
        }
        if (err < 0)
            goto fail;
        memset(bm, 0, words * sizeof(uint64_t));
        long n = harvest(s, d, bm);
        if (n < 0) {
            err = (int)n;
            goto fail;
        }
        dirty = migr_bitmap_count(bm, hv->ram_pages);
        uint64_t rns = migr_now_ns() - r0, rbytes = t->bytes_sent - b0;
        if (s->b.round <= MIGR_MAX_ROUNDS_KEPT)
            st->round[s->b.round - 1] = (struct migr_round_stats){
                st->pages_sent - pg0, rbytes, rns, dirty, rate};
        dirty_bps = rns ? (uint64_t)((double)dirty * MIGR_PAGE_SIZE * 1e9 / (double)rns) : 0;
        if (s->b.round == 1) {
            st->first_pass_ns = rns;
            st->first_pass_pages = st->pages_sent - pg0;
        }
        st->rounds = s->b.round;
        if ((err = send_round_end(s, st->pages_sent - pg0, dirty)) < 0)
            goto fail;
        /* Stop when the rest fits the downtime target, or rounds stop helping. */
        if (estimate_ns(dirty, rbytes, rns) <= (uint64_t)p->downtime_ms * 1000000ull) {
            st->converged = true;
            break;
        }
        if (dirty < best_dirty) {
            best_dirty = dirty;
            stale_rounds = 0;
        } else if (++stale_rounds >= 3) {
            break;
        }
        if (s->b.round >= p->max_rounds || (postcopy && s->b.round >= (uint32_t)p->postcopy_after))
            break;
    }
    if (postcopy) {
        if (!(need = calloc(words, 8))) {
            err = migr_errorf(ENOMEM, "send: out of memory for a %llu-page bitmap", (unsigned long long)hv->ram_pages);
            goto fail;
        }
        if ((err = discard_rounds(s, d, bm, need)) < 0)
            goto fail;
    }

    /* stop-and-copy */
pause:
    if (p->switchover_hook && (err = p->switchover_hook(p->switchover_arg, "pause")) < 0)
        goto fail;
    /* The guest is about to stop: the rest goes as fast as allowed. */
    set_rate(p, t, p->max_bandwidth);
    if (postcopy && (err = engine_postcopy_accept_channel(s)) < 0)
        goto fail;
    st->fault_channel = s->fch != NULL;
    drain(t);
    t_pause = migr_now_ns();
    if ((err = hv->ops->pause(hv)) < 0)
        goto fail;
    paused_by_us = true;
    if (p->handover || (postcopy && !d))
        goto state;
    long n = harvest(s, d, bm);
    if (n < 0) {
        err = (int)n;
        goto fail;
    }
    dirty = migr_bitmap_count(bm, hv->ram_pages);
    s->b.round++;
    uint64_t r0 = migr_now_ns(), b0 = t->bytes_sent, pg0 = st->pages_sent;
    if (postcopy) {
        /* Hybrid: the destination drops its stale copies; the pages follow in
         * post-copy (with those of the discard rounds). */
        if ((err = send_discard(s, bm)) < 0)
            goto fail;
        for (uint64_t w = 0; w < words; w++)
            bm[w] |= need[w];
        goto state;
    }
    if ((err = send_pages(s, bm, dirty, "stop-and-copy")) < 0)
        goto fail;
    if (s->b.round <= MIGR_MAX_ROUNDS_KEPT)
        st->round[s->b.round - 1] = (struct migr_round_stats){
            st->pages_sent - pg0, t->bytes_sent - b0, migr_now_ns() - r0, 0, p->max_bandwidth};
    st->rounds = s->b.round;
    if ((err = send_round_end(s, st->pages_sent - pg0, 0)) < 0)
        goto fail;
state:;
    size_t blen;
    if ((err = hv->ops->save_state(hv, &blob, &blen)) < 0)
        goto fail;
    if (blen > MIGR_META_MAX) {
        err = migr_errorf(E2BIG, "vCPU state of %zu bytes exceeds the record limit", blen);
        goto fail;
    }
    st->state_bytes = blen;
    if ((err = migr_rec_send(t, MIGR_REC_STATE, blob, (uint32_t)blen, NULL, 0)) < 0)
        goto fail;
    uint8_t meta[64];
    struct migr_switchover so = {.rounds = s->b.round, .total_pages_sent = st->pages_sent};
    int mlen = migr_switchover_encode(&so, meta, sizeof(meta));
    if (mlen < 0 || (err = migr_rec_send(t, MIGR_REC_SWITCHOVER, meta, (uint32_t)mlen, NULL, 0)) < 0) {
        err = mlen < 0 ? mlen : err;
        goto fail;
    }
    engine_progress(s, "switchover", 0, 0, true);
    struct migr_ack ack;
    if ((err = expect(s, MIGR_REC_READY, &ack)) < 0)
        goto fail;
    st->verified = true;
    if (p->switchover_hook && (err = p->switchover_hook(p->switchover_arg, "commit")) < 0)
        goto fail;
    /* From here the source gives the guest away (unless a cancel or the
     * stall watchdog came first). */
    if (!engine_cancel_commit(s->cancel)) {
        err = -ECANCELED;
        goto fail;
    }
    committed = true;
    if ((err = migr_rec_send(t, MIGR_REC_COMMIT, NULL, 0, NULL, 0)) < 0)
        goto fail;
    if ((err = expect(s, MIGR_REC_DONE, &ack)) < 0)
        goto fail;
    if (p->switchover_hook) /* informational: the guest runs on the destination now */
        p->switchover_hook(p->switchover_arg, "done");
    uint64_t t_done = migr_now_ns();
    st->downtime_ns = t_done - t_pause;
    if (postcopy) {
        /* The guest runs on the destination now and needs our pages. */
        in_postcopy = true;
        s->b.cancel = NULL; /* a cancel is the post-copy protocol's from here */
        if ((err = engine_postcopy_push(s, d ? bm : NULL)) < 0)
            goto fail;
        st->postcopy_ns = migr_now_ns() - t_done;
    }
    st->total_ns = migr_now_ns() - s->t0;
    st->bytes_sent = t->bytes_sent;
    engine_account(st, t, cpu0);
    engine_encoder_destroy(s);
    engine_postcopy_close_channel(s);
    migr_dirty_close(d);
    sender_free(s);
    free(blob);
    free(bm);
    free(need);
    return 0;

fail:;
    /* A cancel or the watchdog broke the link: say that, not what broke. */
    int stopped = s && s->cancel && !committed ? engine_cancel_reason(s->cancel) : 0;
    if (stopped < 0)
        err = stopped;
    else if (!committed && migr_last_error()[0] && (err == -EPIPE || err == -ECONNRESET) && s)
        peer_reason(s);
    snprintf(st->error, sizeof(st->error), "%s", migr_last_error()[0] ? migr_last_error() : strerror(-err));
    if (!committed && s && err != -EPIPE && err != -ECONNRESET && stopped == 0) {
        char why[sizeof(st->error) + 32];
        snprintf(why, sizeof(why), "source aborts: %s", st->error);
        migr_rec_send_error(t, -err, why);
    }
    migr_dirty_close(d);
    if (committed)
        t->ops->shutdown(t); /* the destination must not wait for us any longer */
    if (committed && postcopy && !p->no_cancel && !in_postcopy) {
        /* Cancellable post-copy broke between COMMIT and DONE: nothing came
         * back yet, so the state we paused with is the last consistent one. */
        s->took_back = true;
        in_postcopy = true;
    }
    if (in_postcopy && s->took_back) {
        /* Cancellable post-copy: our RAM and state are the destination's last
         * checkpoint (or the switchover itself); the destination has stopped
         * or stops as soon as it sees the link close. */
        st->cancelled = err == -ECANCELED;
        if (hv->ops->resume(hv) == 0)
            st->resumed_on_source = true;
        snprintf(st->error + strlen(st->error), sizeof(st->error) - strlen(st->error),
                 "; the guest was taken back from the destination's checkpoint %llu",
                 (unsigned long long)st->epochs);
    } else if (in_postcopy) {
        st->ownership_in_doubt = true;
        snprintf(st->error + strlen(st->error), sizeof(st->error) - strlen(st->error),
                 "; post-copy broke after the switchover: the guest on the destination cannot get its "
                 "missing pages, and the paused copy here is stale since the switchover");
    } else if (committed) {
        /* The destination may be running the guest: never run a second copy. */
        st->ownership_in_doubt = true;
        snprintf(st->error + strlen(st->error), sizeof(st->error) - strlen(st->error),
                 "; after COMMIT: the guest stays paused on the source (check the destination; "
                 "`migr resume` only if it is not running there)");
    } else if (paused_by_us) {
        if (hv->ops->resume(hv) == 0)
            st->resumed_on_source = true;
    } else {
        st->resumed_on_source = true;
    }
    if (st->resumed_on_source)
        snprintf(st->error + strlen(st->error), sizeof(st->error) - strlen(st->error),
                 "; the guest keeps running on the source");
    st->total_ns = migr_now_ns() - (s ? s->t0 : 0);
    if (t) {
        st->bytes_sent = t->bytes_sent;
        engine_account(st, t, cpu0);
    }
    if (s) {
        engine_encoder_destroy(s);
        engine_postcopy_close_channel(s);
    }
    sender_free(s);
    free(blob);
    free(bm);
    free(need);
    migr_errorf(-err, "%s", st->error);
    return err;
}
