/* compress/xbzrle: XOR+RLE page delta in QEMU's XBZRLE format — the decoder,
 * the baseline and portable encoders, run-time selection, and the "xbzrle"
 * codec. The AVX2 and AVX-512BW encoders are in xbzrle_simd.c. The format
 * and QEMU's exact rules are in docs/compress.md. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compress/xbzrle_impl.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"
#include "migr/xbzrle.h"

/* xbzrle_simd.c; NULL when the CPU lacks the instructions */
migr_xbzrle_encode_fn migr__xbzrle_avx2(void);
migr_xbzrle_encode_fn migr__xbzrle_avx512(void);

static inline uint64_t ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int put_len(uint8_t *p, uint32_t n)
{
    if (n < 0x80) {
        p[0] = (uint8_t)n;
        return 1;
    }
    p[0] = (uint8_t)(n | 0x80);
    p[1] = (uint8_t)(n >> 7);
    return 2;
}

/* ---- baseline: a word at a time, the way QEMU's C encoder works ----
 * Byte steps up to the next 8-byte boundary, then whole words while they
 * are equal (zero run) or have no equal byte (non-zero run, found with the
 * "has a zero byte" bit trick on the XOR), then bytes to the run's end.
 * Kept as the reference the fast encoders are measured against. */
static int encode_baseline(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst, int dlen)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    int d = 0, i = 0;

    if (slen < 0)
        return -1;
    while (i < slen) {
        if (dlen - d < 2)
            return -1;
        uint32_t z = 0;
        int head = (slen - i) % 8;
        while (head && o[i] == n[i]) {
            i++, z++, head--;
        }
        if (!head) {
            while (i + 8 <= slen && ld64(o + i) == ld64(n + i))
                i += 8, z += 8;
            while (i < slen && o[i] == n[i])
                i++, z++;
        }
        if (z == (uint32_t)slen)
            return 0;
        if (i == slen)
            return d;
        if (z > MIGR_XBZRLE_RUN_MAX)
            return -1;
        d += put_len(dst + d, z);

        if (dlen - d < 2)
            return -1;
        int start = i;
        head = (slen - i) % 8;
        while (head && o[i] != n[i])
            i++, head--;
        if (!head) {
            while (i + 8 <= slen) {
                uint64_t x = ld64(o + i) ^ ld64(n + i);
                if ((x - ones) & ~x & highs) {
                    while (o[i] != n[i])
                        i++;
                    break;
                }
                i += 8;
            }
        }
        uint32_t nz = (uint32_t)(i - start);
        if (nz > MIGR_XBZRLE_RUN_MAX)
            return -1;
        d += put_len(dst + d, nz);
        if ((int)nz > dlen - d)
            return -1;
        memcpy(dst + d, n + start, nz);
        d += (int)nz;
    }
    return d;
}

/* ---- scalar block encoder ---- */

/* Byte-change mask of a 64-byte block with 64-bit words: a byte of the XOR
 * is non-zero iff adding 0x7f to its low 7 bits, or its own high bit, sets
 * bit 7; the multiply gathers the 8 bit-7s of a word into one byte. */
XB_INLINE uint64_t mask_scalar(const uint8_t *o, const uint8_t *n)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
    uint64_t x[8], acc = 0;
    for (int k = 0; k < 8; k++) {
        x[k] = ld64(o + 8 * k) ^ ld64(n + 8 * k);
        acc |= x[k];
    }
    if (!acc)
        return 0;
    uint64_t m = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t y = (((x[k] & low7) + low7) | x[k]) & ~low7;
        m |= ((y >> 7) * 0x0102040810204080ull >> 56) << (8 * k);
    }
    return m;
}

static int encode_scalar(const uint8_t *o, const uint8_t *n, int slen, uint8_t *dst, int dlen)
{
    return xb_encode_blocks(o, n, slen, dst, dlen, mask_scalar);
}

/* ---- selection ---- */

static const char *const impl_names[MIGR_XBZRLE_NIMPL] = {"baseline", "scalar", "avx2", "avx512"};

const char *migr_xbzrle_impl_name(enum migr_xbzrle_impl impl)
{
    return (unsigned)impl < MIGR_XBZRLE_NIMPL ? impl_names[impl] : "?";
}

migr_xbzrle_encode_fn migr_xbzrle_encoder(enum migr_xbzrle_impl impl)
{
    switch (impl) {
    case MIGR_XBZRLE_BASELINE: return encode_baseline;
    case MIGR_XBZRLE_SCALAR: return encode_scalar;
    case MIGR_XBZRLE_AVX2: return migr__xbzrle_avx2();
    case MIGR_XBZRLE_AVX512: return migr__xbzrle_avx512();
    default: return NULL;
    }
}

/* The encoder in use: chosen at the first encode (any thread may choose;
 * all choose the same), changed by migr_xbzrle_set_impl. Relaxed atomics:
 * impl and fn need not change together, any pair is a valid encoder. */
static int active = -1;
static migr_xbzrle_encode_fn active_fn;

static void set_active(int impl)
{
    __atomic_store_n(&active_fn, migr_xbzrle_encoder(impl), __ATOMIC_RELAXED);
    __atomic_store_n(&active, impl, __ATOMIC_RELAXED);
}

static int choose(void)
{
    int a = __atomic_load_n(&active, __ATOMIC_RELAXED);
    if (a >= 0)
        return a;
    a = MIGR_XBZRLE_SCALAR;
    if (migr_xbzrle_encoder(MIGR_XBZRLE_AVX512))
        a = MIGR_XBZRLE_AVX512;
    else if (migr_xbzrle_encoder(MIGR_XBZRLE_AVX2))
        a = MIGR_XBZRLE_AVX2;
    set_active(a);
    return a;
}

enum migr_xbzrle_impl migr_xbzrle_active_impl(void)
{
    return (enum migr_xbzrle_impl)choose();
}

int migr_xbzrle_set_impl(enum migr_xbzrle_impl impl)
{
    if ((unsigned)impl >= MIGR_XBZRLE_NIMPL)
        return migr_errorf(EINVAL, "xbzrle: no encoder %d", (int)impl);
    if (!migr_xbzrle_encoder(impl))
        return migr_errorf(ENOTSUP, "xbzrle: this CPU has no %s encoder", impl_names[impl]);
    set_active((int)impl);
    return 0;
}

int migr_xbzrle_encode(const uint8_t *old_page, const uint8_t *new_page, int slen, uint8_t *dst,
                       int dlen)
{
    migr_xbzrle_encode_fn fn = __atomic_load_n(&active_fn, __ATOMIC_RELAXED);
    if (!fn)
        fn = migr_xbzrle_encoder(choose());
    return fn(old_page, new_page, slen, dst, dlen);
}

/* ---- decoder ---- */

/* A length at src[i] (the caller made sure 2 bytes are there): its value
 * and size, or -1 for a third byte (QEMU accepts a second byte of 0). */
static inline int get_len(const uint8_t *p, uint32_t *v)
{
    if (!(p[0] & 0x80)) {
        *v = p[0];
        return 1;
    }
    if (p[1] & 0x80)
        return -1;
    *v = (uint32_t)(p[0] & 0x7f) | (uint32_t)p[1] << 7;
    return 2;
}

/* Copy a run of c >= 1 bytes without touching dst past it (the bytes after
 * it are the old page's): two overlapping fixed-size copies for short runs,
 * which most runs are, instead of a call to memcpy. */
static inline void copy_run(uint8_t *d, const uint8_t *s, uint32_t c)
{
    if (c >= 16) {
        if (c > 32) {
            memcpy(d, s, c);
            return;
        }
        memcpy(d, s, 16);
        memcpy(d + c - 16, s + c - 16, 16);
    } else if (c >= 8) {
        memcpy(d, s, 8);
        memcpy(d + c - 8, s + c - 8, 8);
    } else if (c >= 4) {
        memcpy(d, s, 4);
        memcpy(d + c - 4, s + c - 4, 4);
    } else {
        d[0] = s[0];
        d[c - 1] = s[c - 1];
        d[c / 2] = s[c / 2];
    }
}

/* QEMU's checks in QEMU's order; with apply, also copy (only after a pass
 * without apply has succeeded, so a bad delta leaves dst alone). */
XB_INLINE int decode_pass(const uint8_t *src, int slen, uint8_t *dst, int dlen, bool apply)
{
    int i = 0, d = 0;
    while (i < slen) {
        uint32_t count;
        if (slen - i < 2)
            return -1;
        int r = get_len(src + i, &count);
        if (r < 0 || (i && !count))
            return -1;
        i += r;
        if ((int)count > dlen - d)
            return -1;
        d += (int)count;
        if (slen - i < 2)
            return -1;
        r = get_len(src + i, &count);
        if (r < 0 || !count)
            return -1;
        i += r;
        if ((int)count > dlen - d || (int)count > slen - i)
            return -1;
        if (apply)
            copy_run(dst + d, src + i, count);
        d += (int)count;
        i += (int)count;
    }
    return d;
}

int migr_xbzrle_decode(const uint8_t *src, int slen, uint8_t *dst, int dlen)
{
    if (slen < 0 || dlen < 0)
        return -1;
    if (decode_pass(src, slen, dst, dlen, false) < 0)
        return -1;
    return decode_pass(src, slen, dst, dlen, true);
}

/* ---- the "xbzrle" codec ---- */

/* A delta must save at least a quarter page to be worth the receiver's
 * read-modify-write and the sender's cache; else the engine sends the page
 * another way. */
#define XBZRLE_CODEC_MAX (MIGR_PAGE_SIZE * 3 / 4 - 1)

static int xbzrle_codec_encode(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap,
                               size_t *len)
{
    if (!old)
        return MIGR_CODEC_DECLINE;
    int r = migr_xbzrle_encode(old, page, MIGR_PAGE_SIZE, out,
                               (int)MIGR_MIN(cap, (size_t)XBZRLE_CODEC_MAX));
    if (r < 0)
        return MIGR_CODEC_DECLINE;
    *len = (size_t)r;   /* 0: unchanged */
    return 0;
}

static int xbzrle_codec_decode(const uint8_t *src, size_t len, uint8_t *page)
{
    if (len >= MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "xbzrle page: delta of %zu bytes (must be < %u)", len,
                           MIGR_PAGE_SIZE);
    if (migr_xbzrle_decode(src, (int)len, page, MIGR_PAGE_SIZE) < 0)
        return migr_errorf(EBADMSG, "xbzrle page: malformed delta of %zu bytes", len);
    return 0;
}

const struct migr_codec_ops migr_codec_xbzrle = {
    .name = "xbzrle",
    .enc = MIGR_CODEC_ENC_XBZRLE,
    .encode = xbzrle_codec_encode,
    .decode = xbzrle_codec_decode,
};
