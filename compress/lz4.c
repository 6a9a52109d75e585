/* compress/lz4: one LZ4 block per page (liblz4), fast or HC by level. */
#include <errno.h>
#include <lz4.h>
#include <lz4hc.h>
#include <stdlib.h>

#include "compress/internal.h"
#include "migr/codec.h"
#include "migr/common.h"
#include "migr/format.h"

struct lz4_ctx {
    void *fast;   /* LZ4_sizeofState() */
    void *hc;     /* LZ4_sizeofStateHC(), only for levels >= 3 */
};

static void lz4_ctx_free(void *p)
{
    struct lz4_ctx *c = p;
    if (c) {
        free(c->fast);
        free(c->hc);
        free(c);
    }
}

static struct migr__tls lz4_tls = MIGR__TLS_INIT(sizeof(struct lz4_ctx), lz4_ctx_free);

static int lz4_encode_at(const uint8_t *page, uint8_t *out, size_t cap, size_t *len, int level)
{
    int room = (int)MIGR_MIN(cap, (size_t)MIGR_PAGE_SIZE - 1);
    struct lz4_ctx *c = migr__tls_get(&lz4_tls);
    int r;

    if (!c)
        return migr_errorf(ENOMEM, "lz4: no memory for a compression context");
    if (level >= 3) {
        if (!c->hc && !(c->hc = malloc((size_t)LZ4_sizeofStateHC())))
            return migr_errorf(ENOMEM, "lz4: no memory for an HC context");
        r = LZ4_compress_HC_extStateHC(c->hc, (const char *)page, (char *)out, MIGR_PAGE_SIZE,
                                       room, level);
    } else {
        if (!c->fast && !(c->fast = malloc((size_t)LZ4_sizeofState())))
            return migr_errorf(ENOMEM, "lz4: no memory for a context");
        r = LZ4_compress_fast_extState(c->fast, (const char *)page, (char *)out, MIGR_PAGE_SIZE,
                                       room, level < -1 ? -level : 1);
    }
    if (r <= 0)
        return MIGR_CODEC_DECLINE;   /* does not fit in room: no gain */
    *len = (size_t)r;
    return 0;
}

static int lz4_encode(const uint8_t *page, const uint8_t *old, uint8_t *out, size_t cap, size_t *len)
{
    return lz4_encode_at(page, out, cap, len, __atomic_load_n(&migr__lz4_level, __ATOMIC_RELAXED));
}

static int lz4_decode(const uint8_t *src, size_t len, uint8_t *page)
{
    if (len == 0 || len >= MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "lz4 page: payload of %zu bytes (must be 1 ... %u)", len,
                           MIGR_PAGE_SIZE - 1);
    int r = LZ4_decompress_safe((const char *)src, (char *)page, (int)len, MIGR_PAGE_SIZE);
    if (r < 0)
        return migr_errorf(EBADMSG, "lz4 page: malformed block of %zu bytes", len);
    if (r != (int)MIGR_PAGE_SIZE)
        return migr_errorf(EBADMSG, "lz4 page: block of %zu bytes decodes to %d bytes (must be %u)",
                           len, r, MIGR_PAGE_SIZE);
    return 0;
}

const struct migr_codec_ops migr_codec_lz4 = {
    .name = "lz4",
    .enc = MIGR_CODEC_ENC_LZ4,
    .encode = lz4_encode,
    .decode = lz4_decode,
    .encode_at = lz4_encode_at,
};
