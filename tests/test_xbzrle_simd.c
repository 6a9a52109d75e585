/* XBZRLE encoders: AVX2 = AVX-512BW = scalar = baseline, byte for byte and in
 * the return value, over many random page pairs: every length 0 ... 1100 and
 * page-sized ones, unaligned buffers (the SIMD loads must not care), run
 * lengths around the 64-byte block size, densities from one byte to all,
 * and output sizes around the exact fit. A variant the CPU lacks is
 * skipped with a note; with neither AVX2 nor AVX-512BW the test is skipped.
 * Also: migr_xbzrle_encode() uses the best variant, and set_impl works. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/xbzrle.h"
#include "testlib.h"

#define MAXS 8192

static migr_xbzrle_encode_fn fn[MIGR_XBZRLE_NIMPL];

static void compare(const uint8_t *o, const uint8_t *n, int slen, int dlen, const char *what)
{
    static uint8_t ref[3 * MAXS + 64], got[3 * MAXS + 64];
    int r0 = fn[MIGR_XBZRLE_BASELINE](o, n, slen, ref, dlen);
    for (int k = 1; k < MIGR_XBZRLE_NIMPL; k++) {
        if (!fn[k])
            continue;
        int r = fn[k](o, n, slen, got, dlen);
        if (r != r0 || (r > 0 && memcmp(got, ref, (size_t)r)))
            T_FAIL("%s: slen %d dlen %d: %s returned %d, baseline %d%s", what, slen, dlen,
                   migr_xbzrle_impl_name(k), r, r0, r == r0 ? " (bytes differ)" : "");
    }
}

int main(void)
{
    unsigned long long seed = t_seed();
    int simd = 0;
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        fn[k] = migr_xbzrle_encoder(k);
        if (!fn[k])
            printf("note: CPU lacks %s: that encoder is not compared\n", migr_xbzrle_impl_name(k));
        else if (k >= MIGR_XBZRLE_AVX2)
            simd++;
    }
    T_ASSERT(fn[MIGR_XBZRLE_BASELINE] && fn[MIGR_XBZRLE_SCALAR]);
    /* the default is the best the CPU has */
    enum migr_xbzrle_impl best = fn[MIGR_XBZRLE_AVX512] ? MIGR_XBZRLE_AVX512
                                 : fn[MIGR_XBZRLE_AVX2] ? MIGR_XBZRLE_AVX2 : MIGR_XBZRLE_SCALAR;
    T_EQ(migr_xbzrle_active_impl(), best);
    T_OK(migr_xbzrle_set_impl(MIGR_XBZRLE_BASELINE));
    T_EQ(migr_xbzrle_active_impl(), MIGR_XBZRLE_BASELINE);
    T_EQ(migr_xbzrle_set_impl(MIGR_XBZRLE_NIMPL), -EINVAL);
    if (!fn[MIGR_XBZRLE_AVX512])
        T_EQ(migr_xbzrle_set_impl(MIGR_XBZRLE_AVX512), -ENOTSUP);
    T_OK(migr_xbzrle_set_impl(best));
    T_ASSERT(!strcmp(migr_xbzrle_impl_name(MIGR_XBZRLE_AVX2), "avx2"));
    T_ASSERT(!strcmp(migr_xbzrle_impl_name(99), "?"));

    static uint8_t obuf[MAXS + 64], nbuf[MAXS + 64];
    char what[64];
    for (int it = 0; it < 12000; it++) {
        int slen = it < 1101 ? it : (int)(t_rand(&seed) % 3 ? 4096 : t_rand(&seed) % MAXS);
        int shift_o = (int)(t_rand(&seed) % 64), shift_n = (int)(t_rand(&seed) % 64);
        uint8_t *o = obuf + shift_o, *n = nbuf + shift_n;
        for (int i = 0; i < slen; i++)
            o[i] = (uint8_t)(t_rand(&seed) % 4 ? 0 : t_rand(&seed));
        memcpy(n, o, (size_t)slen);
        int kind = it % 5;
        if (slen && kind == 0) {          /* each byte with probability p */
            unsigned p = (unsigned)(t_rand(&seed) % 1001);
            for (int i = 0; i < slen; i++)
                if (t_rand(&seed) % 1000 < p)
                    n[i] ^= (uint8_t)(1 + t_rand(&seed) % 255);
        } else if (slen && kind == 1) {   /* runs of 55 ... 73 bytes: around a block */
            for (int at = (int)(t_rand(&seed) % 64); at < slen;) {
                int len = 55 + (int)(t_rand(&seed) % 19);
                for (int i = at; i < at + len && i < slen; i++)
                    n[i] ^= (uint8_t)(1 + t_rand(&seed) % 255);
                at += len + 1 + (int)(t_rand(&seed) % 130);
            }
        } else if (slen && kind == 2) {   /* a few bytes */
            for (int k = 0; k < 1 + (int)(t_rand(&seed) % 8); k++)
                n[t_rand(&seed) % (unsigned)slen] ^= 0x80;
        } else if (slen && kind == 3) {   /* all but a few bytes */
            for (int i = 0; i < slen; i++)
                n[i] ^= (uint8_t)(1 + t_rand(&seed) % 255);
            for (int k = 0; k < 3; k++)
                n[t_rand(&seed) % (unsigned)slen] = o[t_rand(&seed) % (unsigned)slen];
        }                                 /* kind 4: identical */
        snprintf(what, sizeof(what), "pair %d (kind %d)", it, kind);
        compare(o, n, slen, 3 * MAXS, what);
        static uint8_t scratch[3 * MAXS];
        int full = fn[MIGR_XBZRLE_BASELINE](o, n, slen, scratch, 3 * MAXS);
        if (full >= 0)
            for (int d = MIGR_MAX(0, full - 3); d <= full + 3; d++)
                compare(o, n, slen, d, what);
        compare(o, n, slen, (int)(t_rand(&seed) % (unsigned)(full > 0 ? full : 16)), what);
    }
    if (!simd)
        T_SKIP("CPU has neither AVX2 nor AVX-512BW (baseline = scalar checked)");
    return 0;
}
