/* libFuzzer harness for every page codec's decoder and encoder
 * (include/migr/codec.h: raw, zero, xbzrle, lz4, zstd, zlib). Any crash,
 * sanitizer report or abort() is a bug.
 *
 * Build and run (from the top directory; tests/it_fuzz_codecs.sh does this):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -I. -D_GNU_SOURCE \
 *         tests/fuzz/fuzz_codecs.c $(ls compress/[a-z]*.c common/[a-z]*.c) -llz4 -lzstd -lz -o fuzz_codecs
 *   ./fuzz_codecs -max_total_time=60 corpus/
 *
 * Input: u8 selector (codec = selector % 6, mode = selector / 6 % 2), rest.
 *   mode 0: the rest is a payload, decoded into a page (a heap block of one
 *     page, holding an old copy); the result must be 0 or -EBADMSG, with a
 *     message on -EBADMSG.
 *   mode 1: the rest (repeated to fill a page) is a page; it is encoded
 *     against an old copy (the page with every 64th byte flipped) and, if
 *     not declined, must decode back to the same page.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/codec.h"
#include "migr/common.h"

#define PS MIGR_PAGE_SIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct migr_codec_ops *ops = migr_codec_at(data[0] % 6);
    int mode = data[0] / 6 % 2;
    data++, size--;
    if (!ops)
        abort();
    uint8_t *page = malloc(PS), *old = malloc(PS);
    if (!page || !old)
        abort();
    for (unsigned i = 0; i < PS; i++)
        old[i] = (uint8_t)(i * 13);
    if (mode == 0) {
        uint8_t *src = malloc(size ? size : 1);
        if (!src)
            abort();
        memcpy(src, data, size);
        memcpy(page, old, PS);
        migr_clear_error();
        int r = ops->decode(src, size, page);
        if (r != 0 && r != -EBADMSG)
            abort();
        if (r == -EBADMSG && !migr_last_error()[0])
            abort();
        free(src);
    } else {
        for (unsigned i = 0; i < PS; i++)
            page[i] = size ? data[i % size] : 0;
        for (unsigned i = 0; i < PS; i += 64)
            old[i] = page[i] ^ 0x80;
        for (unsigned i = 0; i < PS; i++)
            if (i % 64)
                old[i] = page[i];
        size_t cap = size ? (size * 7) % (2 * PS) : PS, len = 0;
        uint8_t *out = malloc(cap ? cap : 1), *back = malloc(PS);
        if (!out || !back)
            abort();
        int r = ops->encode(page, old, out, cap, &len);
        if (r < 0 && r != -ENOSPC)
            abort();
        if (r == 0) {
            if (len > cap)
                abort();
            memcpy(back, old, PS);
            uint8_t *src = malloc(len ? len : 1);
            if (!src)
                abort();
            memcpy(src, out, len);
            if (ops->decode(src, len, back) || memcmp(back, page, PS))
                abort();
            free(src);
        }
        free(out);
        free(back);
    }
    free(page);
    free(old);
    return 0;
}
