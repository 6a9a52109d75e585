/* engine: the destination's page codec stage (pre-copy rounds).
 *
 * on_pages() (recv.c) checks each entry of a PAGES record in order; entries
 * with a codec (XBZRLE, LZ4, ZSTD, ZLIB, LZ4S, ZSTDS) are queued here with a
 * slot for their bulk bytes; once the record's bulk has been read, the
 * workers decode them into guest RAM (entry i by worker index % nthreads;
 * the entries of a stream encoding's lane k by worker k % nthreads, in entry
 * order, with that stream's context) and check each decoded page's CRC. A
 * record is decoded completely before the next one is read.
 *
 * Refusals (docs/format.md, "Page Encodings"): an XBZRLE delta for a page
 * that has no intact copy here (never received, or its last copy was torn);
 * a page named twice in one record when one of the entries is a codec entry;
 * a payload that does not decode; a decoded page whose CRC does not match
 * (a compressed page is encoded from a private copy, so this is corruption,
 * not a torn page).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/crc32c.h"
#include "migr/dirty.h"
#include "engine/engine_impl.h"
#include "engine/stage.h"

struct dec_entry {
    uint32_t entry;               /* index in the record */
    uint8_t enc;
    uint8_t lane;                 /* stream encodings: lane byte (lane, MIGR_LANE_START) */
    uint32_t len, crc;
    uint64_t idx;                 /* RAM page index */
    uint8_t *data;                /* its bulk bytes (slot of 4096) */
};

struct dec_worker {
    struct migr_codec_stats cs[MIGR_STATS_ENCS];
    uint64_t stream_pages;
    int err;                      /* first failure: entry q[bad] */
    uint32_t bad;
    char msg[256];
} __attribute__((aligned(64)));

struct decoder {
    unsigned nthreads;
    struct engine_pool *pool;
    uint8_t *slots;               /* MIGR_BATCH_MAX x 4096 */
    struct dec_entry q[MIGR_BATCH_MAX];
    uint32_t nq;
    uint64_t *inrec;              /* pages named by the current record (bulk entries) */
    uint64_t named[MIGR_BATCH_MAX];
    uint32_t nnamed;
    struct receiver *r;
    struct migr_lane *lanes[2][MIGR_LANES]; /* LZ4S, ZSTDS streams by lane; lane k's by worker k % nthreads */
    struct dec_worker w[ENGINE_MAX_THREADS];
};

static unsigned recv_threads(const struct receiver *r)
{
    return r->decode_threads > ENGINE_MAX_THREADS ? ENGINE_MAX_THREADS : r->decode_threads;
}

static int decoder_get(struct receiver *r, struct decoder **out)
{
    if (!r->dec) {
        struct decoder *d = aligned_alloc(64, MIGR_ALIGN_UP(sizeof(*d), 64)); /* dec_worker is 64-aligned */
        if (!d)
            return -ENOMEM;
        memset(d, 0, sizeof(*d));
        r->dec = d;
        d->r = r;
        d->nthreads = recv_threads(r);
        if (!(d->slots = malloc((size_t)MIGR_BATCH_MAX * MIGR_PAGE_SIZE)) ||
            !(d->inrec = calloc(migr_bitmap_words(r->hv->ram_pages), 8)))
            return migr_errorf(ENOMEM, "recv: no memory for the page decoder");
        int err;
        if (d->nthreads > 1 && (err = engine_pool_create(d->nthreads, &d->pool)) < 0)
            return err;
        r->st->compress_threads = d->nthreads;
    }
    *out = r->dec;
    return 0;
}

void engine_decoder_destroy(struct receiver *r)
{
    struct decoder *d = r->dec;
    if (!d)
        return;
    engine_pool_destroy(d->pool);
    for (unsigned k = 0; k < MIGR_LANES; k++) {
        migr_lane_free(d->lanes[0][k]);
        migr_lane_free(d->lanes[1][k]);
    }
    free(d->slots);
    free(d->inrec);
    free(d);
    r->dec = NULL;
}

int engine_decode_note(struct receiver *r, uint32_t i, const struct migr_page_entry *e, uint64_t idx,
                       uint8_t **slot)
{
    struct decoder *d = NULL;
    int err = decoder_get(r, &d);
    if (err < 0)
        return err;
    if (migr_bit_test(d->inrec, idx))
        return migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: page 0x%llx is named twice in one record",
                           (unsigned long long)r->seq, i, (unsigned long long)e->pfn);
    migr_bit_set(d->inrec, idx);
    d->named[d->nnamed++] = idx;
    if (e->enc == MIGR_ENC_RAW)
        return 0;
    if (!migr_codec_for_enc(e->enc) && !migr_lane_for_enc(e->enc))
        return migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: encoding %s is not built in here",
                           (unsigned long long)r->seq, i, migr_page_enc_name(e->enc));
    if (e->enc == MIGR_ENC_XBZRLE && (!migr_bit_test(r->received, idx) || migr_bit_test(r->torn, idx)))
        return migr_errorf(EPROTO, "record %llu (PAGES): entry %u: XBZRLE delta for page 0x%llx, which has no "
                           "intact copy here (%s); the source broke the delta rule",
                           (unsigned long long)r->seq, i, (unsigned long long)e->pfn,
                           migr_bit_test(r->torn, idx) ? "its last copy was torn" : "never received");
    struct dec_entry *q = &d->q[d->nq];
    *q = (struct dec_entry){.entry = i, .enc = e->enc, .lane = e->lane, .len = e->len, .crc = e->crc, .idx = idx,
                            .data = d->slots + (size_t)d->nq * MIGR_PAGE_SIZE};
    d->nq++;
    *slot = q->data;
    return 0;
}

/* Decode one entry into page: a per-page codec, or the next page of its
 * (encoding, lane) stream. */
static int decode_entry(struct decoder *d, const struct dec_entry *q, uint8_t *page)
{
    const struct migr_lane_ops *so = migr_lane_for_enc(q->enc);
    if (!so)
        return migr_codec_for_enc(q->enc)->decode(q->data, q->len, page);
    struct migr_lane **ctx = &d->lanes[q->enc == MIGR_ENC_ZSTDS][q->lane & MIGR_LANE_MASK];
    int err;
    if (!*ctx && (err = migr_lane_new(so, ctx)) < 0)
        return err;
    return migr_lane_decode(*ctx, q->data, q->len, q->lane & MIGR_LANE_START, page);
}

static void decode_worker(void *arg, unsigned w)
{
    struct decoder *d = arg;
    struct dec_worker *wk = &d->w[w];
    for (uint32_t k = 0; k < d->nq && !wk->err; k++) {
        struct dec_entry *q = &d->q[k];
        bool stream = migr_enc_is_stream(q->enc);
        if ((stream ? (q->lane & MIGR_LANE_MASK) : q->idx) % d->nthreads != w)
            continue;   /* a stream's entries on one worker, in entry order */
        uint8_t *page = migr_hv_page(d->r->hv, q->idx);
        uint64_t t0 = migr_now_ns();
        int err = decode_entry(d, q, page);
        if (err < 0) {
            wk->err = err;
            wk->bad = k;
            snprintf(wk->msg, sizeof(wk->msg), "%s", migr_last_error());
            break;
        }
        if (migr_crc32c(0, page, MIGR_PAGE_SIZE) != q->crc) {
            wk->err = -EBADMSG;
            wk->bad = k;
            snprintf(wk->msg, sizeof(wk->msg), "decoded page fails its CRC (a %s page is sent from a private "
                     "copy and cannot be torn: corruption)", migr_page_enc_name(q->enc));
            break;
        }
        uint8_t slot = stream ? migr_lane_for_enc(q->enc)->page_enc : q->enc;
        wk->stream_pages += stream;
        wk->cs[slot].pages++;
        wk->cs[slot].bytes_out += q->len;
        wk->cs[slot].cpu_ns += migr_now_ns() - t0;
    }
}

int engine_decode_run(struct receiver *r)
{
    struct decoder *d = r->dec;
    if (!d)
        return 0;
    for (uint32_t k = 0; k < d->nnamed; k++)
        migr_bit_clear(d->inrec, d->named[k]);
    d->nnamed = 0;
    if (d->nq == 0)
        return 0;
    if (d->pool)
        engine_pool_run(d->pool, decode_worker, d);
    else
        decode_worker(d, 0);
    int err = 0;
    uint32_t bad = UINT32_MAX;
    const char *msg = "";
    for (unsigned w = 0; w < d->nthreads; w++) {
        struct dec_worker *wk = &d->w[w];
        for (int k = 0; k < MIGR_STATS_ENCS; k++) {
            r->st->codec[k].pages += wk->cs[k].pages;
            r->st->codec[k].bytes_out += wk->cs[k].bytes_out;
            r->st->codec[k].cpu_ns += wk->cs[k].cpu_ns;
        }
        memset(wk->cs, 0, sizeof(wk->cs));
        r->st->stream_pages += wk->stream_pages;
        wk->stream_pages = 0;
        if (wk->err && wk->bad < bad) {
            err = wk->err;
            bad = wk->bad;
            msg = wk->msg;
        }
    }
    if (err) {
        const struct dec_entry *q = &d->q[bad];
        err = migr_errorf(EBADMSG, "record %llu (PAGES): entry %u: %s page 0x%llx (%u bytes): %s",
                          (unsigned long long)r->seq, q->entry, migr_page_enc_name(q->enc),
                          (unsigned long long)migr_hv_index_pfn(r->hv, q->idx), q->len, msg);
        for (unsigned w = 0; w < d->nthreads; w++)
            d->w[w].err = 0;
    }
    for (uint32_t k = 0; k < d->nq && !err; k++) {
        uint64_t idx = d->q[k].idx;
        __atomic_fetch_or(&r->received[idx >> 6], 1ull << (idx & 63), __ATOMIC_RELAXED); /* prefault.c reads it */
        migr_bit_clear(r->torn, idx);
        migr_bit_set(r->nonzero, idx);
        migr_bit_set(r->alloc, idx);
        r->st->pages++;
    }
    d->nq = 0;
    return err;
}
