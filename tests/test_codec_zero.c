/* Zero-page detection and the zero and raw codecs: a single non-zero byte
 * anywhere makes a page non-zero, random pages agree with a byte-by-byte
 * reference, encode/decode round trips, and decoders refuse wrong lengths
 * with -EBADMSG without touching the page. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/codec.h"
#include "migr/format.h"
#include "testlib.h"

#define PS MIGR_PAGE_SIZE

static _Alignas(64) uint8_t page[PS];
static _Alignas(64) uint8_t back[PS];

static bool ref_is_zero(const uint8_t *p)
{
    for (size_t i = 0; i < PS; i++)
        if (p[i])
            return false;
    return true;
}

static void test_detection(unsigned long long *seed)
{
    memset(page, 0, PS);
    T_ASSERT(migr_page_is_zero(page));
    static const uint8_t vals[] = {0x01, 0x80, 0xff};
    for (size_t v = 0; v < sizeof(vals); v++) {
        for (size_t off = 0; off < PS; off++) {
            page[off] = vals[v];
            if (migr_page_is_zero(page))
                T_FAIL("byte 0x%02x at offset %zu not seen", vals[v], off);
            page[off] = 0;
        }
    }
    T_ASSERT(migr_page_is_zero(page));
    /* Random pages: dense, sparse (a few non-zero bytes), and all-zero. */
    for (int iter = 0; iter < 3000; iter++) {
        int kind = iter % 3;
        memset(page, 0, PS);
        if (kind == 0) {
            for (size_t i = 0; i < PS; i += 8) {
                uint64_t x = t_rand(seed);
                memcpy(page + i, &x, 8);
            }
        } else if (kind == 1) {
            int n = (int)(t_rand(seed) % 4);
            for (int k = 0; k < n; k++)
                page[t_rand(seed) % PS] = (uint8_t)(t_rand(seed) | 1);
        }
        if (migr_page_is_zero(page) != ref_is_zero(page))
            T_FAIL("random page %d (kind %d): migr_page_is_zero disagrees with the reference",
                   iter, kind);
    }
}

static void test_zero_codec(void)
{
    const struct migr_codec_ops *z = &migr_codec_zero;
    uint8_t out[PS];
    size_t len = 12345;

    T_EQ(z->enc, MIGR_ENC_ZERO);
    memset(page, 0, PS);
    T_EQ(z->encode(page, NULL, out, sizeof(out), &len), 0);
    T_EQ(len, 0);
    T_EQ(z->encode(page, NULL, NULL, 0, &len), 0); /* needs no output space */
    T_EQ(len, 0);
    memset(back, 0xa5, PS);
    T_EQ(z->decode(out, 0, back), 0);
    T_ASSERT(ref_is_zero(back));

    page[4095] = 1;
    T_EQ(z->encode(page, NULL, out, sizeof(out), &len), MIGR_CODEC_DECLINE);
    page[4095] = 0;
    page[0] = 1;
    T_EQ(z->encode(page, back, out, sizeof(out), &len), MIGR_CODEC_DECLINE);
    page[0] = 0;

    static const size_t bad[] = {1, 8, PS - 1, PS, PS + 1};
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(bad); i++) {
        uint8_t *src = calloc(1, bad[i]); /* exactly len bytes: ASan sees any overread */
        T_ASSERT(src);
        memset(back, 0x5a, PS);
        T_EQ(z->decode(src, bad[i], back), -EBADMSG);
        T_ASSERT(strstr(migr_last_error(), "zero page"));
        T_ASSERT(back[0] == 0x5a && back[PS - 1] == 0x5a); /* untouched */
        free(src);
    }
}

static void test_raw_codec(unsigned long long *seed)
{
    const struct migr_codec_ops *r = &migr_codec_raw;
    size_t len = 0;

    T_EQ(r->enc, MIGR_ENC_RAW);
    for (int iter = 0; iter < 64; iter++) {
        uint8_t *out = malloc(PS); /* exactly a page: ASan sees any overrun */
        T_ASSERT(out);
        for (size_t i = 0; i < PS; i += 8) {
            uint64_t x = iter == 0 ? 0 : t_rand(seed);
            memcpy(page + i, &x, 8);
        }
        T_EQ(r->encode(page, NULL, out, PS, &len), 0);
        T_EQ(len, PS);
        memset(back, 0, PS);
        T_EQ(r->decode(out, len, back), 0);
        T_ASSERT(memcmp(page, back, PS) == 0);
        free(out);
    }
    uint8_t small[PS - 1];
    T_EQ(r->encode(page, NULL, small, sizeof(small), &len), -ENOSPC);

    static const size_t bad[] = {0, 1, PS - 1, PS + 1, 2 * PS};
    for (size_t i = 0; i < MIGR_ARRAY_SIZE(bad); i++) {
        uint8_t *src = calloc(1, bad[i] ? bad[i] : 1);
        T_ASSERT(src);
        memset(back, 0x5a, PS);
        T_EQ(r->decode(src, bad[i], back), -EBADMSG);
        T_ASSERT(strstr(migr_last_error(), "raw page"));
        T_ASSERT(back[0] == 0x5a && back[PS - 1] == 0x5a);
        free(src);
    }
}

static void test_lookup(void)
{
    T_ASSERT(migr_codec_for_enc(MIGR_ENC_RAW) == &migr_codec_raw);
    T_ASSERT(migr_codec_for_enc(MIGR_ENC_ZERO) == &migr_codec_zero);
    T_ASSERT(migr_codec_for_enc(0xff) == NULL);
}

int main(void)
{
    unsigned long long seed = t_seed();
    test_detection(&seed);
    test_zero_codec();
    test_raw_codec(&seed);
    test_lookup();
    return 0;
}
