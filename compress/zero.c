/* compress/zero: all-zero pages. The page needs no payload at all; the
 * record layer (format.h, MIGR_ENC_ZERO) folds runs of them into a count. */
#include <errno.h>
#include <string.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"

/* Most pages that are not zero differ in the first bytes, so test one word
 * first; then OR-reduce 64 bytes at a time (the compiler vectorises the
 * inner reduction) and leave at the first block holding a non-zero byte. */
bool migr_page_is_zero(const void *page)
{
    const uint64_t *w = __builtin_assume_aligned(page, 8);
    if (w[0])
        return false;
    for (size_t i = 0; i < MIGR_PAGE_SIZE / 8; i += 8) {
        uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
                       w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
        if (acc)
            return false;
    }
    return true;
}

static int zero_encode(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len)
{
    if (!migr_page_is_zero(page))
        return MIGR_CODEC_DECLINE;
    *len = 0;
    return 0;
}

static int zero_decode(const uint8_t *src, size_t len, uint8_t *page)
{
    if (len != 0)
        return migr_errorf(EBADMSG, "zero page: payload of %zu bytes (must be empty)", len);
    memset(page, 0, MIGR_PAGE_SIZE);
    return 0;
}

const struct migr_codec_ops migr_codec_zero = {
    .name = "zero",
    .enc = MIGR_ENC_ZERO,
    .encode = zero_encode,
    .decode = zero_decode,
};
