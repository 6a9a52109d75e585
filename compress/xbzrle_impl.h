/* compress/xbzrle: internals shared by the block encoders (scalar, AVX2,
 * AVX-512BW). Not a public header.
 *
 * The block encoders all work the same way: per 64-byte block a mask with
 * bit k set when byte k changed, then run boundaries with ctz. They differ
 * only in how the mask is computed, so the loop is an always_inline
 * template instantiated once per mask function (inside a function with the
 * right target attribute for the SIMD ones).
 *
 * QEMU's overflow test reduces to this (docs/compress.md, "Overflow"): with
 * D the length of the full encoding, -1 iff D > dlen, or the delta ends in
 * unchanged bytes and D + 2 > dlen, or the pages are equal and dlen < 2.
 * Each run is therefore checked once, before it is written, against its own
 * length (a run that does not fit proves D > dlen).
 */
#ifndef MIGR_XBZRLE_IMPL_H
#define MIGR_XBZRLE_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "migr/xbzrle.h"

#define XB_INLINE static inline __attribute__((always_inline))

typedef uint64_t (*xb_mask_fn)(const uint8_t *o, const uint8_t *n);

/* Write one (zero run, non-zero run, bytes) item. -1 if it does not fit or a
 * run is too long for a 2-byte LEB128. src_end bounds the over-copy. */
XB_INLINE int xb_emit(uint8_t *dst, int dlen, int *dp, uint32_t z, uint32_t nz,
                      const uint8_t *src, const uint8_t *src_end)
{
    int d = *dp;
    /* Most items: a short run and room to spare (20 bytes is the most a
     * short item can need): no size checks, a 2-byte store for the zero
     * run's length, a 16-byte copy (the bytes past the run are overwritten
     * by the next item or ignored). */
    if (__builtin_expect(nz <= 16 && z <= MIGR_XBZRLE_RUN_MAX && dlen - d >= 20 &&
                         src_end - src >= 16, 1)) {
        uint16_t zl = (uint16_t)(z < 0x80 ? z : (z & 0x7f) | 0x80 | (z >> 7) << 8);
        memcpy(dst + d, &zl, 2);
        d += 1 + (z >= 0x80);
        dst[d++] = (uint8_t)nz;
        memcpy(dst + d, src, 16);
        *dp = d + (int)nz;
        return 0;
    }
    if (z > MIGR_XBZRLE_RUN_MAX || nz > MIGR_XBZRLE_RUN_MAX)
        return -1;
    int need = (z >= 0x80) + (nz >= 0x80) + 2 + (int)nz;
    if (need > dlen - d)
        return -1;
    if (z < 0x80) {
        dst[d++] = (uint8_t)z;
    } else {
        dst[d++] = (uint8_t)(z | 0x80);
        dst[d++] = (uint8_t)(z >> 7);
    }
    if (nz < 0x80) {
        dst[d++] = (uint8_t)nz;
    } else {
        dst[d++] = (uint8_t)(nz | 0x80);
        dst[d++] = (uint8_t)(nz >> 7);
    }
    memcpy(dst + d, src, nz);
    *dp = d + (int)nz;
    return 0;
}

/* Bit k set iff o[k] != n[k], for k < w (w <= 64). */
XB_INLINE uint64_t xb_mask_bytes(const uint8_t *o, const uint8_t *n, int w)
{
    uint64_t m = 0;
    for (int k = 0; k < w; k++)
        m |= (uint64_t)(o[k] != n[k]) << k;
    return m;
}

XB_INLINE int xb_encode_blocks(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst,
                               int dlen, xb_mask_fn mask)
{
    if (slen <= 0)
        return slen == 0 ? 0 : -1;
    const uint8_t *n_end = n + slen;
    int full = slen & ~63;
    int d = 0;
    int zstart = 0;    /* start of the current zero run */
    int nzstart = -1;  /* start of the current non-zero run; -1: in a zero run */
    for (int b = 0; b < slen; b += 64) {
        uint64_t m;
        if (nzstart < 0) {
            /* the hot loop: blocks inside a zero run */
            while (b < full && (m = mask(o + b, n + b)) == 0)
                b += 64;
            if (b >= full) {
                if (b >= slen)
                    break;
                m = xb_mask_bytes(o + b, n + b, slen - b);
            }
        } else {
            while (b < full && (m = mask(o + b, n + b)) == ~0ull)
                b += 64;
            if (b >= full) {
                if (b >= slen)
                    break;
                m = xb_mask_bytes(o + b, n + b, slen - b);
            }
            /* the run ends in this block: ~m != 0 (also in a tail block,
             * whose bits past slen are 0) */
            int e = __builtin_ctzll(~m);
            if (xb_emit(dst, dlen, &d, (uint32_t)(nzstart - zstart), (uint32_t)(b + e - nzstart),
                        n + nzstart, n_end) < 0)
                return -1;
            zstart = b + e;
            nzstart = -1;
            m &= ~0ull << e;
        }
        /* runs that start in this block; bits below the zero run's start
         * are already cleared from m */
        while (m) {
            int s = __builtin_ctzll(m);
            uint64_t rest = ~m & (~0ull << s);   /* equal bytes after s */
            if (!rest) {
                nzstart = b + s;   /* runs into the next block */
                break;
            }
            int e = __builtin_ctzll(rest);
            if (xb_emit(dst, dlen, &d, (uint32_t)(b + s - zstart), (uint32_t)(e - s), n + b + s,
                        n_end) < 0)
                return -1;
            zstart = b + e;
            m &= ~0ull << e;
        }
    }
    if (nzstart >= 0)
        return xb_emit(dst, dlen, &d, (uint32_t)(nzstart - zstart), (uint32_t)(slen - nzstart),
                       n + nzstart, n_end) < 0 ? -1 : d;
    if (d == 0)
        return dlen < 2 ? -1 : 0;   /* identical: QEMU still wants 2 bytes free */
    if (zstart < slen && dlen - d < 2)
        return -1;   /* QEMU checks for 2 free bytes before the trailing zero run */
    return d;
}

#endif
