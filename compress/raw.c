/* compress/raw: the page as it is; the codec every other one falls back to. */
#include <errno.h>
#include <string.h>

#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"

static int raw_encode(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len)
{
    if (cap < MIGR_PAGE_SIZE)
        return migr_errorf(ENOSPC, "raw page: output buffer of %zu bytes (need %u)", cap,
                           MIGR_PAGE_SIZE);
    memcpy(out, page, MIGR_PAGE_SIZE);
    *len = MIGR_PAGE_SIZE;
    return 0;
}

static int raw_decode(const uint8_t *src, size_t len, uint8_t *page)
{
    if (len != MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "raw page: payload of %zu bytes (must be %u)", len,
                           MIGR_PAGE_SIZE);
    memcpy(page, src, MIGR_PAGE_SIZE);
    return 0;
}

const struct migr_codec_ops migr_codec_raw = {
    .name = "raw",
    .enc = MIGR_ENC_RAW,
    .encode = raw_encode,
    .decode = raw_decode,
};
