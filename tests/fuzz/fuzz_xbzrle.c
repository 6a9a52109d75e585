/* libFuzzer harness for the XBZRLE delta (include/migr/xbzrle.h). Any crash,
 * sanitizer report or abort() is a bug.
 *
 * Build and run (from the top directory; tests/it_fuzz_codecs.sh does this):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -I. -D_GNU_SOURCE \
 *         tests/fuzz/fuzz_xbzrle.c $(ls compress/[a-z]*.c common/[a-z]*.c) -llz4 -lzstd -lz -o fuzz_xbzrle
 *   ./fuzz_xbzrle -max_total_time=60 corpus/
 *
 * Input: u8 mode, u16 dlen (little-endian, used modulo 16385), rest.
 *   mode even: the rest is a delta, decoded over a dlen-byte page; the
 *     result must equal a model of QEMU's decoder, and a refused delta must
 *     leave the page alone.
 *   mode odd: the rest is split in halves, old and patch; new[i] = patch[i]
 *     if non-zero, else old[i] (so zero bytes in the input make unchanged
 *     runs). Every encoder of this CPU encodes new against old into a
 *     dlen-byte buffer; all must agree, and a delta must decode back to new.
 * All buffers are heap blocks of exactly their size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/xbzrle.h"

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

/* QEMU's xbzrle_decode_buffer checks, without writing. */
static int model_decode(const uint8_t *src, int slen, int dlen)
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
        if (d > dlen || slen - i < 2)
            return -1;
        r = model_get_len(src + i, &c);
        if (r < 0 || !c)
            return -1;
        i += r;
        if (d + (int)c > dlen || i + (int)c > slen)
            return -1;
        d += (int)c;
        i += (int)c;
    }
    return d;
}

static uint8_t *dup(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

static void fuzz_decode(const uint8_t *data, size_t size, int dlen)
{
    uint8_t *src = dup(data, size), *page = malloc(dlen ? (size_t)dlen : 1);
    uint8_t *orig = malloc(dlen ? (size_t)dlen : 1);
    if (!page || !orig)
        abort();
    for (int i = 0; i < dlen; i++)
        orig[i] = page[i] = (uint8_t)(i * 31 + 7);
    int r = migr_xbzrle_decode(src, (int)size, page, dlen);
    if (r != model_decode(src, (int)size, dlen))
        abort();
    if (r < 0 && dlen && memcmp(page, orig, (size_t)dlen))
        abort();
    if (r >= 0) {
        /* what changed lies in the runs: re-apply gives the same page */
        uint8_t *again = dup(page, (size_t)dlen);
        if (migr_xbzrle_decode(src, (int)size, again, dlen) != r ||
            (dlen && memcmp(again, page, (size_t)dlen)))
            abort();
        free(again);
    }
    free(src);
    free(page);
    free(orig);
}

static void fuzz_encode(const uint8_t *data, size_t size, int dlen)
{
    size_t slen = size / 2;
    uint8_t *o = dup(data, slen), *n = dup(data + slen, slen);
    for (size_t i = 0; i < slen; i++)
        if (!n[i])
            n[i] = o[i];
    int want = -2;
    uint8_t *first = NULL;
    for (int k = 0; k < MIGR_XBZRLE_NIMPL; k++) {
        migr_xbzrle_encode_fn fn = migr_xbzrle_encoder(k);
        if (!fn)
            continue;
        uint8_t *dst = malloc(dlen ? (size_t)dlen : 1);
        if (!dst)
            abort();
        int r = fn(o, n, (int)slen, dst, dlen);
        if (want == -2) {
            want = r;
            first = dst;
            continue;
        }
        if (r != want || (r > 0 && memcmp(dst, first, (size_t)r)))
            abort();
        free(dst);
    }
    if (want == 0 && memcmp(o, n, slen) && slen)
        abort();
    if (want > 0) {
        uint8_t *page = dup(o, slen), *src = dup(first, (size_t)want);
        int r = migr_xbzrle_decode(src, want, page, (int)slen);
        if (r <= 0 || (size_t)r > slen || memcmp(page, n, slen))
            abort();
        free(page);
        free(src);
    }
    free(first);
    free(o);
    free(n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int mode = data[0], dlen = (data[1] | data[2] << 8) % 16385;
    data += 3, size -= 3;
    if (mode % 2 == 0)
        fuzz_decode(data, size, dlen);
    else
        fuzz_encode(data, size < 2 * 16384 ? size : 2 * 16384, dlen);
    return 0;
}
