/* compress/zstd: one zstd frame per page (libzstd), with the content size in
 * its header and no checksum (the PAGES entry's CRC covers the page). */
#include <errno.h>
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "compress/internal.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"

struct zstd_ctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
};

static void zstd_ctx_free(void *p)
{
    struct zstd_ctx *c = p;
    if (c) {
        ZSTD_freeCCtx(c->c);
        ZSTD_freeDCtx(c->d);
        free(c);
    }
}

static struct migr__tls zstd_tls = MIGR__TLS_INIT(sizeof(struct zstd_ctx), zstd_ctx_free);

void migr__zstd_level_range(int *min, int *max)
{
    *min = ZSTD_minCLevel();
    *max = ZSTD_maxCLevel();
}

static int zstd_encode_at(const uint8_t *page, uint8_t *out, size_t cap, size_t *len, int level)
{
    struct zstd_ctx *c = migr__tls_get(&zstd_tls);
    if (!c || (!c->c && !(c->c = ZSTD_createCCtx())))
        return migr_errorf(ENOMEM, "zstd: no memory for a compression context");
    size_t r = ZSTD_compressCCtx(c->c, out, MIGR_MIN(cap, (size_t)MIGR_PAGE_SIZE - 1), page,
                                 MIGR_PAGE_SIZE, level);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
            return MIGR_CODEC_DECLINE;
        return migr_errorf(EIO, "zstd: compress (level %d): %s", level, ZSTD_getErrorName(r));
    }
    *len = r;
    return 0;
}

static int zstd_encode(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len)
{
    return zstd_encode_at(page, out, cap, len, __atomic_load_n(&migr__zstd_level, __ATOMIC_RELAXED));
}

static int zstd_decode(const uint8_t *src, size_t len, uint8_t *page)
{
    if (len == 0 || len >= MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "zstd page: payload of %zu bytes (must be 1 ... %u)", len,
                           MIGR_PAGE_SIZE - 1);
    /* exactly one frame, which says it holds one page */
    unsigned long long size = ZSTD_getFrameContentSize(src, len);
    if (size != MIGR_PAGE_SIZE) {
        if (size == ZSTD_CONTENTSIZE_ERROR)
            return migr_errorf(EBADMSG, "zstd page: no zstd frame header in %zu bytes", len);
        if (size == ZSTD_CONTENTSIZE_UNKNOWN)
            return migr_errorf(EBADMSG, "zstd page: frame without content size");
        return migr_errorf(EBADMSG, "zstd page: frame content size %llu (must be %u)", size,
                           MIGR_PAGE_SIZE);
    }
    size_t flen = ZSTD_findFrameCompressedSize(src, len);
    if (ZSTD_isError(flen))
        return migr_errorf(EBADMSG, "zstd page: malformed frame of %zu bytes: %s", len,
                           ZSTD_getErrorName(flen));
    if (flen != len)
        return migr_errorf(EBADMSG, "zstd page: %zu bytes after the frame's %zu", len - flen, flen);
    struct zstd_ctx *c = migr__tls_get(&zstd_tls);
    if (!c || (!c->d && !(c->d = ZSTD_createDCtx())))
        return migr_errorf(ENOMEM, "zstd: no memory for a decompression context");
    size_t r = ZSTD_decompressDCtx(c->d, page, MIGR_PAGE_SIZE, src, len);
    if (ZSTD_isError(r))
        return migr_errorf(EBADMSG, "zstd page: malformed frame of %zu bytes: %s", len,
                           ZSTD_getErrorName(r));
    if (r != MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "zstd page: frame decodes to %zu bytes (must be %u)", r,
                           MIGR_PAGE_SIZE);
    return 0;
}

const struct migr_codec_ops migr_codec_zstd = {
    .name = "zstd",
    .enc = MIGR_CODEC_ENC_ZSTD,
    .encode = zstd_encode,
    .decode = zstd_decode,
    .encode_at = zstd_encode_at,
};
