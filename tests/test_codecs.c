/* The compressing codecs (include/migr/codec.h): xbzrle, lz4, zstd, zlib.
 * Lookup by encoding and name; levels and their ranges; round trips of zero,
 * text and random pages at every level tried (random pages are declined);
 * small output buffers decline instead of failing; decoders are strict
 * (payload length, output of exactly one page, nothing after the end, one
 * frame/stream) and survive random and mutated input without touching
 * memory outside the payload and the page (ASan: make test-asan); the
 * per-thread contexts work from several threads at once. */
#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "hv-glue/workload/workload.h"
#include "migr/codec.h"
#include "migr/xbzrle.h"
#include "testlib.h"

#define PS 4096
#define LIBS 3

static const struct migr_codec_ops *libc_ops[LIBS];

static _Alignas(64) uint8_t page[PS], back[PS], out[2 * PS];

static uint8_t *xmalloc(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    T_ASSERT(p);
    return p;
}

static void fill(uint8_t *p, int kind, uint64_t index, uint32_t gen)
{
    wl_fill_page(p, index, gen, (uint32_t)kind, 7);   /* 0 zero, 1 text, 2 random */
}

/* Decode len bytes of src copied to an exact-size heap block into an
 * exact-size heap page; returns the result, the page in *dst. */
static int decode_exact(const struct migr_codec_ops *c, const uint8_t *src, size_t len,
                        uint8_t *dst)
{
    uint8_t *s = xmalloc(len), *p = xmalloc(PS);
    memcpy(s, src, len);
    memcpy(p, dst, PS);
    int r = c->decode(s, len, p);
    memcpy(dst, p, PS);
    free(s);
    free(p);
    return r;
}

static void test_lookup(void)
{
    static const struct {
        const char *name;
        unsigned enc;
    } want[] = {{"raw", 0}, {"zero", 1}, {"xbzrle", 2}, {"lz4", 3}, {"zstd", 4}, {"zlib", 5}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct migr_codec_ops *c = migr_codec_by_name(want[i].name);
        T_ASSERT(c && c->enc == want[i].enc && c->encode && c->decode);
        T_ASSERT(migr_codec_for_enc((uint8_t)want[i].enc) == c);
        T_ASSERT(migr_codec_at(i) == c);
    }
    T_ASSERT(!migr_codec_at(6));
    T_ASSERT(!migr_codec_by_name("lzo") && !migr_codec_by_name(NULL));
    T_ASSERT(!migr_codec_for_enc(6) && !migr_codec_for_enc(255));
    T_EQ(MIGR_CODEC_ENC_XBZRLE, 2);
    T_EQ(MIGR_ENC_XBZRLE, 2);
    T_EQ(MIGR_ENC_ZLIB, 5);
    T_EQ(MIGR_CODEC_ENC_LZ4, 3);
    T_EQ(MIGR_CODEC_ENC_ZSTD, 4);
    T_EQ(MIGR_CODEC_ENC_ZLIB, 5);
}

static void test_levels(void)
{
    int l;
    T_OK(migr_codec_get_level("lz4", &l));
    T_EQ(l, 1);
    T_OK(migr_codec_get_level("zstd", &l));
    T_EQ(l, 1);
    T_OK(migr_codec_get_level("zlib", &l));
    T_EQ(l, 1);
    T_EQ(migr_codec_set_level("raw", 1), -ENOENT);
    T_EQ(migr_codec_get_level("xbzrle", &l), -ENOENT);
    T_EQ(migr_codec_set_level(NULL, 1), -ENOENT);
    T_EQ(migr_codec_set_level("zlib", 0), -ERANGE);
    T_ASSERT(strstr(migr_last_error(), "zlib level 0 out of range 1 ... 9"));
    T_EQ(migr_codec_set_level("zlib", 10), -ERANGE);
    T_EQ(migr_codec_set_level("lz4", 13), -ERANGE);
    T_EQ(migr_codec_set_level("lz4", -65538), -ERANGE);
    T_EQ(migr_codec_set_level("zstd", ZSTD_maxCLevel() + 1), -ERANGE);
    T_EQ(migr_codec_set_level("zstd", ZSTD_minCLevel() - 1), -ERANGE);
    T_OK(migr_codec_set_level("zstd", 19));
    T_OK(migr_codec_get_level("zstd", &l));
    T_EQ(l, 19);
    T_OK(migr_codec_set_level("zstd", 1));
}

/* Every level tried: text and zero pages round-trip and shrink, random
 * pages are declined. */
static void test_round_trips(void)
{
    static const struct {
        const char *name;
        int levels[8];
        int n;
    } lv[] = {
        {"lz4", {1, -1, -100, -65537, 2, 3, 9, 12}, 8},
        {"zstd", {1, -5, 0, 3, 9, 19, 22, -131072}, 8},
        {"zlib", {1, 2, 6, 9, 1}, 5},
    };
    for (size_t c = 0; c < sizeof(lv) / sizeof(lv[0]); c++) {
        const struct migr_codec_ops *ops = migr_codec_by_name(lv[c].name);
        int saved;
        T_OK(migr_codec_get_level(lv[c].name, &saved));
        for (int k = 0; k < lv[c].n; k++) {
            int level = lv[c].levels[k];
            if (!strcmp(lv[c].name, "zstd") && level < ZSTD_minCLevel())
                level = ZSTD_minCLevel();
            T_OK(migr_codec_set_level(lv[c].name, level));
            for (int kind = 0; kind < 3; kind++) {
                for (uint64_t idx = 0; idx < 4; idx++) {
                    size_t len = 99999;
                    fill(page, kind, idx, 3);
                    int r = ops->encode(page, NULL, out, sizeof(out), &len);
                    if (kind == 2) {
                        if (r != MIGR_CODEC_DECLINE)
                            T_FAIL("%s level %d: random page not declined (%d, len %zu)",
                                   ops->name, level, r, len);
                        continue;
                    }
                    /* at high acceleration (lz4, zstd) few matches are found */
                    if (r == MIGR_CODEC_DECLINE && level < -1)
                        continue;
                    if (r != 0 || len == 0 || len >= PS)
                        T_FAIL("%s level %d kind %d: encode %d len %zu", ops->name, level, kind,
                               r, len);
                    memset(back, 0x5c, PS);
                    r = decode_exact(ops, out, len, back);
                    if (r || memcmp(back, page, PS))
                        T_FAIL("%s level %d kind %d: round trip failed (%d: %s)", ops->name,
                               level, kind, r, migr_last_error());
                    /* too small an output buffer: declined, never an error */
                    size_t small = len - 1, l2;
                    T_EQ(ops->encode(page, NULL, out, small, &l2), MIGR_CODEC_DECLINE);
                    T_EQ(ops->encode(page, NULL, out, 0, &l2), MIGR_CODEC_DECLINE);
                }
            }
        }
        T_OK(migr_codec_set_level(lv[c].name, saved));
    }
}

static void test_xbzrle_codec(void)
{
    const struct migr_codec_ops *x = &migr_codec_xbzrle;
    static _Alignas(64) uint8_t old[PS];
    size_t len = 1234;
    fill(old, 1, 9, 1);
    memcpy(page, old, PS);
    T_EQ(x->encode(page, NULL, out, sizeof(out), &len), MIGR_CODEC_DECLINE);
    T_EQ(x->encode(page, old, out, sizeof(out), &len), 0);   /* unchanged */
    T_EQ(len, 0);
    memcpy(back, old, PS);
    T_EQ(x->decode(out, 0, back), 0);
    T_ASSERT(!memcmp(back, old, PS));
    /* a few changes: a delta, applied over the old copy */
    page[100] ^= 1, page[2000] ^= 0xff, page[4095] ^= 0x10;
    T_EQ(x->encode(page, old, out, sizeof(out), &len), 0);
    T_ASSERT(len > 0 && len < 20);
    T_EQ(decode_exact(x, out, len, back), 0);
    T_ASSERT(!memcmp(back, page, PS));
    /* a delta of 3/4 page or more is declined: every other byte changed */
    memcpy(page, old, PS);
    for (int i = 0; i < PS; i += 2)
        page[i] ^= 0x21;
    T_EQ(x->encode(page, old, out, sizeof(out), &len), MIGR_CODEC_DECLINE);
    /* 1000 changed bytes in runs of 1: 3000 bytes, just under the limit */
    memcpy(page, old, PS);
    for (int i = 0; i < 1000; i++)
        page[4 * i] ^= 0x44;
    T_EQ(x->encode(page, old, out, sizeof(out), &len), 0);
    T_EQ(len, 3000);
    T_EQ(x->encode(page, old, out, 2999, &len), MIGR_CODEC_DECLINE);
    /* whole page rewritten by the workload: declined */
    fill(page, 1, 9, 2);
    T_EQ(x->encode(page, old, out, sizeof(out), &len), MIGR_CODEC_DECLINE);
    /* decoder: lengths and malformed deltas; the page stays as it was */
    memcpy(back, old, PS);
    T_EQ(x->decode(out, PS, back), -EBADMSG);
    static const uint8_t bad[] = {0x00, 0x00};
    T_EQ(decode_exact(x, bad, 2, back), -EBADMSG);
    T_ASSERT(strstr(migr_last_error(), "xbzrle page: malformed delta of 2 bytes"));
    T_ASSERT(!memcmp(back, old, PS));
}

/* ---- strict decoders ---- */

static void expect_bad(const struct migr_codec_ops *c, const uint8_t *src, size_t len,
                       const char *what)
{
    memset(back, 0, PS);
    int r = decode_exact(c, src, len, back);
    if (r != -EBADMSG)
        T_FAIL("%s: %s: decode returned %d, expected -EBADMSG", c->name, what, r);
}

static void test_strict(void)
{
    static uint8_t src[3 * PS], buf[3 * PS];
    fill(page, 1, 1, 1);
    for (int c = 0; c < LIBS; c++) {
        const struct migr_codec_ops *ops = libc_ops[c];
        size_t len;
        T_OK(ops->encode(page, NULL, src, sizeof(src), &len));
        T_EQ(decode_exact(ops, src, len, back), 0);
        expect_bad(ops, src, 0, "empty payload");
        for (size_t cut = 1; cut < len; cut += 1 + cut / 4)
            expect_bad(ops, src, len - cut, "truncated payload");
        memcpy(buf, src, len);
        buf[len] = 0;
        expect_bad(ops, buf, len + 1, "a byte after the end");
        memset(buf, 0, PS);
        T_EQ(ops->decode(buf, PS, back), -EBADMSG);   /* a page or more: never compressed */
    }
    /* outputs other than exactly one page, made with the libraries directly */
    static const int sizes[] = {1, 2048, 4095, 4097, 8192};
    static uint8_t big[8192];
    for (int i = 0; i < 8192; i++)
        big[i] = (uint8_t)("abcdefgh"[i % 8] + i / 1000);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        int n = sizes[k];
        int l = LZ4_compress_default((const char *)big, (char *)buf, n, (int)sizeof(buf));
        T_ASSERT(l > 0);
        expect_bad(libc_ops[0], buf, (size_t)l, "lz4 block of another size");
        size_t z = ZSTD_compress(buf, sizeof(buf), big, (size_t)n, 1);
        T_ASSERT(!ZSTD_isError(z));
        expect_bad(libc_ops[1], buf, z, "zstd frame of another size");
        uLongf zl = sizeof(buf);
        T_EQ(compress2(buf, &zl, big, (uLong)n, 1), Z_OK);
        expect_bad(libc_ops[2], buf, zl, "zlib stream of another size");
    }
    /* zstd: two frames of half a page; a frame without content size; a
     * skippable frame */
    size_t a = ZSTD_compress(buf, sizeof(buf), big, 2048, 1);
    size_t b = ZSTD_compress(buf + a, sizeof(buf) - a, big, 2048, 1);
    T_ASSERT(!ZSTD_isError(a) && !ZSTD_isError(b));
    expect_bad(libc_ops[1], buf, a + b, "two zstd frames");
    {
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        ZSTD_inBuffer in = {big, PS, 0};
        ZSTD_outBuffer o = {buf, sizeof(buf), 0};
        T_ASSERT(cc);
        T_OK(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)) ? -1 : 0);
        T_ASSERT(!ZSTD_isError(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end)));
        T_ASSERT(ZSTD_getFrameContentSize(buf, o.pos) == ZSTD_CONTENTSIZE_UNKNOWN);
        expect_bad(libc_ops[1], buf, o.pos, "zstd frame without content size");
        ZSTD_freeCCtx(cc);
    }
    static const uint8_t skippable[] = {0x50, 0x2a, 0x4d, 0x18, 0x04, 0, 0, 0, 1, 2, 3, 4};
    expect_bad(libc_ops[1], skippable, sizeof(skippable), "skippable frame");
    /* zlib: raw deflate and gzip are other formats */
    {
        z_stream s = {0};
        T_EQ(deflateInit2(&s, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        s.next_in = big, s.avail_in = PS, s.next_out = buf, s.avail_out = sizeof(buf);
        T_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
        expect_bad(libc_ops[2], buf, s.total_out, "raw deflate");
        deflateEnd(&s);
        s = (z_stream){0};
        T_EQ(deflateInit2(&s, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
        s.next_in = big, s.avail_in = PS, s.next_out = buf, s.avail_out = sizeof(buf);
        T_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
        expect_bad(libc_ops[2], buf, s.total_out, "gzip");
        deflateEnd(&s);
        /* zlib with a wrong Adler-32 */
        uLongf zl = sizeof(buf);
        T_EQ(compress2(buf, &zl, big, PS, 6), Z_OK);
        buf[zl - 1] ^= 1;
        expect_bad(libc_ops[2], buf, zl, "zlib stream with a bad Adler-32");
    }
}

/* Random and mutated payloads: 0 or -EBADMSG, nothing else, no memory
 * touched outside src and page (exact-size heap blocks). */
static void test_random_input(unsigned long long *seed)
{
    static uint8_t src[PS], good[PS];
    for (int c = 0; c < LIBS + 1; c++) {
        const struct migr_codec_ops *ops = c < LIBS ? libc_ops[c] : &migr_codec_xbzrle;
        size_t glen = 0;
        static _Alignas(64) uint8_t old[PS];
        fill(old, 1, 5, 1);
        memcpy(page, old, PS);
        for (int i = 0; i < 40; i++)
            page[t_rand(seed) % PS] ^= 0x3c;
        T_OK(ops->encode(page, old, good, sizeof(good), &glen));
        for (int it = 0; it < 4000; it++) {
            size_t len;
            if (it % 2) {
                len = 1 + t_rand(seed) % (it % 4 == 1 ? 64 : PS - 1);
                for (size_t i = 0; i < len; i++)
                    src[i] = (uint8_t)t_rand(seed);
            } else {
                len = glen;
                memcpy(src, good, glen);
                int muts = 1 + (int)(t_rand(seed) % 4);
                while (muts-- && len) {
                    size_t at = t_rand(seed) % len;
                    switch (t_rand(seed) % 3) {
                    case 0: src[at] ^= (uint8_t)(1u << (t_rand(seed) % 8)); break;
                    case 1: src[at] = (uint8_t)t_rand(seed); break;
                    case 2: len = at ? at : 1; break;
                    }
                }
            }
            memcpy(back, old, PS);
            int r = decode_exact(ops, src, len, back);
            if (r != 0 && r != -EBADMSG)
                T_FAIL("%s: random input of %zu bytes: decode returned %d", ops->name, len, r);
        }
    }
}

/* Two threads encode and decode at once, each with its own contexts, at
 * different levels over time; then exit (the contexts are freed). */
struct thr {
    unsigned long long seed;
    int fails;
};

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    _Alignas(64) uint8_t p[PS], q[PS], o[PS];
    for (int it = 0; it < 600; it++) {
        const struct migr_codec_ops *ops = libc_ops[it % LIBS];
        size_t len;
        wl_fill_page(p, t_rand(&t->seed) % 1000, 1, 1, 3);
        int r = ops->encode(p, NULL, o, sizeof(o), &len);
        if (r || ops->decode(o, len, q) || memcmp(p, q, PS))
            t->fails++;
    }
    return NULL;
}

static void test_threads(unsigned long long *seed)
{
    pthread_t th[2];
    struct thr t[2] = {{t_rand(seed), 0}, {t_rand(seed), 0}};
    for (int i = 0; i < 2; i++)
        T_EQ(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
    for (int l = 1; l <= 9; l++) {   /* levels change while they run */
        T_OK(migr_codec_set_level("zlib", l));
        T_OK(migr_codec_set_level("zstd", l));
        T_OK(migr_codec_set_level("lz4", l - 5));
    }
    for (int i = 0; i < 2; i++) {
        T_EQ(pthread_join(th[i], NULL), 0);
        T_EQ(t[i].fails, 0);
    }
    T_OK(migr_codec_set_level("zlib", 1));
    T_OK(migr_codec_set_level("zstd", 1));
    T_OK(migr_codec_set_level("lz4", 1));
}

int main(void)
{
    unsigned long long seed = t_seed();
    libc_ops[0] = &migr_codec_lz4;
    libc_ops[1] = &migr_codec_zstd;
    libc_ops[2] = &migr_codec_zlib;
    test_lookup();
    test_levels();
    test_round_trips();
    test_xbzrle_codec();
    test_strict();
    test_random_input(&seed);
    test_threads(&seed);
    return 0;
}
