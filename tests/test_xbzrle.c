/* XBZRLE delta (include/migr/xbzrle.h): QEMU's own unit-test cases and the
 * example of QEMU's docs/xbzrle.txt with their expected results; round trips
 * over page pairs of every density against a byte-at-a-time model of QEMU's
 * encoder (same checks in the same order), for every encoder and for output
 * buffers of every size down to 0 (malloc'ed to the exact size, so ASan sees
 * any write past dlen); malformed deltas are refused and leave the page
 * alone; random and mutated deltas decode exactly as a model of QEMU's
 * decoder says, never touching memory outside src and dst. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/xbzrle.h"
#include "testlib.h"

#define PS 4096
#define MAXS 16392   /* room for the 14-bit-limit cases (slen up to 16384 + 8) */

static migr_xbzrle_encode_fn impls[MIGR_XBZRLE_NIMPL];
static int nimpl_checked;

/* ---- models of QEMU's encoder and decoder, a byte at a time ---- */

static int model_put_len(uint8_t *p, uint32_t n)
{
    if (n < 0x80) {
        p[0] = (uint8_t)n;
        return 1;
    }
    p[0] = (uint8_t)((n & 0x7f) | 0x80);
    p[1] = (uint8_t)(n >> 7);
    return 2;
}

/* QEMU's xbzrle_encode_buffer control flow: the 2-byte checks before each
 * run, the whole-page check, the skipped trailing zero run, the length
 * check before the copy. (QEMU aborts on a run > 0x3fff; the model says -1,
 * as migr does.) */
static int model_encode(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst, int dlen)
{
    int d = 0, i = 0;
    while (i < slen) {
        if (d + 2 > dlen)
            return -1;
        int z = 0;
        while (i < slen && o[i] == n[i])
            i++, z++;
        if (z == slen)
            return 0;
        if (i == slen)
            return d;
        if (z > 0x3fff)
            return -1;
        d += model_put_len(dst + d, (uint32_t)z);
        if (d + 2 > dlen)
            return -1;
        int start = i;
        while (i < slen && o[i] != n[i])
            i++;
        int nz = i - start;
        if (nz > 0x3fff)
            return -1;
        d += model_put_len(dst + d, (uint32_t)nz);
        if (d + nz > dlen)
            return -1;
        memcpy(dst + d, n + start, (size_t)nz);
        d += nz;
    }
    return d;
}

static int model_get_len(const uint8_t *p, uint32_t *v)
{
    if (!(p[0] & 0x80)) {
        *v = p[0];
        return 1;
    }
    if (p[1] & 0x80)
        return -1;
    *v = (p[0] & 0x7fu) | (uint32_t)p[1] << 7;
    return 2;
}

/* QEMU's xbzrle_decode_buffer; writes into dst as it goes (as QEMU does). */
static int model_decode(const uint8_t *src, int slen, uint8_t *dst, int dlen)
{
    int i = 0, d = 0;
    uint32_t c;
    while (i < slen) {
        if (slen - i < 2)
            return -1;
        int r = model_get_len(src + i, &c);
        if (r < 0 || (i && !c))
            return -1;
        i += r;
        d += (int)c;
        if (d > dlen)
            return -1;
        if (slen - i < 2)
            return -1;
        r = model_get_len(src + i, &c);
        if (r < 0 || !c)
            return -1;
        i += r;
        if (d + (int)c > dlen || i + (int)c > slen)
            return -1;
        memcpy(dst + d, src + i, c);
        d += (int)c;
        i += (int)c;
    }
    return d;
}

/* ---- helpers ---- */

static uint8_t *xmalloc(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    T_ASSERT(p);
    return p;
}

/* 8-byte aligned copies in exactly slen-byte heap blocks */
static uint8_t *dup_exact(const uint8_t *p, int len)
{
    uint8_t *q = xmalloc((size_t)len);
    memcpy(q, p, (size_t)len);
    return q;
}

static void change(uint8_t *n, const uint8_t *o, int i, unsigned long long *seed)
{
    n[i] = (uint8_t)(o[i] ^ (1 + t_rand(seed) % 255));
}

/* Encode with every impl into a dlen-byte heap buffer; all must equal the
 * model's result (return value and bytes). */
static void check_all_impls(const uint8_t *o, const uint8_t *n, int slen, int dlen,
                            const char *what)
{
    uint8_t *want = xmalloc((size_t)dlen);
    int w = model_encode(o, n, slen, want, dlen);
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        if (!impls[k])
            continue;
        uint8_t *got = xmalloc((size_t)dlen);
        int g = impls[k](o, n, slen, got, dlen);
        if (g != w)
            T_FAIL("%s: slen %d dlen %d: %s returned %d, QEMU model %d", what, slen, dlen,
                   migr_xbzrle_impl_name(k), g, w);
        if (w > 0 && memcmp(got, want, (size_t)w))
            T_FAIL("%s: slen %d dlen %d: %s output differs from the QEMU model", what, slen, dlen,
                   migr_xbzrle_impl_name(k));
        free(got);
    }
    free(want);
}

/* Full check of one pair: the encoding for a large buffer, every dlen from 0
 * to D + 3 (sampled above 600 bytes), the round trip, and the decoded
 * length. */
static void check_pair(const uint8_t *o0, const uint8_t *n0, int slen, const char *what)
{
    uint8_t *o = dup_exact(o0, slen), *n = dup_exact(n0, slen);
    int big = 3 * slen + 16;
    uint8_t *enc = xmalloc((size_t)big);
    int D = model_encode(o, n, slen, enc, big);
    T_ASSERT(D >= 0 || slen > 0x3fff);
    check_all_impls(o, n, slen, big, what);
    int top = D < 0 ? slen * 2 : D + 3;
    for (int dlen = 0; dlen <= top; dlen++) {
        if (dlen > 600 && dlen < top - 40 && dlen % 97)
            continue;
        check_all_impls(o, n, slen, dlen, what);
    }
    if (D > 0) {
        /* round trip through the library decoder, src and dst exact-size */
        uint8_t *src = dup_exact(enc, D), *page = dup_exact(o, slen);
        int r = migr_xbzrle_decode(src, D, page, slen);
        int last = slen - 1;
        while (last >= 0 && o[last] == n[last])
            last--;
        if (r != last + 1)
            T_FAIL("%s: decode returned %d (last changed byte at %d)", what, r, last);
        if (memcmp(page, n, (size_t)slen))
            T_FAIL("%s: decoded page differs from the new page", what);
        free(src);
        free(page);
    } else if (D == 0) {
        T_ASSERT(!memcmp(o, n, (size_t)slen));
    }
    free(enc);
    free(o);
    free(n);
}

/* ---- QEMU's tests/unit/test-xbzrle.c cases ---- */

static void test_qemu_uleb(void)
{
    /* every 14-bit length as the zero run before a 1-byte change: the
     * encoding must be LEB128(len) 01 byte, and decode back */
    int slen = 16384;
    uint8_t *o = calloc(1, (size_t)slen), *n = calloc(1, (size_t)slen);
    uint8_t out[8], want[8];
    T_ASSERT(o && n);
    for (uint32_t i = 0; i <= 0x3fff; i++) {
        n[i] = 0x5a;
        int wl = model_put_len(want, i);
        want[wl] = 1;
        want[wl + 1] = 0x5a;
        for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
            if (!impls[k] || (k != MIGR_XBZRLE_SCALAR && i % 61 && i > 300 && i < 16000))
                continue;
            int r = impls[k](o, n, slen, out, (int)sizeof(out));
            if (r != wl + 2 || memcmp(out, want, (size_t)r))
                T_FAIL("zero run %u: %s gave %d bytes %02x %02x %02x %02x", i,
                       migr_xbzrle_impl_name(k), r, out[0], out[1], out[2], out[3]);
        }
        T_EQ(wl, i < 0x80 ? 1 : 2);
        if (i >= 0x80)
            T_ASSERT(out[0] == ((i & 0x7f) | 0x80) && out[1] == i >> 7);
        uint8_t *page = calloc(1, (size_t)slen);
        T_ASSERT(page);
        T_EQ(migr_xbzrle_decode(out, wl + 2, page, slen), (int)i + 1);
        T_ASSERT(page[i] == 0x5a);
        free(page);
        n[i] = 0;
    }
    /* "decode invalid value": 0x80 0x80 has a third LEB128 byte */
    static const uint8_t bad[] = {0x80, 0x80, 0x01, 0x00};
    uint8_t page[PS] = {0};
    T_EQ(migr_xbzrle_decode(bad, 2, page, PS), -1);
    T_EQ(migr_xbzrle_decode(bad, 4, page, PS), -1);
    free(o);
    free(n);
}

static void fill_qemu_pattern(uint8_t *buf, int diff_len, int add, uint8_t v3, uint8_t v5)
{
    for (int i = diff_len; i > 0; i--)
        buf[1000 + i] = (uint8_t)(i + add);
    buf[1000 + diff_len + 3] = v3;
    buf[1000 + diff_len + 5] = v5;
}

static void test_qemu_zero_unchanged(unsigned long long *seed)
{
    static uint8_t buf[PS], out[PS];
    int diff_len = (int)(t_rand(seed) % (PS - 1006));
    memset(buf, 0, PS);
    fill_qemu_pattern(buf, diff_len, 0, 103, 105);
    T_EQ(migr_xbzrle_encode(buf, buf, PS, out, PS), 0);   /* encode_decode_zero */
    memset(buf, 0, PS);
    fill_qemu_pattern(buf, diff_len, 4, 107, 109);
    T_EQ(migr_xbzrle_encode(buf, buf, PS, out, PS), 0);   /* encode_decode_unchanged */
}

static void test_qemu_1_byte(void)
{
    static uint8_t buffer[PS], test[PS], out[PS];
    memset(buffer, 0, PS);
    memset(test, 0, PS);
    test[PS - 1] = 1;
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        if (!impls[k])
            continue;
        int dlen = impls[k](buffer, test, PS, out, PS);
        T_EQ(dlen, 2 + 2);   /* uleb128(4095) is 2 bytes, then 01 01 */
        static const uint8_t want[] = {0xff, 0x1f, 0x01, 0x01};
        T_ASSERT(!memcmp(out, want, 4));
    }
    T_EQ(migr_xbzrle_decode(out, 4, buffer, PS), PS);
    T_ASSERT(!memcmp(test, buffer, PS));
}

static void test_qemu_overflow(void)
{
    static uint8_t buffer[PS], test[PS], out[PS];
    memset(buffer, 0, PS);
    memset(test, 0, PS);
    for (int i = 0; i < PS / 2 - 1; i++)
        test[i * 2] = 1;
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++)
        if (impls[k])
            T_EQ(impls[k](buffer, test, PS, out, PS), -1);
    T_EQ(migr_xbzrle_encode(buffer, test, PS, out, PS), -1);
}

static void test_qemu_encode_decode(unsigned long long *seed)
{
    static uint8_t buffer[PS], test[PS], out[PS];
    for (int it = 0; it < 10000; it++) {
        int diff_len = (int)(t_rand(seed) % (PS - 1006));
        memset(buffer, 0, PS);
        memset(test, 0, PS);
        for (int i = diff_len; i > 0; i--) {
            buffer[1000 + i] = (uint8_t)i;
            test[1000 + i] = (uint8_t)(i + 4);
        }
        buffer[1000 + diff_len + 3] = 103;
        test[1000 + diff_len + 3] = 107;
        buffer[1000 + diff_len + 5] = 105;
        test[1000 + diff_len + 5] = 109;
        int dlen = migr_xbzrle_encode(test, buffer, PS, out, PS);
        T_ASSERT(dlen > 0);
        int rc = migr_xbzrle_decode(out, dlen, test, PS);
        if (!(rc > 0 && rc < PS) || memcmp(test, buffer, PS))
            T_FAIL("encode_decode diff_len %d: rc %d", diff_len, rc);
    }
}

/* The example of QEMU's docs/xbzrle.txt. */
static void test_qemu_docs_example(void)
{
    static uint8_t o[PS], n[PS], out[PS];
    static const uint8_t old_bytes[] = {0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
                                        0x0f, 0x10, 0x11, 0x12, 0x13, 0x68, 0x00, 0x00, 0x6b, 0x00,
                                        0x6d};
    static const uint8_t new_bytes[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                        0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x68, 0x00, 0x00, 0x67, 0x00,
                                        0x69};
    static const uint8_t want[24] = {0xe9, 0x07, 0x0f, 0x01, 0x02, 0x03, 0x04, 0x05,
                                     0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
                                     0x0e, 0x0f, 0x03, 0x01, 0x67, 0x01, 0x01, 0x69};
    memset(o, 0, PS);
    memset(n, 0, PS);
    memcpy(o + 1001, old_bytes, sizeof(old_bytes));   /* 1001 zeros, 21 bytes, 3074 zeros */
    memcpy(n + 1001, new_bytes, sizeof(new_bytes));
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        if (!impls[k])
            continue;
        memset(out, 0xee, PS);
        int r = impls[k](o, n, PS, out, PS);
        if (r != 24 || memcmp(out, want, 24))
            T_FAIL("docs example: %s gave %d bytes", migr_xbzrle_impl_name(k), r);
    }
    T_EQ(migr_xbzrle_decode(want, 24, o, PS), 1001 + 21);
    T_ASSERT(!memcmp(o, n, PS));
}

/* ---- page pairs of every density ---- */

static void test_densities(unsigned long long *seed)
{
    static uint8_t o[MAXS], n[MAXS];
    char what[96];
    for (int kind = 0; kind <= 13; kind++) {
        int reps = kind >= 9 ? 40 : 4;
        for (int rep = 0; rep < reps; rep++) {
            int slen = PS;
            for (int i = 0; i < MAXS; i += 8) {
                uint64_t x = rep & 1 ? 0 : t_rand(seed);
                memcpy(o + i, &x, 8);
            }
            memcpy(n, o, MAXS);
            switch (kind) {
            case 0: /* identical */
                break;
            case 1: /* one byte anywhere */
                change(n, o, (int)(t_rand(seed) % PS), seed);
                break;
            case 2: /* first byte */
                change(n, o, 0, seed);
                break;
            case 3: /* last byte */
                change(n, o, PS - 1, seed);
                break;
            case 4: /* every other byte, from 0 or from 1 */
                for (int i = rep & 2 ? 1 : 0; i < PS; i += 2)
                    change(n, o, i, seed);
                break;
            case 5: /* all bytes */
                for (int i = 0; i < PS; i++)
                    change(n, o, i, seed);
                break;
            case 6: /* runs crossing 8-byte words and 64-byte blocks */
                for (int at = 5 + rep; at < PS - 40; at += 61 + rep) {
                    int len = 1 + (int)(t_rand(seed) % 20);
                    for (int i = at; i < at + len; i++)
                        change(n, o, i, seed);
                }
                break;
            case 7: /* non-zero runs of 127, 128, 129 bytes; zero runs of 127, 128, 129 */
                for (int at = 3 + rep, k = 0; at < PS - 300; k++) {
                    int len = 127 + k % 3;
                    for (int i = at; i < at + len; i++)
                        change(n, o, i, seed);
                    at += len + 127 + (k / 3) % 3;
                }
                break;
            case 8: /* the 14-bit limit: slen 16384 */
                slen = 16384;
                if (rep == 0) {          /* zero run of 16383, one change at the end */
                    change(n, o, slen - 1, seed);
                } else if (rep == 1) {   /* non-zero run of 16383 */
                    for (int i = 1; i < slen; i++)
                        change(n, o, i, seed);
                } else if (rep == 2) {   /* non-zero run of 16384: too long (QEMU aborts) */
                    for (int i = 0; i < slen; i++)
                        change(n, o, i, seed);
                } else {                 /* slen 16392: zero run of 16384 is too long too */
                    slen = 16392;
                    change(n, o, 16384, seed);
                }
                break;
            case 9: { /* a few random changes */
                int k = 1 + (int)(t_rand(seed) % 64);
                while (k--)
                    change(n, o, (int)(t_rand(seed) % PS), seed);
                break;
            }
            case 10: { /* bursts: alternating random run lengths */
                int i = (int)(t_rand(seed) % 300);
                while (i < PS) {
                    int len = 1 + (int)(t_rand(seed) % (t_rand(seed) % 2 ? 8 : 300));
                    for (int j = i; j < i + len && j < PS; j++)
                        change(n, o, j, seed);
                    i += len + 1 + (int)(t_rand(seed) % 200);
                }
                break;
            }
            case 11: { /* each byte changed with probability p */
                unsigned p = (unsigned)(t_rand(seed) % 1001);
                for (int i = 0; i < PS; i++)
                    if (t_rand(seed) % 1000 < p)
                        change(n, o, i, seed);
                break;
            }
            case 12: { /* slen: other multiples of 8, changes near the end */
                slen = 8 * (1 + (int)(t_rand(seed) % 600));
                for (int k = 0; k < 6; k++)
                    change(n, o, slen - 1 - (int)(t_rand(seed) % MIGR_MIN(slen, 80)), seed);
                break;
            }
            case 13: { /* odd slen (QEMU needs multiples of 8; migr copes) */
                slen = 1 + (int)(t_rand(seed) % 200);
                for (int k = 0; k < 4; k++)
                    change(n, o, (int)(t_rand(seed) % slen), seed);
                break;
            }
            }
            snprintf(what, sizeof(what), "density kind %d rep %d", kind, rep);
            check_pair(o, n, slen, what);
        }
    }
}

/* ---- decoder: malformed input ---- */

static void test_decode_malformed(void)
{
    static uint8_t page[PS], copy[PS];
    static const struct {
        const char *why;
        uint8_t src[8];
        int len;
    } bad[] = {
        {"nzrun of length 0", {0x00, 0x00}, 2},
        {"only a zrun", {0x05}, 1},
        {"zrun then nothing", {0x05, 0x01}, 1},
        {"nzrun longer than src", {0x00, 0x03, 0xaa, 0xbb}, 4},
        {"second zrun of length 0", {0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb}, 6},
        {"third LEB128 byte in zrun", {0x80, 0x80, 0x01, 0x01, 0xaa}, 5},
        {"third LEB128 byte in nzrun", {0x00, 0x81, 0x80, 0x01}, 4},
        {"zrun past dlen", {0x81, 0x20, 0x01, 0xaa}, 4},        /* 4097 */
        {"nzrun past dlen", {0xff, 0x1f, 0x02, 0xaa, 0xbb}, 5}, /* 4095 + 2 */
        {"trailing byte", {0x00, 0x01, 0xaa, 0x01}, 4},
        {"one LEB byte left for nzrun with data", {0x00, 0x01}, 2},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        for (int i = 0; i < PS; i++)
            page[i] = (uint8_t)(i * 7);
        memcpy(copy, page, PS);
        uint8_t *src = dup_exact(bad[k].src, bad[k].len);
        int r = migr_xbzrle_decode(src, bad[k].len, page, PS);
        if (r != -1)
            T_FAIL("%s: decode returned %d", bad[k].why, r);
        T_EQ(model_decode(src, bad[k].len, copy, PS), -1);
        for (int i = 0; i < PS; i++)
            if (page[i] != (uint8_t)(i * 7))
                T_FAIL("%s: page changed at %d after -1", bad[k].why, i);
        free(src);
    }
    /* accepted: QEMU takes a non-minimal 2-byte length and an empty delta */
    static const uint8_t ok[] = {0x85, 0x00, 0x81, 0x00, 0x11};   /* zrun 5, nzrun 1 */
    memset(page, 0, PS);
    T_EQ(migr_xbzrle_decode(ok, 5, page, PS), 6);
    T_EQ(page[5], 0x11);
    T_EQ(migr_xbzrle_decode(ok, 0, page, PS), 0);
    T_EQ(migr_xbzrle_decode(ok, -1, page, PS), -1);
    T_EQ(migr_xbzrle_decode(ok, 5, page, -1), -1);
    /* exactly at the end of dst */
    static const uint8_t end[] = {0xff, 0x1f, 0x01, 0x42};
    T_EQ(migr_xbzrle_decode(end, 4, page, PS), PS);
    T_EQ(page[PS - 1], 0x42);
    T_EQ(migr_xbzrle_decode(end, 4, page, PS - 1), -1);
}

/* ---- decoder: random and mutated input against the QEMU model ---- */

static void decode_one(const uint8_t *src0, int slen, int dlen, unsigned long long *seed)
{
    uint8_t *src = dup_exact(src0, slen);
    uint8_t *a = xmalloc((size_t)dlen), *b = xmalloc((size_t)dlen), *orig = xmalloc((size_t)dlen);
    for (int i = 0; i < dlen; i++)
        orig[i] = (uint8_t)t_rand(seed);
    memcpy(a, orig, (size_t)dlen);
    memcpy(b, orig, (size_t)dlen);
    int r = migr_xbzrle_decode(src, slen, a, dlen);
    int w = model_decode(src, slen, b, dlen);
    if (r != w)
        T_FAIL("decode of %d random/mutated bytes (dlen %d): %d, QEMU model %d", slen, dlen, r, w);
    if (memcmp(a, r < 0 ? orig : b, (size_t)dlen))
        T_FAIL("decode of %d bytes: page differs from %s", slen, r < 0 ? "the original" : "model");
    free(src);
    free(a);
    free(b);
    free(orig);
}

static void test_decode_random(unsigned long long *seed)
{
    static uint8_t buf[2 * PS], o[PS], n[PS];
    for (int it = 0; it < 20000; it++) {
        int mode = it % 4, len, dlen = it % 5 ? PS : 1 + (int)(t_rand(seed) % PS);
        if (mode == 0) {
            /* pure noise, small values favoured so that some items are valid */
            len = (int)(t_rand(seed) % 64);
            for (int i = 0; i < len; i++)
                buf[i] = (uint8_t)(t_rand(seed) % (i % 3 ? 256 : 8));
        } else {
            /* a valid delta, mutated: flipped bits, cut, extended, bytes inserted */
            memset(o, 0, PS);
            memcpy(n, o, PS);
            int k = 1 + (int)(t_rand(seed) % 40);
            while (k--)
                n[t_rand(seed) % PS] ^= (uint8_t)(1 + t_rand(seed) % 255);
            len = migr_xbzrle_encode(o, n, PS, buf, PS);
            if (len <= 0)
                continue;
            int muts = 1 + (int)(t_rand(seed) % 3);
            while (muts--) {
                int at = (int)(t_rand(seed) % (unsigned)len);
                switch (t_rand(seed) % 4) {
                case 0: buf[at] ^= (uint8_t)(1u << (t_rand(seed) % 8)); break;
                case 1: len = at; break;
                case 2: buf[len++] = (uint8_t)t_rand(seed); break;
                case 3: buf[at] = (uint8_t)(t_rand(seed) % 2 ? 0 : 0x80); break;
                }
                if (len <= 0)
                    break;
            }
            if (len < 0)
                len = 0;
        }
        decode_one(buf, len, dlen, seed);
    }
}

int main(void)
{
    unsigned long long seed = t_seed();
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        impls[k] = migr_xbzrle_encoder(k);
        if (impls[k])
            nimpl_checked++;
        else
            printf("note: no %s encoder on this CPU: not checked\n", migr_xbzrle_impl_name(k));
    }
    T_ASSERT(impls[MIGR_XBZRLE_BASELINE] && impls[MIGR_XBZRLE_SCALAR]);
    test_qemu_uleb();
    test_qemu_zero_unchanged(&seed);
    test_qemu_1_byte();
    test_qemu_overflow();
    test_qemu_encode_decode(&seed);
    test_qemu_docs_example();
    test_decode_malformed();
    test_densities(&seed);
    test_decode_random(&seed);
    return 0;
}
