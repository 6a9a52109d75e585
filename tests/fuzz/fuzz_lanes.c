/* libFuzzer harness for the stream codecs' decoders and encoders
 * (include/migr/codec.h: LZ4S, ZSTDS; compress/stream.c). Any crash,
 * sanitizer report or abort() is a bug.
 *
 * Built and run by tests/it_fuzz_codecs.sh beside fuzz_codecs.
 *
 * Input: u8 selector (codec = selector % 2, mode = selector / 2 % 2), rest.
 *   mode 0: the rest is a sequence of entries, each u8 flags (bit 0: START),
 *     u16 little-endian length (taken modulo the bytes left), that many
 *     bytes; all decoded in order with one context. Each result must be 0
 *     or -EBADMSG with a message.
 *   mode 1: the rest makes up to 24 pages (each the rest rotated and with
 *     its index stamped in); they are encoded as one stream (a restart every
 *     7 pages) and the entries that were not declined must decode back to
 *     exactly their pages.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migr/codec.h"
#include "migr/common.h"

#define PS MIGR_PAGE_SIZE

static const struct migr_lane_ops *const ops[2] = {&migr_lane_lz4, &migr_lane_zstd};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct migr_lane_ops *o = ops[data[0] % 2];
    int mode = data[0] / 2 % 2;
    data++, size--;
    struct migr_lane *l;
    static uint8_t page[PS];
    if (mode == 0) {
        if (migr_lane_new(o, &l) < 0)
            abort();
        while (size >= 3) {
            bool start = data[0] & 1;
            size_t len = (size_t)data[1] | (size_t)data[2] << 8;
            data += 3, size -= 3;
            len %= size + 1;
            uint8_t *src = malloc(len ? len : 1);
            if (!src)
                abort();
            memcpy(src, data, len);
            migr_clear_error();
            int r = migr_lane_decode(l, src, len, start, page);
            if (r != 0 && r != -EBADMSG)
                abort();
            if (r == -EBADMSG && !migr_last_error()[0])
                abort();
            free(src);
            data += len, size -= len;
        }
        migr_lane_free(l);
        return 0;
    }
    enum { N = 24 };
    static uint8_t pages[N][PS], out[N][PS];
    static size_t lens[N];
    static bool starts[N];
    struct migr_lane *d;
    if (migr_lane_new(o, &l) < 0 || migr_lane_new(o, &d) < 0)
        abort();
    for (int i = 0; i < N; i++) {
        for (unsigned k = 0; k < PS; k++)
            pages[i][k] = size ? data[(k + (size_t)i * 7) % size] : 0;
        pages[i][i % PS] ^= (uint8_t)i;
        if (i % 7 == 0)
            migr_lane_restart(l);
        int r = migr_lane_encode(l, pages[i], 1, out[i], PS - 1, &lens[i], &starts[i]);
        if (r == MIGR_CODEC_DECLINE) {
            lens[i] = 0;
            continue;
        }
        if (r != 0 || lens[i] == 0 || lens[i] >= PS)
            abort();
        if (migr_lane_decode(d, out[i], lens[i], starts[i], page) != 0 || memcmp(page, pages[i], PS) != 0)
            abort();
    }
    migr_lane_free(l);
    migr_lane_free(d);
    return 0;
}
