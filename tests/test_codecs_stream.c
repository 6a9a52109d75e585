/* The stream codecs LZ4S and ZSTDS (include/migr/codec.h, compress/stream.c;
 * docs/format.md revision 1.8, "Page Encodings"):
 *   - a stream of related pages (an application heap's look: records that
 *     share their keys and layout) round-trips, page by page, through one
 *     encoder and one decoder context, and takes fewer bytes than the same
 *     pages as per-page frames (the point of the encodings);
 *   - past the LZ4 window (more than 16 pages) and over a restart per record;
 *   - a page that does not compress is declined, and the next one starts a
 *     stream afresh (the decoder, told so by START, follows);
 *   - strictness: a continuation without a started stream, a truncated
 *     entry, an entry carrying two pages, a payload of 0 or 4096 bytes, a
 *     zstd frame that ends, a frame asking for a window over 1 MiB, and after
 *     an error only a START entry is taken; never a crash on flipped bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "testlib.h"

#define PS MIGR_PAGE_SIZE
#define NPAGES 48

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)rng;
}

/* An application heap's look: each page holds records drawn from a pool
 * of 400 (keys with random hex ids, shared field names), so that a page
 * repeats little of itself but much of the pages before it. */
static char pool[400][112];
static void make_pool(void)
{
    static const char *const names[] = {"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"};
    for (int i = 0; i < 400; i++)
        snprintf(pool[i], sizeof(pool[i]), "{\"key\":\"session:%08x%08x\",\"user\":\"%s\",\"token\":\"%08x%08x\"};",
                 next(), next(), names[next() % 8], next(), next());
}

static void heap_page(uint8_t *p, unsigned k)
{
    size_t o = 0;
    (void)k;
    while (o < PS) {
        const char *rec = pool[next() % 400];
        for (size_t i = 0; rec[i] && o < PS; i++)
            p[o++] = (uint8_t)rec[i];
    }
}

static void random_page(uint8_t *p)
{
    for (unsigned i = 0; i < PS; i++)
        p[i] = (uint8_t)next();
}

struct entry {
    uint8_t data[PS];
    size_t len;
    bool start;
};

/* Encode pages[0..n) into entries with one context; declined pages get len 0. */
static void encode_all(const struct migr_lane_ops *ops, uint8_t (*pages)[PS], int n, struct entry *e, int level,
                       int restart_every)
{
    struct migr_lane *l;
    T_OK(migr_lane_new(ops, &l));
    for (int i = 0; i < n; i++) {
        if (restart_every && i % restart_every == 0)
            migr_lane_restart(l);
        int r = migr_lane_encode(l, pages[i], level, e[i].data, PS - 1, &e[i].len, &e[i].start);
        T_ASSERT(r == 0 || r == MIGR_CODEC_DECLINE);
        if (r == MIGR_CODEC_DECLINE)
            e[i].len = 0;
        else
            T_ASSERT(e[i].len > 0 && e[i].len < PS);
    }
    migr_lane_free(l);
}

static void decode_all(const struct migr_lane_ops *ops, uint8_t (*pages)[PS], int n, const struct entry *e)
{
    struct migr_lane *l;
    uint8_t out[PS];
    T_OK(migr_lane_new(ops, &l));
    for (int i = 0; i < n; i++) {
        if (!e[i].len)
            continue;   /* declined: went RAW, not part of the stream */
        T_OK(migr_lane_decode(l, e[i].data, e[i].len, e[i].start, out));
        T_ASSERT(memcmp(out, pages[i], PS) == 0);
    }
    migr_lane_free(l);
}

static size_t total(const struct entry *e, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += e[i].len;
    return t;
}

static uint8_t pages[NPAGES][PS];
static struct entry ent[NPAGES];

static void test_round_trip(const struct migr_lane_ops *ops, const struct migr_codec_ops *per_page, int level)
{
    for (int i = 0; i < NPAGES; i++)
        heap_page(pages[i], (unsigned)i);
    encode_all(ops, pages, NPAGES, ent, level, 0);
    T_ASSERT(ent[0].start);
    for (int i = 1; i < NPAGES; i++)
        T_ASSERT(!ent[i].start && ent[i].len);
    decode_all(ops, pages, NPAGES, ent);
    size_t stream = total(ent, NPAGES), single = 0;
    for (int i = 0; i < NPAGES; i++) {
        uint8_t out[PS];
        size_t len = 0;
        T_OK(per_page->encode_at(pages[i], out, PS - 1, &len, level));
        single += len;
    }
    printf("%s level %d: %d pages in %zu bytes as a stream, %zu as pages (%.2fx)\n", ops->name, level, NPAGES,
           stream, single, (double)single / (double)stream);
    T_ASSERT(stream * 10 < single * 9);   /* at least 10% fewer bytes */
    /* restarted every 10 pages (a record each): every 10th entry starts */
    encode_all(ops, pages, NPAGES, ent, level, 10);
    for (int i = 0; i < NPAGES; i++)
        T_ASSERT(ent[i].start == (i % 10 == 0));
    decode_all(ops, pages, NPAGES, ent);
}

static void test_decline(const struct migr_lane_ops *ops)
{
    for (int i = 0; i < NPAGES; i++)
        heap_page(pages[i], (unsigned)i);
    random_page(pages[5]);
    random_page(pages[6]);
    encode_all(ops, pages, NPAGES, ent, 1, 0);
    T_ASSERT(ent[5].len == 0 && ent[6].len == 0);   /* declined */
    T_ASSERT(ent[0].start && !ent[4].start && ent[7].start && !ent[8].start);
    decode_all(ops, pages, NPAGES, ent);
}

static void test_strict(const struct migr_lane_ops *ops)
{
    struct migr_lane *l;
    uint8_t out[PS], buf[2 * PS];
    for (int i = 0; i < 4; i++)
        heap_page(pages[i], (unsigned)i);
    encode_all(ops, pages, 4, ent, 1, 0);
    T_OK(migr_lane_new(ops, &l));
    /* a continuation first */
    T_ERR(migr_lane_decode(l, ent[1].data, ent[1].len, false, out), -EBADMSG, "continues a stream that was not started");
    T_ERR(migr_lane_decode(l, ent[0].data, 0, true, out), -EBADMSG, "payload of 0 bytes");
    T_ERR(migr_lane_decode(l, ent[0].data, PS, true, out), -EBADMSG, "payload of 4096 bytes");
    /* truncated */
    T_ERR(migr_lane_decode(l, ent[0].data, ent[0].len - 1, true, out), -EBADMSG, "");
    /* after the error only a start is taken */
    T_ERR(migr_lane_decode(l, ent[1].data, ent[1].len, false, out), -EBADMSG, "continues a stream");
    T_OK(migr_lane_decode(l, ent[0].data, ent[0].len, true, out));
    T_ASSERT(!memcmp(out, pages[0], PS));
    /* two pages in one entry */
    T_ASSERT(ent[1].len + ent[2].len < PS);   /* the pool's pages compress well: both fit one entry */
    memcpy(buf, ent[1].data, ent[1].len);
    memcpy(buf + ent[1].len, ent[2].data, ent[2].len);
    T_ERR(migr_lane_decode(l, buf, ent[1].len + ent[2].len, false, out), -EBADMSG, "");
    migr_lane_free(l);
    /* flipped bytes: refused or decoded, never a crash (the CRC catches what decodes) */
    for (int t = 0; t < 2000; t++) {
        T_OK(migr_lane_new(ops, &l));
        for (int i = 0; i < 4; i++) {
            memcpy(buf, ent[i].data, ent[i].len);
            if (next() % 2)
                buf[next() % ent[i].len] ^= (uint8_t)(1u << (next() % 8));
            int r = migr_lane_decode(l, buf, ent[i].len, i == 0, out);
            T_ASSERT(r == 0 || r == -EBADMSG);
        }
        migr_lane_free(l);
    }
}

/* ZSTDS: a frame that is ended, and one that asks for a 2 MiB window. */
static void test_zstd_frames(void)
{
    struct migr_lane *l;
    uint8_t out[PS], z[2 * PS];
    heap_page(pages[0], 0);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    T_ASSERT(c != NULL);
    size_t n = ZSTD_compressCCtx(c, z, sizeof(z), pages[0], PS, 1); /* a whole frame: ends */
    T_ASSERT(!ZSTD_isError(n) && n < PS);
    T_OK(migr_lane_new(&migr_lane_zstd, &l));
    T_ERR(migr_lane_decode(l, z, n, true, out), -EBADMSG, "frame ends");
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    T_ASSERT(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 21)));
    ZSTD_outBuffer o = {z, sizeof(z), 0};
    ZSTD_inBuffer in = {pages[0], PS, 0};
    T_ASSERT(ZSTD_compressStream2(c, &o, &in, ZSTD_e_flush) == 0);
    T_ERR(migr_lane_decode(l, z, o.pos, true, out), -EBADMSG, "zstd stream: malformed data");
    ZSTD_freeCCtx(c);
    migr_lane_free(l);
}

int main(void)
{
    rng = t_seed() | 1;
    make_pool();
    T_ASSERT(migr_lane_for_enc(MIGR_ENC_LZ4S) == &migr_lane_lz4 && migr_lane_for_enc(MIGR_ENC_ZSTDS) == &migr_lane_zstd);
    T_ASSERT(migr_lane_for_enc(MIGR_ENC_LZ4) == NULL && migr_enc_is_stream(MIGR_ENC_ZSTDS) && !migr_enc_is_stream(4));
    test_round_trip(&migr_lane_lz4, &migr_codec_lz4, 1);
    test_round_trip(&migr_lane_zstd, &migr_codec_zstd, 1);
    test_round_trip(&migr_lane_zstd, &migr_codec_zstd, 3);
    test_decline(&migr_lane_lz4);
    test_decline(&migr_lane_zstd);
    test_strict(&migr_lane_lz4);
    test_strict(&migr_lane_zstd);
    test_zstd_frames();
    return 0;
}
